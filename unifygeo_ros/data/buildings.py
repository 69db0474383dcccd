"""The built-up uses of a city block: dense blocks of attached buildings (:func:`fill_dense`), detached
houses with gardens (:func:`fill_houses`) and big-box stores in their parking lots (:func:`fill_big_box`).

Each takes a :class:`~unifygeo_ros.data.city_block.Block` and the local building density ``p`` in [0, 1], draws
from the block stream ``blk.rng`` and paints into the builder's layers through ``blk.set``.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from unifygeo_ros.data.city_schema import (
    SURFACE_BUILDING,
    SURFACE_DRIVEWAY,
    SURFACE_GARDEN,
    SURFACE_GRASS,
    SURFACE_HEDGE,
    SURFACE_PLAZA,
    SURFACE_ROOF_DETAIL,
    SURFACE_WATER,
    WINDOW_HOUSE,
    WINDOW_PUNCHED,
    WINDOW_RIBBON,
)
from unifygeo_ros.data.open_spaces import parking_lot

if TYPE_CHECKING:  # for annotations only
    from unifygeo_ros.data.city_block import Block

POOL_RGB = (70, 170, 205)
BOX_HVAC_RGB = (196, 198, 196)


# ---------------------------------------------------------------------------------------------- dense blocks
@dataclass
class _DenseLots:
    """Per-lot tables of a dense block (index: lot) and the lot of each block cell (``lot``)."""

    lot: np.ndarray
    nlot: int
    centre_m: np.ndarray  # each lot's centre along the block
    half_m: np.ndarray  # half of each lot's width along the block
    setback_m: np.ndarray
    depth_m: np.ndarray
    gap_m: np.ndarray  # space left on each side of the building
    empty: np.ndarray
    height_m: np.ndarray  # the building's top (tower top where there is a tower)
    podium_m: np.ndarray  # height of the outer part (= height_m without a tower)
    roof: np.ndarray
    ids: np.ndarray  # building ids


def fill_dense(blk: Block, p: float):
    """Attached mid- to high-rise buildings along the block edge (a tower on some), flat roofs with parapets
    and roof boxes, courtyards behind."""
    b, rng = blk.b, blk.rng
    lots = _dense_lots(blk, p)
    d = blk.dist
    s, dp = lots.setback_m[lots.lot], lots.depth_m[lots.lot]
    rel_a = blk.a - lots.centre_m[lots.lot]
    half = lots.half_m[lots.lot] - lots.gap_m[lots.lot]
    inb = (d >= s) & (d < s + dp) & (np.abs(rel_a) < half) & ~lots.empty[lots.lot]
    # ground: courtyards / yards behind, forecourts in front
    court_rgb = b.materials.yard if rng.random() < 0.6 else b.materials.garden
    blk.set(~inb, SURFACE_PLAZA if court_rgb is b.materials.yard else SURFACE_GRASS, court_rgb)
    front = ~inb & (d < s + 0.01)
    blk.set(front, SURFACE_PLAZA, b.materials.plaza * 0.95)
    hgt = _dense_buildings(blk, lots, inb, s, dp, rel_a, half)
    _roof_boxes(blk, lots, inb, s, dp, rel_a, hgt)
    # a few trees in courtyards
    yard = np.nonzero(~inb & (d > s + dp + 3))[0]
    if len(yard):
        for i in rng.choice(yard, size=min(len(yard), rng.poisson(len(yard) * b.cell ** 2 / 250.0)),
                            replace=False):
            b.add_tree(blk.e[i], blk.n[i], rng.uniform(2, 4), rng.uniform(5, 10))


def _dense_lots(blk: Block, p: float) -> _DenseLots:
    """Cut the block into lots (two rows across a deep block) and draw each lot's building."""
    b, rng = blk.b, blk.rng
    rows = 2 if blk.short > 44 else 1
    lot, nlot, ac, ah = blk.lots((8 + 4 * (1 - p), 16 + 12 * p), rows)
    setback = np.where(rng.random(nlot) < p, 0.0, rng.uniform(0.5, 4.0, nlot)) if p < 0.75 else np.zeros(nlot)
    depth = rng.uniform(12, 26, nlot)
    gap = np.where(rng.random(nlot) < 0.3 * (1 - p), rng.uniform(1.0, 3.0, nlot), 0.0)
    empty = rng.random(nlot) < 0.05 + 0.1 * (1 - p)
    floor_h = rng.uniform(3.0, 4.2, nlot)
    floors = np.maximum(1, np.round(rng.lognormal(np.log(2.0 + 12 * p ** 1.5), 0.42, nlot)))
    tower = rng.random(nlot) < 0.09 * p
    floors = np.where(tower, rng.integers(18, 40, nlot), floors)
    height = np.minimum(floors * floor_h + rng.uniform(0.4, 1.2, nlot), 150.0)
    podium = np.where(tower & (rng.random(nlot) < 0.7), rng.uniform(10, 20, nlot), height)
    roof = np.array([b.pick(b.materials.flat_roofs) for _ in range(nlot)]) * rng.uniform(0.9, 1.1, (nlot, 1))
    facade = np.array([b.pick(b.materials.facade_pal) for _ in range(nlot)]) * rng.uniform(0.88, 1.1, (nlot, 1))
    window = np.array([b.pick(b.materials.window_pal) for _ in range(nlot)])
    wstyle = np.where(tower | (rng.random(nlot) < 0.15), WINDOW_RIBBON, WINDOW_PUNCHED)
    ids = np.array([b.new_building(facade[i], window[i], floor_h[i], wstyle[i]) for i in range(nlot)])
    return _DenseLots(lot, nlot, ac, ah, setback, depth, gap, empty, height, podium, roof, ids)


