"""``unifygeo replay --fuse``: wheel odometry + IMU yaw + our accepted fixes in one EKF, the way
robot_localization's map-frame EKF (``ekf_filter_node_map`` of ``config/robot_localization/ekf.yaml``) fuses them,
and the fused trajectory scored against GT.

**Filter** (filterpy's :class:`~filterpy.kalman.ExtendedKalmanFilter`; this module writes only the motion and
measurement models, their Jacobians and the angle residual). State ``(x, y, yaw)`` in the replay's ENU frame
(x east, y north, yaw REP-103: 0 = east), with the wheel odometry's twist ``(vx, vy, vyaw)`` in ``base_link`` as
the *control input* of the prediction. Why not robot_localization's velocity states: in the map filter nothing
but the odometry measures ``vx``/``vy`` (and the IMU only ``vyaw``), so velocity states would just copy the 20 Hz
twist back, through a velocity process noise that is a tuning value; as a control input the twist enters with its
own message covariance - the odometry's stated uncertainty, which is what the replay measures - and the
prediction needs nothing else.

* prediction over ``dt`` (unicycle, mid-point heading): ``x += (vx c - vy s) dt``, ``y += (vx s + vy c) dt``,
  ``yaw += vyaw dt`` with ``c, s = cos, sin(yaw + vyaw dt / 2)``; ``P = F P F' + G M G' + Q dt`` with ``F``, ``G``
  the Jacobians in state and twist, ``Q`` the yaml's process noise (per second: ``ekf.cpp`` ``predict()`` adds
  ``process_noise_covariance * dt``) and ``M`` the twist's message covariance as white noise of density
  ``M T`` (``T`` the message's interval: a twist sample's error holds over the interval it reports, so an interval
  split into steps by other measurements adds ``M T^2`` in all, as one sample does). Between odometry messages
  the latest twist is held (robot_localization holds its velocity state); an odometry message's own twist is
  used back to the previous event, since it reports the interval that ends at its stamp.
* fix (our published frame): ``z = (east, north)`` with the published 2 x 2 covariance, ``H = [I 0]``; gated like
  robot_localization's ``checkMahalanobisThreshold()``: rejected when ``d^2 = y' S^-1 y >= threshold^2`` with the
  ``S`` of filterpy's update (the update is undone). A rejected fix changes nothing.
* IMU yaw: ``z = yaw`` with ``orientation_covariance[8]``, innovation wrapped to ``[-pi, pi)``; gated only if the
  yaml sets ``imu0_pose_rejection_threshold`` (robot_localization's default: no gate). The IMU frame is taken as
  ``base_link`` (true of the synthetic bags); an IMU mounted rotated needs its yaw offset first.
* zero or negative variances are replaced by 1e-6, as robot_localization does; non-finite messages are skipped.

**What is read from the yaml** (section ``ekf_filter_node_map`` -> ``ros__parameters``; 15-vectors ordered
``x y z roll pitch yaw vx vy vz vroll vpitch vyaw ax ay az``, matrices 15 x 15 row-major or 15 diagonal values):

* ``process_noise_covariance`` diagonal entries x, y, yaw -> ``Q`` (per second);
* ``initial_estimate_covariance`` diagonal entries x, y, yaw -> the covariance the filter starts with;
* ``pose0_rejection_threshold`` -> the fixes' Mahalanobis gate (a distance; absent: no gate, as in
  robot_localization); ``imu0_pose_rejection_threshold`` -> the IMU yaw's gate (absent: none);
* ``odom0_config`` vx, vy, vyaw -> which twist components drive the prediction (vx and vyaw required; vy off:
  held at 0); ``pose0_config`` x, y required (our fixes are positions); ``pose0_config`` yaw and ``imu0_config``
  yaw -> where the absolute yaw comes from (below);
* ``two_d_mode``, ``smooth_lagged_data``, ``history_length`` are recorded in the report.

**Absolute yaw.** The shipped map filter takes its yaw from ``pose0`` (the fix's yaw: with ``heading_source imu``
the IMU's own) and none from ``imu0``, so that one yaw is not fused twice. A replay's frames carry the fix's yaw but
not its ``heading_std_deg``, and with a known-orientation model (the demo's) that yaw is the input convention
(north), not a measurement - the case where docs/FUSION.md says to set the pose0 yaw entry false and let the IMU's
absolute yaw in. So the fixes are fused as x, y only, and the IMU's yaw is fused when the yaml fuses an absolute
yaw at all (``imu0_config`` or ``pose0_config`` yaw true) and the bag has an IMU topic; ``--no-fuse-imu-yaw`` /
``--fuse-imu-yaw`` override. Without any absolute yaw the EKF starts at yaw 0 with sigma 180 deg and usually
diverges (a warning says so). The IMU's angular velocity (``imu0_config`` vyaw) is not fused: the yaw rate is the
odometry's control input here.

**Start.** The filter starts at the first accepted fix, exactly as robot_localization's map filter meets it:
state at the map origin with the yaml's initial covariance (x, y 1e8 m^2, yaw pi^2), the fix fused through the
gate, which leaves ``x, y`` at the fix with about its covariance (the latest IMU yaw, if not older than
``history_length``, is fused at once). Before the first fix there is nothing to anchor the odometry in ``map``:
those frames are reported as not fused. Ground truth is never used by the filter.

**Time.** Everything is processed in stamp order (odometry, IMU, fixes, then the frame's fused pose at equal
stamps). A fix is stamped with its image's stamp and arrives one inference later; here it is applied at its
stamp, which is what ``smooth_lagged_data: true`` (with ``history_length`` above the latency) makes
robot_localization do: revert to the state before the stamp and re-fuse everything after it.

**Figures** (``metrics.json`` ``fusion``): the fused pose at every processed frame's stamp from the first fix on
(``fused.tum``), scored against GT interpolated at the same stamps in the index's ENU frame, unaligned: APE
RMSE / median / max / mean; the 2-D position NEES ``e' P_xy^-1 e`` (mean, median; 2 for a consistent filter);
``largest_jump_m`` = the largest displacement of the fused position by one measurement update (the pose just
before vs just after it at the same stamp: the jump odometry/global shows; motion excluded; the initialising
fix is not a jump); ``largest_error_change_m`` = the largest change of the position error between consecutive
fused poses (the jump net of the true motion, comparable with single frames); fixes fused / rejected; message
counts; the yaml's path and the numbers used.
"""
from __future__ import annotations

