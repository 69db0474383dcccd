"""Trees into the layers: every tree added while the city was built (street, garden, park, plaza trees) is
painted as a shaded dome-shaped canopy, and what each canopy covers is kept so that rays passing below the
canopies still see the ground, hedges and cars under them (``City.under_*``, :meth:`City.under_canopy_layers`).
"""
from __future__ import annotations

import numpy as np

from unifygeo_ros.data.city_builder import CityBuilder
from unifygeo_ros.data.city_schema import SURFACE_TREE


def paint_tree_canopies(b: CityBuilder):
    """Paint the canopies of ``b.trees`` (height, shaded colour, ``SURFACE_TREE``, object id ``-(k + 1)``) and
    set ``b.under`` = (flat cell indices sorted, top colours, surfaces, heights) of what they cover."""
    cell = b.cell
    under_idx, under_rgb, under_surf, under_h = [], [], [], []
    for k, (e, n, rad, top, base, rgb) in enumerate(b.trees):
        r0, r1 = int((n - rad) / cell), int((n + rad) / cell) + 1
        c0, c1 = int((e - rad) / cell), int((e + rad) / cell) + 1
        if r1 <= 0 or c1 <= 0 or r0 >= b.rows or c0 >= b.cols:
            continue
        r0c, c0c = max(r0, 0), max(c0, 0)
        r1c, c1c = min(r1, b.rows), min(c1, b.cols)
        yy = (np.arange(r0c, r1c) + 0.5) * cell - n
        xx = (np.arange(c0c, c1c) + 0.5) * cell - e
        rho2 = (yy[:, None] ** 2 + xx[None, :] ** 2) / (rad * rad)
        inside = rho2 < 1.0
        dome = base + (top - base) * np.sqrt(np.clip(1 - rho2, 0, 1))
        hs = b.height[r0c:r1c, c0c:c1c]
        upd = inside & (dome > hs)
        if not upd.any():
            continue
        fresh = upd & (b.surface[r0c:r1c, c0c:c1c] != SURFACE_TREE)
        if fresh.any():
            fr, fc = np.nonzero(fresh)
            under_idx.append((fr + r0c) * b.cols + (fc + c0c))
            under_rgb.append(b.top[r0c:r1c, c0c:c1c][fresh])
            under_surf.append(b.surface[r0c:r1c, c0c:c1c][fresh])
            under_h.append(hs[fresh].copy())
        hs[upd] = dome[upd]
        shade = (0.8 + 0.35 * (1 - rho2))[upd]
        b.top[r0c:r1c, c0c:c1c][upd] = np.clip(np.asarray(rgb)[None] * shade[:, None], 0, 255).astype(np.uint8)
        b.surface[r0c:r1c, c0c:c1c][upd] = SURFACE_TREE
        b.oid[r0c:r1c, c0c:c1c][upd] = -(k + 1)
    if under_idx:
        idx = np.concatenate(under_idx)
        order = np.argsort(idx, kind="stable")
        b.under = (idx[order], np.concatenate(under_rgb)[order], np.concatenate(under_surf)[order],
                   np.concatenate(under_h)[order].astype(np.float32))
    else:
        b.under = (np.zeros(0, np.int64), np.zeros((0, 3), np.uint8), np.zeros(0, np.uint8), np.zeros(0, np.float32))

