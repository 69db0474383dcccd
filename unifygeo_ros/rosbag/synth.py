"""``unifygeo bag synth``: record a synthetic drive through a city as a rosbag2 (sqlite3 or MCAP).

Stage: ``CITY_DIR`` (written by ``unifygeo synth``; its ``geo.json`` holds seed, style, size and the ENU origin at
the south-west corner) -> ``BAG/``. The city is regenerated from ``geo.json`` (``world.generate_city``), so the
drive passes through the same world the data set's panoramas and tiles were rendered from.

The drive:

* **route** (:mod:`unifygeo_ros.rosbag.route`) - a walk on the street network (street centre lines, split at
  their crossings into a graph; edges that leave the city and dead-end stubs are pruned, so the walk never needs
  a U-turn). ``random``: a random walk that avoids turning back; ``loop``: a random walk out, the shortest path
  back to the start, repeated. In a tiled city the route stays inside the tiles' central quarters when the
  streets there allow it.
* **motion** (:mod:`unifygeo_ros.rosbag.drive`) - the polyline is smoothed (corners rounded over
  ~``SMOOTH_M``), offset ``LANE_M`` to the right of the centre line (right-hand traffic; dead ends - only in
  cities too small for a network without them - are turned on a half circle), driven at ``--speed`` m/s on
  straights, slower in curves (lateral acceleration <= ``LAT_ACC_MPS2``), with accelerations
  <= ``LONG_ACC_MPS2``.
* **camera** - on the vehicle, at ``geo.json``'s ``camera_height_m``; panoramas rendered with
  ``render.render_panorama`` at the vehicle heading (vehicle-aligned: the centre column looks forward; the
  default) or at heading 0 (``--north-aligned``, like VIGOR).

Topics (standard types only; message definitions stored in the bag, ``ros2msg`` MCAP schemas), header stamps =
recording (log) time:

* ``/camera/panorama/image_raw`` ``sensor_msgs/Image`` (rgb8), or ``.../image_raw/compressed``
  ``sensor_msgs/CompressedImage`` (JPEG) with ``--compressed``; frame ``camera_panorama``.
* ``/gt/fix`` ``sensor_msgs/NavSatFix`` and ``/gt/geopose`` ``geographic_msgs/GeoPoseStamped`` at ``--gt-rate``
  (default 10 Hz, not synchronised with the camera: replay interpolates): the camera's position; the GeoPose
  orientation is the camera's (ENU, yaw = 90 deg - compass heading), which is the vehicle's when
  vehicle-aligned.
* ``/gt/odom`` ``nav_msgs/Odometry`` (``--odom``): the vehicle in frame ``map`` = ENU at the city origin
  (``geo.json`` origin; replay: ``--gt-frame-origin LAT,LON``), child ``base_link``, twist in ``base_link``.

What a robot has (unless ``--no-sensors``; noise models in :mod:`unifygeo_ros.rosbag.sensors`, seeded by
``--sensor-seed``, default ``--seed``; added topics only: the camera and GT messages are the same bytes with and
without them):

* ``WHEEL_ODOM_TOPIC`` (``/wheel/odometry``) ``nav_msgs/Odometry`` at ``--odom-rate`` (20 Hz): frame ``odom``
  (the vehicle's start pose; continuous), child ``base_link``; a noisy twist in ``base_link`` and the drifting pose
  integrated from it, with their covariances.
* ``IMU_TOPIC`` (``/imu/data``) ``sensor_msgs/Imu`` at ``--imu-rate`` (50 Hz), frame ``base_link``: ENU yaw
  (REP-103, earth-referenced) with white noise and a random-walk bias, yaw rate, specific force (gravity
  included, REP-145), with their covariances.
"""
from __future__ import annotations

import argparse
import json
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from unifygeo_ros import geo
from unifygeo_ros.data import render, world
from unifygeo_ros.data.synth import tile_grid
from unifygeo_ros.errors import DataFormatError, UnifyGeoError
from unifygeo_ros.rosbag import io as bags
from unifygeo_ros.rosbag import sensors as sens
# the drive's planning, re-exported: ``from unifygeo_ros.rosbag.synth import plan_route`` keeps working
from unifygeo_ros.rosbag.drive import (LANE_M, LAT_ACC_MPS2, LONG_ACC_MPS2, MIN_SPEED_MPS, SMOOTH_M,  # noqa: F401
                                       Drive, make_drive)
