"""Where a synthetic drive goes (``unifygeo bag synth``): the city's drivable street graph and a route on it.

* **graph** - street centre lines clipped to the city's extent less a border, split at their crossings into a
  graph (crossings closer than ``MERGE_M`` merged); the connected part with the most street length, reduced to
  its 2-core (no dead ends, so a walk never needs a U-turn) when that keeps most of it.
* **route** - a walk on the graph. ``random``: a random walk that avoids turning back and prefers gentle turns;
  ``loop``: a random walk out, the shortest path back to the start, repeated.

All coordinates are ENU metres (east, north) from the city's south-west corner.
"""
from __future__ import annotations

import heapq
import math
from dataclasses import dataclass, field

import numpy as np

from unifygeo_ros.data.world import true_runs
from unifygeo_ros.errors import DataFormatError, UnifyGeoError

BORDER_M = 12.0  # the route keeps this far inside the city's extent (4 % of the smaller side for small cities)
MAX_TURN_DEG = 110.0  # sharper turns are taken only where there is no other way
MERGE_M = 3.0  # street crossings closer than this are one node
MIN_EDGE_M = 1.0  # shorter pieces between two cuts of a street are dropped
CORE_KEEP_FRACTION = 0.6  # the 2-core replaces the graph when it keeps at least this share of the length
LOOP_OUT_MIN_M, LOOP_OUT_MAX_M, LOOP_OUT_FRACTION = 150.0, 600.0, 0.4  # the outward walk of a loop


# ------------------------------------------------------------------------------------------ street graph
@dataclass
class StreetGraph:
    """Nodes (crossings and street ends, ENU metres) and edges (polylines between consecutive nodes of a street)."""

    nodes: np.ndarray  # (N, 2)
    edges: list[tuple[int, int, np.ndarray]]  # (a, b, polyline (M, 2) from node a to node b)

    def adjacency(self) -> dict[int, list[int]]:
        adj: dict[int, list[int]] = {}
        for k, (a, b, _p) in enumerate(self.edges):
            adj.setdefault(a, []).append(k)
            adj.setdefault(b, []).append(k)
        return adj


def arclen_m(p: np.ndarray) -> np.ndarray:
    """Cumulative arc length (m) at each vertex of polyline ``p`` (N, 2); starts at 0."""
    return np.concatenate([[0.0], np.cumsum(np.hypot(*np.diff(p, axis=0).T))])


def _segment_crossings(p: np.ndarray, q: np.ndarray) -> list[tuple[float, float, np.ndarray]]:
    """Crossings of polylines ``p`` and ``q``: (arc position on p, arc position on q, point)."""
    a0, a1 = p[:-1, None, :], p[1:, None, :]
    b0, b1 = q[None, :-1, :], q[None, 1:, :]
    d1, d2 = a1 - a0, b1 - b0
    den = d1[..., 0] * d2[..., 1] - d1[..., 1] * d2[..., 0]
    r = b0 - a0
    with np.errstate(divide="ignore", invalid="ignore"):
        t = (r[..., 0] * d2[..., 1] - r[..., 1] * d2[..., 0]) / den
        u = (r[..., 0] * d1[..., 1] - r[..., 1] * d1[..., 0]) / den
    ok = (np.abs(den) > 1e-12) & (t >= 0) & (t < 1) & (u >= 0) & (u < 1)
    sp, sq = arclen_m(p), arclen_m(q)
    out = []
    for i, j in zip(*np.nonzero(ok)):
        pt = p[i] + t[i, j] * (p[i + 1] - p[i])
        out.append((sp[i] + t[i, j] * (sp[i + 1] - sp[i]), sq[j] + u[i, j] * (sq[j + 1] - sq[j]), pt))
    return out


def _cut(p: np.ndarray, s0_m: float, s1_m: float) -> np.ndarray:
    """The part of polyline ``p`` between arc positions s0 < s1 (end points interpolated)."""
    s = arclen_m(p)
    inner = p[(s > s0_m) & (s < s1_m)]
    ends = np.stack([np.interp([s0_m, s1_m], s, p[:, 0]), np.interp([s0_m, s1_m], s, p[:, 1])], axis=1)
    return np.vstack([ends[:1], inner, ends[1:]])


