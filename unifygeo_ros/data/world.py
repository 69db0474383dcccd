"""Procedural 2.5-D cities: :func:`generate_city`, the synthetic world both views are rendered from.

Generation runs in this order, each step in its own module (all on a
:class:`~unifygeo_ros.data.city_builder.CityBuilder`, fully determined by the seed):

1. :mod:`.streets`: the road network (centre lines, crossings);
2. :mod:`.street_paint`: the road and sidewalk masks;
3. :mod:`.blocks`: the land between the streets, each block filled by :mod:`.buildings` (dense blocks,
   houses, big-box stores) or :mod:`.open_spaces` (parks, plazas, parking lots);
4. :mod:`.street_paint` again: sidewalks, asphalt and markings over the block edges;
5. :mod:`.street_furniture`: street trees, parked and moving cars;
6. :mod:`.vegetation`: the tree canopies into the layers;
7. :mod:`.materials`: texture over every surface (colours were drawn per city at the start).

The result is a :class:`~unifygeo_ros.data.city.City` (layer conventions in :mod:`.city`, value codes in
:mod:`.city_schema`). This module also re-exports those names, so ``world.City``, ``world.SURFACE_TREE``...
keep working.
"""
from __future__ import annotations

import numpy as np

from unifygeo_ros.data.blocks import fill_blocks
from unifygeo_ros.data.city import City, CityLayers, as_size
from unifygeo_ros.data.city_builder import CityBuilder
from unifygeo_ros.data.city_schema import (
    CAR_BODY_FRACTION,
    CAR_DTYPE,
    CAR_VIEWS,
    CARS_AERIAL_ONLY,
    CARS_BOTH,
    CARS_GROUND_ONLY,
    STYLES,
    SURFACE_BUILDING,
    SURFACE_CAR,
    SURFACE_DRIVEWAY,
    SURFACE_GARDEN,
    SURFACE_GRASS,
    SURFACE_GROUND,
    SURFACE_HEDGE,
    SURFACE_MARKING,
    SURFACE_NAMES,
    SURFACE_PARKING,
    SURFACE_PATH,
    SURFACE_PLAZA,
    SURFACE_ROAD,
    SURFACE_ROOF_DETAIL,
    SURFACE_SIDEWALK,
    SURFACE_TREE,
    SURFACE_WATER,
    TREE_DTYPE,
    WINDOW_HOUSE,
    WINDOW_NONE,
    WINDOW_PUNCHED,
    WINDOW_RIBBON,
)
from unifygeo_ros.data.materials import apply_texture
from unifygeo_ros.data.street_furniture import street_furniture
from unifygeo_ros.data.street_paint import paint_streets, raster_streets
from unifygeo_ros.data.streets import Street, intersections, make_streets, true_runs
from unifygeo_ros.data.vegetation import paint_tree_canopies

__all__ = [
    "CAR_BODY_FRACTION", "CAR_DTYPE", "CAR_VIEWS", "CARS_AERIAL_ONLY", "CARS_BOTH", "CARS_GROUND_ONLY", "STYLES",
    "SURFACE_BUILDING", "SURFACE_CAR", "SURFACE_DRIVEWAY", "SURFACE_GARDEN", "SURFACE_GRASS", "SURFACE_GROUND",
    "SURFACE_HEDGE", "SURFACE_MARKING", "SURFACE_NAMES", "SURFACE_PARKING", "SURFACE_PATH", "SURFACE_PLAZA",
    "SURFACE_ROAD", "SURFACE_ROOF_DETAIL", "SURFACE_SIDEWALK", "SURFACE_TREE", "SURFACE_WATER", "TREE_DTYPE",
    "WINDOW_HOUSE", "WINDOW_NONE", "WINDOW_PUNCHED", "WINDOW_RIBBON",
    "City", "CityLayers", "Street", "generate_city", "true_runs",
]


def generate_city(seed: int, size_m, style: str = "mixed", cell_m: float = 0.25) -> City:
    """A procedural city of ``size_m`` metres (a number or ``(east, north)``), fully determined by ``seed``.

    ``style``: ``"centre"`` (dense blocks, mid- to high-rise, plazas), ``"suburb"`` (curvy streets, houses with
    gable/hip roofs, gardens, pools, hedges, many trees) or ``"mixed"`` (a downtown somewhere and density falling
    off with distance from it).
    """
    if style not in STYLES:
        raise ValueError(f"style must be one of {STYLES}, got {style!r}")
    size = as_size(size_m)
    if min(size) < 20 or cell_m <= 0:
        raise ValueError("size_m must be at least 20 m and cell_m positive")
    b = CityBuilder(int(seed), size, style, float(cell_m))
    streets = make_streets(b.rng_net, b.size, b.prm)
    crossings = intersections(streets)
    road, walk = raster_streets(b, streets)
    fill_blocks(b, walk)
    paint_streets(b, streets, crossings, road, walk)
    street_furniture(b, streets, crossings)
    paint_tree_canopies(b)
    apply_texture(b.top, b.surface, b.rng_tex, b.cell)
    return _finished_city(b, streets)


def _finished_city(b: CityBuilder, streets: list[Street]) -> City:
    """The builder's layers, tables, trees and cars (those inside the grid) as a :class:`City`."""
    trees = np.array([(t[0], t[1], t[2], t[3], t[4], t[5]) for t in b.trees], dtype=TREE_DTYPE)
    cars = np.array(b.cars, dtype=CAR_DTYPE) if b.cars else np.zeros(0, CAR_DTYPE)
    if len(cars):  # drop cars outside the grid
        inside = (cars["east"] > 0) & (cars["east"] < b.size[0]) & (cars["north"] > 0) & (cars["north"] < b.size[1])
        cars = cars[inside]
    return City(seed=int(b.seed), style=b.style, cell_m=float(b.cell), size_m=b.size, height=b.height,
                surface=b.surface, top_rgb=b.top, object_id=b.oid,
                facade_rgb=np.array(b.facades, np.uint8), window_rgb=np.array(b.windows, np.uint8),
                floor_m=np.array(b.floors, np.float32), window_style=np.array(b.wstyles, np.uint8),
                trees=trees, cars=cars, streets=streets, outside_rgb=b.materials.outside, under_idx=b.under[0],
                under_rgb=b.under[1], under_surface=b.under[2], under_height=b.under[3])
