"""The wheel odometry's scale measured over a long stretch of driving (``odometry_scale_window_m``), for the sequential
localizer (docs/TRACKING.md, 'An odometry whose scale is off').

A wheel odometry whose scale is off by a few per cent (tyre radius, load, wear) moves the belief too far or too short
at every step; the images pull it back, so the belief trails or leads them by metres while its protection level,
built from per-sample noise, says less. Over a long stretch the belief's track is the robot's (the images' errors are
a metre or two, not a share of the distance), so fitting the odometry's own track (integrated on its own) onto the
belief's published track by a similarity - rotation, translation and **scale**, least squares (Umeyama 1991) -
measures the odometry's scale whatever the route's shape: 2 m over a stretch 100 m across is 2 %. The fit takes the
frames the filter published as converged with a protection level of at most ``ANCHOR_PL_M`` (a cold start's first
seconds, metres off, are left out) over the last ``window_m`` of odometry distance, never across a
re-initialisation (the belief jumped there, the robot did not), and only once the stretch spans at least a tenth of
``window_m`` around its centre (a robot turning on the spot or going back and forth says nothing of a scale); the
estimate is the median of the last ``ESTIMATES`` fits. It is a detector, not the correction: applied to the
odometry's distances itself, it read only half the error from then on (1.03-1.045 for a scale of 1.074: the belief
it is fitted to follows the odometry part of the way; BENCHMARKS.md 1q), so once it is further than
``deadband`` from 1 (:attr:`OdometryScaleMonitor.off_scale`), the filter gives its particles their own odometry scale
(``odometry_scale_detected_std`` around the estimate; :class:`~unifygeo_ros.localization.tracking_belief.
ParticleBelief`), which learns it precisely; an odometry calibrated to about a per cent never gets that freedom (it
cost accuracy on drives never tuned on) and is moved as it is, frame for frame.
"""
from __future__ import annotations

import math
from typing import TYPE_CHECKING

import numpy as np

from unifygeo_ros.localization.tracking_motion import OdometryDelta

if TYPE_CHECKING:
    from unifygeo_ros.localization.tracking_estimate import TrackEstimate

ESTIMATES = 5  #: the estimate is the median of this many last fits
ANCHOR_PL_M = 5.0  #: frames published with a larger protection level are not part of the stretch


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
    """The odometry's scale over the last ``window_m`` driven (module doc); ``window_m`` 0: off (nothing measured)."""

    def __init__(self, window_m: float, deadband: float, detected_std: float = 0.05, walk_per_sqrt_m: float = 0.001,
                 still_m: float = 0.05):
        self.window_m, self.deadband, self.still_m = float(window_m), float(deadband), float(still_m)
        self.detected_std, self.walk_per_sqrt_m = float(detected_std), float(walk_per_sqrt_m)
        #: (mean, std, walk) of the particles' scale state once the odometry was found off scale
        self.found: tuple[float, float, float] | None = None
        self.estimate = math.nan  #: the measured scale (NaN until a long enough stretch was driven while converged)
        self._pose = np.zeros(3)  # the odometry integrated on its own: x, y (m), yaw (rad)
        self._driven_m = 0.0
        self._track: list[tuple[float, np.ndarray, np.ndarray]] = []  # (driven m, odometry x y, belief east north)
        self._fits: list[float] = []

    @classmethod
    def from_settings(cls, s) -> "OdometryScaleMonitor":
        """From :class:`~unifygeo_ros.localization.tracking_settings.TrackingSettings`."""
        return cls(s.odometry_scale_window_m, s.odometry_scale_deadband, s.odometry_scale_detected_std,
                   s.odometry_scale_walk_per_sqrt_m, s.still_m)

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

    def restart(self) -> None:
        """The belief was (re)initialised: no stretch spans the jump."""
        self._track = []

    def observe(self, belief_en_m: np.ndarray, converged: bool, protection_level_m: float) -> None:
        """A frame's published estimate: part of the stretch when ``converged`` with a protection level of at most
        ``ANCHOR_PL_M``; fits the scale once the stretch covers ``window_m`` of driving and is wide enough."""
        if not (self.active and converged and protection_level_m <= ANCHOR_PL_M):
            return
        if self._track and self._driven_m - self._track[-1][0] < self.still_m:  # the same view (standing still)
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

    def watch(self, est: "TrackEstimate", belief) -> None:
        """One published :class:`~unifygeo_ros.localization.tracking_estimate.TrackEstimate`: a re-initialisation
        restarts the stretch, a converged one extends it; once the fit is off scale, ``belief`` (particles) gets its
        own odometry scale around it from then on (:meth:`hand_over`)."""
        if est.reinitialised:
            self.restart()
        self.observe(np.array([est.east_m, est.north_m]), est.converged, est.protection_level_m)
        if self.off_scale and self.found is None:
            self.found = (self.estimate, self.detected_std, self.walk_per_sqrt_m)
            self.hand_over(belief)

    def hand_over(self, belief) -> None:
        """Give ``belief`` its own odometry scale when the odometry was found off scale (a new belief after a reset
        too: the robot's odometry did not change); the grid has none."""
        if self.found is not None:
            belief.enable_scales(*self.found)

    @property
    def off_scale(self) -> bool:
        """The measured scale is further than ``deadband`` from 1: the odometry is not calibrated."""
        return abs(self.estimate - 1.0) > self.deadband  # False while NaN
