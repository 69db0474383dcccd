"""The ``unifygeo bag`` command (``unifygeo bag synth``): flags -> :class:`unifygeo_ros.rosbag.synth.SynthBagConfig`
-> :func:`unifygeo_ros.rosbag.synth.synth_bag`, and a summary with the replay command line.
"""
from __future__ import annotations

import argparse

from unifygeo_ros.rosbag import sensors as sens
from unifygeo_ros.rosbag import synth
from unifygeo_ros.rosbag.camera_rig import CAMERA_KINDS, DEFAULT_HFOV_DEG, DEFAULT_PINHOLE_WIDTH_PX, make_rig
from unifygeo_ros.rosbag.drive_plan import KIDNAP_MIN_M
from unifygeo_ros.rosbag.drive_stops import parse_stop
from unifygeo_ros.rosbag.synth import SynthBagConfig, synth_bag
from unifygeo_ros.rosbag.synth_topics import (FIX_TOPIC, GEOPOSE_TOPIC, IMU_TOPIC, KIDNAP_TOPIC, ODOM_TOPIC,
                                              WHEEL_ODOM_TOPIC)


def configure_parser(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="bag_command", metavar="BAG_COMMAND", required=True)
    p = sub.add_parser("synth", help="record a drive through a synthetic city (images + ground truth)",
                       description=synth.__doc__.split("\n\n")[0])
    p.add_argument("--data", required=True, help="city folder written by `unifygeo synth` (holds geo.json)")
    p.add_argument("--out", required=True, help="bag folder to create (must not exist)")
    p.add_argument("--storage", choices=("sqlite3", "mcap"), default="sqlite3")
    p.add_argument("--route", choices=("random", "loop"), default="random")
    p.add_argument("--rate", type=float, default=2.0, dest="rate_hz", help="camera rate (Hz, default 2)")
    n = p.add_mutually_exclusive_group()
    n.add_argument("--duration", type=float, dest="duration_s", help="seconds of driving (default 30)")
    n.add_argument("--frames", type=int, help="number of panoramas")
    p.add_argument("--seed", type=int, default=0, help="route seed (the city comes from geo.json)")
    p.add_argument("--speed", type=float, default=8.0, dest="speed_mps", help="cruise speed (m/s, default 8)")
    p.add_argument("--camera", choices=CAMERA_KINDS, default="panorama",
                   help="panorama (default: one equirectangular camera) or pinhole (--cameras pinhole cameras)")
    p.add_argument("--cameras", type=int, default=1, metavar="N",
                   help="pinhole: N cameras evenly spaced in yaw (1: front; 4: front, left, back, right; default 1)")
    p.add_argument("--hfov", type=float, dest="hfov_deg", metavar="DEG",
                   help=f"pinhole: horizontal field of view of each camera (deg, default {DEFAULT_HFOV_DEG:g})")
    p.add_argument("--distortion", metavar="MODEL:c1,c2,...",
                   help="pinhole: lens distortion rendered into the images and written to CameraInfo, e.g. "
                        "plumb_bob:-0.3,0.1,0,0,0 or equidistant:0.05,-0.01,0,0 (default: none)")
    p.add_argument("--image-width", type=int,
                   help="panorama width (px, height = width / 2; default geo.json's) or pinhole image width (px, "
                        f"height = 3/4 width; default {DEFAULT_PINHOLE_WIDTH_PX})")
    p.add_argument("--compressed", action="store_true", help="sensor_msgs/CompressedImage (JPEG) on .../compressed")
    p.add_argument("--kidnap-at", type=float, dest="kidnap_at_s", metavar="S",
                   help=f"teleport the vehicle at least {KIDNAP_MIN_M:.0f} m at S seconds (a new route from there; "
                        f"the ground truth jumps, the wheel odometry does not; marked on {KIDNAP_TOPIC})")
    p.add_argument("--stop", action="append", default=[], dest="stops", metavar="S:DURATION",
                   help="the vehicle brakes to a standstill at S seconds and stands for DURATION seconds, then "
                        "drives on (repeatable; 0:D stands from the start: a robot waiting before it moves)")
    p.add_argument("--north-aligned", action="store_true",
                   help="render north-aligned panoramas (heading 0) instead of vehicle-aligned ones")
    p.add_argument("--gt-rate", type=float, default=10.0, dest="gt_rate_hz", help="GT rate (Hz, default 10)")
    p.add_argument("--odom", action="store_true", help="also write nav_msgs/Odometry in local ENU on /gt/odom")
    p.add_argument("--start-time", type=float, default=synth.DEFAULT_START_S, dest="start_s",
                   help="recording start, UNIX seconds (default 2024-01-01T00:00:00Z)")
    o, i = sens.WheelOdomNoise(), sens.ImuNoise()
    s = p.add_argument_group("wheel odometry and IMU (docs/REPLAY.md; 1-sigma values)")
    s.add_argument("--no-sensors", action="store_false", dest="sensors",
                   help=f"leave out the wheel odometry ({WHEEL_ODOM_TOPIC}) and the IMU ({IMU_TOPIC})")
    s.add_argument("--sensor-seed", type=int, metavar="N", help="seed of the sensor noise (default: --seed)")
    s.add_argument("--odom-rate", type=float, default=o.rate_hz, metavar="HZ",
                   help=f"wheel odometry rate, Hz (default {o.rate_hz:g})")
    s.add_argument("--odom-speed-noise", type=float, default=o.speed_noise_frac, metavar="FRAC",
                   help=f"white speed noise, fraction of the speed (default {o.speed_noise_frac:g})")
    s.add_argument("--odom-speed-noise-floor", type=float, default=o.speed_noise_floor_mps, metavar="MPS",
                   help=f"white speed noise floor, m/s (default {o.speed_noise_floor_mps:g})")
    s.add_argument("--odom-yaw-rate-noise", type=float, default=o.yaw_rate_noise_dps, metavar="DEG_S",
                   help=f"white yaw-rate noise, deg/s (default {o.yaw_rate_noise_dps:g})")
    s.add_argument("--odom-speed-bias", type=float, default=o.speed_scale_bias_frac, metavar="FRAC",
                   help=f"std of the drive's constant speed scale error (default {o.speed_scale_bias_frac:g})")
    s.add_argument("--odom-yaw-rate-bias", type=float, default=o.yaw_rate_bias_dps, metavar="DEG_S",
                   help=f"std of the drive's constant yaw-rate bias, deg/s (default {o.yaw_rate_bias_dps:g})")
    s.add_argument("--imu-rate", type=float, default=i.rate_hz, metavar="HZ",
                   help=f"IMU rate, Hz (default {i.rate_hz:g})")
    s.add_argument("--imu-yaw-noise", type=float, default=i.yaw_noise_deg, metavar="DEG",
                   help=f"white yaw noise, deg (default {i.yaw_noise_deg:g})")
    s.add_argument("--imu-yaw-bias", type=float, default=i.yaw_bias_init_deg, metavar="DEG",
                   help=f"std of the yaw bias at the start, deg (default {i.yaw_bias_init_deg:g})")
    s.add_argument("--imu-yaw-bias-walk", type=float, default=i.yaw_bias_walk_deg_per_sqrt_s,
                   metavar="DEG_PER_SQRT_S",
                   help=f"yaw bias random walk, deg/sqrt(s) (default {i.yaw_bias_walk_deg_per_sqrt_s:g})")
    s.add_argument("--imu-gyro-noise", type=float, default=i.gyro_noise_dps, metavar="DEG_S",
                   help=f"white angular-velocity noise per axis, deg/s (default {i.gyro_noise_dps:g})")
    s.add_argument("--imu-accel-noise", type=float, default=i.accel_noise_mps2, metavar="MPS2",
                   help=f"white acceleration noise per axis, m/s^2 (default {i.accel_noise_mps2:g})")


