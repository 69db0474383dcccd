"""The :class:`City`: a procedural 2.5-D city, the synthetic world both views are rendered from.

A city is a set of co-registered raster layers on a square grid of ``cell_m`` metres, covering
``size_m = (east, north)`` metres from the city's south-west corner (the ENU origin of the world):

* ``height`` (float32, metres above ground): buildings (flat roofs with parapets and HVAC boxes, gable and hip
  roofs with ridges), hedges, tree canopies. Cars are kept apart (see below).
* ``surface`` (uint8, one of the ``SURFACE_*`` classes of :mod:`.city_schema`), ``top_rgb`` (uint8 RGB seen from
  above, textured).
* ``object_id`` (int32): ``> 0`` building id (index into the per-building tables ``facade_rgb``, ``window_rgb``,
  ``floor_m``, ``window_style``), ``< 0`` tree ``-(index + 1)`` into ``trees``, ``0`` nothing.
* ``cars``: a structured array of oriented boxes. Each car belongs to one set: ``CARS_BOTH`` (parked, seen in
  both views), ``CARS_AERIAL_ONLY`` and ``CARS_GROUND_ONLY`` (cars that moved between the aerial flight and the
  street-level capture). :meth:`City.layers` composites a car set into the static layers.

Arrays are indexed ``[row, col]`` with **row 0 at the south edge**: cell ``(i, j)`` covers
``north in [i, i+1) * cell_m`` and ``east in [j, j+1) * cell_m`` (renderers flip rows for north-up images).
Cities come from :func:`unifygeo_ros.data.world.generate_city` (or :meth:`City.blank` and :meth:`City.add_box`
for hand-made scenes).
"""
from __future__ import annotations

from dataclasses import dataclass, field

import cv2
import numpy as np

from unifygeo_ros.data.city_schema import (
    CAR_DTYPE,
    CAR_VIEWS,
    SURFACE_BUILDING,
    SURFACE_MARKING,
    SURFACE_ROAD,
    SURFACE_TREE,
    TREE_DTYPE,
    WINDOW_PUNCHED,
)
from unifygeo_ros.data.raster_draw import draw_cars
from unifygeo_ros.data.streets import Street


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
                draw_cars(self.cars[sel], h, top, surf, self.cell_m)
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
                draw_cars(self.cars[sel], h, top, surf, self.cell_m)
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
        w_m, h_m = as_size(size_m)
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


def as_size(size_m) -> tuple[float, float]:
    """A size in metres given as a number (a square) or ``(east, north)`` -> ``(east, north)`` floats."""
    if np.ndim(size_m) == 0:
        return float(size_m), float(size_m)
    w, h = size_m
    return float(w), float(h)
