"""``unifygeo bag synth``: record a synthetic drive through a city as a rosbag2 (sqlite3 or MCAP).

Stage: ``CITY_DIR`` (written by ``unifygeo synth``; its ``geo.json`` holds seed, style, size and the ENU origin at
the south-west corner) -> ``BAG/``. The city is regenerated from ``geo.json`` (``world.generate_city``), so the
drive passes through the same world the data set's panoramas and tiles were rendered from.

The drive:

* **route** - a walk on the street network (street centre lines, split at their crossings into a graph; edges
  that leave the city and dead-end stubs are pruned, so the walk never needs a U-turn). ``random``: a random
  walk that avoids turning back; ``loop``: a random walk out, the shortest path back to the start, repeated.
* **motion** - the polyline is smoothed (corners rounded over ~``SMOOTH_M``), offset ``LANE_M`` to the right of
  the centre line (right-hand traffic; dead ends - only in cities too small for a network without them - are
  turned on a half circle), driven at ``--speed`` m/s on straights, slower in curves (lateral acceleration
  <= ``LAT_ACC``), with accelerations <= ``LONG_ACC``.
* **camera** - on the vehicle, at ``geo.json``'s ``camera_height_m``; panoramas rendered with
  ``render.render_panorama`` at the vehicle heading (vehicle-aligned: the centre column looks forward; the
  default) or at heading 0 (``--north-aligned``, like VIGOR).

Topics (standard types only; message definitions stored in the bag, ``ros2msg`` MCAP schemas), header stamps =
recording (log) time:

* ``/camera/panorama/image_raw`` ``sensor_msgs/Image`` (rgb8), or ``.../image_raw/compressed``
  ``sensor_msgs/CompressedImage`` (JPEG) with ``--compressed``; frame ``camera_panorama``.
* ``/gt/fix`` ``sensor_msgs/NavSatFix`` and ``/gt/geopose`` ``geographic_msgs/GeoPoseStamped`` at ``--gt-rate``
  (default 10 Hz, not synchronised with the camera: replay interpolates): the camera's position; the GeoPose
  orientation is the camera's (ENU, yaw = 90 deg - compass heading), which is the vehicle's when
  vehicle-aligned.
* ``/gt/odom`` ``nav_msgs/Odometry`` (``--odom``): the vehicle in frame ``map`` = ENU at the city origin
  (``geo.json`` origin; replay: ``--gt-frame-origin LAT,LON``), child ``base_link``, twist in ``base_link``.
"""
from __future__ import annotations

import argparse
import json
import math
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from unifygeo_ros import geo
from unifygeo_ros.rosbag import io as bags
from unifygeo_ros.data.world import true_runs
from unifygeo_ros.errors import DataFormatError, UnifyGeoError

IMAGE_TOPIC = "/camera/panorama/image_raw"
FIX_TOPIC = "/gt/fix"
GEOPOSE_TOPIC = "/gt/geopose"
ODOM_TOPIC = "/gt/odom"
CAMERA_FRAME = "camera_panorama"
MAP_FRAME = "map"
#: default start of the recording (2024-01-01T00:00:00Z): fixed so that bags are reproducible
DEFAULT_START_S = 1_704_067_200
SMOOTH_M = 8.0  # corner-rounding window (m)
LAT_ACC = 2.0  # max lateral acceleration (m/s^2)
LONG_ACC = 1.5  # max longitudinal acceleration / deceleration (m/s^2)
MIN_SPEED = 0.5  # floor of the curve speed (m/s)
BORDER_M = 12.0  # the route keeps this far inside the city's extent (4 % of the smaller side for small cities)
MAX_TURN_DEG = 110.0  # sharper turns are taken only where there is no other way
MERGE_M = 3.0  # street crossings closer than this are one node
LANE_M = 1.5  # the camera drives this far right of the centre line (right-hand traffic)


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