def _dense_buildings(blk: Block, lots: _DenseLots, inb, s, dp, rel_a, half) -> np.ndarray:
    """Paint the buildings (podium everywhere, tower on the inner part, a parapet rim); returns the roof height
    of every block cell."""
    d, lot = blk.dist, lots.lot
    inner = (d > s + 4) & (d < s + dp - 4) & (np.abs(rel_a) < half - 4)
    hgt = np.where(inner, lots.height_m[lot], lots.podium_m[lot])
    # parapet: 1 cell rim, a bit higher and darker
    rim = inb & ((d - s < 0.6) | (s + dp - d < 0.6) | (half - np.abs(rel_a) < 0.6))
    rgb = lots.roof[lot]
    rgb = np.where(rim[:, None], rgb * 0.78, rgb)
    rgb = np.where((inner & (lots.podium_m[lot] < lots.height_m[lot]))[:, None], rgb * 1.08, rgb)
    blk.set(inb, SURFACE_BUILDING, rgb[inb], (hgt + 0.7 * rim)[inb], lots.ids[lot][inb])
    return hgt


def _roof_boxes(blk: Block, lots: _DenseLots, inb, s, dp, rel_a, hgt):
    """Up to three HVAC boxes / stair housings per roof."""
    rng, d, lot, nlot = blk.rng, blk.dist, lots.lot, lots.nlot
    for _ in range(3):
        have = rng.random(nlot) < 0.6
        bx_a = rng.uniform(-1, 1, nlot) * np.maximum(lots.half_m - 4, 0)
        bx_d = lots.setback_m + rng.uniform(3, 9, nlot)
        ha, hd = rng.uniform(0.8, 2.6, nlot), rng.uniform(0.8, 2.2, nlot)
        hh = rng.uniform(1.2, 3.2, nlot)
        shade = rng.uniform(150, 215, nlot)
        box = (inb & have[lot] & (np.abs(rel_a - bx_a[lot]) < ha[lot]) & (np.abs(d - bx_d[lot]) < hd[lot])
               & (bx_d[lot] + hd[lot] < s + dp - 1))
        if box.any():
            blk.set(box, SURFACE_ROOF_DETAIL, np.repeat(shade[lot][box][:, None], 3, 1) * [1, 1, 0.97],
                    hgt[box] + hh[lot][box])


