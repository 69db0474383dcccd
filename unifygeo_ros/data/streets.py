"""The road network of a synthetic city, as geometry: street centre lines and where they cross.

:func:`make_streets` lays out two families of roughly parallel streets (a skewed, wobbling grid with gaps),
diagonal avenues and curved streets; :func:`intersections` finds their crossings; :func:`along` samples points
and directions along a centre line. The streets are drawn into the layers by :mod:`.street_paint` and
furnished by :mod:`.street_furniture`. All positions are ENU metres from the city's south-west corner.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

STEP_M = 5.0  # spacing of the points of a centre line
GRID_EXTENSION_M = 14.0  # a grid street piece reaches this far past the crossings it ends at


@dataclass
class Street:
    """A street centre line (ENU metres), its carriageway and sidewalk widths."""

    points: np.ndarray  # (N, 2) east, north
    width_m: float
    sidewalk_m: float
    kind: str  # "avenue" | "street" | "lane"


# ---------------------------------------------------------------------------------------------- layout
def make_streets(rng: np.random.Generator, size: tuple[float, float], prm: dict) -> list[Street]:
    """The streets of a city of ``size`` (east, north) metres with the style parameters ``prm``: a two-family
    grid, diagonal avenues and curved streets, those that touch the city (with a 30 m margin)."""
    w_m, h_m = size
    centre = np.array([w_m / 2, h_m / 2])
    reach = 0.5 * math.hypot(w_m, h_m) + 60.0
    theta, families = _grid_families(rng, prm, reach)
    streets = _grid_streets(rng, prm, families, centre, reach)
    streets += _diagonal_avenues(rng, prm, theta, centre, size, reach)
    streets += _curved_streets(rng, prm, size)
    return [s for s in streets if _touches(s, w_m, h_m)]


def _grid_families(rng: np.random.Generator, prm: dict, reach: float):
    """The grid's orientation ``theta`` and its two street families: for each, the unit vectors along (u) and
    across (v) its streets, the streets' offsets along v, and their kinds."""
    # grid orientation: half of the cities are close to north-aligned, the rest anywhere
    theta = rng.normal(0, math.radians(6)) if rng.random() < 0.5 else rng.uniform(0, np.pi / 2)
    skew = rng.normal(0, math.radians(5))
    fams = []
    for f, ang in enumerate((theta, theta + np.pi / 2 + skew)):
        u = np.array([math.cos(ang), math.sin(ang)])
        v = np.array([-math.sin(ang), math.cos(ang)])
        lo, hi = prm["block_a"] if f == 0 else prm["block_b"]
        offs, o = [], -reach + rng.uniform(0, hi)
        while o < reach:
            offs.append(o)
            o += rng.uniform(lo, hi)
        kinds = []
        for _ in offs:
            r = rng.random()
            kinds.append("avenue" if r < prm["avenue_p"] else ("lane" if r < prm["avenue_p"] + prm["lane_p"]
                                                              else "street"))
        fams.append((u, v, np.array(offs), kinds))
    return theta, fams


def _street_widths(rng: np.random.Generator, prm: dict, kind: str) -> tuple[float, float]:
    """(carriageway, sidewalk) widths in metres of a new street of ``kind``."""
    if kind == "avenue":
        return rng.uniform(*prm["avenue_w"]), rng.uniform(prm["sidewalk"][0] + 0.5, prm["sidewalk"][1] + 1.0)
    if kind == "lane":
        return rng.uniform(6.5, 8.0), rng.uniform(1.2, 2.0)
    return rng.uniform(*prm["street_w"]), rng.uniform(*prm["sidewalk"])


def _wobble_fn(rng: np.random.Generator, amp_range):
    """A smooth lateral offset (metres) as a function of the position along a street: two sines."""
    amp = rng.uniform(*amp_range)
    lam1, lam2 = rng.uniform(140, 420), rng.uniform(60, 140)
    ph1, ph2 = rng.uniform(0, 2 * np.pi, 2)
    a2 = amp * rng.uniform(0.0, 0.35)
    return lambda t: amp * np.sin(2 * np.pi * t / lam1 + ph1) + a2 * np.sin(2 * np.pi * t / lam2 + ph2)