def _arclen(p: np.ndarray) -> np.ndarray:
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
    sp, sq = _arclen(p), _arclen(q)
    out = []
    for i, j in zip(*np.nonzero(ok)):
        pt = p[i] + t[i, j] * (p[i + 1] - p[i])
        out.append((sp[i] + t[i, j] * (sp[i + 1] - sp[i]), sq[j] + u[i, j] * (sq[j + 1] - sq[j]), pt))
    return out


def _cut(p: np.ndarray, s0: float, s1: float) -> np.ndarray:
    """The part of polyline ``p`` between arc positions s0 < s1 (end points interpolated)."""
    s = _arclen(p)
    inner = p[(s > s0) & (s < s1)]
    ends = np.stack([np.interp([s0, s1], s, p[:, 0]), np.interp([s0, s1], s, p[:, 1])], axis=1)
    return np.vstack([ends[:1], inner, ends[1:]])


def _inside_runs(p: np.ndarray, lo: np.ndarray, hi: np.ndarray, step_m: float = 1.0) -> list[np.ndarray]:
    """The parts of polyline ``p`` inside the box ``lo..hi`` (resampled every ``step_m``)."""
    p = _resample_poly(p, step_m)
    inside = np.all((p >= lo) & (p <= hi), axis=1)
    return [p[k:j + 1] for k, j in true_runs(inside) if j > k]


def _resample_poly(p: np.ndarray, step_m: float) -> np.ndarray:
    s = _arclen(p)
    n = max(2, int(math.ceil(s[-1] / step_m)) + 1)
    sq = np.linspace(0.0, s[-1], n)
    return np.stack([np.interp(sq, s, p[:, 0]), np.interp(sq, s, p[:, 1])], 1)


def street_graph(streets: list, size_m: tuple[float, float], border_m: float | None = None,
                 bounds: tuple[float, float, float, float] | None = None) -> StreetGraph:
    """The drivable graph of ``streets`` (objects with ``points`` (N, 2) ENU): street centre lines clipped to the
    city's extent less ``border_m`` (or to ``bounds`` = east_min, east_max, north_min, north_max), split at their
    crossings (crossings closer than ``MERGE_M`` merged) and at their ends; the connected part with the most
    street length, reduced to its 2-core (no dead ends) when that keeps most of it."""
    w, h = size_m
    if border_m is None:
        border_m = min(BORDER_M, 0.04 * min(w, h))
    lo, hi = np.array([border_m, border_m]), np.array([w - border_m, h - border_m])
    if bounds is not None:
        lo, hi = np.array([bounds[0], bounds[2]], float), np.array([bounds[1], bounds[3]], float)
    polys = [r for st in streets if len(st.points) >= 2 for r in _inside_runs(np.asarray(st.points, float), lo, hi)]
    cuts: list[list[tuple[float, int]]] = [[] for _ in polys]
    nodes: list[np.ndarray] = []
    for i, p in enumerate(polys):  # the ends of every run are nodes
        nodes.append(p[0])
        cuts[i].append((0.0, len(nodes) - 1))
        nodes.append(p[-1])
        cuts[i].append((float(_arclen(p)[-1]), len(nodes) - 1))
    for i in range(len(polys)):
        for j in range(i + 1, len(polys)):
            for si, sj, pt in _segment_crossings(polys[i], polys[j]):
                nodes.append(pt)
                cuts[i].append((si, len(nodes) - 1))
                cuts[j].append((sj, len(nodes) - 1))
    ids = list(range(len(nodes)))  # merge nodes closer than MERGE_M (crossings first: they come later)
    for i in range(len(nodes) - 1, -1, -1):
        for j in range(len(nodes) - 1, i, -1):
            if ids[j] == j and float(np.hypot(*(nodes[i] - nodes[j]))) < MERGE_M:
                ids[i] = j
                break
    edges: list[tuple[int, int, np.ndarray]] = []
    for p, c in zip(polys, cuts):
        c = sorted((sv, ids[nd]) for sv, nd in c)
        for (s0, a), (s1, b) in zip(c[:-1], c[1:]):
            if a != b and s1 - s0 >= 1.0:
                edges.append((a, b, _cut(p, s0, s1)))
    graph = _largest_component(StreetGraph(np.array(nodes, np.float64).reshape(-1, 2), edges))
    core = _two_core(graph)
    return core if _length(core) >= 0.6 * _length(graph) else graph


