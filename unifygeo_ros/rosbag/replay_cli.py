"""``unifygeo replay`` on the command line: the options (docs/REPLAY.md) -> :class:`~unifygeo_ros.rosbag.replay_types.
ReplayConfig` -> :func:`~unifygeo_ros.rosbag.replay.replay`, and its summary printed."""
from __future__ import annotations

import argparse
import dataclasses
import math

from unifygeo_ros.errors import UnifyGeoError
from unifygeo_ros.localization.pipeline import PipelineSettings
from unifygeo_ros.localization.tracking_settings import TrackingSettings
from unifygeo_ros.model.backends import add_backend_arguments, backend_from_args
from unifygeo_ros.rosbag import trajectory
from unifygeo_ros.rosbag.fusion_config import FusionConfig
from unifygeo_ros.rosbag.replay import replay
from unifygeo_ros.rosbag.replay_inputs import HEADING_SOURCES
from unifygeo_ros.rosbag.replay_quality import summary_line
from unifygeo_ros.rosbag.replay_types import ReplayConfig


def _topics(text: str) -> tuple[str, ...]:
    out = tuple(t.strip() for t in text.split(",") if t.strip())
    if not out:
        raise argparse.ArgumentTypeError(f"expected topics separated by commas, got {text!r}")
    return out


def track_setting(text: str) -> tuple[str, str]:
    key, eq, value = text.partition("=")
    if not eq or key.strip() not in TrackingSettings.__dataclass_fields__:
        raise argparse.ArgumentTypeError(f"expected KEY=VALUE with KEY one of TrackingSettings' fields, got {text!r}")
    return key.strip(), value.strip()


def tracking_settings(pairs: list[tuple[str, str]]) -> TrackingSettings:
    """``--track-set`` values on top of the defaults, typed like them (the node's ``tracking.*`` parameters)."""
    base = TrackingSettings()
    kw = {}
    for key, value in pairs:
        default = getattr(base, key)
        try:
            kw[key] = (value.lower() in ("1", "true", "yes") if isinstance(default, bool) else
                       None if value == "None" else type(default if default is not None else 0.0)(value))
        except ValueError:
            raise UnifyGeoError(f"--track-set {key}={value}: not a {type(default).__name__}") from None
    return dataclasses.replace(base, **kw)


def _camera_yaw(text: str) -> tuple[str, float]:
    name, _, deg = text.partition("=")
    try:
        return name.strip(), float(deg)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected NAME=DEG, got {text!r}") from None


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
    tp = parser.add_argument_group("topics (default: the bag's one topic of each type; docs/REPLAY.md, 'Topics')")
    tp.add_argument("--image-topic", help="a panorama: sensor_msgs/Image or CompressedImage topic")
    tp.add_argument("--camera-topics", type=_topics, default=(), metavar="T1,T2,...",
                    help="a pinhole rig: its cameras' sensor_msgs/Image topics (CameraInfo beside each), stitched as "
                         "the node's input_mode cameras does")
    tp.add_argument("--camera-yaw", type=_camera_yaw, action="append", default=[], metavar="NAME=DEG",
                    help="a camera's yaw (REP-103, left = +90) when /tf_static and the bag's metadata do not say")
    tp.add_argument("--cameras-rectified", action="store_true",
                    help="the rig's images are rectified (image_rect): stitched with CameraInfo's P and no distortion "
                         "(default: raw images, its K and lens distortion; the node's cameras.rectified)")
    tp.add_argument("--gt-topic",
                    help="GT topic: NavSatFix, GeoPose[WithCovariance]Stamped, Odometry or Pose[WithCovariance]"
                         "Stamped (local frames: see --gt-frame-origin)")
    tp.add_argument("--odom-topic", help="nav_msgs/Odometry wheel odometry for --track and --fuse (default: the one "
                                         "not under /gt/)")
    tp.add_argument("--imu-topic", help="sensor_msgs/Imu: the heading (default: the one in the bag, if any)")
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
    parser.add_argument("--track", action="store_true",
                        help="the node's mode tracking: the sequential localizer on the wheel odometry, the IMU "
                             "heading and the images (docs/TRACKING.md); metrics.json 'tracking' scores it")
    parser.add_argument("--track-set", type=track_setting, action="append", default=[], metavar="KEY=VALUE",
                        help="--track: a TrackingSettings value (the node's tracking.KEY parameters), e.g. "
                             "particles=500")
    parser.add_argument("--heading-source", default="auto", choices=HEADING_SOURCES,
                        help="the node's heading_source; auto: north_aligned when the bag's metadata says so, else "
                             "imu for a known-orientation model with an IMU in the bag, else model")
    parser.add_argument("--live", action="store_true",
                        help="score the running ROS node instead: play the images to it at the recorded rate")
    parser.add_argument("--node-ns", default="", help="--live: the node's namespace (its relative topics: image, "
                                                      "cameras/<name>/..., odom, imu and the outputs)")
    parser.add_argument("--node-input", help="--live: the node's image topic (default <ns>/image or "
                                             "<ns>/image/compressed)")
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
    fu.add_argument("--fuse-imu-yaw", action=argparse.BooleanOptionalAction, default=None,
                    help="fuse the IMU's absolute yaw (default: when the EKF config fuses an absolute yaw and the "
                         "bag has an IMU; the fixes' yaw is not fused)")