import functools
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from unifygeo_ros import geo
from unifygeo_ros.errors import UnifyGeoError
from unifygeo_ros.rosbag import io as bags
from unifygeo_ros.rosbag import trajectory
from unifygeo_ros.rosbag.msgtypes import IMU

#: the shipped robot_localization config, relative to the package's share directory (or the source tree)
EKF_YAML_REL = "config/robot_localization/ekf.yaml"
MAP_SECTION = "ekf_filter_node_map"
#: indices into robot_localization's 15-variable state / config vectors
_X, _Y, _YAW, _VX, _VY, _VYAW = 0, 1, 5, 6, 7, 11
#: what robot_localization puts in place of a zero (or negative) variance
MIN_VARIANCE = 1e-6
#: topics under this prefix are ground truth, never a sensor to fuse
GT_PREFIX = "/gt/"


# ---------------------------------------------------------------------------------------------- settings
@dataclass
class FusionConfig:
    """What ``--fuse`` and its options ask for (``ReplayConfig.fusion``)."""

    ekf_yaml: str | None = None  #: robot_localization parameter file (None: the installed ekf.yaml)
    section: str = MAP_SECTION
    odom_topic: str | None = None  #: None: the one nav_msgs/Odometry topic not under /gt/
    imu_topic: str | None = None  #: None: the one sensor_msgs/Imu topic (none: no IMU)
    imu_yaw: bool | None = None  #: fuse the IMU's absolute yaw; None: when the yaml fuses a yaw and an IMU exists


@dataclass(frozen=True)
class EkfParams:
    """The numbers of one robot_localization EKF section that the replay's filter uses (module docstring)."""

    path: str
    section: str
    process_noise_per_s: tuple[float, float, float]  # x (m^2/s), y (m^2/s), yaw (rad^2/s)
    initial_covariance: tuple[float, float, float]  # x (m^2), y (m^2), yaw (rad^2)
    pose_rejection_threshold: float  # pose0_rejection_threshold (Mahalanobis distance; inf: absent)
    imu_yaw_rejection_threshold: float  # imu0_pose_rejection_threshold (inf: absent)
    odom_twist: tuple[bool, bool, bool]  # odom0_config vx, vy, vyaw
    imu_yaw_configured: bool  # imu0_config yaw
    pose_yaw_configured: bool  # pose0_config yaw
    two_d_mode: bool
    smooth_lagged_data: bool
    history_length_s: float

    def to_json(self) -> dict:
        thr = (lambda v: v if math.isfinite(v) else None)
        return {"path": self.path, "section": self.section,
                "process_noise_per_s": dict(zip(("x_m2", "y_m2", "yaw_rad2"), self.process_noise_per_s)),
                "initial_covariance": dict(zip(("x_m2", "y_m2", "yaw_rad2"), self.initial_covariance)),
                "pose0_rejection_threshold": thr(self.pose_rejection_threshold),
                "imu0_pose_rejection_threshold": thr(self.imu_yaw_rejection_threshold),
                "odom0_config_twist": dict(zip(("vx", "vy", "vyaw"), self.odom_twist)),
                "imu0_config_yaw": self.imu_yaw_configured, "pose0_config_yaw": self.pose_yaw_configured,
                "two_d_mode": self.two_d_mode, "smooth_lagged_data": self.smooth_lagged_data,
                "history_length_s": self.history_length_s}


