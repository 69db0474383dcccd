"""The open uses of a city block: plain grass or paving (:func:`fill_plain`, small blocks), parking lots
with cars in their stalls (:func:`fill_parking`, :func:`parking_lot`), plazas with a fountain and rows of
trees (:func:`fill_plaza`), parks with a sports field, a pond, paths and trees (:func:`fill_park`).

Like :mod:`.buildings`, each takes a :class:`~unifygeo_ros.data.city_block.Block` (and the density ``p``, unused
here) and draws from the block stream ``blk.rng``.
"""
from __future__ import annotations

import math
from typing import TYPE_CHECKING

import cv2
import numpy as np

from unifygeo_ros.data.city_schema import (
    SURFACE_GRASS,
    SURFACE_MARKING,
    SURFACE_PARKING,
    SURFACE_PATH,
    SURFACE_PLAZA,
    SURFACE_WATER,
)
from unifygeo_ros.data.raster_draw import SHIFT, thickness, to_px

if TYPE_CHECKING:  # for annotations only
    from unifygeo_ros.data.city_block import Block

# parking rows across the lot: [stall 5 m][stall 5 m][aisle 6.5 m], stalls 2.6 m wide
PARKING_ROW_PERIOD_M = 16.5
STALL_WIDTH_M = 2.6
STALL_LINE_RGB = (226, 226, 220)
FIELD_LINE_RGB = (235, 235, 235)


def fill_plain(blk: Block, surface: int, trees: float = 0.0):
    """The whole block grass (``SURFACE_GRASS``) or paved (``SURFACE_PLAZA``), with probability ``trees`` one
    tree."""
    b = blk.b
    all_ = np.ones(len(blk.e), bool)
    rgb = b.materials.grass if surface == SURFACE_GRASS else b.materials.plaza
    blk.set(all_, surface, rgb)
    if trees and blk.rng.random() < trees:
        i = blk.rng.integers(len(blk.e))
        if blk.dist[i] > 1.5:
            b.add_tree(blk.e[i], blk.n[i], blk.rng.uniform(2, 4), blk.rng.uniform(6, 11))


