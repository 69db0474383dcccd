"""The robot's other sensors as the pipeline takes them, ROS-free: the node and ``unifygeo replay`` feed the same
objects with the same messages (ROS messages or rosbags' records, duck-typed).

* :class:`HeadingFeed` - ``sensor_msgs/Imu`` -> the compass heading of the panorama's centre column at a frame's
  stamp: the orientations of the last ``HEADING_BUFFER_S`` are kept (at most ``HEADING_BUFFER_SAMPLES``); a frame
  between two of them gets their yaw interpolated on the shortest arc (a late-arriving image gets the heading at
  its stamp, not the newest one), a frame after the newest (or before the oldest) that sample, each only within
  ``max_age_s`` of the stamp; the std is the IMU's yaw covariance (the larger of the two), else a default. The
  heading a known-orientation model rolls the panorama by, and the robot's heading for the sequential localizer.
  Thread-safe: the node adds from its executor and reads when an image arrives.
* :class:`OdometryIntegrator` - ``nav_msgs/Odometry`` twists -> one
  :class:`~unifygeo_ros.localization.tracking_motion.OdometryDelta` per camera frame: every sample stamped up to the
  frame's stamp, each covering the interval since the previous sample (:meth:`OdometryDelta.from_twist`: the exact
  arc), chained. A sample that arrives after its frame was processed goes into the next frame's delta (nothing is
  lost, it is only applied one frame late). A sample more than ``timeout_s`` after the previous one follows a gap:
  its delta covers the gap by extrapolation and says so (``gap_s``: the tracker then declares its belief lost), and
  :meth:`OdometryIntegrator.stale_at` tells a frame no sample reached (the tracker withholds it, ``odometry_stale``).
  Thread-safe: the node adds from its executor and takes on its worker.

Conventions: REP-103 (``base_link`` x forward, y left, yaw counter-clockwise); the IMU's orientation is
earth-referenced ENU (0 = east), converted to a compass heading (0 = north, clockwise) by :mod:`unifygeo_ros.geo`.
"""
from __future__ import annotations

import bisect
import dataclasses
import math
import threading
from dataclasses import dataclass
from typing import Any

import numpy as np

from unifygeo_ros import geo
from unifygeo_ros.localization.tracking_motion import OdometryDelta, TrackingInputError

#: how far from 1 a quaternion's norm may be (float rounding of a real IMU's output is far smaller)
UNIT_QUATERNION_TOLERANCE = 0.01
#: a twist's lateral-speed variance above this, (m/s)^2, means "not measured" (robot_localization's habit of 1e6 for
#: unmeasured slots): the base is taken as non-holonomic (lateral speed 0, no lateral noise beyond the process noise)
UNMEASURED_LATERAL_VAR = 1.0
#: physical bounds of a ground robot's wheel odometry: a sample beyond them is a driver's or the wire's fault (a
#: garbage 1e300 m/s once overflowed the arc's covariance and stopped the node), refused and reported as bad input
MAX_SPEED_MPS = 100.0  # 360 km/h
MAX_YAW_RATE_RPS = 35.0  # 2000 deg/s, the range of common MEMS gyros
MAX_TWIST_VAR = 1e6  # a speed or yaw-rate variance above this ((m/s)^2, (rad/s)^2) measures nothing
#: the IMU history :class:`HeadingFeed` keeps: the orientations of the last HEADING_BUFFER_S seconds (at least
#: ``imu.max_age_s``) before the newest one, at most HEADING_BUFFER_SAMPLES of them whatever the IMU's rate
HEADING_BUFFER_S = 2.0
HEADING_BUFFER_SAMPLES = 2048
#: a stamp more than this before the newest one means time went backwards (a bag restarted, a sim clock reset): the
#: IMU history, the odometry and the tracking pipeline start again from it
TIME_BACK_RESTART_S = 1.0


def unit_quaternion_problem(x: float, y: float, z: float, w: float) -> str:
    """"" for a usable orientation quaternion, else why not: non-finite, or not of unit norm (a non-unit quaternion
    is not a rotation: (0, 0, 0.1, 0.1) read as one gave a yaw of 1.2 deg instead of 90)."""
    if not all(math.isfinite(v) for v in (x, y, z, w)):
        return "the IMU orientation is not finite"
    norm = math.sqrt(x * x + y * y + z * z + w * w)
    if abs(norm - 1.0) > UNIT_QUATERNION_TOLERANCE:
        return f"the IMU orientation is not a unit quaternion (norm {norm:.3g}): not a rotation"
    return ""