def run(args: argparse.Namespace) -> int:
    if args.every < 1:
        raise UnifyGeoError(f"--every must be >= 1, got {args.every}")
    if args.rate_hz is not None and not 0 < args.rate_hz < math.inf:
        raise UnifyGeoError(f"--rate must be a finite number > 0, got {args.rate_hz}")
    if not 0.0 <= args.min_score <= 1.0:  # NaN fails too (it turned the score gate off)
        raise UnifyGeoError(f"--min-score must be within [0, 1], got {args.min_score}")
    if not args.max_protection_level_m > 0:  # inf: no limit
        raise UnifyGeoError(f"--max-protection-level must be > 0 (m, or inf), got {args.max_protection_level_m}")
    if not 0 < args.max_gap_s < math.inf:
        raise UnifyGeoError(f"--max-gap must be a finite number > 0 (s), got {args.max_gap_s}")
    if args.image_topic and args.camera_topics:
        raise UnifyGeoError("--image-topic (a panorama) and --camera-topics (a rig): give one of them")
    cfg = ReplayConfig(bag=args.bag, index=args.index, out=args.out, image_topic=args.image_topic,
                       gt_topic=args.gt_topic, checkpoint=args.checkpoint, every=args.every, rate_hz=args.rate_hz,
                       gt_frame_origin=args.gt_frame_origin, live=args.live,
                       pipeline=dataclasses.replace(PipelineSettings(), min_score=args.min_score,
                                                    max_protection_level_m=args.max_protection_level_m,
                                                    prior=dataclasses.replace(PipelineSettings().prior,
                                                                              enabled=args.prior),
                                                    mode="tracking" if args.track else "single",
                                                    tracking=tracking_settings(args.track_set)),
                       camera_topics=args.camera_topics, camera_yaw=dict(args.camera_yaw),
                       cameras_rectified=args.cameras_rectified,
                       odom_topic=args.odom_topic, imu_topic=args.imu_topic, heading_source=args.heading_source,
                       node_ns=args.node_ns,
                       max_gap_s=args.max_gap_s, device=args.device, backend=backend_from_args(args),
                       map_dir=args.map_dir, plots=args.plots,
                       node_input=args.node_input, node_output=args.node_output, live_timeout_s=args.live_timeout_s,
                       fusion=(FusionConfig(ekf_yaml=args.ekf_config, imu_yaw=args.fuse_imu_yaw)
                               if args.fuse else None))
    rep = replay(cfg, announce=lambda line: print(f"took {line}", flush=True))
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
    tk = rep.tracking or {}
    if tk.get("mode") == "tracking":
        ac = tk["after_convergence"]
        print(f"tracking: converged after {f(tk['converged_after_s'], 's')}, after convergence median "
              f"{f(ac['median_m'], 'm')} p95 {f(ac['p95_m'], 'm')} ({ac['count']} frames), NEES mean "
              f"{f(tk['nees_mean'], '')}, kidnap at {f(tk['kidnap_at_s'], 's')} recovered after "
              f"{f(tk['recovered_after_kidnap_s'], 's')}, availability {100 * (tk['availability'] or 0):.1f} %, "
              f"{len(tk['reinitialisations'])} (re)initialisations")
        sensors = tk.get("sensors") or {}
        if any(v is not None for v in sensors.values()):  # far from 1 / 0: calibrate the robot's sensor
            scale, imu = sensors.get("odometry_scale"), sensors.get("imu_heading_offset_deg")
            print(f"sensors: odometry scale {'n/a' if scale is None else f'{scale:.3f}'}, IMU heading offset "
                  f"{f(imu, 'deg')} (docs/TRACKING.md)")
    print(f"data quality: {summary_line(rep.data_quality)}")
    for w in rep.warnings:
        print(f"warning: {w}")
    print(f"outputs in {args.out}")
    return 0
