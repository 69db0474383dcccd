"""How a synthetic drive moves along its route (``unifygeo bag synth``).

The route polyline (:mod:`unifygeo_ros.rosbag.route`) is smoothed (corners rounded over ~``SMOOTH_M``), offset
``LANE_M`` to the right of the centre line (right-hand traffic; dead ends - only in cities too small for a
network without them - are turned on a half circle), and driven at the cruise speed on straights, slower in
curves (lateral acceleration <= ``LAT_ACC_MPS2``), with accelerations <= ``LONG_ACC_MPS2``.

Positions are ENU metres (east, north); ``heading_deg`` is the compass heading (0 = north, clockwise).
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from unifygeo_ros import geo
from unifygeo_ros.rosbag.route import arclen_m

SMOOTH_M = 8.0  # corner-rounding window (m)
LAT_ACC_MPS2 = 2.0  # max lateral acceleration (m/s^2)
LONG_ACC_MPS2 = 1.5  # max longitudinal acceleration / deceleration (m/s^2)
MIN_SPEED_MPS = 0.5  # floor of the curve speed (m/s)
LANE_M = 1.5  # the camera drives this far right of the centre line (right-hand traffic)


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

    def felt_at(self, t_s) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """The motion the vehicle's own sensors feel (wheel odometry, gyro), as :meth:`at` gives it: the true one
        (a :class:`unifygeo_ros.rosbag.drive_plan.KidnappedDrive` differs after its jump)."""
        return self.at(t_s)

    @property
    def end_s(self) -> float:
        """Seconds from the start to the end of the drive."""
        return float(self.t_s[-1])

    def distance_m(self, t_s: float) -> float:
        """Metres driven from the start to ``t_s``."""
        return float(np.interp(t_s, self.t_s, self.s_m))


def make_drive(route: np.ndarray, speed_mps: float, step_m: float = 0.5) -> Drive:
    """Smooth ``route``, keep to the right of the centre line by ``LANE_M``, turn around at dead ends on a
    half circle of radius ``LANE_M``, and give the path a speed profile and times (module constants)."""
    p = _lane_path(np.asarray(route, np.float64), step_m)
    s = arclen_m(p)
    d = np.gradient(p, axis=0)
    heading = np.degrees(np.arctan2(d[:, 0], d[:, 1])) % 360.0  # compass: atan2(east, north)
    hd = np.unwrap(np.radians(heading))
    v = _speed_profile(s, hd, speed_mps)
    dt = np.diff(s) / np.maximum(0.5 * (v[1:] + v[:-1]), 1e-6)
    t = np.concatenate([[0.0], np.cumsum(dt)])
    yaw_rate = -np.degrees(np.gradient(hd, t))  # yaw = 90 - heading
    return Drive(s, p, heading, v, t, yaw_rate)


def _lane_path(route: np.ndarray, step_m: float) -> np.ndarray:
    """The driven path: ``route`` resampled every ``step_m``, split at reversals (U-turns at dead ends), each
    run smoothed and offset ``LANE_M`` to the right, consecutive runs joined by a half circle (a left turn)."""
    p = _resample(route, step_m)
    half = max(1, int(SMOOTH_M / 2 / step_m))
    parts: list[np.ndarray] = []
    for r in _runs_between_reversals(p):
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
    return p[keep]


def _runs_between_reversals(p: np.ndarray) -> list[np.ndarray]:
    """``p`` split where the direction flips between consecutive steps; each run ends on the cusp point."""
    d = np.diff(p, axis=0)
    cosines = np.einsum("ij,ij->i", d[:-1], d[1:]) / np.maximum(
        np.hypot(*d[:-1].T) * np.hypot(*d[1:].T), 1e-12)
    cusps = [i + 1 for i in np.nonzero(cosines < -0.5)[0]]
    runs = np.split(p, cusps)
    return [np.vstack([r, p[c:c + 1]]) if k < len(cusps) else r for k, (r, c) in
            enumerate(zip(runs, cusps + [None]))]


def _speed_profile(s_m: np.ndarray, heading_unwrapped_rad: np.ndarray, speed_mps: float) -> np.ndarray:
    """Speed (m/s) at each arc position: the cruise speed, lowered in curves to the lateral acceleration limit
    (not below ``MIN_SPEED_MPS``), then limited by the acceleration forwards and the deceleration backwards."""
    n = len(s_m)
    ds = np.maximum(np.gradient(s_m), 1e-6)
    curvature = np.abs(np.gradient(heading_unwrapped_rad) / ds)
    v = np.minimum(speed_mps, np.sqrt(LAT_ACC_MPS2 / np.maximum(curvature, 1e-9)))
    v = np.maximum(v, min(MIN_SPEED_MPS, speed_mps))
    for i in range(1, n):  # acceleration limit forwards, deceleration limit backwards
        v[i] = min(v[i], math.sqrt(v[i - 1] ** 2 + 2 * LONG_ACC_MPS2 * (s_m[i] - s_m[i - 1])))
    for i in range(n - 2, -1, -1):
        v[i] = min(v[i], math.sqrt(v[i + 1] ** 2 + 2 * LONG_ACC_MPS2 * (s_m[i + 1] - s_m[i])))
    return v


def _resample(p: np.ndarray, step_m: float) -> np.ndarray:
    """``p`` resampled at equal arc steps of about ``step_m``."""
    s = arclen_m(p)
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