def _grid_streets(rng: np.random.Generator, prm: dict, fams, centre: np.ndarray, reach: float) -> list[Street]:
    """The grid's streets: each line of a family cut at its crossings with the other family, some pieces
    between crossings dropped (never on avenues), the kept runs wobbling sideways."""
    streets: list[Street] = []
    for f in range(2):
        u, v, offs, kinds = fams[f]
        u2, v2, offs2, _ = fams[1 - f]
        mat = np.array([[u[0], -u2[0]], [u[1], -u2[1]]])
        for o, kind in zip(offs, kinds):
            # crossing parameters along this line with every line of the other family
            rhs = offs2[:, None] * v2[None] - o * v[None]  # (n2, 2)
            ts = np.sort(np.linalg.solve(mat, rhs.T)[0])
            ts = ts[(ts > -reach) & (ts < reach)]
            bounds = np.concatenate([[-reach], ts, [reach]])
            keep = np.ones(len(bounds) - 1, bool)
            if kind != "avenue" and len(keep) > 2:
                keep[1:-1] = rng.random(len(keep) - 2) >= prm["drop"]
            w, sw = _street_widths(rng, prm, kind)
            wob = _wobble_fn(rng, prm["wobble"] if kind != "avenue" else (0.0, prm["wobble"][1] * 0.3))
            ext = GRID_EXTENSION_M
            for k, j in true_runs(keep):
                t0 = bounds[k] - (ext if k > 0 else 0.0)
                t1 = bounds[j + 1] + (ext if j + 1 < len(keep) else 0.0)
                t = np.arange(t0, t1 + 1e-9, STEP_M)
                pts = centre + o * v + t[:, None] * u + wob(t)[:, None] * v
                streets.append(Street(pts, w, sw, kind))
    return streets


def _diagonal_avenues(rng: np.random.Generator, prm: dict, theta: float, centre: np.ndarray,
                      size: tuple[float, float], reach: float) -> list[Street]:
    """Straight avenues at about 45 degrees to the grid, through a point near the city centre."""
    w_m, h_m = size
    out = []
    for _ in range(int(rng.integers(prm["diagonals"][0], prm["diagonals"][1] + 1))):
        ang = theta + np.pi / 4 + rng.normal(0, math.radians(12)) + (np.pi / 2 if rng.random() < 0.5 else 0.0)
        u = np.array([math.cos(ang), math.sin(ang)])
        q = centre + rng.uniform(-0.35, 0.35, 2) * np.array([w_m, h_m])
        t = np.arange(-reach, reach + 1e-9, STEP_M)
        w, sw = _street_widths(rng, prm, "avenue")
        out.append(Street(q + t[:, None] * u, w, sw, "avenue"))
    return out


def _curved_streets(rng: np.random.Generator, prm: dict, size: tuple[float, float]) -> list[Street]:
    """Circular arcs of 50 to 200 m radius, a quarter to two thirds of a turn long."""
    w_m, h_m = size
    out = []
    for _ in range(int(rng.integers(prm["arcs"][0], prm["arcs"][1] + 1))):
        c = rng.uniform(0.1, 0.9, 2) * np.array([w_m, h_m])
        rad = rng.uniform(50, 200)
        a0 = rng.uniform(0, 2 * np.pi)
        span = rng.uniform(np.pi / 2, 1.3 * np.pi)
        a = a0 + np.arange(0, span, STEP_M / rad)
        w, sw = _street_widths(rng, prm, "street")
        out.append(Street(c + rad * np.stack([np.cos(a), np.sin(a)], -1), w, sw, "street"))
    return out


def _touches(s: Street, w_m: float, h_m: float) -> bool:
    """Whether the street's bounding box comes within 30 m of the city."""
    p = s.points
    return bool(p[:, 0].max() > -30 and p[:, 0].min() < w_m + 30 and p[:, 1].max() > -30
                and p[:, 1].min() < h_m + 30)


def true_runs(mask) -> list[tuple[int, int]]:
    """Maximal runs of True in a 1-D boolean sequence, as inclusive (first, last) index pairs."""
    runs, k, n = [], 0, len(mask)
    while k < n:
        if not mask[k]:
            k += 1
            continue
        j = k
        while j + 1 < n and mask[j + 1]:
            j += 1
        runs.append((k, j))
        k = j + 1
    return runs


# ---------------------------------------------------------------------------------------------- along a line
def arclen(pts: np.ndarray) -> np.ndarray:
    """Cumulative arc length (metres) at each point of a polyline, 0 at the first."""
    return np.concatenate([[0.0], np.cumsum(np.hypot(*np.diff(pts, axis=0).T))])


def along(pts: np.ndarray, s_query: np.ndarray, lateral: float = 0.0):
    """Points and unit directions at arc positions ``s_query`` along a polyline, shifted ``lateral`` m left."""
    s = arclen(pts)
    s_query = np.clip(np.asarray(s_query, float), 0, s[-1])
    x = np.interp(s_query, s, pts[:, 0])
    y = np.interp(s_query, s, pts[:, 1])
    idx = np.clip(np.searchsorted(s, s_query, side="right") - 1, 0, len(pts) - 2)
    d = pts[idx + 1] - pts[idx]
    d = d / np.maximum(np.hypot(d[:, 0], d[:, 1]), 1e-9)[:, None]
    nrm = np.stack([-d[:, 1], d[:, 0]], -1)
    return np.stack([x, y], -1) + lateral * nrm, d


# ---------------------------------------------------------------------------------------------- crossings
def intersections(streets: list[Street], grid_m: float = 25.0):
    """All crossings between street centre lines: list of (i, s_i, j, s_j, point) with arc positions s.

    Segments are bucketed on a ``grid_m`` grid so that only segments sharing a bucket are tested.
    """
    if len(streets) < 2:
        return []
    p0, p1, sid, s0, s1 = _segments(streets)
    pairs = _candidate_pairs(p0, p1, sid, grid_m)
    if len(pairs) == 0:
        return []
    return _crossings(pairs, p0, p1, sid, s0, s1)


