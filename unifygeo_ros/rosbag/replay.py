"""``unifygeo replay``: how good is the localizer on a recorded drive?

Stage: bag (rosbag2, sqlite3 or MCAP, read through rosbags, no ROS) + aerial index -> ``OUT/``:

* ``metrics.json``   - :class:`~unifygeo_ros.rosbag.replay_types.ReplayReport` (definitions:
  :mod:`unifygeo_ros.rosbag.trajectory`), with ``warnings``, the withheld fixes counted by reason and
  ``data_quality``: what was not scored and why (GT that is not a position or contradicts itself, repeated or
  backward image stamps, corrupt MCAP chunks: :mod:`unifygeo_ros.rosbag.replay_quality`);
* ``frames.csv``     - one row per processed image: stamp, status, estimate, GT, errors, latency;
* ``estimate.tum``, ``groundtruth.tum`` - the scored pairs in local ENU metres of the index's origin, both files
  carrying the image stamps, so ``evo_ape tum groundtruth.tum estimate.tum`` (no ``-a``) pairs them 1:1 and
  reports the same RMSE / mean / median as ``metrics.json``;
* ``trajectory.png`` (GT and estimates over the aerial map, estimates coloured by error), ``error_over_time.png``,
  ``error_cdf.png``.
* with ``--fuse``: odometry, IMU yaw and the published fixes fused as robot_localization's map EKF would
  (:mod:`unifygeo_ros.rosbag.fusion`): ``metrics.json`` ``fusion``, ``fused.tum``, ``fused_groundtruth.tum``,
  ``fusion.png``.

In-process, every image goes through the node's own pipeline object
(:class:`~unifygeo_ros.localization.pipeline.LocalizationPipeline`: the same decoder, the one panorama check, the
Localizer, the gate - ``min_score`` - and the tracking prior that grows with time), with the node's default
settings unless told otherwise (``--min-score``, ``--no-prior``), so a replay measures what the node publishes.
A withheld fix is a frame without a fix. With ``--live`` the running ROS node itself is scored instead: images are
published on its input topic at the recorded rate and its outputs are scored
(:class:`~unifygeo_ros.ros.live_client.LiveNodeClient`).

Ground truth comes from ``sensor_msgs/NavSatFix``, ``geographic_msgs/GeoPose[WithCovariance]Stamped`` (both
WGS84; GeoPose orientation is ENU) or ``nav_msgs/Odometry`` / ``geometry_msgs/Pose[WithCovariance]Stamped``: a
local frame taken as ENU-aligned (x east, y north, REP-103/105 ``map``) whose origin is ``--gt-frame-origin``
(the index's origin when not given). Everything is converted to WGS84 and then to the ENU frame of the index.
"""
from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Callable


from unifygeo_ros import geo
from unifygeo_ros.errors import UnifyGeoError
from unifygeo_ros.localization.localizer import Localizer
from unifygeo_ros.localization.pipeline import LocalizationPipeline, build_pipeline
from unifygeo_ros.rosbag import io as bags
from unifygeo_ros.rosbag.fusion import SensorCollector, run_fusion
from unifygeo_ros.rosbag.fusion_outputs import write_fusion_outputs
from unifygeo_ros.rosbag.mcap_check import McapCheck
from unifygeo_ros.rosbag.replay_inputs import (GroundTruthReader, ReplayInputs, frame_result,
                                               resolve_heading_source)
from unifygeo_ros.rosbag.replay_outputs import draw_map, index_meta, map_tiles, write_outputs
from unifygeo_ros.rosbag.replay_quality import DataQuality, ImageStamps
from unifygeo_ros.rosbag.replay_scoring import heading_not_scored, score_frames
from unifygeo_ros.rosbag.replay_topics import ReplayTopics, choose_topics
from unifygeo_ros.rosbag.replay_tracking import plot_tracking, tracking_report
from unifygeo_ros.rosbag.replay_types import GT_TYPES, FrameResult, GroundTruth, ReplayConfig, ReplayReport


# ------------------------------------------------------------------------------------------------ frames
def _select(index: int, t_ns: int, last_kept_ns: int | None, every: int, rate_hz: float | None) -> bool:
    if rate_hz:
        period = 1e9 / rate_hz
        return last_kept_ns is None or (t_ns - last_kept_ns) >= 0.999 * period
    return index % max(1, every) == 0