# ---------------------------------------------------------------------------------------------- parking
def fill_parking(blk: Block, p: float):
    """A parking lot over the whole block, a tree island now and then along its edge."""
    parking_lot(blk, blk.dist >= 0)
    rng = blk.rng
    edge = np.nonzero((blk.dist > 1.0) & (blk.dist < 2.0))[0]
    for i in edge[:: max(1, len(edge) // 6)][: rng.integers(0, 6)]:
        blk.b.add_tree(blk.e[i], blk.n[i], rng.uniform(2, 3.5), rng.uniform(6, 10))


def parking_lot(blk: Block, mask: np.ndarray):
    """Asphalt with stall lines on the block cells of ``mask``, cars in a share of the stalls."""
    b, rng = blk.b, blk.rng
    blk.set(mask, SURFACE_PARKING, b.materials.parking_asphalt)
    period = PARKING_ROW_PERIOD_M
    off_b = rng.uniform(0, period)
    ub = (blk.bb - off_b) % period
    off_a = rng.uniform(0, STALL_WIDTH_M)
    ua = (blk.a - off_a) % STALL_WIDTH_M
    stall_band = ub < 10.0
    line = mask & stall_band & (ua < 0.14 + 0.01) & (blk.dist > 1.0)
    blk.set(line, SURFACE_MARKING, STALL_LINE_RGB)
    _stall_cars(blk, mask, off_a, off_b)


def _stall_cars(blk: Block, mask: np.ndarray, off_a: float, off_b: float):
    """Cars in the stalls of both rows of every parking row, each stall taken with the lot's occupancy."""
    b, rng = blk.b, blk.rng
    period = PARKING_ROW_PERIOD_M
    occ = rng.uniform(0.3, 0.9)
    amin, amax = blk.a[mask].min() if mask.any() else 0, blk.a[mask].max() if mask.any() else 0
    bmin, bmax = blk.bb[mask].min() if mask.any() else 0, blk.bb[mask].max() if mask.any() else 0
    ks = np.arange(np.floor((amin - off_a) / STALL_WIDTH_M), np.ceil((amax - off_a) / STALL_WIDTH_M))
    js = np.arange(np.floor((bmin - off_b) / period), np.ceil((bmax - off_b) / period))
    for jj in js:
        for row_off in (2.5, 7.5):
            bc = off_b + jj * period + row_off
            for kk in ks:
                if rng.random() > occ:
                    continue
                ac = off_a + kk * STALL_WIDTH_M + 1.3
                e, n = blk.to_world(ac, bc)
                # the whole car must fit in the lot (check its centre and its two ends)
                if all(_on_parking(blk, *blk.to_world(ac, bc + db)) for db in (0.0, -2.2, 2.2)):
                    b.add_car(e, n, math.atan2(blk.perp[1], blk.perp[0]), b.parked_set(rng), rng)


def _on_parking(blk: Block, e: float, n: float) -> bool:
    """Whether (east, north) is inside the city on a parking lot (asphalt or stall line)."""
    b = blk.b
    r_, c_ = int(n / b.cell), int(e / b.cell)
    return 0 <= r_ < b.rows and 0 <= c_ < b.cols and b.surface[r_, c_] in (SURFACE_PARKING, SURFACE_MARKING)


# ---------------------------------------------------------------------------------------------- plaza
def fill_plaza(blk: Block, p: float):
    """Paving with a tile pattern, sometimes a round fountain, rows of trees along the long sides."""
    b, rng = blk.b, blk.rng
    g = rng.uniform(4, 8)
    pat = ((np.abs((blk.a % g) - g / 2) > g / 2 - 0.2) | (np.abs((blk.bb % g) - g / 2) > g / 2 - 0.2))
    rgb = np.where(pat[:, None], b.materials.plaza * 0.86, b.materials.plaza)
    blk.set(np.ones(len(blk.a), bool), SURFACE_PLAZA, rgb)
    if rng.random() < 0.5:
        r = rng.uniform(3, 7)
        m = (blk.a ** 2 + blk.bb ** 2) < r * r
        blk.set(m, SURFACE_WATER, b.materials.water * 1.2)
        blk.set(m & ((blk.a ** 2 + blk.bb ** 2) > (r - 0.5) ** 2), SURFACE_PLAZA, b.materials.plaza * 0.7, 0.6)
    step = rng.uniform(7, 11)
    for aa in np.arange(-blk.long / 2 + 4, blk.long / 2 - 3, step):
        for bb in (-blk.short / 2 + 4, blk.short / 2 - 4):
            e, n = blk.to_world(aa, bb)
            b.add_tree(e, n, rng.uniform(2, 3.2), rng.uniform(6, 10))


# ---------------------------------------------------------------------------------------------- park
def fill_park(blk: Block, p: float):
    """Grass, sometimes a sports field and a pond, curvy paths, clusters of trees and scattered ones."""
    b = blk.b
    blk.set(np.ones(len(blk.a), bool), SURFACE_GRASS, b.materials.grass)
    field_mask = _sports_field(blk)
    pond = _pond(blk, field_mask)
    pathm = _park_paths(blk) & ~pond & ~field_mask
    blk.set(pathm, SURFACE_PATH, b.materials.path)
    _park_trees(blk, ~pathm & ~pond & ~field_mask & (blk.dist > 1.5))


def _sports_field(blk: Block) -> np.ndarray:
    """A lined field in some wide parks; returns its mask (block cells)."""
    b, rng = blk.b, blk.rng
    if not (rng.random() < 0.25 and blk.short > 60):
        return np.zeros(len(blk.a), bool)
    fl, fw = min(blk.long - 20, 100), min(blk.short - 20, 60)
    f = (np.abs(blk.a) < fl / 2) & (np.abs(blk.bb) < fw / 2)
    blk.set(f, SURFACE_GRASS, b.materials.grass * 1.15)
    ln = f & ((fl / 2 - np.abs(blk.a) < 0.3) | (fw / 2 - np.abs(blk.bb) < 0.3) | (np.abs(blk.a) < 0.15))
    blk.set(ln, SURFACE_MARKING, FIELD_LINE_RGB)
    return f


def _pond(blk: Block, field_mask: np.ndarray) -> np.ndarray:
    """A wobbly elliptic pond in some parks (not on the field); returns its mask."""
    b, rng = blk.b, blk.rng
    pond = np.zeros(len(blk.a), bool)
    if rng.random() < 0.4 and blk.short > 40:
        ca, cb = rng.uniform(-0.25, 0.25) * blk.long, rng.uniform(-0.2, 0.2) * blk.short
        ra, rb = rng.uniform(0.12, 0.3) * blk.long, rng.uniform(0.12, 0.3) * blk.short
        wob = 1 + 0.15 * np.sin(3 * np.arctan2(blk.bb - cb, blk.a - ca) + rng.uniform(0, 6))
        pond = (((blk.a - ca) / ra) ** 2 + ((blk.bb - cb) / rb) ** 2) < wob ** 2
        pond &= ~field_mask
        blk.set(pond, SURFACE_WATER, b.materials.water)
    return pond


def _park_paths(blk: Block) -> np.ndarray:
    """One to three curved paths (quadratic Bezier curves) across the park; returns their mask."""
    b, rng = blk.b, blk.rng
    lmask = np.zeros((blk.ys.max() - blk.ys.min() + 1, blk.xs.max() - blk.xs.min() + 1), np.uint8)
    y0, x0 = blk.ys.min(), blk.xs.min()
    for _ in range(rng.integers(1, 4)):
        t = np.linspace(0, 1, 30)
        p0 = np.array(blk.to_world(rng.uniform(-0.5, 0.5) * blk.long, -blk.short / 2))
        p1 = np.array(blk.to_world(rng.uniform(-0.5, 0.5) * blk.long, blk.short / 2))
        if rng.random() < 0.5:
            p0 = np.array(blk.to_world(-blk.long / 2, rng.uniform(-0.5, 0.5) * blk.short))
        mid = (p0 + p1) / 2 + rng.normal(0, 0.2 * blk.short, 2)
        curve = ((1 - t) ** 2)[:, None] * p0 + (2 * t * (1 - t))[:, None] * mid + (t ** 2)[:, None] * p1
        pix = curve - np.array([x0, y0]) * b.cell
        cv2.polylines(lmask, [to_px(pix, b.cell)], False, 1, thickness(rng.uniform(2, 3.5), b.cell), cv2.LINE_8,
                      SHIFT)
    return lmask[blk.ys - y0, blk.xs - x0].astype(bool)


def _park_trees(blk: Block, ok: np.ndarray):
    """Clusters of trees (on grass) plus scattered ones, on the block cells of ``ok``."""
    b, rng = blk.b, blk.rng
    area = len(blk.a) * b.cell ** 2
    cand = np.nonzero(ok)[0]
    if len(cand) == 0:
        return
    n_cl = rng.poisson(area / 1500.0) + 1
    for _ in range(n_cl):
        c = cand[rng.integers(len(cand))]
        for _ in range(rng.integers(2, 9)):
            e, n = blk.e[c] + rng.normal(0, 7), blk.n[c] + rng.normal(0, 7)
            r_, c_ = int(n / b.cell), int(e / b.cell)
            if 0 <= r_ < b.rows and 0 <= c_ < b.cols and b.surface[r_, c_] == SURFACE_GRASS:
                b.add_tree(e, n, rng.uniform(2.2, 5.0), rng.uniform(6, 15))
    for i in rng.choice(cand, size=min(len(cand), rng.poisson(area / 600.0)), replace=False):
        b.add_tree(blk.e[i], blk.n[i], rng.uniform(2, 4.5), rng.uniform(6, 14))