def _length(g: StreetGraph) -> float:
    return float(sum(_arclen(p)[-1] for _a, _b, p in g.edges))


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
        length = sum(float(_arclen(p)[-1]) for a, _b, p in g.edges if a in comp)
        if length > best[0]:
            best = (length, comp)
    return StreetGraph(g.nodes, [e for e in g.edges if e[0] in best[1]])


def _two_core(g: StreetGraph) -> StreetGraph:
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
    a, b, p = g.edges[k]
    return (b, p) if a == from_node else (a, p[::-1])


def _shortest_path(g: StreetGraph, src: int, dst: int, avoid: set[int] = frozenset()) -> list[int] | None:
    """Edge indices of a shortest path (Dijkstra on polyline lengths) not using the edges ``avoid``; None if
    there is none."""
    import heapq

    adj = {n: [k for k in ks if k not in avoid] for n, ks in g.adjacency().items()}
    lengths = [float(_arclen(p)[-1]) for _a, _b, p in g.edges]
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


def plan_route(g: StreetGraph, kind: str, length_m: float, rng: np.random.Generator) -> np.ndarray:
    """A polyline of at least ``length_m`` metres along ``g`` (see the module docstring for the two kinds)."""
    if not g.edges:
        raise DataFormatError("the city has no drivable street network inside its extent (too small?)")
    adj = g.adjacency()
    start = int(rng.choice(sorted(adj)))
    pieces: list[np.ndarray] = []

    def walk(node: int, came: int | None, metres: float) -> tuple[int, int | None, float]:
        total = 0.0
        while total < metres:
            options = [k for k in adj[node] if k != came] or adj[node]
            if came is not None and len(options) > 1:  # prefer not to turn sharply: weight by straightness
                cos = np.array([_turn_cos(g, came, k, node) for k in options])
                gentle = cos >= math.cos(math.radians(MAX_TURN_DEG))
                if gentle.any():
                    options, cos = [k for k, ok in zip(options, gentle) if ok], cos[gentle]
                wts = 1.2 + cos
                k = int(rng.choice(options, p=wts / wts.sum()))
            else:
                k = int(rng.choice(options))
            nxt, p = _oriented(g, k, node)
            pieces.append(p)
            total += float(_arclen(p)[-1])
            node, came = nxt, k
        return node, came, total

    if kind == "random":
        walk(start, None, length_m)
    elif kind == "loop":
        out_m = max(150.0, 0.4 * length_m)
        end, came, _ = walk(start, None, min(out_m, 600.0))
        first = _edge_of(g, pieces[0])
        back = (_shortest_path(g, end, start, {came, first}) or _shortest_path(g, end, start, {came})
                or _shortest_path(g, end, start) or [])
        node = end
        for k in back:
            node, p = _oriented(g, k, node)
            pieces.append(p)
        loop = list(pieces)
        loop_m = sum(float(_arclen(p)[-1]) for p in loop)
        while sum(float(_arclen(p)[-1]) for p in pieces) < length_m and loop_m > 1.0:
            pieces.extend(loop)
    else:
        raise UnifyGeoError(f"--route must be random or loop, got {kind!r}")
    pts = np.vstack([pieces[0]] + [p[1:] for p in pieces[1:]])
    keep = np.ones(len(pts), bool)
    keep[1:] = np.hypot(*np.diff(pts, axis=0).T) > 1e-6
    return pts[keep]


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
    for k, (_a, _b, p) in enumerate(g.edges):
        if p.shape == poly.shape and (np.array_equal(p, poly) or np.array_equal(p[::-1], poly)):
            return k
    return -1