def default_ekf_yaml() -> Path:
    from unifygeo_ros.resources import find_resource, share_dirs

    p = find_resource(EKF_YAML_REL)
    if p is None:
        raise UnifyGeoError(f"--fuse: {EKF_YAML_REL} not installed (looked in "
                            f"{', '.join(str(d / EKF_YAML_REL) for d in share_dirs())}); pass --ekf-config PATH")
    return p


def _diag3(values: Any, key: str, where: str) -> tuple[float, float, float]:
    """x, y, yaw entries of a 15 x 15 row-major matrix (225 values) or of its 15-value diagonal form."""
    a = np.asarray(values, dtype=np.float64).reshape(-1) if isinstance(values, list) else None
    if a is None or a.size not in (15, 225):
        raise UnifyGeoError(f"{where}: {key} must be 225 values (15 x 15 row-major) or 15 (its diagonal)")
    d = np.diag(a.reshape(15, 15)) if a.size == 225 else a
    out = tuple(float(d[i]) for i in (_X, _Y, _YAW))
    if not all(math.isfinite(v) and v >= 0 for v in out):
        raise UnifyGeoError(f"{where}: {key} x, y, yaw entries must be finite and >= 0, got {out}")
    return out  # type: ignore[return-value]


def _config15(params: dict, key: str, where: str) -> list[bool]:
    v = params.get(key)
    if not isinstance(v, list) or len(v) != 15 or not all(isinstance(b, bool) for b in v):
        raise UnifyGeoError(f"{where}: {key} must be a list of 15 booleans (x y z roll pitch yaw vx vy vz vroll "
                            f"vpitch vyaw ax ay az), got {v!r}")
    return v


def load_ekf_params(path: str | Path | None = None, section: str = MAP_SECTION) -> EkfParams:
    """Parse ``section`` of a robot_localization parameter file (default: the installed ``ekf.yaml``).
    :class:`UnifyGeoError` naming the file and what is missing when the section or a key the filter needs is
    absent or malformed."""
    p = Path(path) if path else default_ekf_yaml()
    try:
        doc = yaml.safe_load(p.read_text())
    except (OSError, yaml.YAMLError) as exc:
        raise UnifyGeoError(f"--fuse: cannot read the EKF parameters {p}: {exc}") from exc
    sections = sorted(doc) if isinstance(doc, dict) else []
    if section not in sections:
        raise UnifyGeoError(f"--fuse: {p} has no section {section!r} (robot_localization's map-frame EKF, whose "
                            f"settings the replay uses); its sections: {', '.join(sections) or 'none'}")
    params = (doc[section] or {}).get("ros__parameters") if isinstance(doc[section], dict) else None
    where = f"{p} [{section}]"
    if not isinstance(params, dict):
        raise UnifyGeoError(f"--fuse: {where} has no ros__parameters")
    for key in ("process_noise_covariance", "initial_estimate_covariance", "odom0_config", "pose0_config"):
        if key not in params:
            raise UnifyGeoError(f"--fuse: {where} lacks {key}, which the replay's filter needs")
    odom = _config15(params, "odom0_config", where)
    pose = _config15(params, "pose0_config", where)
    imu = _config15(params, "imu0_config", where) if "imu0_config" in params else [False] * 15
    if not (odom[_VX] and odom[_VYAW]):
        raise UnifyGeoError(f"--fuse: {where} odom0_config must fuse vx and vyaw (the prediction's control input)")
    if not (pose[_X] and pose[_Y]):
        raise UnifyGeoError(f"--fuse: {where} pose0_config must fuse x and y (our fixes are positions)")
    init = _diag3(params["initial_estimate_covariance"], "initial_estimate_covariance", where)
    if not (init[0] > 0 and init[1] > 0):
        raise UnifyGeoError(f"--fuse: {where} initial_estimate_covariance x, y must be > 0, got {init[:2]}")

    def threshold(key: str) -> float:
        v = params.get(key)
        if v is None:
            return math.inf
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not v > 0:
            raise UnifyGeoError(f"--fuse: {where} {key} must be a positive number, got {v!r}")
        return float(v)

    return EkfParams(
        path=str(p), section=section,
        process_noise_per_s=_diag3(params["process_noise_covariance"], "process_noise_covariance", where),
        initial_covariance=init, pose_rejection_threshold=threshold("pose0_rejection_threshold"),
        imu_yaw_rejection_threshold=threshold("imu0_pose_rejection_threshold"),
        odom_twist=(True, bool(odom[_VY]), True), imu_yaw_configured=bool(imu[_YAW]),
        pose_yaw_configured=bool(pose[_YAW]), two_d_mode=bool(params.get("two_d_mode", False)),
        smooth_lagged_data=bool(params.get("smooth_lagged_data", False)),
        history_length_s=float(params.get("history_length", 0.0)))