def _inside_runs(p: np.ndarray, lo: np.ndarray, hi: np.ndarray, step_m: float = 1.0) -> list[np.ndarray]:
    """The parts of polyline ``p`` inside the box ``lo..hi`` (resampled every ``step_m``)."""
    p = _resample_poly(p, step_m)
    inside = np.all((p >= lo) & (p <= hi), axis=1)
    return [p[k:j + 1] for k, j in true_runs(inside) if j > k]


def _resample_poly(p: np.ndarray, step_m: float) -> np.ndarray:
    """``p`` resampled at equal arc steps of at most ``step_m``."""
    s = arclen_m(p)
    n = max(2, int(math.ceil(s[-1] / step_m)) + 1)
    sq = np.linspace(0.0, s[-1], n)
    return np.stack([np.interp(sq, s, p[:, 0]), np.interp(sq, s, p[:, 1])], 1)


def street_graph(streets: list, size_m: tuple[float, float], border_m: float | None = None,
                 bounds: tuple[float, float, float, float] | None = None) -> StreetGraph:
    """The drivable graph of ``streets`` (objects with ``points`` (N, 2) ENU): street centre lines clipped to the
    city's extent less ``border_m`` (or to ``bounds`` = east_min, east_max, north_min, north_max), split at their
    crossings (crossings closer than ``MERGE_M`` merged) and at their ends; the connected part with the most
    street length, reduced to its 2-core (no dead ends) when that keeps most of it."""
    polys = _clipped_streets(streets, size_m, border_m, bounds)
    nodes, cuts = _cut_points(polys)
    ids = _merged_node_ids(nodes)
    edges: list[tuple[int, int, np.ndarray]] = []
    for p, c in zip(polys, cuts):
        c = sorted((sv, ids[nd]) for sv, nd in c)
        for (s0, a), (s1, b) in zip(c[:-1], c[1:]):
            if a != b and s1 - s0 >= MIN_EDGE_M:
                edges.append((a, b, _cut(p, s0, s1)))
    graph = _largest_component(StreetGraph(np.array(nodes, np.float64).reshape(-1, 2), edges))
    core = _two_core(graph)
    return core if _length_m(core) >= CORE_KEEP_FRACTION * _length_m(graph) else graph


def _clipped_streets(streets: list, size_m: tuple[float, float], border_m: float | None,
                     bounds: tuple[float, float, float, float] | None) -> list[np.ndarray]:
    """The centre-line pieces inside the drivable box (see :func:`street_graph`)."""
    w, h = size_m
    if border_m is None:
        border_m = min(BORDER_M, 0.04 * min(w, h))
    lo, hi = np.array([border_m, border_m]), np.array([w - border_m, h - border_m])
    if bounds is not None:
        lo, hi = np.array([bounds[0], bounds[2]], float), np.array([bounds[1], bounds[3]], float)
    return [r for st in streets if len(st.points) >= 2 for r in _inside_runs(np.asarray(st.points, float), lo, hi)]


def _cut_points(polys: list[np.ndarray]) -> tuple[list[np.ndarray], list[list[tuple[float, int]]]]:
    """Nodes (every piece's two ends, then every crossing) and, per piece, its cuts (arc position, node)."""
    cuts: list[list[tuple[float, int]]] = [[] for _ in polys]
    nodes: list[np.ndarray] = []
    for i, p in enumerate(polys):  # the ends of every run are nodes
        nodes.append(p[0])
        cuts[i].append((0.0, len(nodes) - 1))
        nodes.append(p[-1])
        cuts[i].append((float(arclen_m(p)[-1]), len(nodes) - 1))
    for i in range(len(polys)):
        for j in range(i + 1, len(polys)):
            for si, sj, pt in _segment_crossings(polys[i], polys[j]):
                nodes.append(pt)
                cuts[i].append((si, len(nodes) - 1))
                cuts[j].append((sj, len(nodes) - 1))
    return nodes, cuts


