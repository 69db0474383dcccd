"""City blocks: the land between the streets, one connected component of the non-street cells each, and
what each becomes (:func:`fill_blocks`): dense buildings, houses, a big-box store, a park, a plaza or a parking
lot, drawn from the local building density. :class:`~.city_block.Block` gives a block's cells a local frame and
paints them; the uses themselves live in :mod:`.buildings` and :mod:`.open_spaces`.
"""
from __future__ import annotations

import cv2
import numpy as np

from unifygeo_ros.data.buildings import fill_big_box, fill_dense, fill_houses
from unifygeo_ros.data.city_block import Block
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