def _unit(v: np.ndarray) -> np.ndarray:
    n = float(np.hypot(*v))
    return v / n if n > 0 else v


# -------------------------------------------------------------------------------------------------- motion
@dataclass
class Drive:
    """A smooth drive sampled finely in arc length: positions, compass heading, speed and time."""

    s_m: np.ndarray
    en_m: np.ndarray  # (N, 2)
    heading_deg: np.ndarray  # compass, vehicle
    speed_mps: np.ndarray
    t_s: np.ndarray
    yaw_rate_dps: np.ndarray  # ENU yaw rate (deg/s, counter-clockwise)

    def at(self, t_s) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """(east_north (M, 2), compass heading (M,), speed (M,), yaw rate deg/s (M,)) at times ``t_s``."""
        t_s = np.asarray(t_s, float)
        s = np.interp(t_s, self.t_s, self.s_m)
        en = np.stack([np.interp(s, self.s_m, self.en_m[:, 0]), np.interp(s, self.s_m, self.en_m[:, 1])], 1)
        unwrapped = np.degrees(np.unwrap(np.radians(self.heading_deg)))
        hd = np.interp(s, self.s_m, unwrapped)
        v = np.interp(s, self.s_m, self.speed_mps)
        return en, geo.wrap_deg(hd) % 360.0, v, np.interp(s, self.s_m, self.yaw_rate_dps)


def _resample(p: np.ndarray, step_m: float) -> np.ndarray:
    s = _arclen(p)
    n = max(2, int(round(s[-1] / step_m)) + 1)
    sq = np.linspace(0.0, s[-1], n)
    return np.stack([np.interp(sq, s, p[:, 0]), np.interp(sq, s, p[:, 1])], 1)


def _smooth(p: np.ndarray, half: int) -> np.ndarray:
    """Two box-filter passes with odd-reflection padding: ends stay put, corners are rounded."""
    if len(p) <= 2 * half + 1:
        return p
    kernel = np.ones(2 * half + 1) / (2 * half + 1)
    for _ in range(2):
        pad = np.vstack([2 * p[0] - p[half:0:-1], p, 2 * p[-1] - p[-2:-half - 2:-1]])
        p = np.stack([np.convolve(pad[:, 0], kernel, "valid"), np.convolve(pad[:, 1], kernel, "valid")], 1)
    return p


def _right_normals(p: np.ndarray) -> np.ndarray:
    d = np.gradient(p, axis=0)
    d /= np.maximum(np.hypot(d[:, 0], d[:, 1]), 1e-12)[:, None]
    return np.stack([d[:, 1], -d[:, 0]], 1)  # (east, north) of the direction rotated clockwise