from unifygeo_ros.rosbag.msgtypes import IMU
from unifygeo_ros.rosbag.route import (BORDER_M, MAX_TURN_DEG, MERGE_M, StreetGraph, plan_route,  # noqa: F401
                                       street_graph)

IMAGE_TOPIC = "/camera/panorama/image_raw"
FIX_TOPIC = "/gt/fix"
GEOPOSE_TOPIC = "/gt/geopose"
ODOM_TOPIC = "/gt/odom"
#: wheel odometry (nav_msgs/Odometry, frame ODOM_FRAME, child BASE_FRAME) and IMU (sensor_msgs/Imu, IMU_FRAME);
#: robot_localization's conventional names (config/robot_localization: odom0 wheel/odometry, imu0 imu/data)
WHEEL_ODOM_TOPIC = "/wheel/odometry"
IMU_TOPIC = "/imu/data"
CAMERA_FRAME = "camera_panorama"
MAP_FRAME = "map"
ODOM_FRAME = "odom"
BASE_FRAME = "base_link"
IMU_FRAME = BASE_FRAME  # the IMU is mounted aligned with the vehicle: no extra transform
#: default start of the recording (2024-01-01T00:00:00Z): fixed so that bags are reproducible
DEFAULT_START_S = 1_704_067_200
DEFAULT_DURATION_S = 30.0
#: the route planned is this much longer than the drive (turns, the speed profile) plus ROUTE_MARGIN_M
ROUTE_LENGTH_FACTOR, ROUTE_MARGIN_M = 1.6, 60.0
EVENT_GT, EVENT_IMAGE, EVENT_WHEEL_ODOM, EVENT_IMU = 0, 1, 2, 3  # kinds of recording events, in this order at
# equal stamps


# ---------------------------------------------------------------------------------------------- recording
@dataclass
class SynthBagConfig:
    data: str
    out: str
    storage: str = "sqlite3"
    route: str = "random"
    rate_hz: float = 2.0
    duration_s: float | None = None
    frames: int | None = None
    seed: int = 0
    speed_mps: float = 8.0
    image_width: int | None = None
    compressed: bool = False
    north_aligned: bool = False
    gt_rate_hz: float = 10.0
    odom: bool = False
    start_s: float = DEFAULT_START_S
    camera_phase_s: float = 0.013  # camera trigger offset from the GT clock (exercises interpolation)
    sensors: bool = True  # wheel odometry and IMU (False: --no-sensors)
    odom_noise: sens.WheelOdomNoise = field(default_factory=sens.WheelOdomNoise)
    imu_noise: sens.ImuNoise = field(default_factory=sens.ImuNoise)
    sensor_seed: int | None = None  # None: ``seed``


@dataclass
class SynthBagResult:
    bag: Path
    frames: int
    gt_messages: int
    duration_s: float
    route_length_m: float  # driven during the recording
    origin: geo.LocalENU
    image_topic: str
    seconds: float
    wheel_odom_messages: int = 0
    imu_messages: int = 0


@dataclass(frozen=True)
class _Recording:
    """What is recorded, from the config and the city's ``geo.json``."""

    origin: geo.LocalENU
    width_px: int
    camera_height_m: float
    n_frames: int
    duration_s: float  # from the first GT sample to the last image


def read_city_meta(city_dir: str | Path) -> dict:
    p = Path(city_dir) / "geo.json"
    if not p.is_file():
        raise DataFormatError(f"{p} not found: --data must be a city folder written by `unifygeo synth` (its geo.json "
                              "holds the seed, style, size and origin the drive is regenerated from)")
    try:
        meta = json.loads(p.read_text())
        meta["origin"]["lat_deg"], meta["origin"]["lon_deg"], meta["seed"], meta["size_m"]  # noqa: B018
    except (json.JSONDecodeError, KeyError, TypeError) as exc:
        raise DataFormatError(f"{p}: not a unifygeo-city geo.json ({exc})") from exc
    return meta


