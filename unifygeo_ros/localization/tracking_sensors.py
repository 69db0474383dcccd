"""The robot's own sensors measured over a long stretch of driving (``odometry_scale_window_m``) against the belief's
track, for the sequential localizer: the wheel odometry's **scale** and the IMU's **heading offset**
(docs/TRACKING.md, 'An odometry whose scale is off', 'An IMU whose heading is off').

A wheel odometry whose scale is off by a few per cent (tyre radius, load, wear) moves the belief too far or too short
at every step; an IMU whose compass heading is a few degrees off (magnetic declination, a mounting error, a
magnetometer calibrated elsewhere) moves it sideways. The images pull it back, so the belief trails the images or
drifts across the street by metres while its protection level, built from per-sample noise, says less. Over a long
stretch the belief's track is the robot's (the images' errors are a metre or two, not a share of the distance), so
fitting a dead-reckoned track onto the belief's published track by a similarity - rotation, translation and scale,
least squares (Umeyama 1991) - measures both whatever the route's shape: 2 m over a stretch 100 m across is 2 % or
1 deg. The **scale** comes from the odometry's own track (integrated with its own yaw); the **heading offset** from
the rotation of the odometry's distances laid along the IMU's headings (each interval turned by the last reading
plus the odometry's yaw since it), which is the truth's track turned by the IMU's offset.

The fit takes the frames the filter published as converged with a protection level of at most ``anchor_pl_m`` (a
cold start's first seconds, metres off, are left out) over the last ``window_m`` of odometry distance, never across
a re-initialisation (the belief jumped there, the robot did not), and only once the stretch spans at least a tenth
of ``window_m`` around its centre (a robot turning on the spot or going back and forth says nothing); each estimate
is the median of the last ``estimates`` fits. They are detectors first: the belief they are fitted to follows the
sensors part of the way, so a fit reads only part of the error (the scale, applied to the odometry itself, read
half of it: BENCHMARKS.md 1q).

- Scale: once further than ``deadband`` from 1 (:attr:`SensorFit.off_scale`), the filter gives its particles their
  own odometry scale (``detected_std`` around the estimate; :class:`~unifygeo_ros.localization.tracking_belief.
  ParticleBelief`), which learns it precisely.
- Heading: once further than ``imu_deadband_deg`` from 0, the measured offset is taken off every IMU reading
  (:attr:`SensorFit.imu_correction_deg`) and the fit goes on measuring the raw IMU against the belief, which now
  follows the corrected heading: the part read short is read again, so the correction converges on the offset
  (the error left shrinks by the share the belief follows at each refit).

A sensor calibrated to about a per cent or a degree never gets either (the particles' scale from the start cost
accuracy on drives never tuned on, 1q) and is used as it is, frame for frame.
"""
from __future__ import annotations

import math
from typing import TYPE_CHECKING

import numpy as np

from unifygeo_ros import geo
from unifygeo_ros.localization.tracking_motion import OdometryDelta

if TYPE_CHECKING:
    from unifygeo_ros.localization.tracking_estimate import TrackEstimate


def similarity(src: np.ndarray, dst: np.ndarray) -> tuple[float, float]:
    """(scale, rotation in rad, counter-clockwise) of the least-squares similarity (rotation, translation, scale)
    taking the points ``src`` (N, 2) onto ``dst`` (N, 2) (Umeyama 1991; the reflection case excluded)."""
    a, b = src - src.mean(axis=0), dst - dst.mean(axis=0)
    var = float((a * a).sum()) / len(a)
    u, d, vt = np.linalg.svd(b.T @ a / len(a))
    sign = np.ones(2)
    if np.linalg.det(u) * np.linalg.det(vt) < 0:
        sign[-1] = -1.0
    rot = u @ np.diag(sign) @ vt
    return float((d * sign).sum()) / var, math.atan2(rot[1, 0], rot[0, 0])


