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
* **cameras** (:mod:`unifygeo_ros.rosbag.camera_rig`) - on the vehicle, at ``geo.json``'s ``camera_height_m``.
  ``--camera panorama`` (the default): panoramas rendered with ``render.render_panorama`` at the vehicle heading
  (vehicle-aligned: the centre column looks forward; the default) or at heading 0 (``--north-aligned``, like
  VIGOR). ``--camera pinhole``: ``--cameras N`` pinhole cameras of ``--hfov`` degrees evenly spaced in yaw,
  rendered in pinhole projection by the same renderer (:mod:`unifygeo_ros.data.pinhole`).
* **kidnap** (``--kidnap-at S``, :mod:`unifygeo_ros.rosbag.drive_plan`) - at S seconds the vehicle is teleported
  at least 200 m and drives on along a new route; the ground truth jumps, the wheel odometry does not.
* **stops** (``--stop S:DURATION``, repeatable, :mod:`unifygeo_ros.rosbag.drive_stops`) - the vehicle brakes to a
  standstill at S seconds and stands for DURATION seconds (``0:D``: from the start); the wheel odometry reads 0.

Topics (standard types only; message definitions stored in the bag, ``ros2msg`` MCAP schemas), header stamps =
recording (log) time:

* ``/camera/panorama/image_raw`` ``sensor_msgs/Image`` (rgb8), or ``.../image_raw/compressed``
  ``sensor_msgs/CompressedImage`` (JPEG) with ``--compressed``; frame ``camera_panorama``.
* pinhole: per camera ``/cameras/<name>/image`` ``sensor_msgs/Image`` (``.../image/compressed`` with
  ``--compressed``) and ``/cameras/<name>/camera_info`` ``sensor_msgs/CameraInfo`` (same stamp), frame
  ``camera_<name>_optical``; the node's ``input_mode: cameras`` topics. ``/tf_static`` (one
  ``tf2_msgs/TFMessage`` at the start): ``base_link`` -> each camera frame, translation (0, 0,
  ``camera_height_m``), rotation the camera's yaw (REP-103) into the optical axes (x right, y down, z forward).
* ``/gt/kidnap`` ``std_msgs/Header`` (``--kidnap-at``): one message stamped at the teleport, frame ``map``.
* ``/gt/fix`` ``sensor_msgs/NavSatFix`` and ``/gt/geopose`` ``geographic_msgs/GeoPoseStamped`` at ``--gt-rate``
  (default 10 Hz, not synchronised with the camera: replay interpolates): the camera's position; the GeoPose
  orientation is the vehicle's (``base_link``'s; ENU, yaw = 90 deg - compass heading), also with
  ``--north-aligned`` panoramas, whose centre column looks north whatever the vehicle does (a GT orientation is
  the body's, as an INS gives it; replay does not score the heading ``heading_source: north_aligned`` publishes
  frame by frame, a convention).
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