def synth_bag(cfg: SynthBagConfig, city: Any = None) -> SynthBagResult:
    """Record the drive of ``cfg`` (the city regenerated from ``geo.json`` unless given) and return a summary."""
    t_start = time.perf_counter()
    meta = read_city_meta(cfg.data)
    origin = geo.LocalENU(float(meta["origin"]["lat_deg"]), float(meta["origin"]["lon_deg"]))
    if cfg.sensors:
        sensor_settings(cfg).validate()  # before the city is generated: a bad flag fails at once
    if city is None:
        kw = {"cell_m": float(meta["cell_m"])} if "cell_m" in meta else {}
        city = world.generate_city(int(meta["seed"]), tuple(meta["size_m"]), meta.get("style", "mixed"), **kw)
    rec = _recording(cfg, meta, origin)
    drive = _plan_drive(cfg, meta, city, rec.duration_s)
    storage = _storage_plugin(cfg.storage)
    image_topic = IMAGE_TOPIC + ("/compressed" if cfg.compressed else "")
    t0_ns = int(round(cfg.start_s * 1e9))
    events, n_gt = _events(cfg, rec, t0_ns)
    samples = None
    if cfg.sensors:  # over the GT's span: from the start to the last GT sample (at or after the last image)
        samples = sens.simulate_sensors(drive, (n_gt - 1) / cfg.gt_rate_hz, sensor_settings(cfg))
        events = sorted(events + _sensor_events(samples, t0_ns))
    writer = _BagWriter.open(Path(cfg.out), storage, image_topic, cfg.compressed, cfg.odom, cfg.sensors)
    try:
        frames = _record(writer, events, drive, city, rec, cfg.north_aligned, samples)
    except BaseException:
        writer.close()
        raise
    writer.close()
    driven_m = float(np.interp(rec.duration_s, drive.t_s, drive.s_m))
    return SynthBagResult(Path(cfg.out), frames, n_gt, rec.duration_s, driven_m, origin, image_topic,
                          time.perf_counter() - t_start, len(samples.odom) if samples else 0,
                          len(samples.imu) if samples else 0)


def sensor_settings(cfg: SynthBagConfig) -> sens.SensorSettings:
    """The noise models of ``cfg`` and their seed (``sensor_seed``, else the route ``seed``)."""
    return sens.SensorSettings(cfg.odom_noise, cfg.imu_noise, cfg.seed if cfg.sensor_seed is None else cfg.sensor_seed)


def _recording(cfg: SynthBagConfig, meta: dict, origin: geo.LocalENU) -> _Recording:
    """Image size, camera height, frame count and duration; :class:`UnifyGeoError` for unusable values."""
    width = int(cfg.image_width or meta.get("pano_px", [512, 256])[0])
    if width < 16 or width % 2:
        raise UnifyGeoError(f"--image-width must be an even number >= 16, got {width}")
    cam_h = float(meta.get("camera_height_m", 2.0))
    if cfg.frames is not None:
        n_frames = int(cfg.frames)
    else:
        n_frames = int(math.floor((cfg.duration_s if cfg.duration_s is not None else DEFAULT_DURATION_S)
                                  * cfg.rate_hz)) + 1
    if n_frames < 1 or cfg.rate_hz <= 0 or cfg.speed_mps <= 0 or cfg.gt_rate_hz <= 0:
        raise UnifyGeoError("need at least one frame and positive --rate, --speed and --gt-rate")
    duration = (n_frames - 1) / cfg.rate_hz + cfg.camera_phase_s
    return _Recording(origin, width, cam_h, n_frames, duration)


