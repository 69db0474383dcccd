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

import argparse
import dataclasses
from pathlib import Path
from typing import Any

import numpy as np

from unifygeo_ros import geo
from unifygeo_ros.errors import UnifyGeoError
from unifygeo_ros.localization.localizer import Localizer
from unifygeo_ros.localization.pipeline import Frame, LocalizationPipeline, Outcome, PipelineSettings, build_pipeline
from unifygeo_ros.model.backends import add_backend_arguments, backend_from_args
from unifygeo_ros.rosbag import io as bags
from unifygeo_ros.rosbag import trajectory
from unifygeo_ros.rosbag.fusion import FusionConfig, SensorCollector, run_fusion
from unifygeo_ros.rosbag.fusion_outputs import write_fusion_outputs
from unifygeo_ros.rosbag.mcap_check import McapCheck
from unifygeo_ros.rosbag.replay_outputs import index_meta, write_outputs
from unifygeo_ros.rosbag.replay_quality import (GT_NO_FIX, DataQuality, ImageStamps, gt_position_problem,
                                                summary_line)
from unifygeo_ros.rosbag.replay_scoring import score_frames
from unifygeo_ros.rosbag.replay_types import (FIX, GT_LOCAL, GT_TYPES, NO_FIX, UNDECODABLE, FrameResult,
                                              GroundTruth, ReplayConfig, ReplayReport, gt_sample)


# ------------------------------------------------------------------------------------------------ frames
def _stamp_or_log_time(msg: Any, log_ns: int) -> int:
    h = getattr(msg, "header", None)
    t = bags.stamp_to_ns(h.stamp) if h is not None else 0
    return t if t > 0 else int(log_ns)


def _select(index: int, t_ns: int, last_kept_ns: int | None, every: int, rate_hz: float | None) -> bool:
    if rate_hz:
        period = 1e9 / rate_hz
        return last_kept_ns is None or (t_ns - last_kept_ns) >= 0.999 * period
    return index % max(1, every) == 0


def frame_result(out: Outcome, index: int, t_ns: int) -> FrameResult:
    """One pipeline outcome as a replay row: published -> ``fix``; withheld or failed -> ``no_fix`` (a withheld fix
    keeps its position and protection level, for the Stanford plot); bad input -> ``undecodable``. Positions are
    re-expressed in the replay's frame when scored."""
    fr = FrameResult(index=index, t_ns=t_ns, status=NO_FIX, note=out.message, reason=out.reason)
    if out.status == "bad_input":
        fr.status = UNDECODABLE
        return fr
    if out.fix is None:
        return fr
    fix = out.fix
    fr.latency_ms = out.processing_ms
    fr.score = float(fix.score)
    fr.protection_level_m = float(fix.protection_level_m)
    fr.latitude_deg, fr.longitude_deg = float(fix.latitude_deg), float(fix.longitude_deg)  # withheld ones too
    fr.east_m, fr.north_m = float(fix.east_m), float(fix.north_m)
    fr.yaw_deg = float(fix.yaw_deg)
    fr.cov_en_m2 = tuple(float(v) for v in np.asarray(fix.covariance_en_m2, float).reshape(4))
    if out.published:
        fr.status = FIX
    return fr


class _GroundTruthReader:
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
        self.gt.t_ns.append(_stamp_or_log_time(msg, log_ns))
        self.gt.lat_deg.append(s[0])
        self.gt.lon_deg.append(s[1])
        self.gt.yaw_deg.append(s[2])


# ------------------------------------------------------------------------------------------------ replay
def _pipeline(cfg: ReplayConfig, localizer: Localizer | None) -> LocalizationPipeline:
    """The node's pipeline: loaded from ``cfg.index`` (as the node loads it), or around a given localizer."""
    if localizer is not None:
        return LocalizationPipeline.from_settings(localizer, cfg.pipeline)
    if not cfg.index:
        raise UnifyGeoError("--index is required (or --live to score the running node)")
    return build_pipeline(cfg.index, cfg.checkpoint, cfg.pipeline, device=cfg.device, backend=cfg.backend)


