"""The records of ``unifygeo replay``: its configuration, one result per frame, the report, the ground truth."""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from unifygeo_ros import geo
from unifygeo_ros.errors import UnifyGeoError
from unifygeo_ros.localization.pipeline import PipelineSettings
from unifygeo_ros.model.backends import BackendSettings
from unifygeo_ros.rosbag import io as bags
from unifygeo_ros.rosbag import trajectory
from unifygeo_ros.rosbag.fusion_config import FusionConfig

#: GT message types and how their positions are expressed.
GT_GEOGRAPHIC = (bags.NAVSATFIX, bags.GEOPOSE_STAMPED, bags.GEOPOSE_COV_STAMPED)
GT_LOCAL = (bags.ODOMETRY, "geometry_msgs/msg/PoseStamped", bags.POSE_COV_STAMPED)
GT_TYPES = GT_GEOGRAPHIC + GT_LOCAL

# frame status values (frames.csv, metrics.json)
FIX, NO_FIX, UNDECODABLE, DROPPED = "fix", "no_fix", "undecodable", "dropped"


# ------------------------------------------------------------------------------------------------ results
@dataclass
class FrameResult:
    """One processed image and what became of it."""

    index: int  # position of the image among the image topic's messages
    t_ns: int  # header stamp of the image (recording time)
    status: str  # fix | no_fix | undecodable | dropped
    latitude_deg: float = math.nan
    longitude_deg: float = math.nan
    east_m: float = math.nan  # in the replay's ENU frame (the index's origin)
    north_m: float = math.nan
    yaw_deg: float = math.nan
    cov_en_m2: tuple[float, float, float, float] = (math.nan,) * 4  # row-major 2x2
    score: float = math.nan
    latency_ms: float = math.nan
    protection_level_m: float = math.nan  # the fix's (published or withheld); NaN without one or in --live
    note: str = ""
    reason: str = ""  # why the output was withheld (no_fix): localization.gate.WITHHELD_REASONS
    # tracking mode (in-process): the filter's state, why it was (re)initialised at this frame, its time beyond the
    # single-frame localizer, and this frame's global fix (the single-frame answer on the same frame) and its verdict
    tracking_state: str = ""
    reinitialised: str = ""
    evidence_log_ratio: float = math.nan  # how much better the belief explains this frame than "elsewhere" (log)
    odometry_scale: float = math.nan  # the odometry's scale the tracking filter learnt (TrackEstimate.odometry_scale)
    imu_heading_offset_deg: float = math.nan  # the IMU's heading offset measured (TrackEstimate.imu_heading_offset_deg)
    beyond_single_ms: float = math.nan
    single_latitude_deg: float = math.nan
    single_longitude_deg: float = math.nan
    single_accepted: bool = False


@dataclass
class ReplayReport:
    """What ``metrics.json`` holds. Counts: ``frames`` = images processed (after --every/--rate); ``count`` =
    scored pairs (a fix with GT); ``frames_without_fix`` = share of processed frames with no fix (the pipeline's
    gate withheld it - counted by reason in ``withheld_by_reason`` -, the image was undecodable, or in --live mode
    no answer from the node); ``frames_without_gt`` = fixes with no GT within ``max_gap_s`` (counted, not
    scored); ``data_quality`` = the inputs left out and the frames not scored, by reason
    (:class:`~unifygeo_ros.rosbag.replay_quality.DataQuality`)."""

    count: int
    frames: int
    frames_without_fix: float
    frames_without_fix_count: int
    frames_without_gt: int
    status_counts: dict
    position_error: dict  # trajectory.error_stats
    heading_error: dict  # trajectory.heading_stats
    covariance: dict  # trajectory.covariance_stats
    latency: dict  # trajectory.latency_stats
    config: dict
    withheld_by_reason: dict = field(default_factory=dict)  # GATE_REASONS key -> frames (in-process replay)
    trust: dict = field(default_factory=dict)  # localization.integrity.TrustReport: published fixes vs frames
    fusion: dict | None = None  # --fuse: rosbag.fusion's figures of the fused trajectory (None without --fuse)
    tracking: dict | None = None  # rosbag.replay_tracking: convergence, after convergence, kidnap, NEES, time
    warnings: list[str] = field(default_factory=list)
    data_quality: dict = field(default_factory=dict)  # rosbag.replay_quality.DataQuality: what was not scored, why

    # flat aliases of the headline numbers
    @property
    def rmse_m(self) -> float | None:
        return self.position_error.get("rmse_m")

    def to_json(self) -> dict:
        d = asdict(self)
        pe = self.position_error
        d.update(mean_error_m=pe.get("mean_m"), median_error_m=pe.get("median_m"), rmse_m=pe.get("rmse_m"),
                 recall=pe.get("recall"), heading_error_median_deg=self.heading_error.get("median_deg"),
                 heading_error_mean_deg=self.heading_error.get("mean_deg"),
                 latency_p50_ms=self.latency.get("p50_ms"), latency_p95_ms=self.latency.get("p95_ms"))
        return d