def _plan_drive(cfg: SynthBagConfig, meta: dict, city: Any, duration_s: float) -> Drive:
    """The route (inside the tiled area when the city has tiles, else anywhere in the city) and its drive."""
    rng = np.random.default_rng(cfg.seed)
    route_m = cfg.speed_mps * duration_s * ROUTE_LENGTH_FACTOR + ROUTE_MARGIN_M
    route = None
    if "tile_m" in meta:  # drive where the map can answer: inside the tiles' central quarters (VIGOR positives)
        try:
            bounds = tile_grid(tuple(meta["size_m"]), float(meta["tile_m"])).camera_bounds()
            route = plan_route(street_graph(city.streets, tuple(city.size_m), bounds=bounds), cfg.route, route_m,
                               np.random.default_rng(cfg.seed))
        except (UnifyGeoError, ValueError, IndexError, KeyError):
            route = None  # too few streets inside the tiled area: drive the whole city instead
    if route is None:
        route = plan_route(street_graph(city.streets, tuple(city.size_m)), cfg.route, route_m, rng)
    drive = make_drive(route, cfg.speed_mps)
    if drive.t_s[-1] < duration_s + 1.0 / cfg.gt_rate_hz:
        raise UnifyGeoError(f"the route is too short for {duration_s:.1f} s of driving; lower --duration/--frames")
    return drive


def _storage_plugin(storage: str) -> Any:
    """rosbags' ``StoragePlugin`` for ``sqlite3`` or ``mcap``."""
    # rosbags is an optional extra (``pip install .[bags]``): imported where a bag is written
    from rosbags.rosbag2 import StoragePlugin

    plugin = {"sqlite3": StoragePlugin.SQLITE3, "mcap": StoragePlugin.MCAP}.get(storage)
    if plugin is None:
        raise UnifyGeoError(f"--storage must be sqlite3 or mcap, got {storage!r}")
    return plugin


Event = tuple[int, int, float, int]  # (t_ns, EVENT_*, seconds since the start, sample index)


def _events(cfg: SynthBagConfig, rec: _Recording, t0_ns: int) -> tuple[list[Event], int]:
    """The camera's and GT's events, ordered by log time: ``(t_ns, EVENT_GT | EVENT_IMAGE, seconds since the
    start, index)``, and the number of GT samples (the last one is at or after the last image)."""
    n_gt = int(math.ceil(rec.duration_s * cfg.gt_rate_hz - 1e-9)) + 1
    events = [(t0_ns + int(round(k * 1e9 / cfg.gt_rate_hz)), EVENT_GT, k / cfg.gt_rate_hz, k) for k in range(n_gt)]
    cam_t = [cfg.camera_phase_s + j / cfg.rate_hz for j in range(rec.n_frames)]
    events += [(t0_ns + int(round(t * 1e9)), EVENT_IMAGE, t, j) for j, t in enumerate(cam_t)]
    events.sort()
    return events, n_gt


def _sensor_events(samples: sens.SensorSamples, t0_ns: int) -> list[Event]:
    """The wheel odometry's and IMU's events (stamps ``t0 + round(t_s * 1e9)``)."""
    return ([(t0_ns + int(round(t * 1e9)), EVENT_WHEEL_ODOM, float(t), k) for k, t in enumerate(samples.odom.t_s)]
            + [(t0_ns + int(round(t * 1e9)), EVENT_IMU, float(t), k) for k, t in enumerate(samples.imu.t_s)])


