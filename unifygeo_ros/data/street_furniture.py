"""What stands along the streets: trees on the sidewalks, cars parked along the kerbs, moving cars in the
travel lanes (each of those in only one of the two views). Nothing is placed near a crossing.
"""
from __future__ import annotations

import math

import numpy as np

from unifygeo_ros.data.city_builder import CityBuilder
from unifygeo_ros.data.city_schema import CARS_AERIAL_ONLY, CARS_GROUND_ONLY, SURFACE_ROAD
from unifygeo_ros.data.streets import Street, along, arclen, clear_of, crossing_zones


PARKING_PITCH_M = 6.2  # one kerb place per 6.2 m


def street_furniture(b: CityBuilder, streets: list[Street], crossings):
    """Street trees on the sidewalks, parked cars along the kerbs, moving cars in the lanes."""
    zones = crossing_zones(streets, crossings, 5.0)
    for k, s in enumerate(streets):
        total = arclen(s.points)[-1]
        near = zones.get(k, [])
        _street_trees(b, s, total, near)
        _parked_cars(b, s, total, near)
        _moving_cars(b, s, total, near)


def _street_trees(b: CityBuilder, s: Street, total: float, near):
    """Trees on both sides (or one), on the sidewalk (or the verge of a narrow one), on some streets."""
    rt = b.rng_trees
    w_m, h_m = b.size
    if rt.random() >= b.prm["street_trees"]:
        return
    spacing = rt.uniform(7, 13)
    radius, top = rt.uniform(1.8, 3.8), rt.uniform(6, 12)
    for side in (-1, 1):
        if rt.random() < 0.2:
            continue
        sq = np.arange(rt.uniform(0, spacing), total, spacing)
        sq = sq[clear_of(sq, near)]
        lat = side * (s.width_m / 2 + max(0.9, s.sidewalk_m * 0.5))
        pts, _ = along(s.points, sq, lat)
        for p in pts:
            if -5 < p[0] < w_m + 5 and -5 < p[1] < h_m + 5 and rt.random() > 0.12:
                r_, c_ = int(p[1] / b.cell), int(p[0] / b.cell)
                if 0 <= r_ < b.rows and 0 <= c_ < b.cols and b.surface[r_, c_] == SURFACE_ROAD:
                    continue
                b.add_tree(p[0], p[1], radius * rt.uniform(0.85, 1.15), top * rt.uniform(0.85, 1.15))


def _parked_cars(b: CityBuilder, s: Street, total: float, near):
    """Cars along both kerbs (half as many on avenues; on half of the lanes only)."""
    rc = b.rng_cars
    w_m, h_m = b.size
    if not (s.kind != "lane" or rc.random() < 0.5):
        return
    p_park = b.prm["parked"] * (0.5 if s.kind == "avenue" else 1.0)
    for side in (-1, 1):
        sq = np.arange(rc.uniform(0, 6), total, PARKING_PITCH_M)
        sq = sq[clear_of(sq, near) & (rc.random(len(sq)) < p_park)]
        lat = side * (s.width_m / 2 - 1.25)
        pts, d = along(s.points, sq, lat)
        for p, dd in zip(pts, d):
            if 0 < p[0] < w_m and 0 < p[1] < h_m:
                b.add_car(p[0], p[1], math.atan2(dd[1], dd[0]), b.parked_set(rc), rc)


def _moving_cars(b: CityBuilder, s: Street, total: float, near):
    """Cars in the travel lanes (not on lanes): each is in only one of the two views."""
    rc = b.rng_cars
    w_m, h_m = b.size
    if s.kind == "lane":
        return
    n_mov = rc.poisson(b.prm["moving"] * total / 100.0)
    sq = rc.uniform(0, total, n_mov)
    sq = sq[clear_of(sq, near)]
    lanes = rc.choice([-1, 1], len(sq)) * (s.width_m / 4 if s.kind == "avenue" else s.width_m / 5)
    for q, lat in zip(sq, lanes):
        pts, d = along(s.points, [q], lat)
        p, dd = pts[0], d[0]
        if 0 < p[0] < w_m and 0 < p[1] < h_m:
            b.add_car(p[0], p[1], math.atan2(dd[1], dd[0]),
                      CARS_AERIAL_ONLY if rc.random() < 0.5 else CARS_GROUND_ONLY, rc)