The bag's ``metadata.yaml`` ``custom_data`` holds ``unifygeo.bag_synth``: JSON with the camera kind, each pinhole
camera's topics, frame, yaw, pitch, size and ``K``, and ``kidnap_at_s`` / ``kidnap_jump_m`` (null without a kidnap).
"""
from __future__ import annotations

import json
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from unifygeo_ros import geo
from unifygeo_ros.data import world
from unifygeo_ros.errors import DataFormatError, UnifyGeoError
from unifygeo_ros.rosbag import sensors as sens
from unifygeo_ros.rosbag.camera_rig import CameraRig, make_rig
from unifygeo_ros.rosbag.drive import (LANE_M, LAT_ACC_MPS2, LONG_ACC_MPS2, MIN_SPEED_MPS, SMOOTH_M, Drive,
                                       make_drive)
from unifygeo_ros.rosbag.drive_stops import Stop
from unifygeo_ros.rosbag.drive_plan import ROUTE_LENGTH_FACTOR, ROUTE_MARGIN_M, KidnappedDrive, plan_drive
from unifygeo_ros.rosbag.route import BORDER_M, MAX_TURN_DEG, MERGE_M, StreetGraph, plan_route, street_graph
from unifygeo_ros.rosbag.synth_topics import (BASE_FRAME, CAMERA_FRAME, FIX_TOPIC, GEOPOSE_TOPIC, IMAGE_TOPIC,
                                              IMU_FRAME, IMU_TOPIC, KIDNAP_TOPIC, MAP_FRAME, ODOM_FRAME, ODOM_TOPIC,
                                              WHEEL_ODOM_TOPIC)
from unifygeo_ros.rosbag.synth_writer import BagWriter, Topics, imu_msg, wheel_odometry_msg

# the names other code imports from here (the drive's planning, topics and frames, the message builders)
__all__ = ["BASE_FRAME", "BORDER_M", "CAMERA_FRAME", "DEFAULT_DURATION_S", "DEFAULT_START_S", "Drive", "FIX_TOPIC",
           "GEOPOSE_TOPIC", "IMAGE_TOPIC", "IMU_FRAME", "IMU_TOPIC", "KIDNAP_TOPIC", "LANE_M", "LAT_ACC_MPS2",
           "LONG_ACC_MPS2", "MAP_FRAME", "MAX_TURN_DEG", "MERGE_M", "MIN_SPEED_MPS", "ODOM_FRAME", "ODOM_TOPIC",
           "ROUTE_LENGTH_FACTOR", "ROUTE_MARGIN_M", "SMOOTH_M", "StreetGraph", "SynthBagConfig", "SynthBagResult",
           "WHEEL_ODOM_TOPIC", "imu_msg", "make_drive", "plan_route", "read_city_meta", "sensor_settings",
           "street_graph", "synth_bag", "wheel_odometry_msg"]

#: default start of the recording (2024-01-01T00:00:00Z): fixed so that bags are reproducible
DEFAULT_START_S = 1_704_067_200
DEFAULT_DURATION_S = 30.0
# kinds of recording events, in this order at equal stamps
EVENT_GT, EVENT_IMAGE, EVENT_WHEEL_ODOM, EVENT_IMU, EVENT_KIDNAP = 0, 1, 2, 3, 4


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
    image_width: int | None = None  # panorama: geo.json's pano_px; pinhole: camera_rig.DEFAULT_PINHOLE_WIDTH_PX
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
    camera: str = "panorama"  # or "pinhole"
    cameras: int = 1  # pinhole cameras evenly spaced in yaw (camera_rig)
    hfov_deg: float | None = None  # pinhole; None: camera_rig.DEFAULT_HFOV_DEG
    distortion: str | None = None  # pinhole lens distortion MODEL:c1,c2,... (image.lens.parse_distortion)
    kidnap_at_s: float | None = None  # seconds after the start; None: no kidnap
    stops: tuple[Stop, ...] = ()  # the vehicle stands still (drive_stops)


@dataclass
class SynthBagResult:
    bag: Path
    frames: int
    gt_messages: int
    duration_s: float
    route_length_m: float  # driven during the recording
    origin: geo.LocalENU
    image_topic: str  # the panorama's; for a pinhole rig the first camera's
    seconds: float
    wheel_odom_messages: int = 0
    imu_messages: int = 0
    image_topics: tuple[str, ...] = ()  # every camera's
    kidnap_jump_m: float | None = None  # how far the kidnap moved the vehicle
    render_s: float = 0.0  # of ``seconds``: rendering the images


@dataclass(frozen=True)
class _Recording:
    """What is recorded, from the config and the city's ``geo.json``."""

    origin: geo.LocalENU
    rig: CameraRig
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
    rec = _recording(cfg, meta, origin)
    storage = _storage_plugin(cfg.storage)
    if city is None:
        kw = {"cell_m": float(meta["cell_m"])} if "cell_m" in meta else {}
        city = world.generate_city(int(meta["seed"]), tuple(meta["size_m"]), meta.get("style", "mixed"), **kw)
    drive = plan_drive(meta, city, cfg.route, cfg.seed, cfg.speed_mps, rec.duration_s, 1.0 / cfg.gt_rate_hz,
                       cfg.kidnap_at_s, list(cfg.stops))
    t0_ns = int(round(cfg.start_s * 1e9))
    events, n_gt = _events(cfg, rec, t0_ns)
    samples = None
    if cfg.sensors:  # over the GT's span: from the start to the last GT sample (at or after the last image)
        samples = sens.simulate_sensors(drive, (n_gt - 1) / cfg.gt_rate_hz, sensor_settings(cfg))
        events = sorted(events + _sensor_events(samples, t0_ns))
    kidnapped = isinstance(drive, KidnappedDrive)
    if kidnapped:
        events = sorted(events + [(t0_ns + int(round(drive.at_s * 1e9)), EVENT_KIDNAP, drive.at_s, 0)])
    topics = Topics(compressed=cfg.compressed, gt_odom=cfg.odom, sensors=cfg.sensors, kidnap=kidnapped)
    writer = BagWriter.open(Path(cfg.out), storage, rec.rig, topics)
    jump_m = drive.jump_m() if kidnapped else None
    try:
        writer.write_tf_static(t0_ns, rec.camera_height_m)
        frames, render_s = _record(writer, events, drive, city, rec, cfg.north_aligned, samples)
    except BaseException:
        writer.close()
        raise
    writer.close(_description(rec, drive, jump_m, cfg.north_aligned, cfg.stops))
    image_topics = tuple(t for t, m in writer.connection_types() if m.startswith("sensor_msgs/msg/") and "Image" in m)
    return SynthBagResult(Path(cfg.out), frames, n_gt, rec.duration_s, drive.distance_m(rec.duration_s), origin,
                          image_topics[0], time.perf_counter() - t_start, len(samples.odom) if samples else 0,
                          len(samples.imu) if samples else 0, image_topics, jump_m, render_s)