# ---------------------------------------------------------------------------------------------- houses
@dataclass
class _Houses:
    """Per-lot tables of a block of houses (index: lot), the lot of each block cell (``lot``), and once
    placed, each house's frame: centre ``(ce, cn)``, depth axis ``(gx, gy)`` (away from the street), and per
    cell ``u`` (along the street), ``v`` (depth, street side negative), ``inb`` (inside a house)."""

    lot: np.ndarray
    nlot: int
    half_m: np.ndarray  # half of each lot's width along the block
    rel_a: np.ndarray  # per cell: position along the block from its lot's centre
    setback_m: np.ndarray  # front setback
    depth_m: np.ndarray
    half_width_m: np.ndarray  # half of the house's width
    shift_m: np.ndarray  # the house's offset along the street from the lot centre
    eave_m: np.ndarray
    pitch: np.ndarray  # roof slope (rise per metre)
    roof_type: np.ndarray  # 0 gable, 1 hip, 2 flat
    empty: np.ndarray
    roof: np.ndarray
    ids: np.ndarray
    ce: np.ndarray | None = None
    cn: np.ndarray | None = None
    gx: np.ndarray | None = None
    gy: np.ndarray | None = None
    u: np.ndarray | None = None
    v: np.ndarray | None = None
    inb: np.ndarray | None = None


def fill_houses(blk: Block, p: float):
    """Detached houses: one oriented rectangle per lot, facing its nearest street, with a gable, hip or
    flat roof; gardens, driveways, hedges, pools, trees."""
    h = _house_lots(blk)
    _place_houses(blk, h)
    drive_u, pool = _gardens(blk, h)
    _house_roofs(blk, h)
    _driveway_cars(blk, h, drive_u)
    _garden_trees(blk, h)
    # the deep inside of big blocks: a wood
    b, rng = blk.b, blk.rng
    deep = np.nonzero((blk.dist > 40) & ~h.inb & ~pool)[0]
    if len(deep):
        k = rng.poisson(len(deep) * b.cell ** 2 / 70.0)
        for i in rng.choice(deep, size=min(k, len(deep)), replace=False):
            b.add_tree(blk.e[i], blk.n[i], rng.uniform(2.5, 5), rng.uniform(7, 16))


def _house_lots(blk: Block) -> _Houses:
    """Cut the block into lots (two rows across a deep block) and draw each lot's house."""
    b, rng = blk.b, blk.rng
    rows = 2 if blk.short > 38 else 1
    lot, nlot, ac, ah = blk.lots((12, 24), rows)
    rel_a = blk.a - ac[lot]
    setback = rng.uniform(4, 9, nlot)
    depth = rng.uniform(8, 13, nlot)
    side_gap = rng.uniform(1.8, 4.0, nlot)
    hw = np.minimum(np.maximum(ah - side_gap, 3.0), rng.uniform(5, 9, nlot))
    shift = rng.uniform(-1, 1, nlot) * np.maximum(ah - side_gap - hw, 0)
    eave = rng.choice([2.9, 3.1, 5.6, 6.0], nlot) + rng.uniform(-0.2, 0.3, nlot)
    pitch = np.tan(np.radians(rng.uniform(22, 40, nlot)))
    rtype = rng.choice(3, nlot, p=[0.55, 0.33, 0.12])  # gable, hip, flat
    empty = rng.random(nlot) < 0.04
    roof = np.array([b.pick(b.materials.pitched_roofs) for _ in range(nlot)]) * rng.uniform(0.9, 1.1, (nlot, 1))
    roof = np.where((rtype == 2)[:, None], np.array([b.pick(b.materials.flat_roofs) for _ in range(nlot)]), roof)
    facade = np.array([b.pick(b.materials.house_pal) for _ in range(nlot)]) * rng.uniform(0.9, 1.08, (nlot, 1))
    window = np.array([b.pick(b.materials.window_pal) for _ in range(nlot)])
    ids = np.array([b.new_building(facade[i], window[i], rng.uniform(2.7, 3.1), WINDOW_HOUSE)
                    for i in range(nlot)])
    return _Houses(lot, nlot, ah, rel_a, setback, depth, hw, shift, eave, pitch, rtype, empty, roof, ids)