# ------------------------------------------------------------------------------------------------ replay
def _pipeline(cfg: ReplayConfig, localizer: Localizer | None) -> LocalizationPipeline:
    """The node's pipeline: loaded from ``cfg.index`` (as the node loads it), or around a given localizer."""
    if localizer is not None:
        return LocalizationPipeline.from_settings(localizer, cfg.pipeline)
    if not cfg.index:
        raise UnifyGeoError("--index is required (or --live to score the running node)")
    return build_pipeline(cfg.index, cfg.checkpoint, cfg.pipeline, device=cfg.device, backend=cfg.backend)


def _live_client(cfg: ReplayConfig, topics: ReplayTopics):
    # ROS is optional for replay: only --live needs rclpy, so the ROS shell is imported here, not at the top
    try:
        from unifygeo_ros.ros.live_client import LiveNodeClient
    except ImportError as exc:
        raise UnifyGeoError(f"--live needs rclpy and the message packages (source scripts/ros_env.sh): {exc}") \
            from exc

    return LiveNodeClient(topics.image_type, cfg.node_input, cfg.node_output, node_ns=cfg.node_ns,
                          rig=tuple((c.name, c.image_topic, c.info_topic) for c in topics.rig))


def _output_origin(cfg: ReplayConfig, pipeline: LocalizationPipeline | None,
                   origin: geo.LocalENU | None) -> geo.LocalENU | None:
    if origin is not None:
        return origin
    if pipeline is not None:
        return pipeline.localizer.index.origin
    o = index_meta(cfg.index).get("origin") if cfg.index else None
    return geo.LocalENU(float(o["lat_deg"]), float(o["lon_deg"])) if isinstance(o, dict) else None