def _live_client(cfg: ReplayConfig, image_type: str):
    # ROS is optional for replay: only --live needs rclpy, so the ROS shell is imported here, not at the top
    try:
        from unifygeo_ros.ros.live_client import LiveNodeClient
    except ImportError as exc:
        raise UnifyGeoError(f"--live needs rclpy and the message packages (source scripts/ros_env.sh): {exc}") \
            from exc

    return LiveNodeClient(image_type, cfg.node_input, cfg.node_output)


def _output_origin(cfg: ReplayConfig, pipeline: LocalizationPipeline | None,
                   origin: geo.LocalENU | None) -> geo.LocalENU | None:
    if origin is not None:
        return origin
    if pipeline is not None:
        return pipeline.localizer.index.origin
    o = index_meta(cfg.index).get("origin") if cfg.index else None
    return geo.LocalENU(float(o["lat_deg"]), float(o["lon_deg"])) if isinstance(o, dict) else None


def replay(cfg: ReplayConfig, localizer: Localizer | None = None,
           origin: geo.LocalENU | None = None) -> ReplayReport:
    """Run the replay of ``cfg``; writes the outputs to ``cfg.out`` and returns the report.

    ``localizer``: used inside the node's pipeline instead of loading ``cfg.index``. ``origin``: the ENU frame of
    the outputs (default: the index's origin). Raises :class:`UnifyGeoError` (BagError) when the bag cannot be
    read at all or lacks a topic; a bag that breaks part-way yields the results of what was read plus a warning.
    """
    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    warnings: list[str] = []
    frames: list[FrameResult] = []
    mcap_checks: list[McapCheck] = []
    stamps = ImageStamps()
    with bags.open_bag(cfg.bag, warnings, mcap_checks=mcap_checks) as reader:
        img_conns = bags.connections_for(reader, cfg.image_topic, bags.IMAGE_TYPES)
        gt_conns = bags.connections_for(reader, cfg.gt_topic, GT_TYPES)
        image_type, gt_type = img_conns[0].msgtype, gt_conns[0].msgtype
        live = _live_client(cfg, image_type) if cfg.live else None
        pipeline = None if cfg.live else _pipeline(cfg, localizer)
        origin = _output_origin(cfg, pipeline, origin)
        gt = _GroundTruthReader(cfg, gt_type, origin, warnings)
        sensors = SensorCollector(reader, cfg.fusion, cfg.gt_topic) if cfg.fusion else None  # --fuse
        conns = img_conns + gt_conns + (sensors.connections if sensors is not None else [])
        index, last_kept = -1, None
        try:
            for conn, log_ns, msg in bags.iter_messages(reader, conns, warnings):
                if conn.msgtype in GT_TYPES and conn.topic == cfg.gt_topic:
                    gt.add(msg, log_ns)
                    continue
                if sensors is not None and sensors.add(conn, msg, log_ns):
                    continue
                index += 1
                t = _stamp_or_log_time(msg, log_ns)
                if not stamps.accept(t):  # a repeated or backward stamp: dropped (replay_quality)
                    continue
                if not _select(index, t, last_kept, cfg.every, cfg.rate_hz):
                    continue
                last_kept = t
                if live is not None:
                    live.publish(msg, t)
                    continue
                decode = (lambda m=msg, ty=conn.msgtype: bags.msg_to_rgb(m, ty))
                frames.append(frame_result(pipeline.process(Frame(t, t * 1e-9, decode)), index, t))
        except KeyboardInterrupt:
            warnings.append("interrupted: results cover the frames processed so far")
        if live is not None:
            frames = live.finish(cfg.live_timeout_s)
            warnings.extend(live.warnings)
    quality = DataQuality()
    quality.add_mcap(mcap_checks, warnings)
    quality.add_images(stamps)
    if (line := stamps.warning(cfg.image_topic)) is not None:
        warnings.append(line)
    origin = _finish_warnings(cfg, gt.gt, frames, origin, warnings)
    report, pairs = score_frames(frames, gt.gt, origin, cfg, gt_type, image_type, warnings, quality)
    fused = run_fusion(sensors, frames, pairs.gt, cfg.fusion, cfg.max_gap_s, warnings) if sensors else None
    if fused is not None:
        report.fusion = fused.report
    write_outputs(out, frames, gt.gt, origin, report, pairs, cfg)
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