def make_drive(route: np.ndarray, speed_mps: float, step_m: float = 0.5) -> Drive:
    """Smooth ``route``, keep to the right of the centre line by ``LANE_M``, turn around at dead ends on a
    half circle of radius ``LANE_M``, and give the path a speed profile and times (module constants)."""
    p = _resample(np.asarray(route, np.float64), step_m)
    # split at reversals (U-turns at dead ends): the direction flips between consecutive steps
    d = np.diff(p, axis=0)
    cosines = np.einsum("ij,ij->i", d[:-1], d[1:]) / np.maximum(
        np.hypot(*d[:-1].T) * np.hypot(*d[1:].T), 1e-12)
    cusps = [i + 1 for i in np.nonzero(cosines < -0.5)[0]]
    runs = np.split(p, cusps)
    runs = [np.vstack([r, p[c:c + 1]]) if k < len(cusps) else r for k, (r, c) in
            enumerate(zip(runs, cusps + [None]))]  # each run ends on the cusp point
    half = max(1, int(SMOOTH_M / 2 / step_m))
    parts: list[np.ndarray] = []
    for k, r in enumerate(runs):
        r = _smooth(r, half)
        off = r + LANE_M * _right_normals(r)
        if parts:  # half circle (left turn) around the cusp from the previous run's lane to this one's
            c = r[0]
            start = parts[-1][-1]
            a0 = math.atan2(start[1] - c[1], start[0] - c[0])
            a = a0 + np.linspace(0.0, math.pi, max(3, int(math.pi * LANE_M / step_m) + 1))
            parts.append(c + LANE_M * np.stack([np.cos(a[1:-1]), np.sin(a[1:-1])], 1))
        parts.append(off)
    p = np.vstack(parts)
    keep = np.ones(len(p), bool)
    keep[1:] = np.hypot(*np.diff(p, axis=0).T) > 0.1 * step_m
    p = p[keep]
    n = len(p)
    s = _arclen(p)
    d = np.gradient(p, axis=0)
    heading = np.degrees(np.arctan2(d[:, 0], d[:, 1])) % 360.0  # compass: atan2(east, north)
    hd = np.unwrap(np.radians(heading))
    ds = np.maximum(np.gradient(s), 1e-6)
    curvature = np.abs(np.gradient(hd) / ds)
    v = np.minimum(speed_mps, np.sqrt(LAT_ACC / np.maximum(curvature, 1e-9)))
    v = np.maximum(v, min(MIN_SPEED, speed_mps))
    for i in range(1, n):  # acceleration limit forwards, deceleration limit backwards
        v[i] = min(v[i], math.sqrt(v[i - 1] ** 2 + 2 * LONG_ACC * (s[i] - s[i - 1])))
    for i in range(n - 2, -1, -1):
        v[i] = min(v[i], math.sqrt(v[i + 1] ** 2 + 2 * LONG_ACC * (s[i + 1] - s[i])))
    dt = np.diff(s) / np.maximum(0.5 * (v[1:] + v[:-1]), 1e-6)
    t = np.concatenate([[0.0], np.cumsum(dt)])
    yaw_rate = -np.degrees(np.gradient(hd, t))  # yaw = 90 - heading
    return Drive(s, p, heading, v, t, yaw_rate)


# ---------------------------------------------------------------------------------------------- recording
@dataclass
class SynthBagConfig:
    data: str
    out: str
    storage: str = "sqlite3"
    route: str = "random"
    rate_hz: float = 2.0
    duration_s: float | None = None
    frames: int | None = None
    seed: int = 0
    speed_mps: float = 8.0
    image_width: int | None = None
    compressed: bool = False
    north_aligned: bool = False
    gt_rate_hz: float = 10.0
    odom: bool = False
    start_s: float = DEFAULT_START_S
    camera_phase_s: float = 0.013  # camera trigger offset from the GT clock (exercises interpolation)


@dataclass
class SynthBagResult:
    bag: Path
    frames: int
    gt_messages: int
    duration_s: float
    route_length_m: float  # driven during the recording
    origin: geo.LocalENU
    image_topic: str
    seconds: float


def read_city_meta(city_dir: str | Path) -> dict:
    p = Path(city_dir) / "geo.json"
    if not p.is_file():
        raise DataFormatError(f"{p} not found: --data must be a city folder written by `unifygeo synth` (its geo.json "
                              "holds the seed, style, size and origin the drive is regenerated from)")
    try:
        meta = json.loads(p.read_text())
        meta["origin"]["lat_deg"], meta["origin"]["lon_deg"], meta["seed"], meta["size_m"]  # noqa: B018
    except (json.JSONDecodeError, KeyError, TypeError) as exc:
        raise DataFormatError(f"{p}: not a unifygeo-city geo.json ({exc})") from exc
    return meta


