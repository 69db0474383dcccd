"""``unifygeo replay --fuse``: wheel odometry + IMU yaw + our accepted fixes in one EKF, the way
robot_localization's map-frame EKF (``ekf_filter_node_map`` of ``config/robot_localization/ekf.yaml``) fuses them,
and the fused trajectory scored against GT.

The pieces, one module each: :mod:`~unifygeo_ros.rosbag.fusion_config` (``--fuse``'s options and the
numbers read from robot_localization's ``ekf.yaml``), :mod:`~unifygeo_ros.rosbag.fusion_inputs` (odometry, IMU
and fixes as the filter takes them), :mod:`~unifygeo_ros.rosbag.planar_ekf` (the filter: state, motion and
measurement models, gate, start); this module runs the filter over a replay (:func:`fuse`, :func:`run_fusion`)
and scores the fused track (:func:`score_track`).

**Absolute yaw.** The shipped map filter takes its yaw from ``pose0`` (the fix's yaw: with ``heading_source imu``
the IMU's own) and none from ``imu0``, so that one yaw is not fused twice. A replay's frames carry the fix's yaw but
not its ``heading_std_deg``, and with a known-orientation model (the demo's) that yaw is the input convention
(north), not a measurement - the case where docs/FUSION.md says to set the pose0 yaw entry false and let the IMU's
absolute yaw in. So the fixes are fused as x, y only, and the IMU's yaw is fused when the yaml fuses an absolute
yaw at all (``imu0_config`` or ``pose0_config`` yaw true) and the bag has an IMU topic; ``--no-fuse-imu-yaw`` /
``--fuse-imu-yaw`` override. Without any absolute yaw the EKF starts at yaw 0 with sigma 180 deg and usually
diverges (a warning says so). The IMU's angular velocity (``imu0_config`` vyaw) is not fused: the yaw rate is the
odometry's control input here.

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

import math
from dataclasses import dataclass, field

import numpy as np

from unifygeo_ros.rosbag import trajectory
from unifygeo_ros.rosbag.fusion_config import EKF_YAML_REL, MAP_SECTION, EkfParams, FusionConfig, load_ekf_params
from unifygeo_ros.rosbag.fusion_inputs import PositionFix, SensorCollector, TwistSample, YawSample, pick_topics
from unifygeo_ros.rosbag.planar_ekf import PlanarFusion, motion_jacobians, motion_model


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
        warnings.append(f"--fuse: {sensors.skipped} odometry/IMU messages with unusable values (not finite, "
                        "beyond a ground robot's physics) skipped")
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
           "motion_jacobians", "motion_model", "run_fusion", "score_track"]