def _merged_node_ids(nodes: list[np.ndarray]) -> list[int]:
    """Node -> the node it is merged into (closer than ``MERGE_M``; crossings win: they come later)."""
    ids = list(range(len(nodes)))
    for i in range(len(nodes) - 1, -1, -1):
        for j in range(len(nodes) - 1, i, -1):
            if ids[j] == j and float(np.hypot(*(nodes[i] - nodes[j]))) < MERGE_M:
                ids[i] = j
                break
    return ids


def _length_m(g: StreetGraph) -> float:
    return float(sum(arclen_m(p)[-1] for _a, _b, p in g.edges))


def _largest_component(g: StreetGraph) -> StreetGraph:
    """The connected part with the most street length."""
    adj = g.adjacency()
    best: tuple[float, set[int]] = (-1.0, set())
    seen: set[int] = set()
    for start in adj:
        if start in seen:
            continue
        comp, stack = {start}, [start]
        while stack:
            n = stack.pop()
            for k in adj[n]:
                a, b, _ = g.edges[k]
                m = b if a == n else a
                if m not in comp:
                    comp.add(m)
                    stack.append(m)
        seen |= comp
        length = sum(float(arclen_m(p)[-1]) for a, _b, p in g.edges if a in comp)
        if length > best[0]:
            best = (length, comp)
    return StreetGraph(g.nodes, [e for e in g.edges if e[0] in best[1]])


def _two_core(g: StreetGraph) -> StreetGraph:
    """``g`` without dead ends: edges at a node of degree 1 removed until none is left."""
    edges = list(g.edges)
    while True:
        deg: dict[int, int] = {}
        for a, b, _ in edges:
            deg[a] = deg.get(a, 0) + 1
            deg[b] = deg.get(b, 0) + 1
        keep = [e for e in edges if deg[e[0]] >= 2 and deg[e[1]] >= 2]
        if len(keep) == len(edges):
            break
        edges = keep
    return StreetGraph(g.nodes, edges)


# -------------------------------------------------------------------------------------------------- routes
def _oriented(g: StreetGraph, k: int, from_node: int) -> tuple[int, np.ndarray]:
    """(the other node, the polyline from ``from_node``) of edge ``k``."""
    a, b, p = g.edges[k]
    return (b, p) if a == from_node else (a, p[::-1])


def _shortest_path(g: StreetGraph, src: int, dst: int, avoid: set[int] = frozenset()) -> list[int] | None:
    """Edge indices of a shortest path (Dijkstra on polyline lengths) not using the edges ``avoid``; None if
    there is none."""
    adj = {n: [k for k in ks if k not in avoid] for n, ks in g.adjacency().items()}
    lengths = [float(arclen_m(p)[-1]) for _a, _b, p in g.edges]
    dist, prev = {src: 0.0}, {}
    heap = [(0.0, src)]
    while heap:
        d, n = heapq.heappop(heap)
        if n == dst:
            break
        if d > dist.get(n, math.inf):
            continue
        for k in adj.get(n, []):
            m, _ = _oriented(g, k, n)
            nd = d + lengths[k]
            if nd < dist.get(m, math.inf):
                dist[m], prev[m] = nd, (n, k)
                heapq.heappush(heap, (nd, m))
    if dst not in dist:
        return None
    path, n = [], dst
    while n != src:
        n, k = prev[n]
        path.append(k)
    return path[::-1]


def plan_route(g: StreetGraph, kind: str, length_m: float, rng: np.random.Generator,
               far_from_en: tuple[float, float] | None = None, min_distance_m: float = 0.0) -> np.ndarray:
    """A polyline of at least ``length_m`` metres along ``g`` (see the module docstring for the two kinds),
    starting at a random node - with ``far_from_en``, one at least ``min_distance_m`` from that point
    (:class:`UnifyGeoError` if there is none)."""
    if not g.edges:
        raise DataFormatError("the city has no drivable street network inside its extent (too small?)")
    walker = _Walker(g, g.adjacency(), rng)
    starts = sorted(walker.adj)
    if far_from_en is not None:
        starts = [n for n in starts if float(np.hypot(*(g.nodes[n] - np.asarray(far_from_en)))) >= min_distance_m]
        if not starts:
            raise UnifyGeoError(f"no street crossing lies {min_distance_m:.0f} m or more from "
                                f"({far_from_en[0]:.0f}, {far_from_en[1]:.0f}) m")
    start = int(rng.choice(starts))
    if kind == "random":
        walker.walk(start, None, length_m)
    elif kind == "loop":
        _walk_loops(walker, start, length_m)
    else:
        raise UnifyGeoError(f"--route must be random or loop, got {kind!r}")
    pieces = walker.pieces
    pts = np.vstack([pieces[0]] + [p[1:] for p in pieces[1:]])
    keep = np.ones(len(pts), bool)
    keep[1:] = np.hypot(*np.diff(pts, axis=0).T) > 1e-6
    return pts[keep]