class SensorFit:
    """The odometry's scale and the IMU's heading offset over the last ``window_m`` driven (module doc);
    ``window_m`` 0: off (nothing measured)."""

    def __init__(self, window_m: float, deadband: float, detected_std: float = 0.05, walk_per_sqrt_m: float = 0.001,
                 still_m: float = 0.05, imu_deadband_deg: float = 3.0, anchor_pl_m: float = 5.0, estimates: int = 5):
        self.window_m, self.deadband, self.still_m = float(window_m), float(deadband), float(still_m)
        self.detected_std, self.walk_per_sqrt_m = float(detected_std), float(walk_per_sqrt_m)
        self.imu_deadband_deg, self.anchor_pl_m, self.estimates = float(imu_deadband_deg), float(anchor_pl_m), estimates
        #: (mean, std, walk) of the particles' scale state once the odometry was found off scale
        self.found: tuple[float, float, float] | None = None
        self.scale_estimate = math.nan  #: the measured scale (NaN until a long enough stretch was driven converged)
        #: the IMU's compass heading minus the robot's, deg (NaN until fitted; clockwise positive, as a compass)
        self.imu_offset_deg = math.nan
        self.imu_found = False  #: the IMU's offset was once measured beyond imu_deadband_deg (imu_off)
        self._pose = np.zeros(3)  # the odometry integrated on its own: x, y (m), yaw (rad)
        self._imu_pose = np.zeros(2)  # its distances laid along the IMU's headings: x, y (m) (ENU axes)
        self._imu_minus_odo_rad: float | None = None  # last IMU yaw minus the odometry's own yaw then (None: no IMU)
        self._driven_m = 0.0
        #: (driven m, odometry x y, IMU-heading x y or NaN, belief east north)
        self._track: list[tuple[float, np.ndarray, np.ndarray, np.ndarray]] = []
        self._fits: list[tuple[float, float]] = []  # (scale, IMU offset deg or NaN)

    @classmethod
    def from_settings(cls, s) -> "SensorFit":
        """From :class:`~unifygeo_ros.localization.tracking_settings.TrackingSettings`."""
        return cls(s.odometry_scale_window_m, s.odometry_scale_deadband, s.odometry_scale_detected_std,
                   s.odometry_scale_walk_per_sqrt_m, s.still_m, s.imu_heading_deadband_deg,
                   s.sensor_fit_max_protection_level_m, s.sensor_fit_estimates)

    @property
    def active(self) -> bool:
        return self.window_m > 0

    def move(self, delta: OdometryDelta) -> None:
        """The raw odometry's interval (before any correction), integrated in its own frame, and along the IMU's
        headings once there was a reading."""
        if not self.active:
            return
        if self._imu_minus_odo_rad is not None:
            self._imu_pose += delta.in_world(self._pose[2] + self._imu_minus_odo_rad)
        self._pose[:2] += delta.in_world(self._pose[2])
        self._pose[2] += delta.yaw_rad
        self._driven_m += delta.distance_m

    def imu(self, heading_deg: float) -> None:
        """A raw IMU compass heading (before the correction): the robot's heading from here on, until the next, is it
        turned by the odometry's yaw since."""
        if self.active:
            self._imu_minus_odo_rad = math.radians(float(geo.heading_to_yaw_deg(heading_deg))) - float(self._pose[2])

    def restart(self) -> None:
        """The belief was (re)initialised: no stretch spans the jump."""
        self._track = []

    def observe(self, belief_en_m: np.ndarray, converged: bool, protection_level_m: float) -> None:
        """A frame's published estimate: part of the stretch when ``converged`` with a protection level of at most
        ``anchor_pl_m``; fits once the stretch covers ``window_m`` of driving and is wide enough."""
        if not (self.active and converged and protection_level_m <= self.anchor_pl_m):
            return
        if self._track and self._driven_m - self._track[-1][0] < self.still_m:  # the same view (standing still)
            return
        imu_xy = self._imu_pose.copy() if self._imu_minus_odo_rad is not None else np.full(2, np.nan)
        self._track.append((self._driven_m, self._pose[:2].copy(), imu_xy, np.asarray(belief_en_m, np.float64).copy()))
        start = self._driven_m - self.window_m
        while len(self._track) > 1 and self._track[1][0] <= start:  # the first kept one is at most window_m back
            self._track.pop(0)
        if self._track[0][0] > start + 0.1 * self.window_m:  # not yet nine tenths of a window of driving
            return
        odo = np.array([t[1] for t in self._track])
        if float(np.sqrt(((odo - odo.mean(axis=0)) ** 2).sum(axis=1).mean())) < 0.1 * self.window_m:
            return
        belief = np.array([t[3] for t in self._track])
        imu = np.array([t[2] for t in self._track])
        # the IMU's track turned by -offset (ENU, counter-clockwise) is the robot's: the fit's rotation is +offset
        offset = math.degrees(similarity(imu, belief)[1]) if np.isfinite(imu).all() else math.nan
        self._fits = (self._fits + [(similarity(odo, belief)[0], offset)])[-self.estimates:]
        fits = np.array(self._fits)
        self.scale_estimate = float(np.median(fits[:, 0]))
        offsets = fits[np.isfinite(fits[:, 1]), 1]
        if len(offsets):
            self.imu_offset_deg = float(np.median(offsets))

    def watch(self, est: "TrackEstimate", belief) -> None:
        """One published :class:`~unifygeo_ros.localization.tracking_estimate.TrackEstimate`: a re-initialisation
        restarts the stretch, a converged one extends it; once the fit is off scale, ``belief`` (particles) gets its
        own odometry scale around it from then on (:meth:`hand_over`); once the IMU is found off, its readings are
        corrected by the latest estimate from then on."""
        if est.reinitialised:
            self.restart()
        self.observe(np.array([est.east_m, est.north_m]), est.converged, est.protection_level_m)
        if self.off_scale and self.found is None:
            self.found = (self.scale_estimate, self.detected_std, self.walk_per_sqrt_m)
            self.hand_over(belief)
        self.imu_found = self.imu_found or self.imu_off

    def hand_over(self, belief) -> None:
        """Give ``belief`` its own odometry scale when the odometry was found off scale (a new belief after a reset
        too: the robot's odometry did not change); the grid has none."""
        if self.found is not None:
            belief.enable_scales(*self.found)

    @property
    def imu_off(self) -> bool:
        """The measured IMU offset is further than ``imu_deadband_deg`` from 0: the IMU is not calibrated."""
        return abs(self.imu_offset_deg) > self.imu_deadband_deg  # False while NaN

    @property
    def imu_correction_deg(self) -> float:
        """What is taken off every IMU reading: 0 until the IMU was found off, then the latest estimate."""
        return self.imu_offset_deg if self.imu_found else 0.0

    @property
    def off_scale(self) -> bool:
        """The measured scale is further than ``deadband`` from 1: the odometry is not calibrated."""
        return abs(self.scale_estimate - 1.0) > self.deadband  # False while NaN