def synth_bag(cfg: SynthBagConfig, city=None) -> SynthBagResult:
    """Record the drive of ``cfg`` (the city regenerated from ``geo.json`` unless given) and return a summary."""
    from rosbags.rosbag2 import StoragePlugin, Writer, WriterError

    from unifygeo_ros.data import render, world

    t_start = time.perf_counter()
    meta = read_city_meta(cfg.data)
    origin = geo.LocalENU(float(meta["origin"]["lat_deg"]), float(meta["origin"]["lon_deg"]))
    if city is None:
        kw = {"cell_m": float(meta["cell_m"])} if "cell_m" in meta else {}
        city = world.generate_city(int(meta["seed"]), tuple(meta["size_m"]), meta.get("style", "mixed"), **kw)
    width = int(cfg.image_width or meta.get("pano_px", [512, 256])[0])
    if width < 16 or width % 2:
        raise UnifyGeoError(f"--image-width must be an even number >= 16, got {width}")
    cam_h = float(meta.get("camera_height_m", 2.0))
    if cfg.frames is not None:
        n_frames = int(cfg.frames)
    else:
        n_frames = int(math.floor((cfg.duration_s if cfg.duration_s is not None else 30.0) * cfg.rate_hz)) + 1
    if n_frames < 1 or cfg.rate_hz <= 0 or cfg.speed_mps <= 0 or cfg.gt_rate_hz <= 0:
        raise UnifyGeoError("need at least one frame and positive --rate, --speed and --gt-rate")
    duration = (n_frames - 1) / cfg.rate_hz + cfg.camera_phase_s

    rng = np.random.default_rng(cfg.seed)
    route_m = cfg.speed_mps * duration * 1.6 + 60.0
    route = None
    if "tile_m" in meta:  # drive where the map can answer: inside the tiles' central quarters (VIGOR positives)
        from unifygeo_ros.data.synth import tile_grid

        try:
            bounds = tile_grid(tuple(meta["size_m"]), float(meta["tile_m"])).camera_bounds()
            route = plan_route(street_graph(city.streets, tuple(city.size_m), bounds=bounds), cfg.route, route_m,
                               np.random.default_rng(cfg.seed))
        except (UnifyGeoError, ValueError, IndexError, KeyError):
            route = None  # too few streets inside the tiled area: drive the whole city instead
    if route is None:
        route = plan_route(street_graph(city.streets, tuple(city.size_m)), cfg.route, route_m, rng)
    drive = make_drive(route, cfg.speed_mps)
    if drive.t_s[-1] < duration + 1.0 / cfg.gt_rate_hz:
        raise UnifyGeoError(f"the route is too short for {duration:.1f} s of driving; lower --duration/--frames")

    storage = {"sqlite3": StoragePlugin.SQLITE3, "mcap": StoragePlugin.MCAP}.get(cfg.storage)
    if storage is None:
        raise UnifyGeoError(f"--storage must be sqlite3 or mcap, got {cfg.storage!r}")
    ts = bags.make_typestore()
    T = ts.types
    t0_ns = int(round(cfg.start_s * 1e9))
    image_topic = IMAGE_TOPIC + ("/compressed" if cfg.compressed else "")
    # everything to write, ordered by log time: (t_ns, kind, payload)
    events: list[tuple[int, int, float]] = []
    n_gt = int(math.ceil(duration * cfg.gt_rate_hz - 1e-9)) + 1  # the last GT sample is at or after the last image
    events += [(t0_ns + int(round(k * 1e9 / cfg.gt_rate_hz)), 0, k / cfg.gt_rate_hz) for k in range(n_gt)]
    cam_t = [cfg.camera_phase_s + j / cfg.rate_hz for j in range(n_frames)]
    events += [(t0_ns + int(round(t * 1e9)), 1, t) for t in cam_t]
    events.sort()

    out = Path(cfg.out)
    try:
        writer = Writer(out, version=9, storage_plugin=storage)
        writer.open()
    except WriterError as exc:
        raise UnifyGeoError(f"cannot write bag {out}: {exc}") from exc
    try:
        c_img = writer.add_connection(image_topic, bags.COMPRESSED_IMAGE if cfg.compressed else bags.IMAGE,
                                      typestore=ts)
        c_fix = writer.add_connection(FIX_TOPIC, bags.NAVSATFIX, typestore=ts)
        c_geo = writer.add_connection(GEOPOSE_TOPIC, bags.GEOPOSE_STAMPED, typestore=ts)
        c_odom = writer.add_connection(ODOM_TOPIC, bags.ODOMETRY, typestore=ts) if cfg.odom else None
        frames = 0
        for t_ns, kind, t_rel in events:
            en, heading, speed, yaw_rate = (a[0] for a in drive.at([t_rel]))
            cam_heading = 0.0 if cfg.north_aligned else float(heading)
            if kind == 1:
                img = render.render_panorama(city, (float(en[0]), float(en[1])), cam_heading, width, width // 2,
                                             camera_height_m=cam_h)
                msg = (bags.rgb_to_compressed_msg(ts, img, t_ns, CAMERA_FRAME) if cfg.compressed
                       else bags.rgb_to_image_msg(ts, img, t_ns, CAMERA_FRAME))
                writer.write(c_img, t_ns, ts.serialize_cdr(msg, c_img.msgtype))
                frames += 1
                continue
            lat, lon = origin.from_en(float(en[0]), float(en[1]))
            fix = T[bags.NAVSATFIX](
                header=bags.header(ts, t_ns, CAMERA_FRAME),
                status=T["sensor_msgs/msg/NavSatStatus"](status=2, service=1),  # GBAS (RTK-like) fix, GPS
                latitude=float(lat), longitude=float(lon), altitude=cam_h,
                position_covariance=np.diag([1e-4, 1e-4, 4e-4]).reshape(-1),
                position_covariance_type=2)  # diagonal known
            writer.write(c_fix, t_ns, ts.serialize_cdr(fix, bags.NAVSATFIX))
            q = geo.yaw_to_quaternion_xyzw(float(geo.heading_to_yaw_deg(cam_heading)))
            quat = T["geometry_msgs/msg/Quaternion"](x=q[0], y=q[1], z=q[2], w=q[3])
            gp = T[bags.GEOPOSE_STAMPED](
                header=bags.header(ts, t_ns, MAP_FRAME),
                pose=T["geographic_msgs/msg/GeoPose"](
                    position=T["geographic_msgs/msg/GeoPoint"](latitude=float(lat), longitude=float(lon),
                                                               altitude=cam_h),
                    orientation=quat))
            writer.write(c_geo, t_ns, ts.serialize_cdr(gp, bags.GEOPOSE_STAMPED))
            if c_odom is not None:
                writer.write(c_odom, t_ns, ts.serialize_cdr(
                    _odometry(T, ts, t_ns, en, float(heading), float(speed), float(yaw_rate), cam_h), bags.ODOMETRY))
    except BaseException:
        writer.close()
        raise
    writer.close()
    driven_m = float(np.interp(duration, drive.t_s, drive.s_m))
    return SynthBagResult(out, frames, n_gt, duration, driven_m, origin, image_topic,
                          time.perf_counter() - t_start)