def imu_yaw(msg: Any) -> tuple[float | None, float, str]:
    """``sensor_msgs/Imu`` -> (ENU yaw in degrees, ``orientation_covariance[8]`` (nan when absent), ""), or
    (None, nan, "") when it carries no orientation (REP-145: ``orientation_covariance[0] == -1``, or a zero
    quaternion), or (None, nan, why) when its orientation is unusable (:func:`unit_quaternion_problem`). The one
    reader of an IMU orientation: the node's and replay's heading feed and the fusion's yaw samples."""
    q = msg.orientation
    c = np.asarray(msg.orientation_covariance, np.float64).reshape(-1)
    if c.size != 9 or c[0] == -1.0 or (q.x, q.y, q.z, q.w) == (0, 0, 0, 0):
        return None, math.nan, ""
    problem = unit_quaternion_problem(q.x, q.y, q.z, q.w)
    if problem:
        return None, math.nan, problem
    return float(geo.quaternion_xyzw_to_yaw_deg(q.x, q.y, q.z, q.w)), float(c[8]), ""


def odometry_twist(msg: Any) -> tuple[np.ndarray, np.ndarray] | str:
    """``nav_msgs/Odometry`` -> (twist (vx m/s, vy m/s, yaw rate rad/s), their variances from the twist covariance
    (indices 0, 7, 35 of the row-major 6 x 6; the lateral one at most ``MAX_TWIST_VAR``, "not measured")), or why
    it is unusable: a value not finite, the covariance not 6 x 6, a speed or yaw rate beyond a ground robot's
    (``MAX_SPEED_MPS``, ``MAX_YAW_RATE_RPS``), a speed or yaw-rate variance above ``MAX_TWIST_VAR``. The one reader
    of an odometry twist: the tracking filter's and the fusion's, each with its own variance policy."""
    tw = msg.twist.twist
    c = np.asarray(msg.twist.covariance, np.float64).reshape(-1)
    if c.size != 36:
        return f"odometry twist covariance has {c.size} values, not 6 x 6"
    v = np.array([tw.linear.x, tw.linear.y, tw.angular.z], np.float64)
    var = c[[0, 7, 35]]
    if not (np.all(np.isfinite(v)) and np.all(np.isfinite(var))):
        return "odometry twist or twist covariance not finite"
    if max(abs(v[0]), abs(v[1])) > MAX_SPEED_MPS or abs(v[2]) > MAX_YAW_RATE_RPS:
        return (f"odometry twist beyond a ground robot's (speed {v[0]:.3g}, {v[1]:.3g} m/s, limit {MAX_SPEED_MPS:g}; "
                f"yaw rate {v[2]:.3g} rad/s, limit {MAX_YAW_RATE_RPS:g})")
    if max(var[0], var[2]) > MAX_TWIST_VAR:
        return (f"odometry twist variances {var[0]:.3g} (m/s)^2, {var[2]:.3g} (rad/s)^2: above {MAX_TWIST_VAR:g}, "
                "no measurement")
    var[1] = min(var[1], MAX_TWIST_VAR)
    return v, var


def stamp_s(stamp: Any) -> float:
    """A ``builtin_interfaces/Time`` in seconds."""
    return int(stamp.sec) + 1e-9 * int(stamp.nanosec)


# ------------------------------------------------------------------------------------------------- heading
@dataclass(frozen=True)
class ImuSettings:
    """How an IMU orientation becomes the panorama's heading (the node's ``imu.*`` parameters)."""

    panorama_yaw_offset_deg: float = 0.0  #: yaw of the panorama's centre column relative to the IMU's x axis (CCW +)
    max_age_s: float = 0.5  #: an orientation farther than this from the image stamp is not used
    default_yaw_std_deg: float = 5.0  #: heading std when the IMU reports no yaw covariance
    #: yaw of the IMU's x axis relative to ``base_link``'s x (CCW +: the ``base_link -> imu`` transform's yaw),
    #: subtracted from every IMU yaw before anything else (the panorama's offset then counts from ``base_link``)
    mount_yaw_deg: float = 0.0


Heading = tuple[float, float]  # (compass heading deg, std deg)