@dataclass
class _Walker:
    """A random walk on ``g`` that avoids turning back; ``pieces`` collects the driven edge polylines."""

    g: StreetGraph
    adj: dict[int, list[int]]
    rng: np.random.Generator
    pieces: list[np.ndarray] = field(default_factory=list)

    def walk(self, node: int, came: int | None, metres: float) -> tuple[int, int | None, float]:
        """Walk at least ``metres`` from ``node`` (arrived on edge ``came``): (end node, last edge, metres)."""
        total_m = 0.0
        while total_m < metres:
            k = self._next_edge(node, came)
            nxt, p = _oriented(self.g, k, node)
            self.pieces.append(p)
            total_m += float(arclen_m(p)[-1])
            node, came = nxt, k
        return node, came, total_m

    def _next_edge(self, node: int, came: int | None) -> int:
        """A random edge out of ``node``, not back along ``came`` where possible, gentle turns preferred."""
        options = [k for k in self.adj[node] if k != came] or self.adj[node]
        if came is None or len(options) <= 1:
            return int(self.rng.choice(options))
        cos = np.array([_turn_cos(self.g, came, k, node) for k in options])  # weight by straightness
        gentle = cos >= math.cos(math.radians(MAX_TURN_DEG))
        if gentle.any():
            options, cos = [k for k, ok in zip(options, gentle) if ok], cos[gentle]
        wts = 1.2 + cos
        return int(self.rng.choice(options, p=wts / wts.sum()))


def _walk_loops(walker: _Walker, start: int, length_m: float) -> None:
    """A random walk out, the shortest path back to ``start`` (not along the first or last edge where
    possible), the loop repeated until ``length_m``."""
    g, pieces = walker.g, walker.pieces
    out_m = max(LOOP_OUT_MIN_M, LOOP_OUT_FRACTION * length_m)
    end, came, _ = walker.walk(start, None, min(out_m, LOOP_OUT_MAX_M))
    first = _edge_of(g, pieces[0])
    back = (_shortest_path(g, end, start, {came, first}) or _shortest_path(g, end, start, {came})
            or _shortest_path(g, end, start) or [])
    node = end
    for k in back:
        node, p = _oriented(g, k, node)
        pieces.append(p)
    loop = list(pieces)
    loop_m = sum(float(arclen_m(p)[-1]) for p in loop)
    while sum(float(arclen_m(p)[-1]) for p in pieces) < length_m and loop_m > 1.0:
        pieces.extend(loop)


def _other(g: StreetGraph, k: int, node: int) -> int:
    a, b, _ = g.edges[k]
    return a if b == node else b


def _turn_cos(g: StreetGraph, came: int, k: int, node: int) -> float:
    """Cosine of the turn at ``node`` from edge ``came`` onto edge ``k`` (1 = straight on, -1 = U-turn)."""
    _, pin = _oriented(g, came, _other(g, came, node))
    _, p = _oriented(g, k, node)
    d_in = _unit(pin[-1] - pin[max(0, len(pin) - 4)])
    return float(np.dot(d_in, _unit(p[min(3, len(p) - 1)] - p[0])))


def _edge_of(g: StreetGraph, poly: np.ndarray) -> int:
    """Index of the edge whose polyline is ``poly`` (either direction); -1 if none."""
    for k, (_a, _b, p) in enumerate(g.edges):
        if p.shape == poly.shape and (np.array_equal(p, poly) or np.array_equal(p[::-1], poly)):
            return k
    return -1


def _unit(v: np.ndarray) -> np.ndarray:
    n = float(np.hypot(*v))
    return v / n if n > 0 else v