def _record(writer: _BagWriter, events: list[Event], drive: Drive, city: Any, rec: _Recording,
            north_aligned: bool, samples: sens.SensorSamples | None = None) -> int:
    """Write every event (a rendered panorama; the GT fix, GeoPose and odometry; a wheel odometry or IMU sample of
    ``samples``); the number of frames."""
    frames = 0
    for t_ns, kind, t_rel, idx in events:
        if kind == EVENT_WHEEL_ODOM:
            writer.write_wheel_odometry(t_ns, samples.odom, idx)
            continue
        if kind == EVENT_IMU:
            writer.write_imu(t_ns, samples.imu, idx)
            continue
        en, heading, speed, yaw_rate = (a[0] for a in drive.at([t_rel]))
        cam_heading = 0.0 if north_aligned else float(heading)
        if kind == EVENT_IMAGE:
            img = render.render_panorama(city, (float(en[0]), float(en[1])), cam_heading, rec.width_px,
                                         rec.width_px // 2, camera_height_m=rec.camera_height_m)
            writer.write_image(t_ns, img)
            frames += 1
            continue
        lat, lon = rec.origin.from_en(float(en[0]), float(en[1]))
        writer.write_fix(t_ns, float(lat), float(lon), rec.camera_height_m)
        writer.write_geopose(t_ns, float(lat), float(lon), rec.camera_height_m, cam_heading)
        writer.write_odometry(t_ns, en, float(heading), float(speed), float(yaw_rate), rec.camera_height_m)
    return frames


@dataclass
class _BagWriter:
    """A rosbags ``Writer`` with the drive's connections; one method per message kind."""

    writer: Any
    ts: Any  # the project typestore (geographic_msgs registered)
    c_img: Any
    c_fix: Any
    c_geo: Any
    c_odom: Any  # None without --odom
    compressed: bool
    c_wheel: Any = None  # None with --no-sensors
    c_imu: Any = None

    @classmethod
    def open(cls, out: Path, storage: Any, image_topic: str, compressed: bool, odom: bool,
             sensors: bool = False) -> _BagWriter:
        from rosbags.rosbag2 import Writer, WriterError  # optional extra, see _storage_plugin

        ts = bags.make_typestore()
        try:
            writer = Writer(out, version=9, storage_plugin=storage)
            writer.open()
        except WriterError as exc:
            raise UnifyGeoError(f"cannot write bag {out}: {exc}") from exc
        try:
            c_img = writer.add_connection(image_topic, bags.COMPRESSED_IMAGE if compressed else bags.IMAGE,
                                          typestore=ts)
            c_fix = writer.add_connection(FIX_TOPIC, bags.NAVSATFIX, typestore=ts)
            c_geo = writer.add_connection(GEOPOSE_TOPIC, bags.GEOPOSE_STAMPED, typestore=ts)
            c_odom = writer.add_connection(ODOM_TOPIC, bags.ODOMETRY, typestore=ts) if odom else None
            c_wheel = writer.add_connection(WHEEL_ODOM_TOPIC, bags.ODOMETRY, typestore=ts) if sensors else None
            c_imu = writer.add_connection(IMU_TOPIC, IMU, typestore=ts) if sensors else None
        except BaseException:
            writer.close()
            raise
        return cls(writer, ts, c_img, c_fix, c_geo, c_odom, compressed, c_wheel, c_imu)

    def close(self) -> None:
        self.writer.close()

    def _write(self, conn: Any, t_ns: int, msg: Any) -> None:
        self.writer.write(conn, t_ns, self.ts.serialize_cdr(msg, conn.msgtype))

    def write_image(self, t_ns: int, rgb: np.ndarray) -> None:
        msg = (bags.rgb_to_compressed_msg(self.ts, rgb, t_ns, CAMERA_FRAME) if self.compressed
               else bags.rgb_to_image_msg(self.ts, rgb, t_ns, CAMERA_FRAME))
        self._write(self.c_img, t_ns, msg)

    def write_fix(self, t_ns: int, lat_deg: float, lon_deg: float, altitude_m: float) -> None:
        T = self.ts.types
        fix = T[bags.NAVSATFIX](
            header=bags.header(self.ts, t_ns, CAMERA_FRAME),
            status=T["sensor_msgs/msg/NavSatStatus"](status=2, service=1),  # GBAS (RTK-like) fix, GPS
            latitude=lat_deg, longitude=lon_deg, altitude=altitude_m,
            position_covariance=np.diag([1e-4, 1e-4, 4e-4]).reshape(-1),
            position_covariance_type=2)  # diagonal known
        self._write(self.c_fix, t_ns, fix)

    def write_geopose(self, t_ns: int, lat_deg: float, lon_deg: float, altitude_m: float,
                      heading_deg: float) -> None:
        """The camera's GeoPose: orientation ENU, yaw = 90 deg - compass ``heading_deg``."""
        T = self.ts.types
        q = geo.yaw_to_quaternion_xyzw(float(geo.heading_to_yaw_deg(heading_deg)))
        quat = T["geometry_msgs/msg/Quaternion"](x=q[0], y=q[1], z=q[2], w=q[3])
        gp = T[bags.GEOPOSE_STAMPED](
            header=bags.header(self.ts, t_ns, MAP_FRAME),
            pose=T["geographic_msgs/msg/GeoPose"](
                position=T["geographic_msgs/msg/GeoPoint"](latitude=lat_deg, longitude=lon_deg, altitude=altitude_m),
                orientation=quat))
        self._write(self.c_geo, t_ns, gp)

    def write_odometry(self, t_ns: int, en_m: np.ndarray, heading_deg: float, speed_mps: float,
                       yaw_rate_dps: float, cam_height_m: float) -> None:
        """The vehicle in ``map`` (ENU at the city origin), twist in ``base_link``; nothing without --odom."""
        if self.c_odom is None:
            return
        msg = _odometry(self.ts, t_ns, en_m, heading_deg, speed_mps, yaw_rate_dps, cam_height_m)
        self._write(self.c_odom, t_ns, msg)

    def write_wheel_odometry(self, t_ns: int, odom: sens.OdomSamples, k: int) -> None:
        self._write(self.c_wheel, t_ns, wheel_odometry_msg(self.ts, t_ns, odom, k))

    def write_imu(self, t_ns: int, imu: sens.ImuSamples, k: int) -> None:
        self._write(self.c_imu, t_ns, imu_msg(self.ts, t_ns, imu, k))


def _quaternion(T: Any, yaw_rad: float) -> Any:
    """``geometry_msgs/Quaternion`` of a rotation by ``yaw_rad`` about +z."""
    return T["geometry_msgs/msg/Quaternion"](x=0.0, y=0.0, z=math.sin(yaw_rad / 2.0), w=math.cos(yaw_rad / 2.0))


def wheel_odometry_msg(ts: Any, t_ns: int, odom: sens.OdomSamples, k: int) -> Any:
    """Sample ``k`` of ``odom`` as ``nav_msgs/Odometry``: pose in ``odom`` (z = 0, roll = pitch = 0 unmeasured),
    twist in ``base_link`` (vx, wz measured; vy = 0 by the non-holonomic constraint)."""
    T = ts.types
    V3 = T["geometry_msgs/msg/Vector3"]
    return T[bags.ODOMETRY](
        header=bags.header(ts, t_ns, ODOM_FRAME), child_frame_id=BASE_FRAME,
        pose=T["geometry_msgs/msg/PoseWithCovariance"](
            pose=T["geometry_msgs/msg/Pose"](
                position=T["geometry_msgs/msg/Point"](x=float(odom.x_m[k]), y=float(odom.y_m[k]), z=0.0),
                orientation=_quaternion(T, float(odom.yaw_rad[k]))),
            covariance=sens.pose_cov_6x6(odom.pose_cov[k])),
        twist=T["geometry_msgs/msg/TwistWithCovariance"](
            twist=T["geometry_msgs/msg/Twist"](linear=V3(x=float(odom.speed_mps[k]), y=0.0, z=0.0),
                                               angular=V3(x=0.0, y=0.0, z=float(odom.yaw_rate_rps[k]))),
            covariance=sens.twist_cov_6x6(float(odom.speed_var[k]), odom.yaw_rate_var,
                                                    odom.lateral_speed_var)))


def imu_msg(ts: Any, t_ns: int, imu: sens.ImuSamples, k: int) -> Any:
    """Sample ``k`` of ``imu`` as ``sensor_msgs/Imu`` in ``IMU_FRAME``: ENU orientation (roll = pitch = 0),
    angular velocity, linear acceleration (gravity included), diagonal covariances."""
    T = ts.types
    V3 = T["geometry_msgs/msg/Vector3"]
    g, a = imu.gyro_rps[k], imu.accel_mps2[k]
    return T[IMU](
        header=bags.header(ts, t_ns, IMU_FRAME),
        orientation=_quaternion(T, float(imu.yaw_rad[k])),
        orientation_covariance=sens.imu_orientation_cov(float(imu.yaw_var[k]), imu.tilt_var),
        angular_velocity=V3(x=float(g[0]), y=float(g[1]), z=float(g[2])),
        angular_velocity_covariance=np.diag([imu.gyro_var] * 3).reshape(-1),
        linear_acceleration=V3(x=float(a[0]), y=float(a[1]), z=float(a[2])),
        linear_acceleration_covariance=np.diag([imu.accel_var] * 3).reshape(-1))


def _odometry(ts: Any, t_ns: int, en_m: np.ndarray, heading_deg: float, speed_mps: float, yaw_rate_dps: float,
              cam_height_m: float) -> Any:
    T = ts.types
    q = geo.yaw_to_quaternion_xyzw(float(geo.heading_to_yaw_deg(heading_deg)))
    pose_cov = np.diag([1e-4, 1e-4, 4e-4, 1e-4, 1e-4, 3e-4]).reshape(-1)
    twist_cov = np.diag([1e-3, 1e-3, 1e-3, 1e-4, 1e-4, 1e-4]).reshape(-1)
    V3 = T["geometry_msgs/msg/Vector3"]
    return T[bags.ODOMETRY](
        header=bags.header(ts, t_ns, MAP_FRAME), child_frame_id="base_link",
        pose=T["geometry_msgs/msg/PoseWithCovariance"](
            pose=T["geometry_msgs/msg/Pose"](position=T["geometry_msgs/msg/Point"](x=float(en_m[0]),
                                                                                 y=float(en_m[1]), z=cam_height_m),
                                             orientation=T["geometry_msgs/msg/Quaternion"](x=q[0], y=q[1], z=q[2],
                                                                                           w=q[3])),
            covariance=pose_cov),
        twist=T["geometry_msgs/msg/TwistWithCovariance"](
            twist=T["geometry_msgs/msg/Twist"](linear=V3(x=speed_mps, y=0.0, z=0.0),
                                               angular=V3(x=0.0, y=0.0, z=math.radians(yaw_rate_dps))),
            covariance=twist_cov))


# ---------------------------------------------------------------------------------------------------- CLI
def configure_parser(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="bag_command", metavar="BAG_COMMAND", required=True)
    p = sub.add_parser("synth", help="record a drive through a synthetic city (images + ground truth)",
                       description=__doc__.split("\n\n")[0])
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
    p.add_argument("--image-width", type=int, help="panorama width (px, height = width / 2; default geo.json's)")
    p.add_argument("--compressed", action="store_true", help="sensor_msgs/CompressedImage (JPEG) on .../compressed")
    p.add_argument("--north-aligned", action="store_true",
                   help="render north-aligned panoramas (heading 0) instead of vehicle-aligned ones")
    p.add_argument("--gt-rate", type=float, default=10.0, dest="gt_rate_hz", help="GT rate (Hz, default 10)")
    p.add_argument("--odom", action="store_true", help="also write nav_msgs/Odometry in local ENU on /gt/odom")
    p.add_argument("--start-time", type=float, default=DEFAULT_START_S, dest="start_s",
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
                         gt_rate_hz=args.gt_rate_hz, odom=args.odom, start_s=args.start_s, **_sensor_args(args))
    r = synth_bag(cfg)
    sensors = (f", {r.wheel_odom_messages} wheel odometry on {WHEEL_ODOM_TOPIC}, {r.imu_messages} IMU on {IMU_TOPIC}"
               if cfg.sensors else "")
    print(f"wrote {r.bag} ({cfg.storage}): {r.frames} panoramas on {r.image_topic}, {r.gt_messages} GT fixes on "
          f"{FIX_TOPIC} and {GEOPOSE_TOPIC}{' and ' + ODOM_TOPIC if cfg.odom else ''}{sensors}; "
          f"{r.duration_s:.1f} s, {r.route_length_m:.0f} m driven; origin {r.origin.lat0_deg:.7f}, "
          f"{r.origin.lon0_deg:.7f} ({r.seconds:.1f} s)")
    print(f"replay: unifygeo replay {r.bag} --index INDEX --image-topic {r.image_topic} --gt-topic {GEOPOSE_TOPIC} "
          "--out OUT")
    return 0