# ------------------------------------------------------------------------------------------- measurements
@dataclass
class TwistSample:
    """Wheel odometry: twist in ``base_link`` and its variances (vx, vy, vyaw) at ``t_ns``."""

    t_ns: int
    v: np.ndarray  # (3,) vx m/s, vy m/s, vyaw rad/s
    var: np.ndarray  # (3,)


@dataclass
class YawSample:
    t_ns: int
    yaw_rad: float  # ENU (REP-103)
    var_rad2: float


@dataclass
class PositionFix:
    """One accepted (published) fix: ENU position of the replay's frame and its 2 x 2 covariance."""

    t_ns: int
    east_m: float
    north_m: float
    cov_m2: np.ndarray  # (2, 2)


def _var(v: float) -> float:
    return v if v > 0 else MIN_VARIANCE


def twist_sample(msg: Any, t_ns: int) -> TwistSample | None:
    """``nav_msgs/Odometry`` -> its twist (vx, vy, vyaw) and variances; None when not finite."""
    tw, c = msg.twist.twist, np.asarray(msg.twist.covariance, np.float64).reshape(-1)
    v = np.array([tw.linear.x, tw.linear.y, tw.angular.z], np.float64)
    var = c[[0, 7, 35]] if c.size == 36 else np.full(3, np.nan)
    if not (np.all(np.isfinite(v)) and np.all(np.isfinite(var))):
        return None
    return TwistSample(int(t_ns), v, np.array([_var(float(x)) for x in var]))


def yaw_sample(msg: Any, t_ns: int) -> YawSample | None:
    """``sensor_msgs/Imu`` -> its ENU yaw and ``orientation_covariance[8]``; None without an orientation
    (covariance[0] == -1, the message definition's convention) or when not finite."""
    c = np.asarray(msg.orientation_covariance, np.float64).reshape(-1)
    q = msg.orientation
    if c.size != 9 or c[0] == -1.0 or not np.isfinite(c[8]):
        return None
    n = q.x * q.x + q.y * q.y + q.z * q.z + q.w * q.w
    if not (math.isfinite(n) and n > 1e-12):
        return None
    return YawSample(int(t_ns), math.radians(geo.quaternion_xyzw_to_yaw_deg(q.x, q.y, q.z, q.w)), _var(float(c[8])))


def pick_topics(topics: list[bags.TopicInfo], cfg: FusionConfig, gt_topic: str | None = None
                ) -> tuple[str, str | None]:
    """(odometry topic, IMU topic or None): the given ones (checked), or the one nav_msgs/Odometry topic that is
    not ground truth (not under ``/gt/``, not ``gt_topic``) and the one sensor_msgs/Imu topic."""
    avail = bags.describe_topics(topics)
    by_name = {t.topic: t.msgtype for t in topics}

    def given(topic: str, msgtype: str, flag: str) -> str:
        if by_name.get(topic) != msgtype:
            what = "not in the bag" if topic not in by_name else f"of type {by_name[topic]}"
            raise bags.BagError(f"--fuse: {flag} {topic} is {what}, expected {msgtype}; topics found: {avail}")
        return topic

    if cfg.odom_topic:
        odom = given(cfg.odom_topic, bags.ODOMETRY, "--odom-topic")
    else:
        cands = [t.topic for t in topics if t.msgtype == bags.ODOMETRY and not t.topic.startswith(GT_PREFIX)
                 and t.topic != gt_topic]
        if not cands:
            raise bags.BagError(f"--fuse: no wheel odometry in the bag (a {bags.ODOMETRY} topic not under "
                                f"{GT_PREFIX}); topics found: {avail}")
        if len(cands) > 1:
            raise bags.BagError(f"--fuse: several odometry topics ({', '.join(cands)}): pass --odom-topic")
        odom = cands[0]
    if cfg.imu_topic:
        return odom, given(cfg.imu_topic, IMU, "--imu-topic")
    imus = [t.topic for t in topics if t.msgtype == IMU]
    if len(imus) > 1:
        raise bags.BagError(f"--fuse: several IMU topics ({', '.join(imus)}): pass --imu-topic")
    return odom, (imus[0] if imus else None)