def sensor_settings(cfg: SynthBagConfig) -> sens.SensorSettings:
    """The noise models of ``cfg`` and their seed (``sensor_seed``, else the route ``seed``)."""
    return sens.SensorSettings(cfg.odom_noise, cfg.imu_noise, cfg.seed if cfg.sensor_seed is None else cfg.sensor_seed)


def _recording(cfg: SynthBagConfig, meta: dict, origin: geo.LocalENU) -> _Recording:
    """Cameras, camera height, frame count and duration; :class:`UnifyGeoError` for unusable values."""
    rig = make_rig(cfg.camera, cfg.cameras, cfg.hfov_deg, cfg.image_width, int(meta.get("pano_px", [512, 256])[0]),
                   cfg.distortion)
    if cfg.north_aligned and rig.kind != "panorama":
        raise UnifyGeoError("--north-aligned applies to --camera panorama (pinhole cameras are mounted on the vehicle)")
    cam_h = float(meta.get("camera_height_m", 2.0))
    if cfg.frames is not None:
        n_frames = int(cfg.frames)
    else:
        n_frames = int(math.floor((cfg.duration_s if cfg.duration_s is not None else DEFAULT_DURATION_S)
                                  * cfg.rate_hz)) + 1
    if n_frames < 1 or cfg.rate_hz <= 0 or cfg.speed_mps <= 0 or cfg.gt_rate_hz <= 0:
        raise UnifyGeoError("need at least one frame and positive --rate, --speed and --gt-rate")
    duration = (n_frames - 1) / cfg.rate_hz + cfg.camera_phase_s
    return _Recording(origin, rig, cam_h, n_frames, duration)


def _description(rec: _Recording, drive: Any, jump_m: float | None, north_aligned: bool = False,
                 stops: tuple[Stop, ...] = ()) -> dict:
    """The bag's metadata description (synth_topics.METADATA_KEY); ``north_aligned``: the panoramas' centre column
    looks north (``unifygeo replay``'s heading source follows it); ``stops`` as ``[S, DURATION]`` pairs."""
    return {**rec.rig.describe(rec.camera_height_m), "base_frame": BASE_FRAME, "kidnap_topic": KIDNAP_TOPIC,
            "kidnap_at_s": drive.at_s if jump_m is not None else None, "kidnap_jump_m": jump_m,
            "stops": [[s.at_s, s.duration_s] for s in sorted(stops, key=lambda s: s.at_s)],
            "north_aligned": bool(north_aligned)}


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


def _record(writer: BagWriter, events: list[Event], drive: Any, city: Any, rec: _Recording, north_aligned: bool,
            samples: sens.SensorSamples | None = None) -> tuple[int, float]:
    """Write every event (a rendered frame of the rig; the GT fix, GeoPose and odometry; a wheel odometry or IMU
    sample of ``samples``; the kidnap); the number of frames and the seconds spent rendering."""
    frames, render_s = 0, 0.0
    for t_ns, kind, t_rel, idx in events:
        if kind == EVENT_WHEEL_ODOM:
            writer.write_wheel_odometry(t_ns, samples.odom, idx)
            continue
        if kind == EVENT_IMU:
            writer.write_imu(t_ns, samples.imu, idx)
            continue
        if kind == EVENT_KIDNAP:
            writer.write_kidnap(t_ns)
            continue
        en, heading, speed, yaw_rate = (a[0] for a in drive.at([t_rel]))
        cam_heading = 0.0 if north_aligned else float(heading)
        if kind == EVENT_IMAGE:
            t_r = time.perf_counter()
            images = rec.rig.render(city, (float(en[0]), float(en[1])), cam_heading, rec.camera_height_m)
            render_s += time.perf_counter() - t_r
            writer.write_images(t_ns, images)
            frames += 1
            continue
        lat, lon = rec.origin.from_en(float(en[0]), float(en[1]))
        writer.write_fix(t_ns, float(lat), float(lon), rec.camera_height_m)
        writer.write_geopose(t_ns, float(lat), float(lon), rec.camera_height_m, float(heading))  # the vehicle's
        writer.write_odometry(t_ns, en, float(heading), float(speed), float(yaw_rate), rec.camera_height_m)
    return frames, render_s
