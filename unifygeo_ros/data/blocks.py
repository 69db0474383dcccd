"""City blocks: the land between the streets, one connected component of the non-street cells each, and
what each becomes (:func:`fill_blocks`): dense buildings, houses, a big-box store, a park, a plaza or a parking
lot, drawn from the local building density. :class:`Block` gives a block's cells a local frame and paints them;
the uses themselves live in :mod:`.buildings` and :mod:`.open_spaces`.
"""
from __future__ import annotations

import math

import cv2
import numpy as np

from unifygeo_ros.data.buildings import fill_big_box, fill_dense, fill_houses
from unifygeo_ros.data.city_builder import CityBuilder
from unifygeo_ros.data.city_schema import SURFACE_GRASS, SURFACE_GROUND, SURFACE_PLAZA
from unifygeo_ros.data.open_spaces import fill_park, fill_parking, fill_plain, fill_plaza


#: block use -> the function that fills a block with it: ``fill(block, density)``
BLOCK_USES = {"dense": fill_dense, "houses": fill_houses, "box": fill_big_box, "park": fill_park,
              "plaza": fill_plaza, "parking": fill_parking}


def fill_blocks(b: CityBuilder, walk: np.ndarray):
    """Fill every block (connected area outside the streets and sidewalks ``walk``) with a use."""
    free = (~walk).astype(np.uint8)
    n, labels, stats, cents = cv2.connectedComponentsWithStats(free, connectivity=4, ltype=cv2.CV_32S)
    dist = cv2.distanceTransform(free, cv2.DIST_L2, 5)
    dist *= b.cell
    b.surface[:] = SURFACE_GROUND
    b.top[:] = b.materials.outside
    cell = b.cell
    area_m2 = stats[:, cv2.CC_STAT_AREA] * cell * cell
    for k in range(1, n):
        x, y, w, h = (int(v) for v in stats[k, :4])
        crop = labels[y:y + h, x:x + w] == k
        ys, xs = np.nonzero(crop)
        ys = ys + y
        xs = xs + x
        e = (xs + 0.5) * cell
        nn = (ys + 0.5) * cell
        blk = Block(b, ys, xs, e, nn, dist[ys, xs], dist)
        p = b.density(float(cents[k, 0] * cell), float(cents[k, 1] * cell))
        r = b.rng_blocks.random()
        if area_m2[k] < 250:
            fill_plain(blk, SURFACE_GRASS if r < 0.6 else SURFACE_PLAZA)
        elif blk.short < 18 or blk.long < 18:
            fill_plain(blk, SURFACE_GRASS if r < 0.5 else SURFACE_PLAZA, trees=0.5)
        else:
            BLOCK_USES[_block_use(blk, p, r)](blk, p)


def _block_use(blk: Block, p: float, r: float) -> str:
    """The use of a block of density ``p`` for the uniform draw ``r``: mostly dense buildings downtown, mostly
    houses in the suburbs; no big box in a narrow block."""
    if p > 0.6:
        use = "dense" if r < 0.82 else ("plaza" if r < 0.87 else ("park" if r < 0.94 else "parking"))
    elif p > 0.3:
        use = ("dense" if r < 0.5 else "houses" if r < 0.65 else "box" if r < 0.77 else "park" if r < 0.9
               else "parking")
    else:
        use = "houses" if r < 0.76 else ("park" if r < 0.87 else ("box" if r < 0.95 else "parking"))
    if use == "box" and blk.short < 60:
        use = "houses" if p < 0.45 else "dense"
    return use


class Block:
    """One city block: its cells (``ys``, ``xs`` grid indices, ``e``, ``n`` ENU metres of their centres) and a
    local frame from its minimum-area rectangle: ``a`` along the long axis, ``bb`` across it (metres from the
    rectangle's centre ``c``), ``long`` and ``short`` its sides; ``dist`` metres to the nearest street.
    ``rng`` is the builder's block stream."""

    def __init__(self, b: CityBuilder, ys, xs, e, n, dist, dist_map):
        self.b, self.ys, self.xs, self.e, self.n, self.dist = b, ys, xs, e, n, dist
        self.dist_map = dist_map
        pts = np.stack([e, n], -1).astype(np.float32)
        step = max(1, len(pts) // 20000)
        (cx, cy), (rw, rh), ang = cv2.minAreaRect(np.ascontiguousarray(pts[::step]))
        ang = math.radians(ang)
        if rw < rh:
            rw, rh, ang = rh, rw, ang + np.pi / 2
        self.axis = np.array([math.cos(ang), math.sin(ang)])
        self.perp = np.array([-math.sin(ang), math.cos(ang)])
        self.c = np.array([cx, cy])
        self.a = (e - cx) * self.axis[0] + (n - cy) * self.axis[1]
        self.bb = (e - cx) * self.perp[0] + (n - cy) * self.perp[1]
        self.long, self.short = float(rw), float(rh)
        self.rng = b.rng_blocks

    def grad(self, rows, cols, step: int = 3):
        """Unit gradient (east, north) of the distance-to-street map at cells (points away from the street)."""
        dm = self.dist_map
        r0, r1 = np.clip(rows - step, 0, dm.shape[0] - 1), np.clip(rows + step, 0, dm.shape[0] - 1)
        c0, c1 = np.clip(cols - step, 0, dm.shape[1] - 1), np.clip(cols + step, 0, dm.shape[1] - 1)
        gx = dm[rows, c1] - dm[rows, c0]
        gy = dm[r1, cols] - dm[r0, cols]
        nrm = np.maximum(np.hypot(gx, gy), 1e-6)
        return gx / nrm, gy / nrm

    def to_world(self, a, bb):
        """Block frame -> (east, north) metres."""
        return self.c[0] + a * self.axis[0] + bb * self.perp[0], self.c[1] + a * self.axis[1] + bb * self.perp[1]

    def set(self, mask, surface=None, rgb=None, height=None, oid=None):
        """Paint the block cells of ``mask``: any of surface class, top colour (clipped), height, object id."""
        ys, xs = self.ys[mask], self.xs[mask]
        b = self.b
        if surface is not None:
            b.surface[ys, xs] = surface
        if rgb is not None:
            b.top[ys, xs] = np.clip(rgb, 0, 255).astype(np.uint8)
        if height is not None:
            b.height[ys, xs] = height
        if oid is not None:
            b.oid[ys, xs] = oid

    def lots(self, width_range, rows: int):
        """Lot index per cell: cuts along ``a`` of widths drawn from ``width_range``; ``rows`` (1 or 2) rows
        split across the block. Returns (lot index, lot a-centre table, lot half-width table)."""
        lo, hi = self.a.min(), self.a.max()
        cuts = [lo]
        while cuts[-1] < hi:
            cuts.append(cuts[-1] + self.rng.uniform(*width_range))
        if len(cuts) > 2 and hi - cuts[-2] < width_range[0] * 0.5:
            cuts.pop(-2)
        cuts = np.array(cuts)
        cuts[-1] = max(cuts[-1], hi + 1e-3)
        ia = np.clip(np.searchsorted(cuts, self.a, side="right") - 1, 0, len(cuts) - 2)
        row = (self.bb > 0).astype(np.int64) if rows == 2 else np.zeros(len(self.a), np.int64)
        nlot = (len(cuts) - 1) * rows
        lot = ia * rows + row
        centres = np.repeat((cuts[:-1] + cuts[1:]) / 2, rows)
        halves = np.repeat((cuts[1:] - cuts[:-1]) / 2, rows)
        return lot, nlot, centres, halves

