"""The settings of ``unifygeo replay --fuse``: what the user asks for (:class:`FusionConfig`) and the numbers
of robot_localization's map-frame EKF read from its parameter file (:class:`EkfParams`, :func:`load_ekf_params`;
default: the installed ``config/robot_localization/ekf.yaml``), so what the replay measures is what users are told
to run.

**What is read from the yaml** (section ``ekf_filter_node_map`` -> ``ros__parameters``; 15-vectors ordered
``x y z roll pitch yaw vx vy vz vroll vpitch vyaw ax ay az``, matrices 15 x 15 row-major or 15 diagonal values):

* ``process_noise_covariance`` diagonal entries x, y, yaw -> ``Q`` (per second);
* ``initial_estimate_covariance`` diagonal entries x, y, yaw -> the covariance the filter starts with;
* ``pose0_rejection_threshold`` -> the fixes' Mahalanobis gate (a distance; absent: no gate, as in
  robot_localization); ``imu0_pose_rejection_threshold`` -> the IMU yaw's gate (absent: none);
* ``odom0_config`` vx, vy, vyaw -> which twist components drive the prediction (vx and vyaw required; vy off:
  held at 0); ``pose0_config`` x, y required (our fixes are positions); ``pose0_config`` yaw and ``imu0_config``
  yaw -> where the absolute yaw comes from (:mod:`unifygeo_ros.rosbag.fusion`, "Absolute yaw");
* ``two_d_mode``, ``smooth_lagged_data``, ``history_length`` are recorded in the report.
* zero or negative variances are replaced by :data:`MIN_VARIANCE`, as robot_localization does.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from unifygeo_ros.errors import UnifyGeoError

#: the shipped robot_localization config, relative to the package's share directory (or the source tree)
EKF_YAML_REL = "config/robot_localization/ekf.yaml"
MAP_SECTION = "ekf_filter_node_map"
#: indices into robot_localization's 15-variable state / config vectors
_X, _Y, _YAW, _VX, _VY, _VYAW = 0, 1, 5, 6, 7, 11
#: what robot_localization puts in place of a zero (or negative) variance
MIN_VARIANCE = 1e-6


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

