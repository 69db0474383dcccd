"""Drawing on a city's grid with cv2, in fixed point: ENU metres to pixel coordinates, line widths, oriented
rectangles, dashed polylines, and the cars composited into the layers a view sees.

Grid convention (see :mod:`unifygeo_ros.data.city`): row 0 at the south edge, pixel centres at integers.
"""
from __future__ import annotations

import cv2
import numpy as np

from unifygeo_ros.data.city_schema import CAR_BODY_FRACTION, SURFACE_CAR

SHIFT = 4  # fixed-point bits for cv2 drawing
_ONE = 1 << SHIFT


def to_px(points_en: np.ndarray, cell_m: float) -> np.ndarray:
    """ENU metres -> cv2 fixed-point pixel coordinates (x = col, y = row; pixel centres at integers)."""
    return np.round((np.asarray(points_en, np.float64) / cell_m - 0.5) * _ONE).astype(np.int32).reshape(-1, 1, 2)


def thickness(width_m: float, cell_m: float) -> int:
    """A line width in metres as a cv2 thickness in cells (at least 1)."""
    return max(1, int(round(width_m / cell_m)))


def rect_corners(cx, cy, length, width, angle):
    """Corners (N, 4, 2) of oriented rectangles; ``angle`` is the direction of ``length`` (rad from east)."""
    ca, sa = np.cos(angle), np.sin(angle)
    ux, uy = ca * length / 2, sa * length / 2
    vx, vy = -sa * width / 2, ca * width / 2
    cx, cy = np.asarray(cx), np.asarray(cy)
    return np.stack([np.stack([cx + ux + vx, cy + uy + vy], -1), np.stack([cx - ux + vx, cy - uy + vy], -1),
                     np.stack([cx - ux - vx, cy - uy - vy], -1), np.stack([cx + ux - vx, cy + uy - vy], -1)], -2)


def draw_cars(cars: np.ndarray, height: np.ndarray, top: np.ndarray, surface: np.ndarray, cell_m: float):
    """Draw the cars (a ``CAR_DTYPE`` array) into the height, top-colour and surface layers, in place: the lower
    body over the footprint, the cabin (windows and roof) on its middle part."""
    if len(cars) == 0:
        return
    body = rect_corners(cars["east"], cars["north"], cars["length"], cars["width"], cars["angle"])
    # windows: a band across the car, in its middle 55 %, slightly narrower than the body
    glass = rect_corners(cars["east"], cars["north"], cars["length"] * 0.55, cars["width"] * 0.86, cars["angle"])
    roof = rect_corners(cars["east"] + 0.06 * cars["length"] * np.cos(cars["angle"]),
                        cars["north"] + 0.06 * cars["length"] * np.sin(cars["angle"]),
                        cars["length"] * 0.30, cars["width"] * 0.80, cars["angle"])
    for k in range(len(cars)):
        rgb = tuple(int(v) for v in cars["rgb"][k])
        pb = to_px(body[k], cell_m)
        pg = to_px(glass[k], cell_m)
        # lower body over the whole footprint, the cabin (glass, roof) on its middle part
        cv2.fillPoly(height, [pb], float(cars["height"][k]) * CAR_BODY_FRACTION, cv2.LINE_8, SHIFT)
        cv2.fillPoly(height, [pg], float(cars["height"][k]), cv2.LINE_8, SHIFT)
        cv2.fillPoly(surface, [pb], SURFACE_CAR, cv2.LINE_8, SHIFT)
        cv2.fillPoly(top, [pb], rgb, cv2.LINE_8, SHIFT)
        cv2.fillPoly(top, [pg], (28, 32, 38), cv2.LINE_8, SHIFT)
        cv2.fillPoly(top, [to_px(roof[k], cell_m)], rgb, cv2.LINE_8, SHIFT)


def draw_runs(img: np.ndarray, pts: np.ndarray, on: np.ndarray, cell: float, width_m: float):
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
            polys.append(to_px(seg, cell))
    if polys:
        cv2.polylines(img, polys, False, 1, thickness(width_m, cell), cv2.LINE_8, SHIFT)