def _sensor_args(args: argparse.Namespace) -> dict:
    """SynthBagConfig's sensor fields from the parsed flags."""
    return dict(sensors=args.sensors, sensor_seed=args.sensor_seed,
                odom_noise=sens.WheelOdomNoise(
                    rate_hz=args.odom_rate, speed_noise_frac=args.odom_speed_noise,
                    speed_noise_floor_mps=args.odom_speed_noise_floor, yaw_rate_noise_dps=args.odom_yaw_rate_noise,
                    speed_scale_bias_frac=args.odom_speed_bias, yaw_rate_bias_dps=args.odom_yaw_rate_bias),
                imu_noise=sens.ImuNoise(
                    rate_hz=args.imu_rate, yaw_noise_deg=args.imu_yaw_noise, yaw_bias_init_deg=args.imu_yaw_bias,
                    yaw_bias_walk_deg_per_sqrt_s=args.imu_yaw_bias_walk, gyro_noise_dps=args.imu_gyro_noise,
                    accel_noise_mps2=args.imu_accel_noise))


def run(args: argparse.Namespace) -> int:
    cfg = SynthBagConfig(data=args.data, out=args.out, storage=args.storage, route=args.route, rate_hz=args.rate_hz,
                         duration_s=args.duration_s, frames=args.frames, seed=args.seed, speed_mps=args.speed_mps,
                         image_width=args.image_width, compressed=args.compressed, north_aligned=args.north_aligned,
                         gt_rate_hz=args.gt_rate_hz, odom=args.odom, start_s=args.start_s, camera=args.camera,
                         cameras=args.cameras, hfov_deg=args.hfov_deg, distortion=args.distortion,
                         kidnap_at_s=args.kidnap_at_s,
                         stops=tuple(sorted(map(parse_stop, args.stops), key=lambda s: s.at_s)),
                         **_sensor_args(args))
    r = synth_bag(cfg)
    sensors = (f", {r.wheel_odom_messages} wheel odometry on {WHEEL_ODOM_TOPIC}, {r.imu_messages} IMU on {IMU_TOPIC}"
               if cfg.sensors else "")
    what = (f"{r.frames} panoramas on {r.image_topic}" if cfg.camera == "panorama" else
            f"{r.frames} frames of {len(r.image_topics)} pinhole camera(s) on {', '.join(r.image_topics)} "
            "(+ camera_info)")
    kidnap = (f"; kidnapped at {cfg.kidnap_at_s:g} s ({r.kidnap_jump_m:.0f} m, on {KIDNAP_TOPIC})"
              if r.kidnap_jump_m is not None else "")
    kidnap += "".join(f"; stands {s.duration_s:g} s from {s.at_s:g} s" for s in cfg.stops)
    print(f"wrote {r.bag} ({cfg.storage}): {what}, {r.gt_messages} GT fixes on "
          f"{FIX_TOPIC} and {GEOPOSE_TOPIC}{' and ' + ODOM_TOPIC if cfg.odom else ''}{sensors}; "
          f"{r.duration_s:.1f} s, {r.route_length_m:.0f} m driven{kidnap}; origin {r.origin.lat0_deg:.7f}, "
          f"{r.origin.lon0_deg:.7f} ({r.seconds:.1f} s, {r.render_s:.1f} s of it rendering)")
    print(f"replay: unifygeo replay {r.bag} --index INDEX --out OUT"
          + (" [--track]" if cfg.sensors else "") + "   (topics taken from the bag)")
    if cfg.camera != "panorama":
        rig = make_rig(cfg.camera, cfg.cameras, cfg.hfov_deg, cfg.image_width, distortion=cfg.distortion)
        print(f"node: input_mode cameras, cameras.names {[c.name for c in rig.cameras]}, cameras.yaw_deg "
              f"{[c.yaw_deg for c in rig.cameras]}")
    return 0