def _odometry(T, ts, t_ns: int, en, heading_deg: float, speed: float, yaw_rate_deg: float, cam_h: float):
    q = geo.yaw_to_quaternion_xyzw(float(geo.heading_to_yaw_deg(heading_deg)))
    pose_cov = np.diag([1e-4, 1e-4, 4e-4, 1e-4, 1e-4, 3e-4]).reshape(-1)
    twist_cov = np.diag([1e-3, 1e-3, 1e-3, 1e-4, 1e-4, 1e-4]).reshape(-1)
    V3 = T["geometry_msgs/msg/Vector3"]
    return T[bags.ODOMETRY](
        header=bags.header(ts, t_ns, MAP_FRAME), child_frame_id="base_link",
        pose=T["geometry_msgs/msg/PoseWithCovariance"](
            pose=T["geometry_msgs/msg/Pose"](position=T["geometry_msgs/msg/Point"](x=float(en[0]), y=float(en[1]),
                                                                                 z=cam_h),
                                             orientation=T["geometry_msgs/msg/Quaternion"](x=q[0], y=q[1], z=q[2],
                                                                                           w=q[3])),
            covariance=pose_cov),
        twist=T["geometry_msgs/msg/TwistWithCovariance"](
            twist=T["geometry_msgs/msg/Twist"](linear=V3(x=speed, y=0.0, z=0.0),
                                               angular=V3(x=0.0, y=0.0, z=math.radians(yaw_rate_deg))),
            covariance=twist_cov))