class SensorCollector:
    """The odometry and IMU messages of a bag, collected in replay's bag loop (:meth:`add`)."""

    def __init__(self, reader: Any, cfg: FusionConfig, gt_topic: str | None = None):
        self.cfg = cfg
        self.odom_topic, self.imu_topic = pick_topics(bags.list_topics(reader), cfg, gt_topic)
        self.connections = [c for c in reader.connections
                            if c.topic in (self.odom_topic, self.imu_topic) and c.msgtype in (bags.ODOMETRY, IMU)]
        self.twists: list[TwistSample] = []
        self.yaws: list[YawSample] = []
        self.odometry_messages = self.imu_messages = self.skipped = 0

    def add(self, conn: Any, msg: Any, log_ns: int) -> bool:
        """Take ``msg`` if it is on the odometry or IMU topic (True), else leave it (False)."""
        if conn.topic == self.odom_topic and conn.msgtype == bags.ODOMETRY:
            self.odometry_messages += 1
            sample, into = twist_sample(msg, _stamp_ns(msg, log_ns)), self.twists
        elif conn.topic == self.imu_topic and conn.msgtype == IMU:
            self.imu_messages += 1
            sample, into = yaw_sample(msg, _stamp_ns(msg, log_ns)), self.yaws
        else:
            return False
        if sample is None:
            self.skipped += 1
        else:
            into.append(sample)
        return True


def _stamp_ns(msg: Any, log_ns: int) -> int:
    t = bags.stamp_to_ns(msg.header.stamp)
    return t if t > 0 else int(log_ns)


# ----------------------------------------------------------------------------------- models (for filterpy)
def wrap_pi(a: float) -> float:
    return (a + math.pi) % (2.0 * math.pi) - math.pi


def motion_model(x: np.ndarray, u: np.ndarray) -> np.ndarray:
    """State (3, 1) after ``dt`` of twist ``u = (vx, vy, vyaw, dt)`` (mid-point heading; yaw wrapped)."""
    vx, vy, w, dt = (float(v) for v in np.asarray(u).reshape(-1))
    h = float(x[2, 0]) + 0.5 * w * dt
    c, s = math.cos(h), math.sin(h)
    out = x + np.array([[(vx * c - vy * s) * dt], [(vx * s + vy * c) * dt], [w * dt]])
    out[2, 0] = wrap_pi(float(out[2, 0]))
    return out