def _segments(streets: list[Street]):
    """Every segment of every centre line: start and end points, street index, start and end arc positions."""
    p0s, p1s, sid, s0s, s1s = [], [], [], [], []
    for k, s in enumerate(streets):
        p = s.points
        lens = arclen(p)
        p0s.append(p[:-1])
        p1s.append(p[1:])
        sid.append(np.full(len(p) - 1, k))
        s0s.append(lens[:-1])
        s1s.append(lens[1:])
    return (np.concatenate(p0s), np.concatenate(p1s), np.concatenate(sid), np.concatenate(s0s),
            np.concatenate(s1s))


def _candidate_pairs(p0: np.ndarray, p1: np.ndarray, sid: np.ndarray, grid_m: float) -> np.ndarray:
    """(n, 2) unique segment index pairs of different streets that share a ``grid_m`` bucket, the lower street
    first (empty when none)."""
    lo = np.floor(np.minimum(p0, p1) / grid_m).astype(np.int64)
    hi = np.floor(np.maximum(p0, p1) / grid_m).astype(np.int64)
    ent_seg, ent_cell = [], []
    for dx in range(int((hi - lo)[:, 0].max()) + 1):
        for dy in range(int((hi - lo)[:, 1].max()) + 1):
            ok = (lo[:, 0] + dx <= hi[:, 0]) & (lo[:, 1] + dy <= hi[:, 1])
            idx = np.nonzero(ok)[0]
            ent_seg.append(idx)
            ent_cell.append((lo[idx, 0] + dx) * 1_000_003 + (lo[idx, 1] + dy))
    ent_seg, ent_cell = np.concatenate(ent_seg), np.concatenate(ent_cell)
    order = np.argsort(ent_cell, kind="stable")
    ent_seg, ent_cell = ent_seg[order], ent_cell[order]
    pa, pb = [], []
    k = 1
    while k < len(ent_cell):
        same = ent_cell[:-k] == ent_cell[k:]
        if not same.any():
            break
        pa.append(ent_seg[:-k][same])
        pb.append(ent_seg[k:][same])
        k += 1
    if not pa:
        return np.zeros((0, 2), np.int64)
    pa, pb = np.concatenate(pa), np.concatenate(pb)
    keep = sid[pa] != sid[pb]
    pa, pb = pa[keep], pb[keep]
    swap = sid[pa] > sid[pb]
    pa, pb = np.where(swap, pb, pa), np.where(swap, pa, pb)
    return np.unique(np.stack([pa, pb], -1), axis=0)


def _crossings(pairs: np.ndarray, p0, p1, sid, s0, s1):
    """The segment pairs that do cross, as sorted (i, s_i, j, s_j, point) tuples."""
    a, c = pairs[:, 0], pairs[:, 1]
    d1, d2 = p1[a] - p0[a], p1[c] - p0[c]
    den = d1[:, 0] * d2[:, 1] - d1[:, 1] * d2[:, 0]
    diff = p0[c] - p0[a]
    with np.errstate(divide="ignore", invalid="ignore"):
        ta = (diff[:, 0] * d2[:, 1] - diff[:, 1] * d2[:, 0]) / den
        tb = (diff[:, 0] * d1[:, 1] - diff[:, 1] * d1[:, 0]) / den
    hit = (np.abs(den) > 1e-9) & (ta >= 0) & (ta < 1) & (tb >= 0) & (tb < 1)
    found = []
    for q in np.nonzero(hit)[0]:
        ia, ib = a[q], c[q]
        pt = p0[ia] + ta[q] * d1[q]
        found.append((int(sid[ia]), float(s0[ia] + ta[q] * (s1[ia] - s0[ia])),
                      int(sid[ib]), float(s0[ib] + tb[q] * (s1[ib] - s0[ib])), pt))
    found.sort(key=lambda f: (f[0], f[1], f[2]))
    return found


def crossing_zones(streets: list[Street], crossings, margin_m: float) -> dict[int, list[tuple[float, float]]]:
    """Per street index, the ``(arc position, half-length)`` of the stretch each crossing takes: the other
    street's half carriageway plus its sidewalk plus ``margin_m``."""
    zones: dict[int, list[tuple[float, float]]] = {}
    for i, si, j, sj, _p in crossings:
        zones.setdefault(i, []).append((si, streets[j].width_m / 2 + streets[j].sidewalk_m + margin_m))
        zones.setdefault(j, []).append((sj, streets[i].width_m / 2 + streets[i].sidewalk_m + margin_m))
    return zones


def clear_of(sq: np.ndarray, zones: list[tuple[float, float]]) -> np.ndarray:
    """bool mask of the arc positions ``sq`` that lie outside every crossing zone of a street."""
    ok = np.ones(len(sq), bool)
    for sc, r in zones:
        ok &= np.abs(sq - sc) > r
    return ok
