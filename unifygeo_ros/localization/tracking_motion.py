"""Odometry for the sequential localizer: a planar motion over an interval, in the robot frame, with its covariance.

Conventions (REP-103): ``base_link`` x forward, y left; yaw counter-clockwise, radians; the world frame is the
index's local ENU (x east, y north). An :class:`OdometryDelta` is the pose of the robot at the end of an interval
expressed in its pose at the start (``forward_m``, ``left_m``, ``yaw_rad``), with the 3 x 3 covariance of those
three numbers. Build it from a twist (wheel odometry's ``twist``: forward speed and yaw rate over ``dt``), from two
poses of a drifting odometry frame (``odom``: only their difference is used, so the frame's drift does not matter),
and chain several with :meth:`OdometryDelta.then`.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from unifygeo_ros.errors import UnifyGeoError
from unifygeo_ros.geo import wrap_pi


class TrackingInputError(UnifyGeoError):
    """Odometry, a heading or a setting the sequential localizer cannot use (non-finite, negative variance)."""


def _rot(yaw: float) -> np.ndarray:
    c, s = math.cos(yaw), math.sin(yaw)
    return np.array([[c, -s], [s, c]])


@dataclass(frozen=True)
class OdometryDelta:
    """The robot's motion over ``dt_s``: end pose in the start pose's frame, and its covariance (module doc)."""

    forward_m: float
    left_m: float
    yaw_rad: float
    cov: np.ndarray = field(default_factory=lambda: np.zeros((3, 3)))  # over (forward, left, yaw): m^2, rad^2
    dt_s: float = 0.0
    #: seconds of it no odometry sample covered (a gap in the odometry: the motion there is extrapolated from the
    #: sample after it, and the filter declares its belief lost: the robot may have done anything meanwhile)
    gap_s: float = 0.0

    def __post_init__(self):
        c = np.asarray(self.cov, np.float64)
        values = (self.forward_m, self.left_m, self.yaw_rad, self.dt_s, self.gap_s)
        if not all(math.isfinite(v) for v in values) or self.dt_s < 0 or self.gap_s < 0:
            raise TrackingInputError(f"odometry delta needs finite values and dt_s, gap_s >= 0, got {values}")
        if c.shape != (3, 3) or not np.all(np.isfinite(c)) or np.any(np.diag(c) < 0):
            raise TrackingInputError("odometry delta covariance must be a finite 3x3 matrix with a diagonal >= 0")
        object.__setattr__(self, "cov", 0.5 * (c + c.T))

    @classmethod
    def from_twist(cls, speed_mps: float, yaw_rate_rps: float, dt_s: float, speed_var: float = 0.0,
                   yaw_rate_var: float = 0.0, lateral_speed_var: float = 0.0) -> "OdometryDelta":
        """Constant forward speed and yaw rate over ``dt_s`` (a twist sample covering that interval: the exact
        arc); variances of the speed, the yaw rate and the lateral speed (reported 0 by a non-holonomic base) in
        (m/s)^2, (rad/s)^2 (the covariance to first order, the arc taken as its chord at its mid heading)."""
        if not (math.isfinite(dt_s) and dt_s >= 0):
            raise TrackingInputError(f"odometry interval must be finite and >= 0, got {dt_s}")
        half = 0.5 * yaw_rate_rps * dt_s
        dist = speed_mps * dt_s * (math.sin(half) / half if abs(half) > 1e-9 else 1.0)  # the arc's chord
        j = np.array([[math.cos(half) * dt_s, -dist * math.sin(half) * 0.5 * dt_s],
                      [math.sin(half) * dt_s, dist * math.cos(half) * 0.5 * dt_s],
                      [0.0, dt_s]])
        with np.errstate(over="ignore", invalid="ignore"):  # an absurd interval: refused by the check below
            cov = j @ np.diag([speed_var, yaw_rate_var]) @ j.T
            cov[1, 1] += lateral_speed_var * dt_s * dt_s
        return cls(dist * math.cos(half), dist * math.sin(half), yaw_rate_rps * dt_s, cov, dt_s)

    @classmethod
    def between(cls, pose0: tuple[float, float, float], pose1: tuple[float, float, float],
                cov: np.ndarray | None = None, dt_s: float = 0.0) -> "OdometryDelta":
        """The motion from ``pose0`` to ``pose1`` (x, y, yaw of one odometry frame); ``cov``: its covariance over
        (forward, left, yaw) (the growth of the odometry's pose covariance over the interval, when reported)."""
        x0, y0, a0 = (float(v) for v in pose0)
        x1, y1, a1 = (float(v) for v in pose1)
        d = _rot(a0).T @ np.array([x1 - x0, y1 - y0])
        return cls(float(d[0]), float(d[1]), float(wrap_pi(a1 - a0)), np.zeros((3, 3)) if cov is None else cov,
                   dt_s)

    def then(self, nxt: "OdometryDelta") -> "OdometryDelta":
        """This motion followed by ``nxt`` (first-order covariance propagation, the two independent)."""
        r = _rot(self.yaw_rad)
        d = r @ np.array([nxt.forward_m, nxt.left_m])
        ja = np.eye(3)
        ja[0, 2], ja[1, 2] = -d[1], d[0]
        jb = np.eye(3)
        jb[:2, :2] = r
        cov = ja @ self.cov @ ja.T + jb @ nxt.cov @ jb.T
        return OdometryDelta(self.forward_m + float(d[0]), self.left_m + float(d[1]),
                             float(wrap_pi(self.yaw_rad + nxt.yaw_rad)), cov, self.dt_s + nxt.dt_s,
                             self.gap_s + nxt.gap_s)

    @property
    def distance_m(self) -> float:
        return math.hypot(self.forward_m, self.left_m)

    def in_world(self, yaw_rad: float) -> np.ndarray:
        """(2,) east/north displacement of a robot at ENU yaw ``yaw_rad`` (at the interval's start)."""
        return _rot(yaw_rad) @ np.array([self.forward_m, self.left_m])