def _place_houses(blk: Block, h: _Houses):
    """Each house's centre: the lot cell nearest the lot's front-centre; its depth axis follows the distance
    gradient there (away from the nearest street). Lots without such a cell stay empty."""
    d, lot, nlot = blk.dist, h.lot, h.nlot
    S, D = h.setback_m, h.depth_m
    score = np.abs(h.rel_a - h.shift_m[lot]) + 3.0 * np.abs(d - (S + D / 2)[lot])
    order = np.lexsort((score, lot))
    present = np.zeros(nlot, bool)
    present[lot] = True
    first = order[np.searchsorted(lot[order], np.arange(nlot)).clip(0, len(order) - 1)]
    h.empty |= ~present | (np.abs(d[first] - (S + D / 2)) > 1.0)
    h.ce, h.cn = blk.e[first], blk.n[first]
    h.gx, h.gy = blk.grad(blk.ys[first], blk.xs[first])
    ge, gn = h.gx[lot], h.gy[lot]
    pe, pn = blk.e - h.ce[lot], blk.n - h.cn[lot]
    h.v = pe * ge + pn * gn  # depth coordinate, street side negative
    h.u = -pe * gn + pn * ge  # along the street
    h.inb = (np.abs(h.u) < h.half_width_m[lot]) & (np.abs(h.v) < D[lot] / 2) & (d > 1.0) & ~h.empty[lot]


def _gardens(blk: Block, h: _Houses) -> tuple[np.ndarray, np.ndarray]:
    """Lawns (a tone per lot), driveways, hedges along some lot boundaries, pools in some back yards.
    Returns each lot's driveway position along the street and the pool mask."""
    b, rng, d, lot, nlot = blk.b, blk.rng, blk.dist, h.lot, h.nlot
    S, D, u, v = h.setback_m, h.depth_m, h.u, h.v
    lawn = b.materials.garden * rng.uniform(0.85, 1.12, (nlot, 1)) + rng.normal(0, 5, (nlot, 3))
    blk.set(np.ones(len(d), bool), SURFACE_GARDEN, lawn[lot])
    dside = rng.choice([-1, 1], nlot)
    du = dside * (h.half_width_m + 1.7)
    drive = (np.abs(u - du[lot]) < 1.4) & (v < 0.3 * D[lot]) & (v > -(S + D)[lot]) & ~h.empty[lot]
    blk.set(drive & ~h.inb, SURFACE_DRIVEWAY, np.clip(b.materials.sidewalk * 0.92, 0, 255))
    hedge_on = rng.random(nlot) < 0.35
    hedge = hedge_on[lot] & (h.half_m[lot] - np.abs(h.rel_a) < 0.45) & (d > 1.0) & ~drive & ~h.inb
    blk.set(hedge, SURFACE_HEDGE, b.materials.tree_green * 0.8, rng.uniform(1.0, 1.6))
    pool = rng.random(nlot) < 0.14
    pu = rng.uniform(-2, 2, nlot)
    pv = D / 2 + rng.uniform(3.5, 6, nlot)
    pw, pl = rng.uniform(1.6, 2.8, nlot), rng.uniform(1.2, 2.0, nlot)
    pm = pool[lot] & (np.abs(u - pu[lot]) < pw[lot]) & (np.abs(v - pv[lot]) < pl[lot]) & ~hedge & ~h.empty[lot]
    blk.set(pm, SURFACE_WATER, POOL_RGB)
    return du, pm