# ------------------------------------------------------------------------------------------- ground truth
@dataclass
class GroundTruth:
    t_ns: list[int] = field(default_factory=list)
    lat_deg: list[float] = field(default_factory=list)
    lon_deg: list[float] = field(default_factory=list)
    yaw_deg: list[float] = field(default_factory=list)
    excluded: dict[str, int] = field(default_factory=dict)  # replay_quality reason -> GT messages not used


def quat_yaw_deg(q: Any) -> float:
    n = q.x * q.x + q.y * q.y + q.z * q.z + q.w * q.w
    if not np.isfinite(n) or n < 1e-12:
        return math.nan
    return geo.quaternion_xyzw_to_yaw_deg(q.x, q.y, q.z, q.w)


def gt_sample(msg: Any, msgtype: str, local_frame: geo.LocalENU) -> tuple[float, float, float] | None:
    """``(lat_deg, lon_deg, yaw_deg)`` of one GT message (yaw NaN when the type has no orientation); None for a
    NavSatFix without a fix. Local-frame types are converted through ``local_frame`` (ENU-aligned). The position
    is not checked here (:func:`~unifygeo_ros.rosbag.replay_quality.gt_position_problem`)."""
    if msgtype == bags.NAVSATFIX:
        if int(msg.status.status) < 0:
            return None
        return float(msg.latitude), float(msg.longitude), math.nan
    if msgtype in (bags.GEOPOSE_STAMPED, bags.GEOPOSE_COV_STAMPED):
        pose = msg.pose if msgtype == bags.GEOPOSE_STAMPED else msg.pose.pose
        return float(pose.position.latitude), float(pose.position.longitude), quat_yaw_deg(pose.orientation)
    if msgtype in GT_LOCAL:
        pose = msg.pose if msgtype == "geometry_msgs/msg/PoseStamped" else msg.pose.pose
        lat, lon = local_frame.from_en(float(pose.position.x), float(pose.position.y))
        return float(lat), float(lon), quat_yaw_deg(pose.orientation)
    raise UnifyGeoError(f"unsupported GT type {msgtype}")


# ------------------------------------------------------------------------------------------------- config
@dataclass
class ReplayConfig:
    """What ``unifygeo replay`` does; ``pipeline``: the node's settings (defaults: the node's defaults)."""

    bag: str
    index: str | None
    out: str
    image_topic: str | None = None  # a panorama topic; None: chosen from the bag (rosbag.replay_topics)
    gt_topic: str | None = None  # None: chosen from the bag
    checkpoint: str | None = None
    every: int = 1
    rate_hz: float | None = None
    gt_frame_origin: tuple[float, float] | None = None
    pipeline: PipelineSettings = field(default_factory=PipelineSettings)  #: gate, prior: the node's defaults
    live: bool = False
    max_gap_s: float = trajectory.DEFAULT_MAX_GAP_S
    device: str = "auto"
    backend: BackendSettings | None = None  # --backend/--export/--threads; None: torch, threads untouched
    map_dir: str | None = None
    plots: bool = True
    node_ns: str = ""  # --live: the node's namespace (its topics image, cameras/<name>/..., odom, imu, outputs)
    node_input: str | None = None  # --live: default <ns>/image or <ns>/image/compressed
    node_output: str = "geopose_with_covariance"  # --live
    live_timeout_s: float = 5.0
    fusion: FusionConfig | None = None  # --fuse: odometry + IMU + fixes in robot_localization's map EKF
    camera_topics: tuple[str, ...] = ()  # a pinhole rig's image topics (default: chosen from the bag)
    camera_yaw: dict = field(default_factory=dict)  # camera name -> yaw (deg) when the bag does not say
    cameras_rectified: bool = False  # the rig's images are rectified: the node's cameras.rectified
    odom_topic: str | None = None  # wheel odometry (default: the one nav_msgs/Odometry not under /gt/)
    imu_topic: str | None = None  # default: the one sensor_msgs/Imu
    #: model | imu | north_aligned (the node's meanings) | auto: north_aligned when the bag's metadata says so, else
    #: imu for a known-orientation model with an IMU in the bag (north_aligned without one), model otherwise
    heading_source: str = "auto"