def motion_jacobians(x: np.ndarray, u: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(F, G): Jacobians of :func:`motion_model` in the state (3 x 3) and in the twist (vx, vy, vyaw) (3 x 3)."""
    vx, vy, w, dt = (float(v) for v in np.asarray(u).reshape(-1))
    h = float(x[2, 0]) + 0.5 * w * dt
    c, s = math.cos(h), math.sin(h)
    dx_dh, dy_dh = -(vx * s + vy * c) * dt, (vx * c - vy * s) * dt
    F = np.array([[1.0, 0.0, dx_dh], [0.0, 1.0, dy_dh], [0.0, 0.0, 1.0]])
    G = np.array([[c * dt, -s * dt, 0.5 * dt * dx_dh], [s * dt, c * dt, 0.5 * dt * dy_dh], [0.0, 0.0, dt]])
    return F, G


def position_hx(x: np.ndarray) -> np.ndarray:
    return x[:2]


def position_jacobian(x: np.ndarray) -> np.ndarray:
    return np.array([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]])


def yaw_hx(x: np.ndarray) -> np.ndarray:
    return x[2:3]


def yaw_jacobian(x: np.ndarray) -> np.ndarray:
    return np.array([[0.0, 0.0, 1.0]])


def yaw_residual(z: np.ndarray, hx: np.ndarray) -> np.ndarray:
    return np.array([[wrap_pi(float(np.asarray(z).reshape(-1)[0]) - float(hx.reshape(-1)[0]))]])


@functools.lru_cache(maxsize=1)
def _ekf_class():
    try:
        from filterpy.kalman import ExtendedKalmanFilter
    except ImportError as exc:
        raise UnifyGeoError("--fuse needs filterpy: pip install filterpy (or the package's [bags] extra)") from exc

    class PlanarEKF(ExtendedKalmanFilter):
        """filterpy's EKF with the unicycle motion model as its state prediction (``u`` = twist and dt)."""

        def predict_x(self, u=0):
            self.x = motion_model(self.x, u)

    return PlanarEKF


# ----------------------------------------------------------------------------------------------- the filter
class PlanarFusion:
    """The map-frame EKF of the module docstring, fed in stamp order by :func:`fuse`."""

    def __init__(self, params: EkfParams, imu_yaw: bool):
        self.params, self.use_imu_yaw = params, bool(imu_yaw)
        self.ekf = None  # filterpy EKF from the first accepted fix on
        self.t_ns: int | None = None  # the filter's time
        self.twist: TwistSample | None = None  # held between odometry messages
        self.twist_interval_s = 0.05
        self.last_yaw: YawSample | None = None
        self.fixes_fused = self.fixes_rejected = self.fixes_before_start = 0
        self.yaws_fused = self.yaws_rejected = 0
        self.jumps: list[tuple[int, float]] = []  # (stamp, displacement by one update), after the first fix

    @property
    def started(self) -> bool:
        return self.ekf is not None

    # -------------------------------------------------------------------------------------------- predict
    def _predict_to(self, t_ns: int, twist: TwistSample | None, interval_s: float) -> None:
        dt = (t_ns - self.t_ns) * 1e-9
        if dt <= 0:
            return
        if twist is None:
            v, var = np.zeros(3), np.zeros(3)
        else:
            on = np.array(self.params.odom_twist, float)
            v, var = twist.v * on, twist.var * on
        u = np.array([v[0], v[1], v[2], dt])
        F, G = motion_jacobians(self.ekf.x, u)
        M = np.diag(var * (max(interval_s, 1e-9) / dt))  # density M T over this step: see the module docstring
        self.ekf.F = F
        self.ekf.Q = G @ M @ G.T + np.diag(self.params.process_noise_per_s) * dt
        self.ekf.predict(u=u)
        self.t_ns = t_ns

    def predict_to(self, t_ns: int) -> None:
        """Predict to ``t_ns`` with the held twist (no-op before the first fix or for a past stamp)."""
        if self.started:
            self._predict_to(t_ns, self.twist, self.twist_interval_s)

    # --------------------------------------------------------------------------------------- measurements
    def odometry(self, s: TwistSample, interval_s: float) -> None:
        """A twist for the interval ending at ``s.t_ns``: predict to it with this twist, then hold it."""
        if self.started:
            self._predict_to(s.t_ns, s, interval_s)
        self.twist, self.twist_interval_s = s, interval_s

    def imu(self, s: YawSample) -> None:
        self.last_yaw = s
        if not (self.started and self.use_imu_yaw):
            return
        self._predict_to(s.t_ns, self.twist, self.twist_interval_s)
        self._update_yaw(s)

    def _update_yaw(self, s: YawSample) -> None:
        ok, _ = self._gated_update(np.array([[s.yaw_rad]]), yaw_jacobian, yaw_hx, np.array([[s.var_rad2]]),
                                   self.params.imu_yaw_rejection_threshold, yaw_residual, s.t_ns)
        if ok:
            self.yaws_fused += 1
        else:
            self.yaws_rejected += 1

    def fix(self, f: PositionFix) -> str:
        """Fuse one accepted fix: ``"started"`` (the first one), ``"fused"``, ``"rejected"`` (by the gate) or
        ``"before_start"`` (a would-be first fix rejected by the gate of the initial covariance)."""
        z = np.array([[f.east_m], [f.north_m]])
        R = 0.5 * (np.asarray(f.cov_m2, float) + np.asarray(f.cov_m2, float).T)
        R = R + np.diag([MIN_VARIANCE if R[i, i] <= 0 else 0.0 for i in range(2)])
        if not self.started:
            ekf = _ekf_class()(dim_x=3, dim_z=2)
            ekf.x = np.zeros((3, 1))  # robot_localization's map filter starts at the map origin ...
            ekf.P = np.diag(self.params.initial_covariance)  # ... with the yaml's initial covariance
            self.ekf, self.t_ns = ekf, f.t_ns
            ok, _ = self._gated_update(z, position_jacobian, position_hx, R, self.params.pose_rejection_threshold,
                                       np.subtract, f.t_ns, record_jump=False)
            if not ok:  # a fix beyond the gate of the initial covariance (~40 km from the origin): not started
                self.ekf, self.t_ns = None, None
                self.fixes_before_start += 1
                return "before_start"
            self.fixes_fused += 1
            y = self.last_yaw
            if self.use_imu_yaw and y is not None and (f.t_ns - y.t_ns) * 1e-9 <= max(self.params.history_length_s,
                                                                                     0.1):
                self._update_yaw(y)
            return "started"
        self._predict_to(f.t_ns, self.twist, self.twist_interval_s)
        ok, _ = self._gated_update(z, position_jacobian, position_hx, R, self.params.pose_rejection_threshold,
                                   np.subtract, f.t_ns)
        if ok:
            self.fixes_fused += 1
            return "fused"
        self.fixes_rejected += 1
        return "rejected"

    def _gated_update(self, z, H, hx, R, threshold: float, residual, t_ns: int,
                      record_jump: bool = True) -> tuple[bool, float]:
        """filterpy's update, undone when its innovation's Mahalanobis distance d has d^2 >= threshold^2
        (robot_localization's ``checkMahalanobisThreshold``). Returns (accepted, d)."""
        ekf = self.ekf
        x0, P0 = ekf.x.copy(), ekf.P.copy()
        ekf.update(z, HJacobian=H, Hx=hx, R=R, residual=residual)
        d = float(ekf.mahalanobis)
        if not (d < threshold):  # NaN rejected too
            ekf.x, ekf.P = x0, P0
            return False, d
        ekf.x[2, 0] = wrap_pi(float(ekf.x[2, 0]))
        ekf.P = 0.5 * (ekf.P + ekf.P.T)
        if record_jump:
            self.jumps.append((int(t_ns), float(np.hypot(*(ekf.x[:2, 0] - x0[:2, 0])))))
        return True, d

    def pose(self) -> tuple[float, float, float, np.ndarray] | None:
        """(east, north, yaw rad, 2 x 2 position covariance), or None before the first fix."""
        if not self.started:
            return None
        x = self.ekf.x[:, 0]
        return float(x[0]), float(x[1]), float(x[2]), self.ekf.P[:2, :2].copy()


# -------------------------------------------------------------------------------------------------- fusion
@dataclass
class FusedTrack:
    """The filter's output at the frame stamps, and what happened to each fix."""

    frame_t_ns: np.ndarray  # (F,) every processed frame's stamp
    fused: np.ndarray  # (F,) bool: a fused pose exists (from the first accepted fix on)
    east_m: np.ndarray  # (F,) NaN where not fused
    north_m: np.ndarray
    yaw_rad: np.ndarray
    cov_m2: np.ndarray  # (F, 2, 2)
    fixes: list[PositionFix] = field(default_factory=list)
    fix_status: list[str] = field(default_factory=list)  # started | fused | rejected | before_start
    jumps: list[tuple[int, float]] = field(default_factory=list)
    fixes_fused: int = 0
    fixes_rejected: int = 0
    yaws_fused: int = 0
    yaws_rejected: int = 0
    imu_yaw: bool = False


def _intervals(t_ns: np.ndarray) -> np.ndarray:
    """Each odometry message's interval (s): time since the previous one (the first: the next interval)."""
    if t_ns.size == 0:
        return np.zeros(0)
    d = np.diff(t_ns).astype(np.float64) * 1e-9
    first = d[0] if d.size else 0.05
    return np.concatenate([[first], d])


def fuse(twists: list[TwistSample], yaws: list[YawSample], fixes: list[PositionFix], frame_t_ns: list[int],
         params: EkfParams, imu_yaw: bool) -> FusedTrack:
    """Run :class:`PlanarFusion` over the messages in stamp order; the fused pose at each ``frame_t_ns``."""
    ft = PlanarFusion(params, imu_yaw)
    t_odo = np.array([s.t_ns for s in twists], np.int64)
    intervals = _intervals(t_odo)
    # (stamp, order at equal stamps, index): odometry, IMU, fix, then the frame's fused pose
    events = ([(s.t_ns, 0, i) for i, s in enumerate(twists)] + [(s.t_ns, 1, i) for i, s in enumerate(yaws)]
              + [(f.t_ns, 2, i) for i, f in enumerate(fixes)] + [(int(t), 3, i) for i, t in enumerate(frame_t_ns)])
    events.sort()
    n = len(frame_t_ns)
    e, nn, yw = np.full(n, np.nan), np.full(n, np.nan), np.full(n, np.nan)
    cov = np.full((n, 2, 2), np.nan)
    status = [""] * len(fixes)
    for t, kind, i in events:
        if kind == 0:
            ft.odometry(twists[i], float(intervals[i]))
        elif kind == 1:
            ft.imu(yaws[i])
        elif kind == 2:
            status[i] = ft.fix(fixes[i])
        else:
            if ft.started:
                ft.predict_to(int(t))
                e[i], nn[i], yw[i], cov[i] = ft.pose()
    return FusedTrack(np.asarray(frame_t_ns, np.int64), np.isfinite(e), e, nn, yw, cov, list(fixes), status,
                      ft.jumps, ft.fixes_fused, ft.fixes_rejected, ft.yaws_fused, ft.yaws_rejected, ft.use_imu_yaw)


def score_track(track: FusedTrack, gt: trajectory.Trajectory, max_gap_s: float) -> tuple[dict, np.ndarray]:
    """The figures of the fused track against GT (module docstring) and the GT association's errors (F, 2)."""
    assoc = trajectory.associate(gt, track.frame_t_ns, max_gap_s)
    ok = track.fused & np.asarray(assoc.valid, bool)
    err_en = np.stack([track.east_m - assoc.east_m, track.north_m - assoc.north_m], axis=1)
    err_en[~ok] = np.nan
    errors = np.hypot(err_en[:, 0], err_en[:, 1])
    nees = trajectory.nees_2d(err_en[ok], track.cov_m2[ok])
    nees = nees[np.isfinite(nees)]
    st = trajectory.error_stats(errors[ok])
    idx = np.flatnonzero(ok)
    step = np.hypot(*np.diff(err_en[idx], axis=0).T) if idx.size > 1 else np.zeros(0)
    step = step[np.diff(idx) == 1] if idx.size > 1 else step  # consecutive frames only
    jumps = [j for _, j in track.jumps]
    fig = {
        "count": int(ok.sum()), "frames": int(track.frame_t_ns.size), "frames_fused": int(track.fused.sum()),
        "availability": float(track.fused.mean()) if track.fused.size else 0.0,
        "ape": {k: st[k] for k in ("rmse_m", "median_m", "max_m", "mean_m")},
        "nees": {"mean": float(nees.mean()) if nees.size else None,
                 "median": float(np.median(nees)) if nees.size else None, "count": int(nees.size), "expected": 2.0},
        "largest_jump_m": float(max(jumps)) if jumps else 0.0,
        "largest_error_change_m": float(step.max()) if step.size else None,
        "fixes_fused": track.fixes_fused, "fixes_rejected": track.fixes_rejected,
        "fixes_before_start": int(sum(1 for s in track.fix_status if s == "before_start")),
        "imu_yaws_fused": track.yaws_fused, "imu_yaws_rejected": track.yaws_rejected,
    }
    return fig, err_en


# ------------------------------------------------------------------------------------------------ replay
@dataclass
class FusionResult:
    """What replay writes: the report (``metrics.json`` ``fusion``), the track and its errors (for the files)."""

    report: dict
    track: FusedTrack
    err_en_m: np.ndarray  # (F, 2), NaN where not fused or without GT
    gt: trajectory.Trajectory


def run_fusion(sensors: SensorCollector, frames: list, gt: trajectory.Trajectory, cfg: FusionConfig,
               max_gap_s: float, warnings: list[str]) -> FusionResult:
    """Fuse the collected sensors with replay's published frames (``status == "fix"``, ``east_m``/``north_m``
    and ``cov_en_m2`` in the replay's ENU frame, as :func:`~unifygeo_ros.rosbag.replay_scoring.score_frames`
    leaves them) and score the result against ``gt`` (the same frame)."""
    params = load_ekf_params(cfg.ekf_yaml, cfg.section)
    yaw_wanted = params.imu_yaw_configured or params.pose_yaw_configured
    imu_yaw = (yaw_wanted if cfg.imu_yaw is None else bool(cfg.imu_yaw)) and sensors.imu_topic is not None
    if cfg.imu_yaw and sensors.imu_topic is None:
        warnings.append("--fuse-imu-yaw: the bag has no sensor_msgs/Imu topic: no absolute yaw is fused")
    if imu_yaw and not sensors.yaws:
        warnings.append(f"--fuse: {sensors.imu_topic} has no usable orientation: no absolute yaw is fused")
    if not imu_yaw:
        warnings.append("--fuse: no absolute yaw source: the yaw must be learned from the fixes through the motion, "
                        "from yaw 0 with sigma 180 deg; the EKF diverges unless the drive starts near east "
                        "(docs/REPLAY.md, 'Fusion (--fuse)')")
    if sensors.skipped:
        warnings.append(f"--fuse: {sensors.skipped} odometry/IMU messages with non-finite values skipped")
    fixes = [PositionFix(f.t_ns, float(f.east_m), float(f.north_m), np.asarray(f.cov_en_m2, float).reshape(2, 2))
             for f in frames if f.status == "fix" and math.isfinite(f.east_m) and math.isfinite(f.north_m)]
    twists = sorted(sensors.twists, key=lambda s: s.t_ns)
    yaws = sorted(sensors.yaws, key=lambda s: s.t_ns)
    track = fuse(twists, yaws, fixes, [f.t_ns for f in frames], params, imu_yaw)
    fig, err_en = score_track(track, gt, max_gap_s)
    if not twists:
        warnings.append(f"--fuse: no usable odometry on {sensors.odom_topic}: the fused pose does not move")
    if fixes and not track.fused.any():
        warnings.append("--fuse: every fix was rejected by the gate of the initial covariance: nothing fused")
    fig.update(odometry_messages=sensors.odometry_messages, imu_messages=sensors.imu_messages,
               config={**params.to_json(), "odom_topic": sensors.odom_topic, "imu_topic": sensors.imu_topic,
                       "imu_yaw_fused": imu_yaw, "fix_yaw_fused": False,
                       "state": "x, y, yaw (ENU); odometry twist vx, vy, vyaw as the control input",
                       "filter": "filterpy.kalman.ExtendedKalmanFilter"})
    return FusionResult(fig, track, err_en, gt)


__all__ = ["EKF_YAML_REL", "MAP_SECTION", "EkfParams", "FusedTrack", "FusionConfig", "FusionResult", "PlanarFusion",
           "PositionFix", "SensorCollector", "TwistSample", "YawSample", "fuse", "load_ekf_params", "pick_topics",
           "run_fusion", "score_track"]