# ---------------------------------------------------------------------------------------------------- CLI
def _latlon(text: str) -> tuple[float, float]:
    try:
        lat, lon = (float(v) for v in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected LAT,LON in degrees, got {text!r}") from None
    if not (-90 <= lat <= 90 and -180 <= lon <= 180):
        raise argparse.ArgumentTypeError(f"LAT,LON out of range: {text!r}")
    return lat, lon


def configure_parser(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("bag", help="rosbag2 folder (sqlite3 or MCAP) or a .db3/.mcap file")
    parser.add_argument("--index", help="aerial index folder (not needed with --live)")
    parser.add_argument("--checkpoint", help="model checkpoint (default: the index's)")
    parser.add_argument("--image-topic", required=True, help="sensor_msgs/Image or CompressedImage topic")
    parser.add_argument("--gt-topic", required=True,
                        help="GT topic: NavSatFix, GeoPose[WithCovariance]Stamped, Odometry or Pose[WithCovariance]"
                             "Stamped (local frames: see --gt-frame-origin)")
    parser.add_argument("--out", required=True, help="output folder (metrics.json, TUM files, plots)")
    sel = parser.add_mutually_exclusive_group()
    sel.add_argument("--every", type=int, default=1, help="localize every Nth image (default 1)")
    sel.add_argument("--rate", type=float, dest="rate_hz", help="localize at most HZ images per second of bag time")
    parser.add_argument("--gt-frame-origin", type=_latlon, metavar="LAT,LON",
                        help="WGS84 origin of a local (ENU-aligned) GT frame (Odometry/Pose); default: index origin")
    defaults = PipelineSettings()
    parser.add_argument("--prior", action=argparse.BooleanOptionalAction, default=defaults.prior.enabled,
                        help="the node's tracking prior: the previous published fix narrows the next search "
                             f"(default: on, as the node's use_prior {defaults.prior.enabled})")
    parser.add_argument("--max-protection-level", type=float, default=defaults.max_protection_level_m,
                        dest="max_protection_level_m",
                        help="the node's integrity gate: withhold fixes whose protection level is larger (m, default "
                             f"{defaults.max_protection_level_m:g}, the node's max_protection_level_m; inf = off)")
    parser.add_argument("--min-score", type=float, default=defaults.min_score,
                        help=f"the node's gate: withhold fixes scoring lower (default {defaults.min_score:g}, the "
                             "node's min_score)")
    parser.add_argument("--live", action="store_true",
                        help="score the running ROS node instead: play the images to it at the recorded rate")
    parser.add_argument("--node-input", help="--live: the node's image topic (default image or image/compressed)")
    parser.add_argument("--node-output", default="geopose_with_covariance",
                        help="--live: node output to score: geopose_with_covariance (default) or fix")
    parser.add_argument("--live-timeout", type=float, default=5.0, dest="live_timeout_s",
                        help="--live: seconds to wait for outputs after the last image (default 5)")
    parser.add_argument("--max-gap", type=float, default=trajectory.DEFAULT_MAX_GAP_S, dest="max_gap_s",
                        help="reject a fix whose nearest GT sample is farther than this (s, default 0.5)")
    parser.add_argument("--map", dest="map_dir", help="city folder (VIGOR layout) drawn under the trajectory plot "
                                                      "(default: the index's tile source when it is a folder)")
    parser.add_argument("--device", default="auto", help="auto | cpu | cuda[:N]")
    add_backend_arguments(parser)
    parser.add_argument("--no-plots", dest="plots", action="store_false", help="skip the PNG plots")
    fu = parser.add_argument_group("fusion (docs/REPLAY.md, 'Fusion (--fuse)')")
    fu.add_argument("--fuse", action="store_true",
                    help="also fuse wheel odometry, IMU yaw and the published fixes in robot_localization's map EKF "
                         "(settings from --ekf-config) and score the fused trajectory (metrics.json 'fusion', "
                         "fused.tum, fusion.png)")
    fu.add_argument("--ekf-config", help="robot_localization parameter file whose ekf_filter_node_map section is "
                                         "used (default: the installed config/robot_localization/ekf.yaml)")
    fu.add_argument("--odom-topic", help="nav_msgs/Odometry wheel odometry (default: the one not under /gt/)")
    fu.add_argument("--imu-topic", help="sensor_msgs/Imu (default: the one in the bag, if any)")
    fu.add_argument("--fuse-imu-yaw", action=argparse.BooleanOptionalAction, default=None,
                    help="fuse the IMU's absolute yaw (default: when the EKF config fuses an absolute yaw and the "
                         "bag has an IMU; the fixes' yaw is not fused)")


def run(args: argparse.Namespace) -> int:
    if args.every < 1:
        raise UnifyGeoError(f"--every must be >= 1, got {args.every}")
    if args.rate_hz is not None and args.rate_hz <= 0:
        raise UnifyGeoError(f"--rate must be > 0, got {args.rate_hz}")
    cfg = ReplayConfig(bag=args.bag, index=args.index, out=args.out, image_topic=args.image_topic,
                       gt_topic=args.gt_topic, checkpoint=args.checkpoint, every=args.every, rate_hz=args.rate_hz,
                       gt_frame_origin=args.gt_frame_origin, live=args.live,
                       pipeline=dataclasses.replace(PipelineSettings(), min_score=args.min_score,
                                                    max_protection_level_m=args.max_protection_level_m,
                                                    prior=dataclasses.replace(PipelineSettings().prior,
                                                                              enabled=args.prior)),
                       max_gap_s=args.max_gap_s, device=args.device, backend=backend_from_args(args),
                       map_dir=args.map_dir, plots=args.plots,
                       node_input=args.node_input, node_output=args.node_output, live_timeout_s=args.live_timeout_s,
                       fusion=(FusionConfig(ekf_yaml=args.ekf_config, odom_topic=args.odom_topic,
                                            imu_topic=args.imu_topic, imu_yaw=args.fuse_imu_yaw)
                               if args.fuse else None))
    rep = replay(cfg)
    pe = rep.position_error
    f = (lambda v, u: "n/a" if v is None else f"{v:.2f} {u}")
    print(f"frames {rep.frames}, scored {rep.count}, without fix {100 * rep.frames_without_fix:.1f} %, "
          f"without GT {rep.frames_without_gt}")
    print(f"position error: mean {f(pe['mean_m'], 'm')}, median {f(pe['median_m'], 'm')}, RMSE {f(pe['rmse_m'], 'm')}"
          f"; heading median {f(rep.heading_error['median_deg'], 'deg')}; latency p50 {f(rep.latency['p50_ms'], 'ms')}")
    t = rep.trust
    if t.get("accepted"):
        print(f"trust: availability {100 * t['availability']:.1f} %, truth inside 1/2-sigma "
              f"{100 * t['inside_1sigma']:.1f}"
              f" / {100 * t['inside_2sigma']:.1f} %, NEES mean {t['nees_mean']:.2f}, HMI {t['hmi']} "
              f"(error > protection level), withheld {rep.withheld_by_reason}")
    fz = rep.fusion
    if fz:
        print(f"fused: {fz['count']} poses scored, APE RMSE {f(fz['ape']['rmse_m'], 'm')}, max "
              f"{f(fz['ape']['max_m'], 'm')}, NEES mean {f(fz['nees']['mean'], '(2: consistent)')}, largest jump "
              f"{fz['largest_jump_m']:.2f} m, fixes fused {fz['fixes_fused']} / rejected {fz['fixes_rejected']}, "
              f"availability {100 * fz['availability']:.1f} %")
    print(f"data quality: {summary_line(rep.data_quality)}")
    for w in rep.warnings:
        print(f"warning: {w}")
    print(f"outputs in {args.out}")
    return 0
