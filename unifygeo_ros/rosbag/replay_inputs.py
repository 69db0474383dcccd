"""A bag's messages as the node receives them, and what comes out as replay rows: images (a panorama, or a pinhole rig stitched by the node's own
``image.rig.RigFrame``), wheel odometry (into the pipeline's :class:`~unifygeo_ros.localization.sensor_feed.
OdometryIntegrator`), the IMU (into a :class:`~unifygeo_ros.localization.sensor_feed.HeadingFeed`, read by the
pipeline's heading rule) and the kidnap marker. In-process replay feeds the node's pipeline with them; ``--live``
publishes the same messages to the running node (:class:`~unifygeo_ros.ros.live_client.LiveNodeClient`).
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Callable

import numpy as np

from unifygeo_ros import geo

from unifygeo_ros.errors import UnifyGeoError
from unifygeo_ros.image.rig import RigCollector, RigFrame
from unifygeo_ros.localization.pipeline import Frame, LocalizationPipeline, Outcome, tracking_state
from unifygeo_ros.localization.sensor_feed import HeadingFeed, twist_reading
from unifygeo_ros.rosbag import io as bags
from unifygeo_ros.rosbag.msgtypes import IMU
from unifygeo_ros.rosbag.replay_quality import GT_NO_FIX, gt_position_problem
from unifygeo_ros.rosbag.replay_topics import ReplayTopics
from unifygeo_ros.rosbag.replay_types import (FIX, GT_LOCAL, NO_FIX, UNDECODABLE, FrameResult, GroundTruth,
                                              ReplayConfig, gt_sample)
from unifygeo_ros.rosbag.synth_topics import CAMERA_INFO

HEADING_SOURCES = ("auto", "model", "imu", "north_aligned")


def resolve_heading_source(requested: str, description: dict, has_imu: bool, known_orientation: bool | None,
                           warnings: list[str]) -> str:
    """Replay's heading source (``ReplayConfig.heading_source``): ``auto`` -> ``north_aligned`` when the bag's
    metadata says its panoramas are, else (known-orientation model) ``imu`` when the bag has an IMU, else
    ``north_aligned`` with a warning; ``model`` for a model that estimates the heading. ``known_orientation`` None:
    ``--live``, the node decides (``auto`` is returned)."""
    if requested not in HEADING_SOURCES:
        raise UnifyGeoError(f"--heading-source must be one of {', '.join(HEADING_SOURCES)}, got {requested!r}")
    if requested == "model" and known_orientation:
        raise UnifyGeoError("--heading-source model: this checkpoint was trained with known orientation and cannot "
                            "estimate the heading; use imu or north_aligned")
    if requested != "auto":
        return requested
    if description.get("north_aligned"):
        return "north_aligned"
    if known_orientation is None:
        return "auto"
    if not known_orientation:
        return "model"
    if has_imu:
        return "imu"
    warnings.append("heading: a known-orientation model and no IMU in the bag: the panoramas are taken as "
                    "north-aligned (--heading-source imu|north_aligned to say otherwise)")
    return "north_aligned"


@dataclass
class Candidate:
    """An image (or a rig's set of images) ready to become a frame: its stamp, the pipeline frame (in-process) and
    the bag messages the node would receive for it (``--live``: (kind, topic, message))."""

    t_ns: int
    frame: Frame
    messages: list[tuple[str, str, Any]]


class ReplayInputs:
    """Routes a bag's messages (module doc). ``publish(kind, topic, msg, t_ns)``: ``--live``'s sender of the
    odometry and IMU as they come (None in-process)."""

    def __init__(self, topics: ReplayTopics, pipeline: LocalizationPipeline | None,
                 publish: Callable[[str, str, Any, int], None] | None = None):
        self.topics = topics
        self.pipeline = pipeline
        self.publish = publish
        self.heading = HeadingFeed()
        #: the node's camera callbacks' bookkeeping (a rig; None for a panorama)
        self.rig = RigCollector(topics.rig_settings()) if topics.rig else None
        self._names = {c.image_topic: c.name for c in topics.rig}
        self._info_names = {c.info_topic: c.name for c in topics.rig}
        self.kidnap_ns = topics.kidnap_ns
        self.kidnap_source = "metadata" if topics.kidnap_ns is not None else ""
        self.odometry_messages = self.imu_messages = 0

    def connections(self, reader: Any) -> list[Any]:
        t = self.topics
        wanted = {*t.image_topics, *(c.info_topic for c in t.rig), t.odometry, t.imu, t.kidnap_topic} - {None}
        return [c for c in reader.connections if c.topic in wanted]

    def take(self, conn: Any, msg: Any, log_ns: int) -> Candidate | None:
        """Route one message; a :class:`Candidate` when it completes an image (a panorama, or a rig's set)."""
        topic, t = conn.topic, self.topics
        if topic == t.odometry and conn.msgtype == bags.ODOMETRY:
            self.odometry_messages += 1
            if self.pipeline is not None:
                self.pipeline.odometry.add(twist_reading(msg, bags.stamp_or_log_time(msg, log_ns) * 1e-9))
            elif self.publish is not None:
                self.publish("odometry", topic, msg, bags.stamp_or_log_time(msg, log_ns))
            return None
        if topic == t.imu and conn.msgtype == IMU:
            self.imu_messages += 1
            self.heading.add(msg, bags.stamp_or_log_time(msg, log_ns) * 1e-9)
            if self.pipeline is None and self.publish is not None:
                self.publish("imu", topic, msg, bags.stamp_or_log_time(msg, log_ns))
            return None
        if topic == t.kidnap_topic:
            if self.kidnap_ns is None:
                self.kidnap_ns, self.kidnap_source = bags.stamp_or_log_time(msg, log_ns), topic
            return None
        if conn.msgtype == CAMERA_INFO:
            return self._rig_set(self.rig.info(self._info_names[topic], msg), log_ns)
        if t.rig:
            # the stamp the set is synchronised on: a zero one becomes the log time (stamp_or_log_time, the one
            # policy; the node takes the arrival time)
            msg.header.stamp.sec, msg.header.stamp.nanosec = divmod(bags.stamp_or_log_time(msg, log_ns), 1_000_000_000)
            return self._rig_set(self.rig.image(self._names[topic], msg), log_ns)
        stamp = bags.stamp_or_log_time(msg, log_ns)
        decode = (lambda m=msg, ty=conn.msgtype: bags.msg_to_rgb(m, ty))
        return Candidate(stamp, Frame(stamp, stamp * 1e-9, decode), [("image", topic, msg)])

    def _rig_set(self, rf: RigFrame | None, log_ns: int) -> Candidate | None:
        """The node's camera callbacks (:class:`RigCollector`): a set is stitched when every camera has an image and
        a CameraInfo, the images within the sync tolerance, checked on every image and CameraInfo."""
        if rf is None:
            return None
        stamp = bags.stamp_to_ns(rf.stamp) or int(log_ns)
        msgs = []
        for cam, img, info in zip(self.topics.rig, rf.images, rf.infos):
            msgs += [("camera_info", cam.info_topic, info), ("camera_image", cam.image_topic, img)]
        return Candidate(stamp, Frame(stamp, stamp * 1e-9, rf.decode, source="cameras"), msgs)

    def odometry_warning(self) -> str | None:
        """A line when odometry messages were refused (in-process: the pipeline's integrator, as the node's
        /diagnostics odometry_rejected): how many, and why the last one."""
        odometry = self.pipeline.odometry if self.pipeline is not None else None
        if odometry is None or not odometry.rejected:
            return None
        return (f"odometry: {odometry.rejected} of {self.odometry_messages} messages on {self.topics.odometry} "
                f"refused (the last: {odometry.problem})")

    def rig_warning(self) -> str | None:
        """A line when the rig's images did not all become sets: sets refused for their stamps' spread, or cameras
        that never completed one (what the node's /diagnostics rig_* values say)."""
        r = self.rig
        if r is None or (r.out_of_sync == 0 and r.sets > 0):
            return None
        if r.sets == 0:
            return f"cameras: no set of images was stitched ({r.waiting})"
        return (f"cameras: {r.out_of_sync} time(s) every camera's latest image was there but further apart than "
                f"cameras.sync_tolerance_s {r.settings.sync_tolerance_s:g}: not stitched ({r.sets} sets stitched)")


# ------------------------------------------------------------------------------------------- rows, truth
def frame_result(out: Outcome, index: int, t_ns: int) -> FrameResult:
    """One pipeline outcome as a replay row: published -> ``fix``; withheld or failed -> ``no_fix`` (a withheld fix
    keeps its position and protection level, for the Stanford plot); bad input -> ``undecodable``. The position is
    the output's (:attr:`Outcome.pose <unifygeo_ros.localization.pipeline.Outcome.pose>`: the fix, or the
    belief in tracking mode), re-expressed in the replay's frame when scored."""
    fr = FrameResult(index=index, t_ns=t_ns, status=NO_FIX, note=out.message, reason=out.reason)
    if out.status == "bad_input":
        fr.status = UNDECODABLE
        return fr
    if out.track is not None:  # tracking: the belief is the output, the frame's global fix rides along
        fr.tracking_state, fr.reinitialised = tracking_state(out.track), out.track.reinitialised
        fr.evidence_log_ratio = float(out.track.evidence_log_ratio)
        fr.odometry_scale = float(out.track.odometry_scale)
        fr.imu_heading_offset_deg = float(out.track.imu_heading_offset_deg)
        fr.beyond_single_ms = float(out.track.tracking_ms)
        if out.fix is not None:
            fr.single_latitude_deg, fr.single_longitude_deg = float(out.fix.latitude_deg), float(out.fix.longitude_deg)
            fr.single_accepted = bool(out.track.fix_accepted)
    pose = out.pose
    if pose is None:
        return fr
    fr.latency_ms = out.processing_ms
    fr.score = float(out.fix.score) if out.fix is not None else math.nan
    fr.protection_level_m = float(pose.protection_level_m)
    fr.latitude_deg, fr.longitude_deg = float(pose.latitude_deg), float(pose.longitude_deg)  # withheld ones too
    fr.east_m, fr.north_m = float(pose.east_m), float(pose.north_m)
    fr.yaw_deg = float(pose.yaw_deg)
    fr.cov_en_m2 = tuple(float(v) for v in np.asarray(pose.covariance_en_m2, float).reshape(4))
    if out.published:
        fr.status = FIX
    return fr


class GroundTruthReader:
    """Collects GT samples as the bag is read, converting local frames through the right origin."""

    def __init__(self, cfg: ReplayConfig, gt_type: str, origin: geo.LocalENU | None, warnings: list[str]):
        self.cfg, self.gt_type, self.origin, self.warnings = cfg, gt_type, origin, warnings
        self.local_frame = geo.LocalENU(*cfg.gt_frame_origin) if cfg.gt_frame_origin else None
        self.gt = GroundTruth()

    def add(self, msg: Any, log_ns: int) -> None:
        if self.gt_type in GT_LOCAL and self.local_frame is None:
            if self.origin is None:
                raise UnifyGeoError(f"GT {self.cfg.gt_topic} ({self.gt_type}) is in a local frame: pass "
                                    "--gt-frame-origin LAT,LON (its ENU origin)")
            self.local_frame = self.origin
            self.warnings.append(f"GT {self.cfg.gt_topic} ({self.gt_type}, frame "
                                 f"{getattr(msg.header, 'frame_id', '?')!r}) taken as ENU-aligned with its origin "
                                 "at the index's origin (no --gt-frame-origin given)")
        s = gt_sample(msg, self.gt_type, self.local_frame or geo.LocalENU(0.0, 0.0))
        reason = GT_NO_FIX if s is None else gt_position_problem(s[0], s[1])
        if reason:  # not a position: excluded, counted (replay_quality)
            self.gt.excluded[reason] = self.gt.excluded.get(reason, 0) + 1
            return
        self.gt.t_ns.append(bags.stamp_or_log_time(msg, log_ns))
        self.gt.lat_deg.append(s[0])
        self.gt.lon_deg.append(s[1])
        self.gt.yaw_deg.append(s[2])
