"""The wheel odometry's scale measured over a long stretch of driving (``odometry_scale_window_m``), for the sequential
localizer (docs/TRACKING.md, 'An odometry whose scale is off').

A wheel odometry whose scale is off by a few per cent (tyre radius, load, wear) moves the belief too far or too short
at every step; the images pull it back, so the belief trails or leads them by metres while its protection level,
built from per-sample noise, says less. Over a long stretch the belief's track is the robot's (the images' errors are
a metre or two, not a share of the distance), so fitting the odometry's own track (integrated on its own) onto the
belief's published track by a similarity - rotation, translation and **scale**, least squares (Umeyama 1991) -
measures the odometry's scale whatever the route's shape: 2 m over a stretch 100 m across is 2 %. The fit takes the
frames the filter published as converged over the last ``window_m`` of odometry distance, never across a
re-initialisation (the belief jumped there, the robot did not), and only once the stretch spans at least a tenth of
``window_m`` around its centre (a straight line or a turn on the spot says nothing of a scale); the estimate is the
median of the last ``ESTIMATES`` fits. It is applied to the odometry's distances only when it is further than
``deadband`` from 1 (an odometry calibrated to about a per cent is left as it is, frame for frame): the same
correction for particles and grid, and the robot's, not the place's, so it is kept through a cold start and a
re-initialisation.
"""
from __future__ import annotations

import math

import numpy as np

from unifygeo_ros.localization.tracking_motion import OdometryDelta

ESTIMATES = 5  #: the estimate is the median of this many last fits


def similarity_scale(src: np.ndarray, dst: np.ndarray) -> float:
    """The scale of the least-squares similarity (rotation, translation, scale) taking the points ``src`` (N, 2)
    onto ``dst`` (N, 2) (Umeyama 1991: the trace of the singular values, the reflection case excluded, over the
    variance of ``src``)."""
    a, b = src - src.mean(axis=0), dst - dst.mean(axis=0)
    var = float((a * a).sum()) / len(a)
    u, d, vt = np.linalg.svd(b.T @ a / len(a))
    sign = np.ones(2)
    if np.linalg.det(u) * np.linalg.det(vt) < 0:
        sign[-1] = -1.0
    return float((d * sign).sum()) / var


class OdometryScaleMonitor:
    """The odometry's scale over the last ``window_m`` driven (module doc); ``window_m`` 0: off (scale 1, nothing
    measured)."""

    def __init__(self, window_m: float, deadband: float):
        self.window_m, self.deadband = float(window_m), float(deadband)
        self.scale = 1.0  #: applied to the odometry's distances
        self.estimate = math.nan  #: the measured scale (NaN until a long enough stretch was driven while converged)
        self._pose = np.zeros(3)  # the odometry integrated on its own: x, y (m), yaw (rad)
        self._driven_m = 0.0
        self._track: list[tuple[float, np.ndarray, np.ndarray]] = []  # (driven m, odometry x y, belief east north)
        self._fits: list[float] = []

    @property
    def active(self) -> bool:
        return self.window_m > 0

    def move(self, delta: OdometryDelta) -> None:
        """The raw odometry's interval (before any correction), integrated in its own frame."""
        if not self.active:
            return
        c, s = math.cos(self._pose[2]), math.sin(self._pose[2])
        self._pose += (c * delta.forward_m - s * delta.left_m, s * delta.forward_m + c * delta.left_m, delta.yaw_rad)
        self._driven_m += delta.distance_m

    def corrected(self, delta: OdometryDelta) -> OdometryDelta:
        """``delta`` with its distances (and their covariance) multiplied by the applied scale."""
        if self.scale == 1.0:
            return delta
        k = np.diag([self.scale, self.scale, 1.0])
        return OdometryDelta(delta.forward_m * self.scale, delta.left_m * self.scale, delta.yaw_rad,
                             k @ delta.cov @ k, delta.dt_s, delta.gap_s)

    def restart(self) -> None:
        """The belief was (re)initialised: no stretch spans the jump."""
        self._track = []

    def observe(self, belief_en_m: np.ndarray, converged: bool) -> None:
        """A frame's published estimate: part of the stretch when ``converged``; fits the scale once the stretch
        covers ``window_m`` of driving and is wide enough."""
        if not (self.active and converged):
            return
        self._track.append((self._driven_m, self._pose[:2].copy(), np.asarray(belief_en_m, np.float64).copy()))
        start = self._driven_m - self.window_m
        while len(self._track) > 1 and self._track[1][0] <= start:  # the first kept one is at most window_m back
            self._track.pop(0)
        if self._track[0][0] > start + 0.1 * self.window_m:  # not yet nine tenths of a window of driving
            return
        odo = np.array([t[1] for t in self._track])
        if float(np.sqrt(((odo - odo.mean(axis=0)) ** 2).sum(axis=1).mean())) < 0.1 * self.window_m:
            return
        self._fits = (self._fits + [similarity_scale(odo, np.array([t[2] for t in self._track]))])[-ESTIMATES:]
        self.estimate = float(np.median(self._fits))
        self.scale = self.estimate if abs(self.estimate - 1.0) > self.deadband else 1.0
