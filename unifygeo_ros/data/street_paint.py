"""The streets drawn into a city's layers: the road and sidewalk masks (:func:`raster_streets`, before the
blocks are filled), then sidewalks, carriageways, centre and lane lines and zebra crossings painted over
whatever the blocks put there (:func:`paint_streets`).
"""
from __future__ import annotations

import math

import cv2
import numpy as np

from unifygeo_ros.data.city_builder import CityBuilder
from unifygeo_ros.data.city_schema import SURFACE_MARKING, SURFACE_ROAD, SURFACE_SIDEWALK
from unifygeo_ros.data.raster_draw import SHIFT, draw_runs, rect_corners, thickness, to_px
from unifygeo_ros.data.streets import Street, along, arclen, clear_of, crossing_zones


LINE_WIDTH_M = 0.15  # painted lines
DASH_PERIOD_M, DASH_LENGTH_M = 9.0, 3.0  # dashed lines: 3 m painted every 9 m
WHITE_PAINT = (232, 232, 226)


def raster_streets(b: CityBuilder, streets: list[Street]) -> tuple[np.ndarray, np.ndarray]:
    """bool masks ``(road, walk)``: the carriageways, and the carriageways with their sidewalks."""
    shape = (b.rows, b.cols)
    road = np.zeros(shape, np.uint8)
    walk = np.zeros(shape, np.uint8)
    for s in streets:
        p = to_px(s.points, b.cell)
        cv2.polylines(walk, [p], False, 1, thickness(s.width_m + 2 * s.sidewalk_m, b.cell), cv2.LINE_8, SHIFT)
        cv2.polylines(road, [p], False, 1, thickness(s.width_m, b.cell), cv2.LINE_8, SHIFT)
    return road.astype(bool), walk.astype(bool)


def paint_streets(b: CityBuilder, streets: list[Street], crossings, road: np.ndarray, walk: np.ndarray):
    """Sidewalks, carriageways, centre lines, lane lines and zebra crossings (after the blocks)."""
    _paint_carriageways(b, road, walk)
    mark = np.zeros((b.rows, b.cols), np.uint8)  # white paint
    yellow = np.zeros((b.rows, b.cols), np.uint8)  # centre-line paint (yellow in most cities)
    _draw_lane_lines(b, streets, crossings, mark, yellow)
    _draw_zebra_crossings(b, streets, crossings, mark)
    m = (mark > 0) & road
    y = (yellow > 0) & road & ~m
    b.surface[m | y] = SURFACE_MARKING
    b.top[m] = WHITE_PAINT
    b.top[y] = b.materials.marking_y


def _paint_carriageways(b: CityBuilder, road: np.ndarray, walk: np.ndarray):
    """Sidewalk and asphalt colours; nothing stands on a street."""
    side = walk & ~road
    b.surface[side] = SURFACE_SIDEWALK
    b.top[side] = b.materials.sidewalk.astype(np.uint8)
    b.surface[road] = SURFACE_ROAD
    b.top[road] = b.materials.asphalt.astype(np.uint8)
    b.height[walk] = 0.0
    b.oid[walk] = 0


def _draw_lane_lines(b: CityBuilder, streets: list[Street], crossings, mark: np.ndarray, yellow: np.ndarray):
    """Avenues: a double centre line and dashed white lane lines; streets: a dashed centre line; lanes:
    nothing. Lines stop at the crossings."""
    zones = crossing_zones(streets, crossings, 3.0)
    rng = b.rng_misc
    cell = b.cell
    for k, s in enumerate(streets):
        if s.kind == "lane":
            continue
        total = arclen(s.points)[-1]
        sq = np.arange(0, total, 1.0)
        ok = clear_of(sq, zones.get(k, []))
        dashes = (sq % DASH_PERIOD_M) < DASH_LENGTH_M
        if s.kind == "avenue":  # double yellow centre, dashed white lane lines
            for lat, tgt, dash in ((0.2, yellow, False), (-0.2, yellow, False),
                                   (s.width_m / 4, mark, True), (-s.width_m / 4, mark, True)):
                pts, _ = along(s.points, sq, lat)
                on = ok & dashes if dash else ok
                draw_runs(tgt, pts, on, cell, LINE_WIDTH_M)
        else:
            pts, _ = along(s.points, sq, 0.0)
            target = yellow if b.materials.marking_y[2] < 100 and rng.random() < 0.5 else mark
            draw_runs(target, pts, ok & dashes, cell, LINE_WIDTH_M)


def _draw_zebra_crossings(b: CityBuilder, streets: list[Street], crossings, mark: np.ndarray):
    """Zebra crossings just outside each intersection, on both sides, on some streets (never lanes)."""
    rng = b.rng_misc
    for i, si, j, sj, _p in crossings:
        for a, sa, o in ((i, si, j), (j, sj, i)):
            st, other = streets[a], streets[o]
            if st.kind == "lane" or rng.random() > b.prm["crosswalk"]:
                continue
            for sgn in (-1, 1):
                off = sa + sgn * (other.width_m / 2 + other.sidewalk_m + 1.5)
                ctr, d = along(st.points, [off], 0.0)
                ctr, d = ctr[0], d[0]
                ang = math.atan2(d[1], d[0])
                n_stripes = int(st.width_m / 1.1)
                lat = (np.arange(n_stripes) - (n_stripes - 1) / 2) * 1.1
                nrm = np.array([-d[1], d[0]])
                cs = ctr[None] + lat[:, None] * nrm[None]
                rects = rect_corners(cs[:, 0], cs[:, 1], np.full(n_stripes, 3.0), np.full(n_stripes, 0.55),
                                     np.full(n_stripes, ang))
                cv2.fillPoly(mark, [to_px(r_, b.cell) for r_ in rects], 1, cv2.LINE_8, SHIFT)