class HeadingFeed:
    """The IMU's recent orientations, as the heading of the panorama at a frame's stamp (module doc)."""

    def __init__(self, settings: ImuSettings | None = None):
        self.settings = settings or ImuSettings()
        self._lock = threading.Lock()
        self._stamps: list[float] = []  # ascending seconds
        self._headings: list[Heading] = []  # one per stamp
        self.problem = ""  # why the last orientation was refused ("" = it was used)
        self.resets = 0  # time went backwards (a bag restarted): the history started again

    def add(self, msg: Any, stamp: float | None = None) -> None:
        """One ``sensor_msgs/Imu`` (``stamp``: seconds, default its header stamp). Messages without an orientation
        (REP-145: ``orientation_covariance[0] == -1``, or a zero quaternion) are ignored; an unusable one is
        remembered as :attr:`problem` (frames that need a heading say why they get none). A stamp already kept is
        replaced; one more than ``TIME_BACK_RESTART_S`` before the newest starts the history again."""
        yaw, var, problem = imu_yaw(msg)
        if yaw is None:
            if problem:
                self.problem = problem
            return
        self.problem = ""
        s = self.settings
        yaw += s.panorama_yaw_offset_deg - s.mount_yaw_deg
        std = math.degrees(math.sqrt(var)) if var > 0 and math.isfinite(var) else s.default_yaw_std_deg
        t = stamp_s(msg.header.stamp) if stamp is None else float(stamp)
        value = (float(geo.yaw_to_heading_deg(yaw)), std)
        with self._lock:
            ts, hs = self._stamps, self._headings
            if ts and t < ts[-1] - TIME_BACK_RESTART_S:
                ts.clear()
                hs.clear()
                self.resets += 1
            i = bisect.bisect_left(ts, t)
            if i < len(ts) and ts[i] == t:
                hs[i] = value
            else:
                ts.insert(i, t)
                hs.insert(i, value)
            keep_from = ts[-1] - max(HEADING_BUFFER_S, s.max_age_s)
            drop = max(bisect.bisect_left(ts, keep_from), len(ts) - HEADING_BUFFER_SAMPLES)
            if drop > 0:
                del ts[:drop], hs[:drop]

    @property
    def received(self) -> bool:
        return bool(self._stamps)

    def __len__(self) -> int:
        """How many orientations are kept (at most ``HEADING_BUFFER_SAMPLES``)."""
        return len(self._stamps)

    def at(self, t_s: float, topic: str = "imu") -> tuple[float | None, float, str]:
        """(compass heading deg, std deg, "") for a frame stamped ``t_s``, or (None, nan, why there is none)."""
        with self._lock:
            found, gap_s = self._lookup(t_s)
        if found is not None:
            return found[0], found[1], ""
        if self.problem:
            return None, math.nan, self.problem
        if gap_s is None:
            return None, math.nan, f"no IMU orientation received yet on {topic}"
        return None, math.nan, (f"IMU orientation is {gap_s:.2f} s from the image stamp "
                                f"(> imu.max_age_s {self.settings.max_age_s:g})")

    def _lookup(self, t: float) -> tuple[Heading | None, float | None]:
        """(the heading at ``t`` or None, the distance to the nearest kept orientation (None: none kept)). Between
        two orientations both within ``max_age_s``: interpolated on the shortest arc, the larger std; else the
        nearest one within ``max_age_s``. Called under the lock."""
        ts, hs, age = self._stamps, self._headings, self.settings.max_age_s
        if not ts:
            return None, None
        i = bisect.bisect_left(ts, t)
        if i < len(ts) and ts[i] == t:
            return hs[i], 0.0
        if i == len(ts) or i == 0:  # after the newest or before the oldest: that one
            j = i - 1 if i else 0
            gap = abs(t - ts[j])
            return (hs[j] if gap <= age else None), gap
        (t0, (h0, s0)), (t1, (h1, s1)) = (ts[i - 1], hs[i - 1]), (ts[i], hs[i])
        g0, g1 = t - t0, t1 - t
        if g0 <= age and g1 <= age:
            f = g0 / (t1 - t0)
            arc = float(geo.wrap_deg(h1 - h0))  # the shortest way from h0 to h1, [-180, 180)
            return (float(geo.wrap_deg(h0 + f * arc)), max(s0, s1)), min(g0, g1)
        j, gap = (i - 1, g0) if g0 <= g1 else (i, g1)
        return (hs[j] if gap <= age else None), gap


