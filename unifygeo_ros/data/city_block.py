"""One city block (:class:`Block`): its cells, a local frame from their minimum-area rectangle, and the painting
helpers the block uses of :mod:`.buildings` and :mod:`.open_spaces` draw with; :mod:`.blocks` finds the blocks and
chooses their uses."""
from __future__ import annotations

import math
from typing import TYPE_CHECKING

import cv2
import numpy as np

if TYPE_CHECKING:  # for annotations only
    from unifygeo_ros.data.city_builder import CityBuilder


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

