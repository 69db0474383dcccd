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
"""
from __future__ import annotations

import argparse
import json
import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from unifygeo_ros import geo
from unifygeo_ros.data import render, world
from unifygeo_ros.data.synth import tile_grid
from unifygeo_ros.errors import DataFormatError, UnifyGeoError
from unifygeo_ros.rosbag import io as bags
# the drive's planning, re-exported: ``from unifygeo_ros.rosbag.synth import plan_route`` keeps working
from unifygeo_ros.rosbag.drive import (LANE_M, LAT_ACC_MPS2, LONG_ACC_MPS2, MIN_SPEED_MPS, SMOOTH_M,  # noqa: F401
                                       Drive, make_drive)
from unifygeo_ros.rosbag.route import (BORDER_M, MAX_TURN_DEG, MERGE_M, StreetGraph, plan_route,  # noqa: F401
                                       street_graph)

IMAGE_TOPIC = "/camera/panorama/image_raw"
FIX_TOPIC = "/gt/fix"
GEOPOSE_TOPIC = "/gt/geopose"
ODOM_TOPIC = "/gt/odom"
CAMERA_FRAME = "camera_panorama"
MAP_FRAME = "map"
#: default start of the recording (2024-01-01T00:00:00Z): fixed so that bags are reproducible
DEFAULT_START_S = 1_704_067_200
DEFAULT_DURATION_S = 30.0
#: the route planned is this much longer than the drive (turns, the speed profile) plus ROUTE_MARGIN_M
ROUTE_LENGTH_FACTOR, ROUTE_MARGIN_M = 1.6, 60.0
EVENT_GT, EVENT_IMAGE = 0, 1  # kinds of recording events; GT first at equal stamps


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
    if city is None:
        kw = {"cell_m": float(meta["cell_m"])} if "cell_m" in meta else {}
        city = world.generate_city(int(meta["seed"]), tuple(meta["size_m"]), meta.get("style", "mixed"), **kw)
    rec = _recording(cfg, meta, origin)
    drive = _plan_drive(cfg, meta, city, rec.duration_s)
    storage = _storage_plugin(cfg.storage)
    image_topic = IMAGE_TOPIC + ("/compressed" if cfg.compressed else "")
    t0_ns = int(round(cfg.start_s * 1e9))
    events, n_gt = _events(cfg, rec, t0_ns)
    writer = _BagWriter.open(Path(cfg.out), storage, image_topic, cfg.compressed, cfg.odom)
    try:
        frames = _record(writer, events, drive, city, rec, cfg.north_aligned)
    except BaseException:
        writer.close()
        raise
    writer.close()
    driven_m = float(np.interp(rec.duration_s, drive.t_s, drive.s_m))
    return SynthBagResult(Path(cfg.out), frames, n_gt, rec.duration_s, driven_m, origin, image_topic,
                          time.perf_counter() - t_start)


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


def _events(cfg: SynthBagConfig, rec: _Recording, t0_ns: int) -> tuple[list[tuple[int, int, float]], int]:
    """Everything to write, ordered by log time: ``(t_ns, EVENT_GT | EVENT_IMAGE, seconds since the start)``,
    and the number of GT samples (the last one is at or after the last image)."""
    n_gt = int(math.ceil(rec.duration_s * cfg.gt_rate_hz - 1e-9)) + 1
    events = [(t0_ns + int(round(k * 1e9 / cfg.gt_rate_hz)), EVENT_GT, k / cfg.gt_rate_hz) for k in range(n_gt)]
    cam_t = [cfg.camera_phase_s + j / cfg.rate_hz for j in range(rec.n_frames)]
    events += [(t0_ns + int(round(t * 1e9)), EVENT_IMAGE, t) for t in cam_t]
    events.sort()
    return events, n_gt


def _record(writer: _BagWriter, events: list[tuple[int, int, float]], drive: Drive, city: Any, rec: _Recording,
            north_aligned: bool) -> int:
    """Write every event (a rendered panorama, or the GT fix, GeoPose and odometry); the number of frames."""
    frames = 0
    for t_ns, kind, t_rel in events:
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

    @classmethod
    def open(cls, out: Path, storage: Any, image_topic: str, compressed: bool, odom: bool) -> _BagWriter:
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
        except BaseException:
            writer.close()
            raise
        return cls(writer, ts, c_img, c_fix, c_geo, c_odom, compressed)

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


def run(args: argparse.Namespace) -> int:
    cfg = SynthBagConfig(data=args.data, out=args.out, storage=args.storage, route=args.route, rate_hz=args.rate_hz,
                         duration_s=args.duration_s, frames=args.frames, seed=args.seed, speed_mps=args.speed_mps,
                         image_width=args.image_width, compressed=args.compressed, north_aligned=args.north_aligned,
                         gt_rate_hz=args.gt_rate_hz, odom=args.odom, start_s=args.start_s)
    r = synth_bag(cfg)
    print(f"wrote {r.bag} ({cfg.storage}): {r.frames} panoramas on {r.image_topic}, {r.gt_messages} GT fixes on "
          f"{FIX_TOPIC} and {GEOPOSE_TOPIC}{' and ' + ODOM_TOPIC if cfg.odom else ''}; {r.duration_s:.1f} s, "
          f"{r.route_length_m:.0f} m driven; origin {r.origin.lat0_deg:.7f}, {r.origin.lon0_deg:.7f} "
          f"({r.seconds:.1f} s)")
    print(f"replay: unifygeo replay {r.bag} --index INDEX --image-topic {r.image_topic} --gt-topic {GEOPOSE_TOPIC} "
          "--out OUT")
    return 0