def replay(cfg: ReplayConfig, localizer: Localizer | None = None, origin: geo.LocalENU | None = None,
           announce: Callable[[str], None] | None = None) -> ReplayReport:
    """Run the replay of ``cfg``; writes the outputs to ``cfg.out`` and returns the report.

    ``localizer``: used inside the node's pipeline instead of loading ``cfg.index``. ``origin``: the ENU frame of
    the outputs (default: the index's origin). ``announce``: told, one line each, which topics and heading source
    were taken when ``cfg`` did not say (``rosbag.replay_topics``). Raises :class:`UnifyGeoError` (BagError) when
    the bag cannot be read at all or lacks a topic; a bag that breaks part-way yields the results of what was read
    plus a warning.
    """
    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    warnings: list[str] = []
    frames: list[FrameResult] = []
    mcap_checks: list[McapCheck] = []
    stamps = ImageStamps()
    tracking = cfg.pipeline.mode == "tracking"
    with bags.open_bag(cfg.bag, warnings, mcap_checks=mcap_checks) as reader:
        fz = cfg.fusion
        topics = choose_topics(reader, cfg.bag, image_topic=cfg.image_topic, camera_topics=cfg.camera_topics,
                               gt_topic=cfg.gt_topic, odom_topic=cfg.odom_topic or (fz.odom_topic if fz else None),
                               imu_topic=cfg.imu_topic or (fz.imu_topic if fz else None),
                               need_odometry=tracking and not cfg.live, camera_yaw=cfg.camera_yaw, warnings=warnings,
                               cameras_rectified=cfg.cameras_rectified)
        cfg = dataclasses.replace(cfg, image_topic=",".join(topics.image_topics), gt_topic=topics.gt)
        live = _live_client(cfg, topics) if cfg.live else None
        pipeline = None if cfg.live else _pipeline(cfg, localizer)
        heading = resolve_heading_source(cfg.heading_source, topics.description, topics.imu is not None,
                                         None if pipeline is None else pipeline.localizer.known_orientation, warnings)
        if pipeline is not None:
            pipeline.use_heading_source(heading)
        for line in topics.lines + [f"heading: {heading}" + (" (--heading-source chooses)"
                                                             if cfg.heading_source == "auto" else "")]:
            if announce is not None:
                announce(line)
        inputs = ReplayInputs(topics, pipeline, live.publish_sensor if live is not None else None)
        origin = _output_origin(cfg, pipeline, origin)
        gt = GroundTruthReader(cfg, topics.gt_type, origin, warnings)
        sensors = (SensorCollector(reader, dataclasses.replace(fz, odom_topic=topics.odometry, imu_topic=topics.imu),
                                   topics.gt) if fz else None)  # --fuse
        conns = list({id(c): c for c in inputs.connections(reader) + bags.connections_for(reader, topics.gt, GT_TYPES)
                      + (sensors.connections if sensors is not None else [])}.values())
        index, last_kept = -1, None
        try:
            for conn, log_ns, msg in bags.iter_messages(reader, conns, warnings):
                if conn.msgtype in GT_TYPES and conn.topic == topics.gt:
                    gt.add(msg, log_ns)
                    continue
                if sensors is not None:
                    sensors.add(conn, msg, log_ns)  # the odometry and IMU also go to the inputs below
                cand = inputs.take(conn, msg, log_ns)
                if cand is None:
                    continue
                index += 1
                t = cand.t_ns
                if not stamps.accept(t):  # a repeated or backward stamp: dropped (replay_quality)
                    continue
                if not _select(index, t, last_kept, cfg.every, cfg.rate_hz):
                    continue
                last_kept = t
                if live is not None:
                    live.publish_frame(cand.messages, t)
                    continue
                pipeline.set_heading(cand.frame, inputs.heading, topics.imu or "imu")
                frames.append(frame_result(pipeline.process(cand.frame), index, t))
        except KeyboardInterrupt:
            warnings.append("interrupted: results cover the frames processed so far")
        for line in (inputs.rig_warning(), inputs.odometry_warning()):
            if line is not None:
                warnings.append(line)
        if live is not None:
            frames = live.finish(cfg.live_timeout_s)
            warnings.extend(live.warnings)
    quality = DataQuality()
    quality.add_mcap(mcap_checks, warnings)
    quality.add_images(stamps)
    if (line := stamps.warning(cfg.image_topic)) is not None:
        warnings.append(line)
    origin = _finish_warnings(cfg, gt.gt, frames, origin, warnings)
    report, pairs = score_frames(frames, gt.gt, origin, cfg, topics.gt_type, topics.image_type, warnings, quality,
                                 heading_not_scored(heading, cfg.pipeline.mode))
    report.config.update(heading_source=heading, mode=cfg.pipeline.mode, odometry_topic=topics.odometry,
                         imu_topic=topics.imu, rig=[dataclasses.asdict(c) for c in topics.rig])
    report.tracking, timeline = tracking_report(frames, pairs.gt, origin, cfg.max_gap_s, inputs.kidnap_ns,
                                                inputs.kidnap_source, cfg.pipeline.mode)
    fused = run_fusion(sensors, frames, pairs.gt, cfg.fusion, cfg.max_gap_s, warnings) if sensors else None
    if fused is not None:
        report.fusion = fused.report
    write_outputs(out, frames, gt.gt, origin, report, pairs, cfg)
    if cfg.plots:
        tiles = map_tiles(cfg, warnings)
        plot_tracking(out, timeline, report.tracking, pairs.gt,
                      lambda ax, bbox: tiles is not None and draw_map(ax, tiles, origin, bbox), Path(cfg.bag).name)
    if fused is not None:
        write_fusion_outputs(out, fused, Path(cfg.bag).name, cfg.plots)
    return report


def _finish_warnings(cfg: ReplayConfig, gt: GroundTruth, frames: list[FrameResult], origin: geo.LocalENU | None,
                     warnings: list[str]) -> geo.LocalENU:
    """The output frame (a fallback when nothing gave one) and the warnings about what the bag lacked."""
    if origin is None:
        if gt.t_ns:
            origin = geo.LocalENU(gt.lat_deg[0], gt.lon_deg[0])
            warnings.append("no index origin: the output ENU frame is anchored at the first GT fix "
                            f"({gt.lat_deg[0]:.7f}, {gt.lon_deg[0]:.7f})")
        else:
            origin = geo.LocalENU(0.0, 0.0)
    if not gt.t_ns:
        warnings.append(f"no usable GT on {cfg.gt_topic}: nothing is scored")
    if not frames:
        warnings.append(f"no images processed from {cfg.image_topic}")
    return origin