# ------------------------------------------------------------------------------------------------ odometry
@dataclass(frozen=True)
class TwistReading:
    """One odometry sample: forward speed and yaw rate in ``base_link`` and their variances."""

    stamp_s: float
    speed_mps: float
    yaw_rate_rps: float
    speed_var: float  # (m/s)^2
    yaw_rate_var: float  # (rad/s)^2
    lateral_speed_var: float  # (m/s)^2; 0 when not measured (UNMEASURED_LATERAL_VAR)


def twist_reading(msg: Any, stamp: float | None = None) -> TwistReading | str:
    """``nav_msgs/Odometry`` -> its twist (``linear.x``, ``angular.z``) with the twist covariance's variances
    (indices 0, 35, 7 of the row-major 6 x 6; negative ones taken as 0), or why it is unusable
    (:func:`odometry_twist`'s reasons, or a stamp not finite). The tracking filter's odometry (node and replay)."""
    twist = odometry_twist(msg)
    if isinstance(twist, str):
        return twist
    v, w = float(twist[0][0]), float(twist[0][2])
    var_v, var_lat, var_w = (float(x) for x in twist[1])
    var_lat = 0.0 if var_lat > UNMEASURED_LATERAL_VAR else var_lat
    t = stamp_s(msg.header.stamp) if stamp is None else float(stamp)
    if not math.isfinite(t):
        return f"odometry stamp {t} is not finite"
    return TwistReading(t, v, w, max(var_v, 0.0), max(var_w, 0.0), max(var_lat, 0.0))


class OdometryIntegrator:
    """Twist samples -> one chained delta per frame (module doc). Thread-safe."""

    def __init__(self, timeout_s: float = math.inf):
        self._lock = threading.Lock()
        self._pending: list[tuple[float, OdometryDelta]] = []
        self._last_s: float | None = None
        self.timeout_s = timeout_s  #: a sample more than this after the previous one follows a gap
        self.samples = 0  # twist samples integrated
        self.gaps = 0  # samples after a gap longer than timeout_s
        self.skipped = 0  # not after the previous sample
        self.rejected = 0  # unusable (twist_reading's reasons, or a motion that cannot be integrated)
        self.problem = ""  # why the last rejected sample was refused
        self.resets = 0  # time went backwards (a bag restarted)

    def add(self, reading: TwistReading | str) -> str:
        """One sample (or :func:`twist_reading`'s reason why a message is none); it covers the interval since the
        previous one (the first only starts the clock). Returns "" or why it was refused (counted in ``rejected``;
        the clock is left at the previous sample, so the next good one covers the interval)."""
        with self._lock:
            if isinstance(reading, str):
                return self._reject(reading)
            t = reading.stamp_s
            if self._last_s is not None and t < self._last_s - TIME_BACK_RESTART_S:  # a bag restarted: start again
                self._pending, self._last_s = [], None
                self.resets += 1
            if self._last_s is None:
                self._last_s = t
                return ""
            dt = t - self._last_s
            if dt <= 0.0:
                self.skipped += 1
                return ""
            try:
                delta = OdometryDelta.from_twist(reading.speed_mps, reading.yaw_rate_rps, dt, reading.speed_var,
                                                 reading.yaw_rate_var, reading.lateral_speed_var)
            except TrackingInputError as exc:  # e.g. a stamp years after the previous one: the arc overflows
                return self._reject(f"odometry sample {dt:.3g} s after the previous one cannot be integrated: {exc}")
            self._last_s = t
            if dt > self.timeout_s:  # nothing measured the motion since the previous sample: extrapolated, marked
                delta = dataclasses.replace(delta, gap_s=dt)
                self.gaps += 1
            self._pending.append((t, delta))
            self.samples += 1
            return ""

    def _reject(self, why: str) -> str:
        self.rejected += 1
        self.problem = why
        return why

    def stale_at(self, t_s: float) -> bool:
        """Whether no sample came in the ``timeout_s`` up to ``t_s`` (or none at all): the robot's motion up to
        then is not known, so a belief cannot be moved to ``t_s``."""
        with self._lock:
            return self._last_s is None or t_s - self._last_s > self.timeout_s

    def take_until(self, t_s: float) -> OdometryDelta | None:
        """The motion of every pending sample stamped at or before ``t_s``, chained (None: none)."""
        with self._lock:
            take = [d for t, d in self._pending if t <= t_s + 1e-9]
            self._pending = [(t, d) for t, d in self._pending if t > t_s + 1e-9]
        out = None
        for d in take:
            out = d if out is None else out.then(d)
        return out

    def reset(self) -> None:
        with self._lock:
            self._pending, self._last_s = [], None