def _house_roofs(blk: Block, h: _Houses):
    """The houses: gable roofs rise across the depth, hip roofs from every side (a lighter ridge line), flat
    roofs get a dark rim."""
    lot, u, v = h.lot, h.u, h.v
    dv = h.depth_m[lot] / 2 - np.abs(v)
    dh = h.half_width_m[lot] - np.abs(u)
    rt = h.roof_type[lot]
    rise = np.where(rt == 0, dv, np.where(rt == 1, np.minimum(dv, dh), 0.0))
    hgt = h.eave_m[lot] + np.minimum(h.pitch[lot] * rise, 4.5) + np.where(rt == 2, 0.4, 0.0)
    rgb = h.roof[lot]
    ridge = (rt < 2) & (np.abs(v) < 0.3) & (rise >= dv - 0.01)
    rgb = np.where(ridge[:, None], rgb * 1.18, rgb)
    rim = (rt == 2) & ((dv < 0.5) | (dh < 0.5))
    rgb = np.where(rim[:, None], rgb * 0.8, rgb)
    inb = h.inb
    blk.set(inb, SURFACE_BUILDING, rgb[inb], hgt[inb], h.ids[lot][inb])


def _driveway_cars(blk: Block, h: _Houses, drive_u: np.ndarray):
    """A parked car on half of the driveways long enough for one."""
    b, rng = blk.b, blk.rng
    S, D, gx, gy = h.setback_m, h.depth_m, h.gx, h.gy
    for i in np.nonzero((rng.random(h.nlot) < 0.5) & ~h.empty & (S > 5.5))[0]:
        ue, vn = drive_u[i], -D[i] / 2 - S[i] / 2
        e = h.ce[i] + ue * (-gy[i]) + vn * gx[i]
        n = h.cn[i] + ue * gx[i] + vn * gy[i]
        b.add_car(e, n, float(np.arctan2(gy[i], gx[i])), b.parked_set(rng), rng)


def _garden_trees(blk: Block, h: _Houses):
    """Back-yard and front-yard trees, on lawn only."""
    b, rng = blk.b, blk.rng
    D, ah, gx, gy = h.depth_m, h.half_m, h.gx, h.gy
    for i in np.nonzero(~h.empty)[0]:
        for _ in range(rng.poisson(1.2)):
            uu = rng.uniform(-ah[i], ah[i])
            vv = D[i] / 2 + rng.uniform(2.5, 12) if rng.random() < 0.7 else -D[i] / 2 - rng.uniform(1.5, 3.5)
            e = h.ce[i] + uu * (-gy[i]) + vv * gx[i]
            n = h.cn[i] + uu * gx[i] + vv * gy[i]
            r_, c_ = int(n / b.cell), int(e / b.cell)
            if 0 <= r_ < b.rows and 0 <= c_ < b.cols and b.surface[r_, c_] == SURFACE_GARDEN:
                b.add_tree(e, n, rng.uniform(1.8, 4.2), rng.uniform(4.5, 12))


# ---------------------------------------------------------------------------------------------- big box
def fill_big_box(blk: Block, p: float):
    """A big-box store: one large low building in a parking lot, HVAC units on a grid on its roof."""
    b, rng = blk.b, blk.rng
    s = rng.uniform(14, 24)
    d = blk.dist
    inb = d >= s
    bid = b.new_building(b.pick(b.materials.facade_pal), b.pick(b.materials.window_pal), rng.uniform(4.5, 6),
                         WINDOW_RIBBON)
    parking_lot(blk, ~inb)
    hgt = rng.uniform(6, 10)
    roof = b.pick(b.materials.flat_roofs) * rng.uniform(1.0, 1.15)
    rim = inb & (d < s + 0.6)
    rgb = np.where(rim[:, None], roof * 0.8, roof)
    blk.set(inb, SURFACE_BUILDING, rgb[inb], hgt + 0.6 * rim[inb], bid)
    ga, gd = rng.uniform(8, 14), rng.uniform(8, 14)
    hv = inb & (d > s + 3) & (np.abs(((blk.a / ga) % 1) - 0.5) < 1.2 / ga) & \
        (np.abs(((blk.bb / gd) % 1) - 0.5) < 1.0 / gd)
    blk.set(hv, SURFACE_ROOF_DETAIL, BOX_HVAC_RGB, hgt + rng.uniform(1.0, 2.0))