# ---------------------------------------------------------------------------------------------------- CLI
def configure_parser(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="bag_command", metavar="BAG_COMMAND", required=True)
    p = sub.add_parser("synth", help="record a drive through a synthetic city (images + ground truth)",
                       description=__doc__.split("\n\n")[0])
    p.add_argument("--data", required=True, help="city folder written by `unifygeo synth` (holds geo.json)")
    p.add_argument("--out", required=True, help="bag folder to create (must not exist)")
    p.add_argument("--storage", choices=("sqlite3", "mcap"), default="sqlite3")
    p.add_argument("--route", choices=("random", "loop"), default="random")
    p.add_argument("--rate", type=float, default=2.0, dest="rate_hz", help="camera rate (Hz, default 2)")
    n = p.add_mutually_exclusive_group()
    n.add_argument("--duration", type=float, dest="duration_s", help="seconds of driving (default 30)")
    n.add_argument("--frames", type=int, help="number of panoramas")
    p.add_argument("--seed", type=int, default=0, help="route seed (the city comes from geo.json)")
    p.add_argument("--speed", type=float, default=8.0, dest="speed_mps", help="cruise speed (m/s, default 8)")
    p.add_argument("--image-width", type=int, help="panorama width (px, height = width / 2; default geo.json's)")
    p.add_argument("--compressed", action="store_true", help="sensor_msgs/CompressedImage (JPEG) on .../compressed")
    p.add_argument("--north-aligned", action="store_true",
                   help="render north-aligned panoramas (heading 0) instead of vehicle-aligned ones")
    p.add_argument("--gt-rate", type=float, default=10.0, dest="gt_rate_hz", help="GT rate (Hz, default 10)")
    p.add_argument("--odom", action="store_true", help="also write nav_msgs/Odometry in local ENU on /gt/odom")
    p.add_argument("--start-time", type=float, default=DEFAULT_START_S, dest="start_s",
                   help="recording start, UNIX seconds (default 2024-01-01T00:00:00Z)")


def run(args: argparse.Namespace) -> int:
    cfg = SynthBagConfig(data=args.data, out=args.out, storage=args.storage, route=args.route, rate_hz=args.rate_hz,
                         duration_s=args.duration_s, frames=args.frames, seed=args.seed, speed_mps=args.speed_mps,
                         image_width=args.image_width, compressed=args.compressed, north_aligned=args.north_aligned,
                         gt_rate_hz=args.gt_rate_hz, odom=args.odom, start_s=args.start_s)
    r = synth_bag(cfg)
    print(f"wrote {r.bag} ({cfg.storage}): {r.frames} panoramas on {r.image_topic}, {r.gt_messages} GT fixes on "
          f"{FIX_TOPIC} and {GEOPOSE_TOPIC}{' and ' + ODOM_TOPIC if cfg.odom else ''}; {r.duration_s:.1f} s, "
          f"{r.route_length_m:.0f} m driven; origin {r.origin.lat0_deg:.7f}, {r.origin.lon0_deg:.7f} "
          f"({r.seconds:.1f} s)")
    print(f"replay: unifygeo replay {r.bag} --index INDEX --image-topic {r.image_topic} --gt-topic {GEOPOSE_TOPIC} "
          "--out OUT")
    return 0
