"""Procedural 2.5-D cities: the synthetic world both views are rendered from.

A :class:`City` is a set of co-registered raster layers on a square grid of ``cell_m`` metres, covering
``size_m = (east, north)`` metres from the city's south-west corner (the ENU origin of the world):

* ``height`` (float32, metres above ground): buildings (flat roofs with parapets and HVAC boxes, gable and hip
  roofs with ridges), hedges, tree canopies. Cars are kept apart (see below).
* ``surface`` (uint8, one of the ``SURFACE_*`` classes), ``top_rgb`` (uint8 RGB seen from above, textured).
* ``object_id`` (int32): ``> 0`` building id (index into the per-building tables ``facade_rgb``, ``window_rgb``,
  ``floor_m``, ``window_style``), ``< 0`` tree ``-(index + 1)`` into ``trees``, ``0`` nothing.
* ``cars``: a structured array of oriented boxes. Each car belongs to one set: ``CARS_BOTH`` (parked, seen in
  both views), ``CARS_AERIAL_ONLY`` and ``CARS_GROUND_ONLY`` (cars that moved between the aerial flight and the
  street-level capture). :meth:`City.layers` composites a car set into the static layers.

Arrays are indexed ``[row, col]`` with **row 0 at the south edge**: cell ``(i, j)`` covers
``north in [i, i+1) * cell_m`` and ``east in [j, j+1) * cell_m`` (renderers flip rows for north-up images).
Everything is determined by the seed (numpy ``Generator`` streams spawned from it; no global RNG).
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

import cv2
import numpy as np

# ---------------------------------------------------------------------------------------------- constants
SURFACE_GROUND = 0  # bare ground / outside the city
SURFACE_ROAD = 1
SURFACE_SIDEWALK = 2
SURFACE_MARKING = 3
SURFACE_GRASS = 4
SURFACE_PATH = 5
SURFACE_PARKING = 6
SURFACE_BUILDING = 7
SURFACE_ROOF_DETAIL = 8
SURFACE_TREE = 9
SURFACE_WATER = 10
SURFACE_PLAZA = 11
SURFACE_GARDEN = 12
SURFACE_CAR = 13
SURFACE_DRIVEWAY = 14
SURFACE_HEDGE = 15
SURFACE_NAMES = ("ground", "road", "sidewalk", "marking", "grass", "path", "parking", "building",
                 "roof_detail", "tree", "water", "plaza", "garden", "car", "driveway", "hedge")

WINDOW_NONE, WINDOW_PUNCHED, WINDOW_RIBBON, WINDOW_HOUSE = 0, 1, 2, 3

CARS_BOTH, CARS_AERIAL_ONLY, CARS_GROUND_ONLY = 0, 1, 2
#: which car sets each view shows
CAR_VIEWS = {
    "none": (),
    "both": (CARS_BOTH,),
    "aerial": (CARS_BOTH, CARS_AERIAL_ONLY),
    "ground": (CARS_BOTH, CARS_GROUND_ONLY),
    "all": (CARS_BOTH, CARS_AERIAL_ONLY, CARS_GROUND_ONLY),
}

STYLES = ("centre", "suburb", "mixed")

CAR_DTYPE = np.dtype([("east", "f8"), ("north", "f8"), ("length", "f4"), ("width", "f4"), ("height", "f4"),
                      ("angle", "f4"), ("rgb", "u1", (3,)), ("set", "u1")])
TREE_DTYPE = np.dtype([("east", "f8"), ("north", "f8"), ("radius", "f4"), ("top", "f4"), ("base", "f4"),
                       ("rgb", "u1", (3,))])

_SHIFT = 4  # fixed-point bits for cv2 drawing
CAR_BODY_FRACTION = 0.62  # height of a car's lower body relative to its roof
_ONE = 1 << _SHIFT

# palettes (RGB). Roofs, facades and cars are drawn independently: a roof colour says nothing of its facade.
_FLAT_ROOFS = np.array([(150, 150, 146), (118, 116, 112), (92, 93, 96), (66, 66, 70), (186, 182, 172),
                        (212, 209, 200), (160, 148, 130), (112, 124, 118), (134, 108, 94), (100, 108, 122)])
_PITCHED_ROOFS = np.array([(164, 86, 64), (128, 70, 54), (96, 76, 66), (82, 84, 90), (58, 60, 66),
                           (142, 120, 98), (112, 58, 48), (88, 100, 112), (70, 90, 72)])
_FACADES = np.array([(168, 82, 60), (150, 98, 72), (206, 190, 164), (226, 221, 206), (160, 160, 156),
                     (108, 130, 152), (202, 166, 100), (120, 94, 74), (184, 200, 212), (212, 200, 138),
                     (178, 196, 168), (212, 174, 168), (92, 96, 104)])
_HOUSE_FACADES = np.array([(232, 228, 214), (212, 200, 138), (184, 200, 212), (178, 196, 168), (212, 174, 168),
                           (206, 190, 164), (168, 82, 60), (150, 150, 146), (120, 94, 74)])
_WINDOWS = np.array([(38, 46, 58), (64, 78, 96), (110, 130, 150), (30, 34, 36), (80, 92, 84), (140, 150, 160)])
_CARS = np.array([(235, 235, 235), (30, 30, 32), (170, 172, 176), (110, 112, 116), (170, 30, 30),
                  (30, 60, 140), (20, 30, 70), (40, 90, 60), (220, 180, 30), (200, 200, 190), (120, 20, 30)])


# ---------------------------------------------------------------------------------------------- data types
@dataclass
class Street:
    """A street centre line (ENU metres), its carriageway and sidewalk widths."""

    points: np.ndarray  # (N, 2) east, north
    width_m: float
    sidewalk_m: float
    kind: str  # "avenue" | "street" | "lane"


@dataclass
class CityLayers:
    """The static layers with one car set composited in (what one view sees)."""

    height: np.ndarray
    top_rgb: np.ndarray
    surface: np.ndarray
    object_id: np.ndarray


@dataclass(eq=False)
class City:
    """A procedural 2.5-D city (see the module docstring for the layer conventions)."""

    seed: int
    style: str
    cell_m: float
    size_m: tuple[float, float]
    height: np.ndarray
    surface: np.ndarray
    top_rgb: np.ndarray
    object_id: np.ndarray
    facade_rgb: np.ndarray  # (n_buildings + 1, 3) uint8, row 0 unused
    window_rgb: np.ndarray  # (n_buildings + 1, 3) uint8
    floor_m: np.ndarray  # (n_buildings + 1,) float32 storey height
    window_style: np.ndarray  # (n_buildings + 1,) uint8 WINDOW_*
    trees: np.ndarray  # TREE_DTYPE
    cars: np.ndarray  # CAR_DTYPE
    streets: list[Street] = field(default_factory=list)
    outside_rgb: tuple[int, int, int] = (128, 120, 100)
    # what lies under the tree canopies (flat cell indices, sorted): seen by rays that pass below a canopy
    under_idx: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))
    under_rgb: np.ndarray = field(default_factory=lambda: np.zeros((0, 3), np.uint8))
    under_surface: np.ndarray = field(default_factory=lambda: np.zeros(0, np.uint8))
    under_height: np.ndarray = field(default_factory=lambda: np.zeros(0, np.float32))
    _cache: dict = field(default_factory=dict, repr=False)

    # ----------------------------------------------------------------------------------- geometry helpers
    @property
    def shape(self) -> tuple[int, int]:
        return self.height.shape

    @property
    def n_buildings(self) -> int:
        return len(self.facade_rgb) - 1

    def cell_of(self, east_m, north_m):
        """(row, col) integer cell indices of ENU positions (may fall outside the grid)."""
        return (np.floor(np.asarray(north_m) / self.cell_m).astype(np.int64),
                np.floor(np.asarray(east_m) / self.cell_m).astype(np.int64))

    def sample(self, layer: np.ndarray, east_m, north_m, outside=0):
        """Nearest-cell lookup of ``layer`` at ENU positions; ``outside`` beyond the grid."""
        r, c = self.cell_of(east_m, north_m)
        inside = (r >= 0) & (r < self.shape[0]) & (c >= 0) & (c < self.shape[1])
        out = layer[np.clip(r, 0, self.shape[0] - 1), np.clip(c, 0, self.shape[1] - 1)]
        if np.ndim(out) > np.ndim(r):
            return np.where(inside[..., None], out, np.asarray(outside, dtype=out.dtype))
        return np.where(inside, out, np.asarray(outside, dtype=out.dtype))

    # ----------------------------------------------------------------------------------- car compositing
    def layers(self, cars: str = "none") -> CityLayers:
        """The static layers with the car set ``cars`` ("none", "both", "aerial", "ground", "all") drawn in.

        Cached on the city; the arrays are shared, do not modify them.
        """
        if cars not in CAR_VIEWS:
            raise ValueError(f"cars must be one of {sorted(CAR_VIEWS)}, got {cars!r}")
        key = ("layers", cars)
        if key not in self._cache:
            sel = np.isin(self.cars["set"], CAR_VIEWS[cars]) if len(self.cars) else np.zeros(0, bool)
            if not sel.any():
                self._cache[key] = CityLayers(self.height, self.top_rgb, self.surface, self.object_id)
            else:
                h, top, surf = self.height.copy(), self.top_rgb.copy(), self.surface.copy()
                _draw_cars(self.cars[sel], h, top, surf, self.cell_m)
                # a car under a tree is hidden by the canopy (from above and for rays that hit the canopy)
                canopy = self.surface == SURFACE_TREE
                h[canopy], top[canopy], surf[canopy] = self.height[canopy], self.top_rgb[canopy], SURFACE_TREE
                self._cache[key] = CityLayers(h, top, surf, self.object_id)
        return self._cache[key]

    def under_canopy_layers(self, cars: str = "none") -> CityLayers:
        """The world as seen below the tree canopies: canopies removed (the ground, hedge... under them
        restored), trunks standing (``SURFACE_TREE`` columns up to the canopy base), cars of the set drawn."""
        key = ("under", cars)
        if key not in self._cache:
            h, top, surf = self.height.copy(), self.top_rgb.copy(), self.surface.copy()
            oid = self.object_id.copy()
            hf, tf, sf, of = h.reshape(-1), top.reshape(-1, 3), surf.reshape(-1), oid.reshape(-1)
            hf[self.under_idx] = self.under_height
            tf[self.under_idx] = self.under_rgb
            sf[self.under_idx] = self.under_surface
            of[self.under_idx] = 0
            sel = np.isin(self.cars["set"], CAR_VIEWS[cars]) if len(self.cars) else np.zeros(0, bool)
            if sel.any():
                _draw_cars(self.cars[sel], h, top, surf, self.cell_m)
            rr = max(1, int(round(0.2 / self.cell_m)))
            for k, t in enumerate(self.trees):
                r, c = int(t["north"] / self.cell_m), int(t["east"] / self.cell_m)
                if 0 <= r < h.shape[0] and 0 <= c < h.shape[1]:
                    sl = (slice(max(r - rr + 1, 0), r + rr), slice(max(c - rr + 1, 0), c + rr))
                    h[sl] = np.maximum(h[sl], t["base"] + 0.3)
                    surf[sl] = SURFACE_TREE
                    top[sl] = (77, 61, 46)
                    oid[sl] = -(k + 1)
            self._cache[key] = CityLayers(h, top, surf, oid)
        return self._cache[key]

    def free_space(self, clearance_m: float = 1.2) -> np.ndarray:
        """bool mask of cells where a street-level camera can stand: on the driving lanes of a road, no car
        of any set, tree or building within ``clearance_m``."""
        key = ("free", round(clearance_m, 3))
        if key not in self._cache:
            lay = self.layers("all")
            road = (self.surface == SURFACE_ROAD) | (self.surface == SURFACE_MARKING)
            d_road = cv2.distanceTransform(road.astype(np.uint8), cv2.DIST_L2, 5) * self.cell_m
            blocked = (lay.height > 0.05).astype(np.uint8)
            d_block = cv2.distanceTransform(1 - blocked, cv2.DIST_L2, 5) * self.cell_m
            self._cache[key] = (d_road >= 2.2) & (d_block >= clearance_m)
        return self._cache[key]

    # ----------------------------------------------------------------------------------- hand-made worlds
    @classmethod
    def blank(cls, size_m, cell_m: float = 0.25, seed: int = 0,
              ground_rgb=(110, 110, 108), surface: int = SURFACE_ROAD) -> "City":
        """A flat, empty world (for tests and hand-made scenes); add things with :meth:`add_box`."""
        w_m, h_m = _as_size(size_m)
        rows, cols = int(round(h_m / cell_m)), int(round(w_m / cell_m))
        top = np.empty((rows, cols, 3), np.uint8)
        top[:] = np.asarray(ground_rgb, np.uint8)
        return cls(seed=seed, style="blank", cell_m=cell_m, size_m=(cols * cell_m, rows * cell_m),
                   height=np.zeros((rows, cols), np.float32), surface=np.full((rows, cols), surface, np.uint8),
                   top_rgb=top, object_id=np.zeros((rows, cols), np.int32),
                   facade_rgb=np.zeros((1, 3), np.uint8), window_rgb=np.zeros((1, 3), np.uint8),
                   floor_m=np.full(1, 3.5, np.float32), window_style=np.zeros(1, np.uint8),
                   trees=np.zeros(0, TREE_DTYPE), cars=np.zeros(0, CAR_DTYPE), outside_rgb=tuple(ground_rgb))

    def add_box(self, east0_m, north0_m, east1_m, north1_m, height_m, roof_rgb=(150, 150, 150),
                facade_rgb=(200, 80, 60), window_rgb=(40, 46, 58), floor_m=3.5,
                window_style=WINDOW_PUNCHED) -> int:
        """Add a flat-roofed building on the axis-aligned rectangle; returns its building id."""
        self._cache.clear()
        r0, c0 = self.cell_of(east0_m, north0_m)
        r1, c1 = self.cell_of(east1_m, north1_m)
        sl = (slice(max(int(r0), 0), max(int(r1), 0)), slice(max(int(c0), 0), max(int(c1), 0)))
        bid = len(self.facade_rgb)
        self.height[sl] = height_m
        self.surface[sl] = SURFACE_BUILDING
        self.top_rgb[sl] = np.asarray(roof_rgb, np.uint8)
        self.object_id[sl] = bid
        self.facade_rgb = np.vstack([self.facade_rgb, np.asarray(facade_rgb, np.uint8)[None]])
        self.window_rgb = np.vstack([self.window_rgb, np.asarray(window_rgb, np.uint8)[None]])
        self.floor_m = np.append(self.floor_m, np.float32(floor_m))
        self.window_style = np.append(self.window_style, np.uint8(window_style))
        return bid


def _as_size(size_m) -> tuple[float, float]:
    if np.ndim(size_m) == 0:
        return float(size_m), float(size_m)
    w, h = size_m
    return float(w), float(h)


# ---------------------------------------------------------------------------------------------- drawing
def _px(points_en: np.ndarray, cell_m: float) -> np.ndarray:
    """ENU metres -> cv2 fixed-point pixel coordinates (x = col, y = row; pixel centres at integers)."""
    return np.round((np.asarray(points_en, np.float64) / cell_m - 0.5) * _ONE).astype(np.int32).reshape(-1, 1, 2)


def _thick(width_m: float, cell_m: float) -> int:
    return max(1, int(round(width_m / cell_m)))


def _rect_corners(cx, cy, length, width, angle):
    """Corners (N, 4, 2) of oriented rectangles; ``angle`` is the direction of ``length`` (rad from east)."""
    ca, sa = np.cos(angle), np.sin(angle)
    ux, uy = ca * length / 2, sa * length / 2
    vx, vy = -sa * width / 2, ca * width / 2
    cx, cy = np.asarray(cx), np.asarray(cy)
    return np.stack([np.stack([cx + ux + vx, cy + uy + vy], -1), np.stack([cx - ux + vx, cy - uy + vy], -1),
                     np.stack([cx - ux - vx, cy - uy - vy], -1), np.stack([cx + ux - vx, cy + uy - vy], -1)], -2)


def _draw_cars(cars: np.ndarray, height: np.ndarray, top: np.ndarray, surface: np.ndarray, cell_m: float):
    if len(cars) == 0:
        return
    body = _rect_corners(cars["east"], cars["north"], cars["length"], cars["width"], cars["angle"])
    # windows: a band across the car, in its middle 55 %, slightly narrower than the body
    glass = _rect_corners(cars["east"], cars["north"], cars["length"] * 0.55, cars["width"] * 0.86, cars["angle"])
    roof = _rect_corners(cars["east"] + 0.06 * cars["length"] * np.cos(cars["angle"]),
                         cars["north"] + 0.06 * cars["length"] * np.sin(cars["angle"]),
                         cars["length"] * 0.30, cars["width"] * 0.80, cars["angle"])
    for k in range(len(cars)):
        rgb = tuple(int(v) for v in cars["rgb"][k])
        pb = _px(body[k], cell_m)
        pg = _px(glass[k], cell_m)
        # lower body over the whole footprint, the cabin (glass, roof) on its middle part
        cv2.fillPoly(height, [pb], float(cars["height"][k]) * CAR_BODY_FRACTION, cv2.LINE_8, _SHIFT)
        cv2.fillPoly(height, [pg], float(cars["height"][k]), cv2.LINE_8, _SHIFT)
        cv2.fillPoly(surface, [pb], SURFACE_CAR, cv2.LINE_8, _SHIFT)
        cv2.fillPoly(top, [pb], rgb, cv2.LINE_8, _SHIFT)
        cv2.fillPoly(top, [pg], (28, 32, 38), cv2.LINE_8, _SHIFT)
        cv2.fillPoly(top, [_px(roof[k], cell_m)], rgb, cv2.LINE_8, _SHIFT)


# ---------------------------------------------------------------------------------------------- noise
def _value_noise(rng: np.random.Generator, shape, scale_cells: float) -> np.ndarray:
    """Smooth noise in [-1, 1] with features about ``scale_cells`` wide (float32)."""
    gh = max(2, int(math.ceil(shape[0] / scale_cells)) + 2)
    gw = max(2, int(math.ceil(shape[1] / scale_cells)) + 2)
    g = rng.uniform(-1, 1, (gh, gw)).astype(np.float32)
    big = cv2.resize(g, (int(gw * scale_cells), int(gh * scale_cells)), interpolation=cv2.INTER_CUBIC)
    return np.clip(big[: shape[0], : shape[1]], -1, 1)


# ---------------------------------------------------------------------------------------------- streets
_STYLE = {
    "centre": dict(block_a=(55, 95), block_b=(70, 165), wobble=(0.0, 1.5), drop=0.03, diagonals=(0, 2),
                   arcs=(0, 0), avenue_p=0.3, street_w=(11, 15), avenue_w=(18, 24), sidewalk=(3.0, 5.0),
                   lane_p=0.0, street_trees=0.45, parked=0.55, moving=2.0, density=(0.65, 1.0), crosswalk=0.9),
    "suburb": dict(block_a=(72, 120), block_b=(95, 220), wobble=(2.0, 14.0), drop=0.16, diagonals=(0, 1),
                   arcs=(1, 3), avenue_p=0.12, street_w=(8, 11), avenue_w=(14, 18), sidewalk=(1.6, 2.6),
                   lane_p=0.35, street_trees=0.85, parked=0.28, moving=0.8, density=(0.0, 0.25), crosswalk=0.3),
    "mixed": dict(block_a=(60, 112), block_b=(75, 190), wobble=(0.5, 8.0), drop=0.09, diagonals=(0, 2),
                  arcs=(0, 2), avenue_p=0.22, street_w=(9, 14), avenue_w=(16, 22), sidewalk=(2.0, 4.0),
                  lane_p=0.12, street_trees=0.65, parked=0.45, moving=1.4, density=None, crosswalk=0.65),
}


def _wobble_fn(rng, amp_range):
    amp = rng.uniform(*amp_range)
    lam1, lam2 = rng.uniform(140, 420), rng.uniform(60, 140)
    ph1, ph2 = rng.uniform(0, 2 * np.pi, 2)
    a2 = amp * rng.uniform(0.0, 0.35)
    return lambda t: amp * np.sin(2 * np.pi * t / lam1 + ph1) + a2 * np.sin(2 * np.pi * t / lam2 + ph2)


def _make_streets(rng: np.random.Generator, size: tuple[float, float], prm: dict) -> list[Street]:
    w_m, h_m = size
    centre = np.array([w_m / 2, h_m / 2])
    reach = 0.5 * math.hypot(w_m, h_m) + 60.0
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

    def widths(kind):
        if kind == "avenue":
            return rng.uniform(*prm["avenue_w"]), rng.uniform(prm["sidewalk"][0] + 0.5, prm["sidewalk"][1] + 1.0)
        if kind == "lane":
            return rng.uniform(6.5, 8.0), rng.uniform(1.2, 2.0)
        return rng.uniform(*prm["street_w"]), rng.uniform(*prm["sidewalk"])

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
            w, sw = widths(kind)
            wob = _wobble_fn(rng, prm["wobble"] if kind != "avenue" else (0.0, prm["wobble"][1] * 0.3))
            ext = 14.0
            for k, j in true_runs(keep):
                t0 = bounds[k] - (ext if k > 0 else 0.0)
                t1 = bounds[j + 1] + (ext if j + 1 < len(keep) else 0.0)
                t = np.arange(t0, t1 + 1e-9, 5.0)
                pts = centre + o * v + t[:, None] * u + wob(t)[:, None] * v
                streets.append(Street(pts, w, sw, kind))
    # diagonal avenues
    for _ in range(int(rng.integers(prm["diagonals"][0], prm["diagonals"][1] + 1))):
        ang = theta + np.pi / 4 + rng.normal(0, math.radians(12)) + (np.pi / 2 if rng.random() < 0.5 else 0.0)
        u = np.array([math.cos(ang), math.sin(ang)])
        q = centre + rng.uniform(-0.35, 0.35, 2) * np.array([w_m, h_m])
        t = np.arange(-reach, reach + 1e-9, 5.0)
        w, sw = widths("avenue")
        streets.append(Street(q + t[:, None] * u, w, sw, "avenue"))
    # curved streets
    for _ in range(int(rng.integers(prm["arcs"][0], prm["arcs"][1] + 1))):
        c = rng.uniform(0.1, 0.9, 2) * np.array([w_m, h_m])
        rad = rng.uniform(50, 200)
        a0 = rng.uniform(0, 2 * np.pi)
        span = rng.uniform(np.pi / 2, 1.3 * np.pi)
        a = a0 + np.arange(0, span, 5.0 / rad)
        w, sw = widths("street")
        streets.append(Street(c + rad * np.stack([np.cos(a), np.sin(a)], -1), w, sw, "street"))
    # keep those that touch the city
    out = []
    for s in streets:
        p = s.points
        if (p[:, 0].max() > -30 and p[:, 0].min() < w_m + 30 and p[:, 1].max() > -30 and p[:, 1].min() < h_m + 30):
            out.append(s)
    return out


def _arclen(pts: np.ndarray) -> np.ndarray:
    return np.concatenate([[0.0], np.cumsum(np.hypot(*np.diff(pts, axis=0).T))])


def _intersections(streets: list[Street], grid_m: float = 25.0):
    """All crossings between street centre lines: list of (i, s_i, j, s_j, point) with arc positions s.

    Segments are bucketed on a ``grid_m`` grid so that only segments sharing a bucket are tested.
    """
    if len(streets) < 2:
        return []
    p0s, p1s, sid, s0s, s1s = [], [], [], [], []
    for k, s in enumerate(streets):
        p = s.points
        lens = _arclen(p)
        p0s.append(p[:-1])
        p1s.append(p[1:])
        sid.append(np.full(len(p) - 1, k))
        s0s.append(lens[:-1])
        s1s.append(lens[1:])
    p0, p1 = np.concatenate(p0s), np.concatenate(p1s)
    sid, s0, s1 = np.concatenate(sid), np.concatenate(s0s), np.concatenate(s1s)
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
        return []
    pa, pb = np.concatenate(pa), np.concatenate(pb)
    keep = sid[pa] != sid[pb]
    pa, pb = pa[keep], pb[keep]
    swap = sid[pa] > sid[pb]
    pa, pb = np.where(swap, pb, pa), np.where(swap, pa, pb)
    pairs = np.unique(np.stack([pa, pb], -1), axis=0)
    if len(pairs) == 0:
        return []
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


def _along(pts: np.ndarray, s_query: np.ndarray, lateral: float = 0.0):
    """Points and unit directions at arc positions ``s_query`` along a polyline, shifted ``lateral`` m left."""
    s = _arclen(pts)
    s_query = np.clip(np.asarray(s_query, float), 0, s[-1])
    x = np.interp(s_query, s, pts[:, 0])
    y = np.interp(s_query, s, pts[:, 1])
    idx = np.clip(np.searchsorted(s, s_query, side="right") - 1, 0, len(pts) - 2)
    d = pts[idx + 1] - pts[idx]
    d = d / np.maximum(np.hypot(d[:, 0], d[:, 1]), 1e-9)[:, None]
    nrm = np.stack([-d[:, 1], d[:, 0]], -1)
    return np.stack([x, y], -1) + lateral * nrm, d


# ---------------------------------------------------------------------------------------------- generator
class _Builder:
    """Mutable state while a city is generated."""

    def __init__(self, seed: int, size: tuple[float, float], style: str, cell_m: float):
        self.seed, self.style, self.cell = seed, style, cell_m
        ss = np.random.SeedSequence([int(seed) & 0xFFFFFFFF, 0x5EED])
        kids = ss.spawn(8)
        self.rng_net, self.rng_blocks, self.rng_trees, self.rng_cars, self.rng_tex, self.rng_pal, \
            self.rng_dens, self.rng_misc = (np.random.default_rng(k) for k in kids)
        self.prm = _STYLE[style]
        self.rows, self.cols = int(round(size[1] / cell_m)), int(round(size[0] / cell_m))
        self.size = (self.cols * cell_m, self.rows * cell_m)
        shape = (self.rows, self.cols)
        self.height = np.zeros(shape, np.float32)
        self.surface = np.full(shape, SURFACE_GROUND, np.uint8)
        self.top = np.zeros(shape + (3,), np.uint8)
        self.oid = np.zeros(shape, np.int32)
        self.facades, self.windows, self.floors, self.wstyles = [(0, 0, 0)], [(0, 0, 0)], [3.5], [0]
        self.trees: list[tuple] = []
        self.cars: list[tuple] = []
        self._palettes()
        self._density_field()

    # -------------------------------------------------------------------------------- per-city look
    def _palettes(self):
        r = self.rng_pal

        def subset(pal, k):
            idx = r.choice(len(pal), size=min(k, len(pal)), replace=False)
            w = r.dirichlet(np.ones(len(idx)) * 1.5)
            shift = r.normal(0, 8, 3)
            return np.clip(pal[idx] + shift, 0, 255), w

        self.flat_roofs = subset(_FLAT_ROOFS, int(r.integers(4, 8)))
        self.pitched_roofs = subset(_PITCHED_ROOFS, int(r.integers(3, 6)))
        self.facade_pal = subset(_FACADES, int(r.integers(5, 10)))
        self.house_pal = subset(_HOUSE_FACADES, int(r.integers(4, 8)))
        self.window_pal = subset(_WINDOWS, int(r.integers(2, 5)))
        g = r.uniform(0.85, 1.1)
        self.asphalt = np.clip(np.array([78, 80, 84]) * r.uniform(0.8, 1.25) + r.normal(0, 3, 3), 30, 150)
        self.parking_asphalt = np.clip(self.asphalt * r.uniform(0.9, 1.2), 30, 170)
        self.sidewalk = np.clip(np.array([168, 164, 156]) * r.uniform(0.85, 1.1) + r.normal(0, 5, 3), 90, 230)
        self.grass = np.clip(np.array([92, 132, 62]) * g + r.normal(0, 7, 3), 30, 200)
        self.garden = np.clip(self.grass * r.uniform(0.9, 1.1) + np.array([6, 4, -2]), 30, 210)
        self.tree_green = np.clip(np.array([58, 92, 46]) * r.uniform(0.85, 1.15) + r.normal(0, 6, 3), 20, 160)
        self.path = np.clip(np.array([186, 170, 138]) + r.normal(0, 8, 3), 90, 240)
        self.plaza = np.clip(np.array([196, 186, 168]) + r.normal(0, 10, 3), 100, 240)
        self.water = np.clip(np.array([52, 98, 120]) + r.normal(0, 8, 3), 20, 200)
        self.yard = np.clip(np.array([120, 118, 112]) + r.normal(0, 8, 3), 60, 200)
        self.outside = tuple(int(v) for v in np.clip(np.array([140, 132, 104]) + r.normal(0, 8, 3), 60, 220))
        self.marking_y = (226, 186, 40) if r.random() < 0.7 else (235, 235, 230)

    def _pick(self, pal_w, rng=None):
        pal, w = pal_w
        rng = rng or self.rng_blocks
        return pal[rng.choice(len(pal), p=w)]

    def _density_field(self):
        r = self.rng_dens
        shape = (max(2, self.rows // 40), max(2, self.cols // 40))  # 10 m resolution at 0.25 m cells
        yy, xx = np.meshgrid((np.arange(shape[0]) + 0.5) / shape[0] * self.size[1],
                             (np.arange(shape[1]) + 0.5) / shape[1] * self.size[0], indexing="ij")
        noise = _value_noise(r, shape, max(2.0, 120.0 / (self.size[0] / shape[1])))
        dens = self.prm["density"]
        if dens is None:  # mixed: a downtown somewhere around, density falls off with distance
            c = r.uniform(-0.3, 1.3, 2) * np.array(self.size)
            sigma = r.uniform(150, 600)
            d2 = (xx - c[0]) ** 2 + (yy - c[1]) ** 2
            p = np.exp(-d2 / (2 * sigma**2)) * r.uniform(0.7, 1.1) + 0.15 * noise
        else:
            p = dens[0] + (dens[1] - dens[0]) * (0.5 + 0.5 * noise)
        self.dens_grid = np.clip(p, 0, 1).astype(np.float32)

    def density(self, e, n) -> float:
        g = self.dens_grid
        i = min(g.shape[0] - 1, max(0, int(n / self.size[1] * g.shape[0])))
        j = min(g.shape[1] - 1, max(0, int(e / self.size[0] * g.shape[1])))
        return float(g[i, j])

    # -------------------------------------------------------------------------------- objects
    def new_building(self, facade, window, floor, wstyle) -> int:
        self.facades.append(tuple(int(v) for v in np.clip(facade, 0, 255)))
        self.windows.append(tuple(int(v) for v in np.clip(window, 0, 255)))
        self.floors.append(float(floor))
        self.wstyles.append(int(wstyle))
        return len(self.facades) - 1

    def add_tree(self, e, n, radius, top, base=None, rng=None):
        rng = rng or self.rng_trees
        base = top * rng.uniform(0.28, 0.42) if base is None else base
        rgb = np.clip(self.tree_green * rng.uniform(0.75, 1.25) + rng.normal(0, 6, 3), 15, 200)
        self.trees.append((e, n, radius, top, base, tuple(int(v) for v in rgb)))

    def add_car(self, e, n, angle, cset, rng, length=None):
        length = length if length is not None else rng.uniform(4.1, 5.0)
        width = rng.uniform(1.75, 1.95)
        hgt = rng.uniform(1.4, 1.75)
        rgb = _CARS[rng.integers(len(_CARS))] + rng.normal(0, 6, 3)
        self.cars.append((e, n, length, width, hgt, angle, tuple(int(v) for v in np.clip(rgb, 0, 255)), cset))

    def parked_set(self, rng) -> int:
        r = rng.random()
        return CARS_BOTH if r < 0.7 else (CARS_AERIAL_ONLY if r < 0.85 else CARS_GROUND_ONLY)


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


def generate_city(seed: int, size_m, style: str = "mixed", cell_m: float = 0.25) -> City:
    """A procedural city of ``size_m`` metres (a number or ``(east, north)``), fully determined by ``seed``.

    ``style``: ``"centre"`` (dense blocks, mid- to high-rise, plazas), ``"suburb"`` (curvy streets, houses with
    gable/hip roofs, gardens, pools, hedges, many trees) or ``"mixed"`` (a downtown somewhere and density falling
    off with distance from it).
    """
    if style not in STYLES:
        raise ValueError(f"style must be one of {STYLES}, got {style!r}")
    size = _as_size(size_m)
    if min(size) < 20 or cell_m <= 0:
        raise ValueError("size_m must be at least 20 m and cell_m positive")
    b = _Builder(int(seed), size, style, float(cell_m))
    streets = _make_streets(b.rng_net, b.size, b.prm)
    crossings = _intersections(streets)
    road, walk = _raster_streets(b, streets)
    _fill_blocks(b, walk)
    _paint_streets(b, streets, crossings, road, walk)
    _street_furniture(b, streets, crossings)
    _paint_trees(b)
    _texture(b)
    trees = np.array([(t[0], t[1], t[2], t[3], t[4], t[5]) for t in b.trees], dtype=TREE_DTYPE)
    cars = np.array(b.cars, dtype=CAR_DTYPE) if b.cars else np.zeros(0, CAR_DTYPE)
    if len(cars):  # drop cars outside the grid
        inside = (cars["east"] > 0) & (cars["east"] < b.size[0]) & (cars["north"] > 0) & (cars["north"] < b.size[1])
        cars = cars[inside]
    return City(seed=int(seed), style=style, cell_m=float(cell_m), size_m=b.size, height=b.height,
                surface=b.surface, top_rgb=b.top, object_id=b.oid,
                facade_rgb=np.array(b.facades, np.uint8), window_rgb=np.array(b.windows, np.uint8),
                floor_m=np.array(b.floors, np.float32), window_style=np.array(b.wstyles, np.uint8),
                trees=trees, cars=cars, streets=streets, outside_rgb=b.outside, under_idx=b.under[0],
                under_rgb=b.under[1], under_surface=b.under[2], under_height=b.under[3])


# ---------------------------------------------------------------------------------------------- streets raster
def _raster_streets(b: _Builder, streets: list[Street]):
    shape = (b.rows, b.cols)
    road = np.zeros(shape, np.uint8)
    walk = np.zeros(shape, np.uint8)
    for s in streets:
        p = _px(s.points, b.cell)
        cv2.polylines(walk, [p], False, 1, _thick(s.width_m + 2 * s.sidewalk_m, b.cell), cv2.LINE_8, _SHIFT)
        cv2.polylines(road, [p], False, 1, _thick(s.width_m, b.cell), cv2.LINE_8, _SHIFT)
    return road.astype(bool), walk.astype(bool)


def _paint_streets(b: _Builder, streets, crossings, road, walk):
    """Sidewalks, carriageways, centre lines, lane lines and zebra crossings (after the blocks)."""
    side = walk & ~road
    b.surface[side] = SURFACE_SIDEWALK
    b.top[side] = b.sidewalk.astype(np.uint8)
    # kerb line: a slightly darker 1-cell rim on the road side of the sidewalk
    b.surface[road] = SURFACE_ROAD
    b.top[road] = b.asphalt.astype(np.uint8)
    b.height[walk] = 0.0
    b.oid[walk] = 0
    cell = b.cell
    mark = np.zeros((b.rows, b.cols), np.uint8)
    yellow = np.zeros((b.rows, b.cols), np.uint8)
    by_street: dict[int, list[tuple[float, float]]] = {}
    for i, si, j, sj, _p in crossings:
        by_street.setdefault(i, []).append((si, streets[j].width_m / 2 + streets[j].sidewalk_m + 3.0))
        by_street.setdefault(j, []).append((sj, streets[i].width_m / 2 + streets[i].sidewalk_m + 3.0))
    rng = b.rng_misc
    for k, s in enumerate(streets):
        if s.kind == "lane":
            continue
        total = _arclen(s.points)[-1]
        skip = by_street.get(k, [])

        def free(sq, pad=0.0):
            ok = np.ones(len(sq), bool)
            for sc, r in skip:
                ok &= np.abs(sq - sc) > r + pad
            return ok

        if s.kind == "avenue":  # double yellow centre, dashed white lane lines
            sq = np.arange(0, total, 1.0)
            ok = free(sq)
            for lat, tgt, dash in ((0.2, yellow, False), (-0.2, yellow, False),
                                   (s.width_m / 4, mark, True), (-s.width_m / 4, mark, True)):
                pts, _ = _along(s.points, sq, lat)
                on = ok & ((sq % 9.0) < 3.0) if dash else ok
                _draw_runs(tgt, pts, on, cell, 0.15 if not dash else 0.15)
        else:
            sq = np.arange(0, total, 1.0)
            on = free(sq) & ((sq % 9.0) < 3.0)
            pts, _ = _along(s.points, sq, 0.0)
            _draw_runs(yellow if b.marking_y[2] < 100 and rng.random() < 0.5 else mark, pts, on, cell, 0.15)
    # zebra crossings just outside each intersection
    for i, si, j, sj, _p in crossings:
        for a, sa, o in ((i, si, j), (j, sj, i)):
            st, other = streets[a], streets[o]
            if st.kind == "lane" or rng.random() > b.prm["crosswalk"]:
                continue
            for sgn in (-1, 1):
                off = sa + sgn * (other.width_m / 2 + other.sidewalk_m + 1.5)
                ctr, d = _along(st.points, [off], 0.0)
                ctr, d = ctr[0], d[0]
                ang = math.atan2(d[1], d[0])
                n_stripes = int(st.width_m / 1.1)
                lat = (np.arange(n_stripes) - (n_stripes - 1) / 2) * 1.1
                nrm = np.array([-d[1], d[0]])
                cs = ctr[None] + lat[:, None] * nrm[None]
                rects = _rect_corners(cs[:, 0], cs[:, 1], np.full(n_stripes, 3.0), np.full(n_stripes, 0.55),
                                      np.full(n_stripes, ang))
                cv2.fillPoly(mark, [_px(r_, cell) for r_ in rects], 1, cv2.LINE_8, _SHIFT)
    m = (mark > 0) & road
    y = (yellow > 0) & road & ~m
    b.surface[m | y] = SURFACE_MARKING
    b.top[m] = (232, 232, 226)
    b.top[y] = b.marking_y


def _draw_runs(img, pts, on, cell, width_m):
    """Draw the polyline pieces of ``pts`` where ``on`` is true."""
    if not on.any():
        return
    idx = np.nonzero(on)[0]
    breaks = np.nonzero(np.diff(idx) > 1)[0]
    starts = np.concatenate([[0], breaks + 1])
    ends = np.concatenate([breaks + 1, [len(idx)]])
    polys = []
    for a, z in zip(starts, ends):
        seg = pts[idx[a]: idx[z - 1] + 2] if idx[z - 1] + 2 <= len(pts) else pts[idx[a]: idx[z - 1] + 1]
        if len(seg) >= 2:
            polys.append(_px(seg, cell))
    if polys:
        cv2.polylines(img, polys, False, 1, _thick(width_m, cell), cv2.LINE_8, _SHIFT)


def _street_furniture(b: _Builder, streets, crossings):
    """Street trees on the sidewalks, parked cars along the kerbs, moving cars in the lanes."""
    near: dict[int, list[tuple[float, float]]] = {}
    for i, si, j, sj, _p in crossings:
        near.setdefault(i, []).append((si, streets[j].width_m / 2 + streets[j].sidewalk_m + 5.0))
        near.setdefault(j, []).append((sj, streets[i].width_m / 2 + streets[i].sidewalk_m + 5.0))
    rt, rc = b.rng_trees, b.rng_cars
    w_m, h_m = b.size
    for k, s in enumerate(streets):
        total = _arclen(s.points)[-1]

        def free(sq):
            ok = np.ones(len(sq), bool)
            for sc, r in near.get(k, []):
                ok &= np.abs(sq - sc) > r
            return ok

        # trees: on both sides (or one), on the sidewalk (or the verge of a narrow one)
        if rt.random() < b.prm["street_trees"]:
            spacing = rt.uniform(7, 13)
            radius, top = rt.uniform(1.8, 3.8), rt.uniform(6, 12)
            for side in (-1, 1):
                if rt.random() < 0.2:
                    continue
                sq = np.arange(rt.uniform(0, spacing), total, spacing)
                sq = sq[free(sq)]
                lat = side * (s.width_m / 2 + max(0.9, s.sidewalk_m * 0.5))
                pts, _ = _along(s.points, sq, lat)
                for p in pts:
                    if -5 < p[0] < w_m + 5 and -5 < p[1] < h_m + 5 and rt.random() > 0.12:
                        r_, c_ = int(p[1] / b.cell), int(p[0] / b.cell)
                        if 0 <= r_ < b.rows and 0 <= c_ < b.cols and b.surface[r_, c_] == SURFACE_ROAD:
                            continue
                        b.add_tree(p[0], p[1], radius * rt.uniform(0.85, 1.15), top * rt.uniform(0.85, 1.15))
        # parked cars along the kerb
        if s.kind != "lane" or rc.random() < 0.5:
            p_park = b.prm["parked"] * (0.5 if s.kind == "avenue" else 1.0)
            for side in (-1, 1):
                sq = np.arange(rc.uniform(0, 6), total, 6.2)
                sq = sq[free(sq) & (rc.random(len(sq)) < p_park)]
                lat = side * (s.width_m / 2 - 1.25)
                pts, d = _along(s.points, sq, lat)
                for p, dd in zip(pts, d):
                    if 0 < p[0] < w_m and 0 < p[1] < h_m:
                        b.add_car(p[0], p[1], math.atan2(dd[1], dd[0]), b.parked_set(rc), rc)
        # moving cars in the travel lanes: they are only in one of the two views
        if s.kind != "lane":
            n_mov = rc.poisson(b.prm["moving"] * total / 100.0)
            sq = rc.uniform(0, total, n_mov)
            sq = sq[free(sq)]
            lanes = rc.choice([-1, 1], len(sq)) * (s.width_m / 4 if s.kind == "avenue" else s.width_m / 5)
            for q, lat in zip(sq, lanes):
                pts, d = _along(s.points, [q], lat)
                p, dd = pts[0], d[0]
                if 0 < p[0] < w_m and 0 < p[1] < h_m:
                    b.add_car(p[0], p[1], math.atan2(dd[1], dd[0]),
                              CARS_AERIAL_ONLY if rc.random() < 0.5 else CARS_GROUND_ONLY, rc)


# ---------------------------------------------------------------------------------------------- blocks
def _fill_blocks(b: _Builder, walk: np.ndarray):
    free = (~walk).astype(np.uint8)
    n, labels, stats, cents = cv2.connectedComponentsWithStats(free, connectivity=4, ltype=cv2.CV_32S)
    dist = cv2.distanceTransform(free, cv2.DIST_L2, 5)
    dist *= b.cell
    b.surface[:] = SURFACE_GROUND
    b.top[:] = b.outside
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
        blk = _Block(b, ys, xs, e, nn, dist[ys, xs], dist)
        p = b.density(float(cents[k, 0] * cell), float(cents[k, 1] * cell))
        a = area_m2[k]
        r = b.rng_blocks.random()
        if a < 250:
            blk.fill_plain(SURFACE_GRASS if r < 0.6 else SURFACE_PLAZA)
            continue
        if blk.short < 18 or blk.long < 18:
            blk.fill_plain(SURFACE_GRASS if r < 0.5 else SURFACE_PLAZA, trees=0.5)
            continue
        if p > 0.6:
            use = "dense" if r < 0.82 else ("plaza" if r < 0.87 else ("park" if r < 0.94 else "parking"))
        elif p > 0.3:
            use = ("dense" if r < 0.5 else "houses" if r < 0.65 else "box" if r < 0.77 else "park" if r < 0.9
                   else "parking")
        else:
            use = "houses" if r < 0.76 else ("park" if r < 0.87 else ("box" if r < 0.95 else "parking"))
        if use == "box" and blk.short < 60:
            use = "houses" if p < 0.45 else "dense"
        getattr(blk, "fill_" + use)(p)


class _Block:
    """One city block: its cells and a local frame (``a`` along the long axis, ``dist`` to the street)."""

    def __init__(self, b: _Builder, ys, xs, e, n, dist, dist_map):
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
        return self.c[0] + a * self.axis[0] + bb * self.perp[0], self.c[1] + a * self.axis[1] + bb * self.perp[1]

    def set(self, mask, surface=None, rgb=None, height=None, oid=None):
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

    # ---------------------------------------------------------------------------- uses
    def fill_plain(self, surface, trees=0.0):
        b = self.b
        all_ = np.ones(len(self.e), bool)
        rgb = b.grass if surface == SURFACE_GRASS else b.plaza
        self.set(all_, surface, rgb)
        if trees and self.rng.random() < trees:
            i = self.rng.integers(len(self.e))
            if self.dist[i] > 1.5:
                b.add_tree(self.e[i], self.n[i], self.rng.uniform(2, 4), self.rng.uniform(6, 11))

    def fill_dense(self, p):
        b, rng = self.b, self.rng
        rows = 2 if self.short > 44 else 1
        lot, nlot, ac, ah = self.lots((8 + 4 * (1 - p), 16 + 12 * p), rows)
        # per-lot parameters
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
        roof = np.array([self.b._pick(b.flat_roofs) for _ in range(nlot)]) * rng.uniform(0.9, 1.1, (nlot, 1))
        facade = np.array([self.b._pick(b.facade_pal) for _ in range(nlot)]) * rng.uniform(0.88, 1.1, (nlot, 1))
        window = np.array([self.b._pick(b.window_pal) for _ in range(nlot)])
        wstyle = np.where(tower | (rng.random(nlot) < 0.15), WINDOW_RIBBON, WINDOW_PUNCHED)
        ids = np.array([b.new_building(facade[i], window[i], floor_h[i], wstyle[i]) for i in range(nlot)])
        d = self.dist
        s, dp = setback[lot], depth[lot]
        rel_a = self.a - ac[lot]
        half = ah[lot] - gap[lot]
        inb = (d >= s) & (d < s + dp) & (np.abs(rel_a) < half) & ~empty[lot]
        # ground: courtyards / yards behind, forecourts in front
        court_rgb = b.yard if rng.random() < 0.6 else b.garden
        self.set(~inb, SURFACE_PLAZA if court_rgb is b.yard else SURFACE_GRASS, court_rgb)
        front = ~inb & (d < s + 0.01)
        self.set(front, SURFACE_PLAZA, b.plaza * 0.95)
        # building heights: podium everywhere, tower on the inner part
        inner = (d > s + 4) & (d < s + dp - 4) & (np.abs(rel_a) < half - 4)
        hgt = np.where(inner, height[lot], podium[lot])
        # parapet: 1 cell rim, a bit higher and darker
        rim = inb & ((d - s < 0.6) | (s + dp - d < 0.6) | (half - np.abs(rel_a) < 0.6))
        rgb = roof[lot]
        rgb = np.where(rim[:, None], rgb * 0.78, rgb)
        rgb = np.where((inner & (podium[lot] < height[lot]))[:, None], rgb * 1.08, rgb)
        self.set(inb, SURFACE_BUILDING, rgb[inb], (hgt + 0.7 * rim)[inb], ids[lot][inb])
        # HVAC boxes / stair housings
        for _ in range(3):
            have = rng.random(nlot) < 0.6
            bx_a = rng.uniform(-1, 1, nlot) * np.maximum(ah - 4, 0)
            bx_d = setback + rng.uniform(3, 9, nlot)
            ha, hd = rng.uniform(0.8, 2.6, nlot), rng.uniform(0.8, 2.2, nlot)
            hh = rng.uniform(1.2, 3.2, nlot)
            shade = rng.uniform(150, 215, nlot)
            box = (inb & have[lot] & (np.abs(rel_a - bx_a[lot]) < ha[lot]) & (np.abs(d - bx_d[lot]) < hd[lot])
                   & (bx_d[lot] + hd[lot] < s + dp - 1))
            if box.any():
                self.set(box, SURFACE_ROOF_DETAIL, np.repeat(shade[lot][box][:, None], 3, 1) * [1, 1, 0.97],
                         hgt[box] + hh[lot][box])
        # a few trees in courtyards
        yard = np.nonzero(~inb & (d > s + dp + 3))[0]
        if len(yard):
            for i in rng.choice(yard, size=min(len(yard), rng.poisson(len(yard) * b.cell ** 2 / 250.0)),
                                replace=False):
                b.add_tree(self.e[i], self.n[i], rng.uniform(2, 4), rng.uniform(5, 10))

    def fill_houses(self, p):
        """Detached houses: one oriented rectangle per lot, facing its nearest street, with a gable, hip or
        flat roof; gardens, driveways, hedges, pools, trees."""
        b, rng = self.b, self.rng
        rows = 2 if self.short > 38 else 1
        lot, nlot, ac, ah = self.lots((12, 24), rows)
        d = self.dist
        rel_a = self.a - ac[lot]
        S = rng.uniform(4, 9, nlot)  # front setback
        D = rng.uniform(8, 13, nlot)  # depth
        side_gap = rng.uniform(1.8, 4.0, nlot)
        hw = np.minimum(np.maximum(ah - side_gap, 3.0), rng.uniform(5, 9, nlot))
        shift = rng.uniform(-1, 1, nlot) * np.maximum(ah - side_gap - hw, 0)
        eave = rng.choice([2.9, 3.1, 5.6, 6.0], nlot) + rng.uniform(-0.2, 0.3, nlot)
        pitch = np.tan(np.radians(rng.uniform(22, 40, nlot)))
        rtype = rng.choice(3, nlot, p=[0.55, 0.33, 0.12])  # gable, hip, flat
        empty = rng.random(nlot) < 0.04
        roof = np.array([b._pick(b.pitched_roofs) for _ in range(nlot)]) * rng.uniform(0.9, 1.1, (nlot, 1))
        roof = np.where((rtype == 2)[:, None], np.array([b._pick(b.flat_roofs) for _ in range(nlot)]), roof)
        facade = np.array([b._pick(b.house_pal) for _ in range(nlot)]) * rng.uniform(0.9, 1.08, (nlot, 1))
        window = np.array([b._pick(b.window_pal) for _ in range(nlot)])
        ids = np.array([b.new_building(facade[i], window[i], rng.uniform(2.7, 3.1), WINDOW_HOUSE)
                        for i in range(nlot)])
        # house centre: the lot cell nearest the lot's front-centre; its depth axis follows the distance
        # gradient there (away from the nearest street)
        score = np.abs(rel_a - shift[lot]) + 3.0 * np.abs(d - (S + D / 2)[lot])
        order = np.lexsort((score, lot))
        present = np.zeros(nlot, bool)
        present[lot] = True
        first = order[np.searchsorted(lot[order], np.arange(nlot)).clip(0, len(order) - 1)]
        empty |= ~present | (np.abs(d[first] - (S + D / 2)) > 1.0)
        ce, cn = self.e[first], self.n[first]
        gx, gy = self.grad(self.ys[first], self.xs[first])
        ge, gn = gx[lot], gy[lot]
        pe, pn = self.e - ce[lot], self.n - cn[lot]
        v = pe * ge + pn * gn  # depth coordinate, street side negative
        u = -pe * gn + pn * ge  # along the street
        inb = (np.abs(u) < hw[lot]) & (np.abs(v) < D[lot] / 2) & (d > 1.0) & ~empty[lot]
        # garden (per-lot lawn tone), driveway, then the house
        lawn = b.garden * rng.uniform(0.85, 1.12, (nlot, 1)) + rng.normal(0, 5, (nlot, 3))
        self.set(np.ones(len(d), bool), SURFACE_GARDEN, lawn[lot])
        dside = rng.choice([-1, 1], nlot)
        du = dside * (hw + 1.7)
        drive = (np.abs(u - du[lot]) < 1.4) & (v < 0.3 * D[lot]) & (v > -(S + D)[lot]) & ~empty[lot]
        self.set(drive & ~inb, SURFACE_DRIVEWAY, np.clip(b.sidewalk * 0.92, 0, 255))
        # hedges along some lot boundaries
        hedge_on = rng.random(nlot) < 0.35
        hedge = hedge_on[lot] & (ah[lot] - np.abs(rel_a) < 0.45) & (d > 1.0) & ~drive & ~inb
        self.set(hedge, SURFACE_HEDGE, b.tree_green * 0.8, rng.uniform(1.0, 1.6))
        # pools in back yards
        pool = rng.random(nlot) < 0.14
        pu = rng.uniform(-2, 2, nlot)
        pv = D / 2 + rng.uniform(3.5, 6, nlot)
        pw, pl = rng.uniform(1.6, 2.8, nlot), rng.uniform(1.2, 2.0, nlot)
        pm = pool[lot] & (np.abs(u - pu[lot]) < pw[lot]) & (np.abs(v - pv[lot]) < pl[lot]) & ~hedge & ~empty[lot]
        self.set(pm, SURFACE_WATER, (70, 170, 205))
        # roofs
        dv = D[lot] / 2 - np.abs(v)
        dh = hw[lot] - np.abs(u)
        rt = rtype[lot]
        rise = np.where(rt == 0, dv, np.where(rt == 1, np.minimum(dv, dh), 0.0))
        hgt = eave[lot] + np.minimum(pitch[lot] * rise, 4.5) + np.where(rt == 2, 0.4, 0.0)
        rgb = roof[lot]
        ridge = (rt < 2) & (np.abs(v) < 0.3) & (rise >= dv - 0.01)
        rgb = np.where(ridge[:, None], rgb * 1.18, rgb)
        rim = (rt == 2) & ((dv < 0.5) | (dh < 0.5))
        rgb = np.where(rim[:, None], rgb * 0.8, rgb)
        self.set(inb, SURFACE_BUILDING, rgb[inb], hgt[inb], ids[lot][inb])
        # a parked car on some driveways
        for i in np.nonzero((rng.random(nlot) < 0.5) & ~empty & (S > 5.5))[0]:
            ue, vn = du[i], -D[i] / 2 - S[i] / 2
            e = ce[i] + ue * (-gy[i]) + vn * gx[i]
            n = cn[i] + ue * gx[i] + vn * gy[i]
            b.add_car(e, n, float(np.arctan2(gy[i], gx[i])), b.parked_set(rng), rng)
        # back-yard and front-yard trees
        for i in np.nonzero(~empty)[0]:
            for _ in range(rng.poisson(1.2)):
                uu = rng.uniform(-ah[i], ah[i])
                vv = D[i] / 2 + rng.uniform(2.5, 12) if rng.random() < 0.7 else -D[i] / 2 - rng.uniform(1.5, 3.5)
                e = ce[i] + uu * (-gy[i]) + vv * gx[i]
                n = cn[i] + uu * gx[i] + vv * gy[i]
                r_, c_ = int(n / b.cell), int(e / b.cell)
                if 0 <= r_ < b.rows and 0 <= c_ < b.cols and b.surface[r_, c_] == SURFACE_GARDEN:
                    b.add_tree(e, n, rng.uniform(1.8, 4.2), rng.uniform(4.5, 12))
        # the deep inside of big blocks: a wood
        deep = np.nonzero((d > 40) & ~inb & ~pm)[0]
        if len(deep):
            k = rng.poisson(len(deep) * b.cell ** 2 / 70.0)
            for i in rng.choice(deep, size=min(k, len(deep)), replace=False):
                b.add_tree(self.e[i], self.n[i], rng.uniform(2.5, 5), rng.uniform(7, 16))

    def fill_box(self, p):
        """A big-box store: one large low building in a parking lot."""
        b, rng = self.b, self.rng
        s = rng.uniform(14, 24)
        d = self.dist
        inb = d >= s
        bid = b.new_building(b._pick(b.facade_pal), b._pick(b.window_pal), rng.uniform(4.5, 6), WINDOW_RIBBON)
        self._parking(~inb)
        hgt = rng.uniform(6, 10)
        roof = b._pick(b.flat_roofs) * rng.uniform(1.0, 1.15)
        rim = inb & (d < s + 0.6)
        rgb = np.where(rim[:, None], roof * 0.8, roof)
        self.set(inb, SURFACE_BUILDING, rgb[inb], hgt + 0.6 * rim[inb], bid)
        # many HVAC units on a grid
        ga, gd = rng.uniform(8, 14), rng.uniform(8, 14)
        hv = inb & (d > s + 3) & (np.abs(((self.a / ga) % 1) - 0.5) < 1.2 / ga) & \
            (np.abs(((self.bb / gd) % 1) - 0.5) < 1.0 / gd)
        self.set(hv, SURFACE_ROOF_DETAIL, (196, 198, 196), hgt + rng.uniform(1.0, 2.0))

    def _parking(self, mask):
        b, rng = self.b, self.rng
        self.set(mask, SURFACE_PARKING, b.parking_asphalt)
        # rows: [stall 5 m][stall 5 m][aisle 6.5 m], stalls 2.6 m wide
        period = 16.5
        off_b = rng.uniform(0, period)
        ub = (self.bb - off_b) % period
        off_a = rng.uniform(0, 2.6)
        ua = (self.a - off_a) % 2.6
        stall_band = ub < 10.0
        line = mask & stall_band & (ua < 0.14 + 0.01) & (self.dist > 1.0)
        self.set(line, SURFACE_MARKING, (226, 226, 220))
        # cars in stalls
        occ = rng.uniform(0.3, 0.9)
        amin, amax = self.a[mask].min() if mask.any() else 0, self.a[mask].max() if mask.any() else 0
        bmin, bmax = self.bb[mask].min() if mask.any() else 0, self.bb[mask].max() if mask.any() else 0
        ks = np.arange(np.floor((amin - off_a) / 2.6), np.ceil((amax - off_a) / 2.6))
        js = np.arange(np.floor((bmin - off_b) / period), np.ceil((bmax - off_b) / period))
        for jj in js:
            for row_off in (2.5, 7.5):
                bc = off_b + jj * period + row_off
                for kk in ks:
                    if rng.random() > occ:
                        continue
                    ac = off_a + kk * 2.6 + 1.3
                    e, n = self.to_world(ac, bc)
                    r_, c_ = int(n / b.cell), int(e / b.cell)
                    if not (0 <= r_ < b.rows and 0 <= c_ < b.cols):
                        continue
                    if b.surface[r_, c_] not in (SURFACE_PARKING, SURFACE_MARKING):
                        continue
                    # the whole car must fit in the lot (check its two ends)
                    ok = True
                    for db in (-2.2, 2.2):
                        e2, n2 = self.to_world(ac, bc + db)
                        r2, c2 = int(n2 / b.cell), int(e2 / b.cell)
                        if not (0 <= r2 < b.rows and 0 <= c2 < b.cols) or \
                                b.surface[r2, c2] not in (SURFACE_PARKING, SURFACE_MARKING):
                            ok = False
                    if ok:
                        b.add_car(e, n, math.atan2(self.perp[1], self.perp[0]), b.parked_set(rng), rng)

    def fill_parking(self, p):
        self._parking(self.dist >= 0)
        # a tree island now and then
        rng = self.rng
        edge = np.nonzero((self.dist > 1.0) & (self.dist < 2.0))[0]
        for i in edge[:: max(1, len(edge) // 6)][: rng.integers(0, 6)]:
            self.b.add_tree(self.e[i], self.n[i], rng.uniform(2, 3.5), rng.uniform(6, 10))

    def fill_plaza(self, p):
        b, rng = self.b, self.rng
        g = rng.uniform(4, 8)
        pat = ((np.abs((self.a % g) - g / 2) > g / 2 - 0.2) | (np.abs((self.bb % g) - g / 2) > g / 2 - 0.2))
        rgb = np.where(pat[:, None], b.plaza * 0.86, b.plaza)
        self.set(np.ones(len(self.a), bool), SURFACE_PLAZA, rgb)
        if rng.random() < 0.5:
            r = rng.uniform(3, 7)
            m = (self.a ** 2 + self.bb ** 2) < r * r
            self.set(m, SURFACE_WATER, b.water * 1.2)
            self.set(m & ((self.a ** 2 + self.bb ** 2) > (r - 0.5) ** 2), SURFACE_PLAZA, b.plaza * 0.7, 0.6)
        # rows of trees
        step = rng.uniform(7, 11)
        for aa in np.arange(-self.long / 2 + 4, self.long / 2 - 3, step):
            for bb in (-self.short / 2 + 4, self.short / 2 - 4):
                e, n = self.to_world(aa, bb)
                b.add_tree(e, n, rng.uniform(2, 3.2), rng.uniform(6, 10))

    def fill_park(self, p):
        b, rng = self.b, self.rng
        self.set(np.ones(len(self.a), bool), SURFACE_GRASS, b.grass)
        # sports field sometimes
        if rng.random() < 0.25 and self.short > 60:
            fl, fw = min(self.long - 20, 100), min(self.short - 20, 60)
            f = (np.abs(self.a) < fl / 2) & (np.abs(self.bb) < fw / 2)
            self.set(f, SURFACE_GRASS, b.grass * 1.15)
            ln = f & ((fl / 2 - np.abs(self.a) < 0.3) | (fw / 2 - np.abs(self.bb) < 0.3) | (np.abs(self.a) < 0.15))
            self.set(ln, SURFACE_MARKING, (235, 235, 235))
            field_mask = f
        else:
            field_mask = np.zeros(len(self.a), bool)
        # pond
        pond = np.zeros(len(self.a), bool)
        if rng.random() < 0.4 and self.short > 40:
            ca, cb = rng.uniform(-0.25, 0.25) * self.long, rng.uniform(-0.2, 0.2) * self.short
            ra, rb = rng.uniform(0.12, 0.3) * self.long, rng.uniform(0.12, 0.3) * self.short
            wob = 1 + 0.15 * np.sin(3 * np.arctan2(self.bb - cb, self.a - ca) + rng.uniform(0, 6))
            pond = (((self.a - ca) / ra) ** 2 + ((self.bb - cb) / rb) ** 2) < wob ** 2
            pond &= ~field_mask
            self.set(pond, SURFACE_WATER, b.water)
        # curvy paths
        lmask = np.zeros((self.ys.max() - self.ys.min() + 1, self.xs.max() - self.xs.min() + 1), np.uint8)
        y0, x0 = self.ys.min(), self.xs.min()
        for _ in range(rng.integers(1, 4)):
            t = np.linspace(0, 1, 30)
            p0 = np.array(self.to_world(rng.uniform(-0.5, 0.5) * self.long, -self.short / 2))
            p1 = np.array(self.to_world(rng.uniform(-0.5, 0.5) * self.long, self.short / 2))
            if rng.random() < 0.5:
                p0 = np.array(self.to_world(-self.long / 2, rng.uniform(-0.5, 0.5) * self.short))
            mid = (p0 + p1) / 2 + rng.normal(0, 0.2 * self.short, 2)
            curve = ((1 - t) ** 2)[:, None] * p0 + (2 * t * (1 - t))[:, None] * mid + (t ** 2)[:, None] * p1
            pix = curve - np.array([x0, y0]) * b.cell
            cv2.polylines(lmask, [_px(pix, b.cell)], False, 1, _thick(rng.uniform(2, 3.5), b.cell), cv2.LINE_8,
                          _SHIFT)
        pathm = lmask[self.ys - y0, self.xs - x0].astype(bool) & ~pond & ~field_mask
        self.set(pathm, SURFACE_PATH, b.path)
        # trees: clusters plus scattered
        area = len(self.a) * b.cell ** 2
        ok = ~pathm & ~pond & ~field_mask & (self.dist > 1.5)
        cand = np.nonzero(ok)[0]
        if len(cand) == 0:
            return
        n_cl = rng.poisson(area / 1500.0) + 1
        for _ in range(n_cl):
            c = cand[rng.integers(len(cand))]
            for _ in range(rng.integers(2, 9)):
                e, n = self.e[c] + rng.normal(0, 7), self.n[c] + rng.normal(0, 7)
                r_, c_ = int(n / b.cell), int(e / b.cell)
                if 0 <= r_ < b.rows and 0 <= c_ < b.cols and b.surface[r_, c_] == SURFACE_GRASS:
                    b.add_tree(e, n, rng.uniform(2.2, 5.0), rng.uniform(6, 15))
        for i in rng.choice(cand, size=min(len(cand), rng.poisson(area / 600.0)), replace=False):
            b.add_tree(self.e[i], self.n[i], rng.uniform(2, 4.5), rng.uniform(6, 14))


# ---------------------------------------------------------------------------------------------- trees, texture
def _paint_trees(b: _Builder):
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


# texture amplitude (grey levels) per surface class: fine grain, large patches
_FINE = np.array([6, 5, 4, 6, 12, 7, 5, 5, 4, 26, 3, 6, 12, 0, 5, 20], np.float32)
_PATCH = np.array([14, 7, 3, 9, 18, 8, 8, 5, 2, 10, 4, 8, 12, 0, 5, 8], np.float32)


def _texture(b: _Builder):
    r = b.rng_tex
    shape = (b.rows, b.cols)
    patches = _value_noise(r, shape, 12.0 / b.cell)  # ~12 m patches
    # fine noise: generated at half resolution and repeated, then a per-cell pseudo-random hash for grain
    chunk = 512
    fine_a = _FINE[b.surface]
    patch_a = _PATCH[b.surface]
    for r0 in range(0, b.rows, chunk):
        r1 = min(b.rows, r0 + chunk)
        fine = r.standard_normal((r1 - r0, b.cols), dtype=np.float32)
        fine = cv2.GaussianBlur(fine, (0, 0), 0.8) * np.float32(2.2)  # grain a few cells wide, not per cell
        # leafy canopies: coarser grain
        delta = fine * fine_a[r0:r1] + patches[r0:r1] * patch_a[r0:r1]
        t = b.top[r0:r1].astype(np.int16) + delta[..., None].astype(np.int16)
        b.top[r0:r1] = np.clip(t, 0, 255).astype(np.uint8)
