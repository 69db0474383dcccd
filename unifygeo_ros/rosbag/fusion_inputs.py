"""The inputs of ``unifygeo replay --fuse``: the wheel odometry's twist and the IMU's yaw as read from a bag
(:class:`SensorCollector`, fed by replay's bag loop), the topics they come from (:func:`pick_topics`), and the
published fixes as the filter takes them (:class:`PositionFix`). Messages with non-finite values are skipped and
counted; zero or negative variances become :data:`~unifygeo_ros.rosbag.fusion_config.MIN_VARIANCE`.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from unifygeo_ros.localization.sensor_feed import imu_yaw, odometry_twist
from unifygeo_ros.rosbag import io as bags
from unifygeo_ros.rosbag.fusion_config import MIN_VARIANCE, FusionConfig
from unifygeo_ros.rosbag.msgtypes import IMU

#: topics under this prefix are ground truth, never a sensor to fuse
GT_PREFIX = "/gt/"


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
    """``nav_msgs/Odometry`` -> its twist (vx, vy, vyaw) and variances (``sensor_feed.odometry_twist``; a variance
    <= 0 becomes the fusion's minimum); None when unusable (not finite, beyond a ground robot's physics)."""
    twist = odometry_twist(msg)
    if isinstance(twist, str):
        return None
    return TwistSample(int(t_ns), twist[0], np.array([_var(float(x)) for x in twist[1]]))


def yaw_sample(msg: Any, t_ns: int) -> YawSample | None:
    """``sensor_msgs/Imu`` -> its ENU yaw and ``orientation_covariance[8]`` (``sensor_feed.imu_yaw``, as the node
    reads it); None without an orientation, when it is not a unit quaternion or its variance is not finite."""
    yaw_deg, var, _ = imu_yaw(msg)
    if yaw_deg is None or not math.isfinite(var):
        return None
    return YawSample(int(t_ns), math.radians(yaw_deg), _var(var))


def pick_topics(topics: list[bags.TopicInfo], cfg: FusionConfig, gt_topic: str | None = None,
                purpose: str = "--fuse") -> tuple[str, str | None]:
    """(odometry topic, IMU topic or None): the given ones (checked), or the one nav_msgs/Odometry topic that is
    not ground truth (not under ``/gt/``, not ``gt_topic``) and the one sensor_msgs/Imu topic. Errors start with
    ``purpose`` (the option that needs them)."""
    avail = bags.describe_topics(topics)
    by_name = {t.topic: t.msgtype for t in topics}

    def given(topic: str, msgtype: str, flag: str) -> str:
        if by_name.get(topic) != msgtype:
            what = "not in the bag" if topic not in by_name else f"of type {by_name[topic]}"
            raise bags.BagError(f"{purpose}: {flag} {topic} is {what}, expected {msgtype}; topics found: {avail}")
        return topic

    if cfg.odom_topic:
        odom = given(cfg.odom_topic, bags.ODOMETRY, "--odom-topic")
    else:
        cands = [t.topic for t in topics if t.msgtype == bags.ODOMETRY and not t.topic.startswith(GT_PREFIX)
                 and t.topic != gt_topic]
        if not cands:
            raise bags.BagError(f"{purpose}: no wheel odometry in the bag (a {bags.ODOMETRY} topic not under "
                                f"{GT_PREFIX}); topics found: {avail}")
        if len(cands) > 1:
            raise bags.BagError(f"{purpose}: several odometry topics ({', '.join(cands)}): pass --odom-topic")
        odom = cands[0]
    if cfg.imu_topic:
        return odom, given(cfg.imu_topic, IMU, "--imu-topic")
    imus = [t.topic for t in topics if t.msgtype == IMU]
    if len(imus) > 1:
        raise bags.BagError(f"{purpose}: several IMU topics ({', '.join(imus)}): pass --imu-topic")
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
            sample, into = twist_sample(msg, bags.stamp_or_log_time(msg, log_ns)), self.twists
        elif conn.topic == self.imu_topic and conn.msgtype == IMU:
            self.imu_messages += 1
            sample, into = yaw_sample(msg, bags.stamp_or_log_time(msg, log_ns)), self.yaws
        else:
            return False
        if sample is None:
            self.skipped += 1
        else:
            into.append(sample)
        return True
