"""``unifygeo replay``: how good is the localizer on a recorded drive?

Stage: bag (rosbag2, sqlite3 or MCAP, read through rosbags, no ROS) + aerial index -> ``OUT/``:

* ``metrics.json``   - :class:`ReplayReport` (definitions: :mod:`unifygeo_ros.rosbag.trajectory`), with ``warnings``;
* ``frames.csv``     - one row per processed image: stamp, status, estimate, GT, errors, latency;
* ``estimate.tum``, ``groundtruth.tum`` - the scored pairs in local ENU metres of the index's origin, both files
  carrying the image stamps, so ``evo_ape tum groundtruth.tum estimate.tum`` (no ``-a``) pairs them 1:1 and
  reports the same RMSE / mean / median as ``metrics.json``;
* ``trajectory.png`` (GT and estimates over the aerial map, estimates coloured by error), ``error_over_time.png``,
  ``error_cdf.png``.

Ground truth comes from ``sensor_msgs/NavSatFix``, ``geographic_msgs/GeoPose[WithCovariance]Stamped`` (both
WGS84; GeoPose orientation is ENU) or ``nav_msgs/Odometry`` / ``geometry_msgs/Pose[WithCovariance]Stamped``: a
local frame taken as ENU-aligned (x east, y north, REP-103/105 ``map``) whose origin is ``--gt-frame-origin``
(the index's origin when not given). Everything is converted to WGS84 and then to the ENU frame of the index.

With ``--live`` the in-process localizer is replaced by the running ROS node: images are published on its input
topic at the recorded rate and its outputs are scored (see :class:`LiveNodeClient`).
"""
from __future__ import annotations

import argparse
import csv
import json
import math
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from unifygeo_ros import geo
from unifygeo_ros.rosbag import io as bags
from unifygeo_ros.rosbag import trajectory
from unifygeo_ros.errors import ImageError, UnifyGeoError

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
    note: str = ""


@dataclass
class ReplayReport:
    """What ``metrics.json`` holds. Counts: ``frames`` = images processed (after --every/--rate); ``count`` =
    scored pairs (a fix with GT); ``frames_without_fix`` = share of processed frames with no fix (localizer gave
    none, image undecodable, or in --live mode no answer from the node); ``frames_without_gt`` = fixes with no GT
    within ``max_gap_s`` (counted, not scored)."""

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
    warnings: list[str] = field(default_factory=list)

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


# --------------------------------------------------------------------------------------- reading the bag
@dataclass
class GroundTruth:
    t_ns: list[int] = field(default_factory=list)
    lat_deg: list[float] = field(default_factory=list)
    lon_deg: list[float] = field(default_factory=list)
    yaw_deg: list[float] = field(default_factory=list)
    rejected: int = 0  # NavSatFix with STATUS_NO_FIX or NaN


def _stamp_or_log_time(msg: Any, log_ns: int) -> int:
    h = getattr(msg, "header", None)
    t = bags.stamp_to_ns(h.stamp) if h is not None else 0
    return t if t > 0 else int(log_ns)


def _quat_yaw_deg(q: Any) -> float:
    n = q.x * q.x + q.y * q.y + q.z * q.z + q.w * q.w
    if not np.isfinite(n) or n < 1e-12:
        return math.nan
    return geo.quaternion_xyzw_to_yaw_deg(q.x, q.y, q.z, q.w)


def gt_sample(msg: Any, msgtype: str, local_frame: geo.LocalENU) -> tuple[float, float, float] | None:
    """``(lat_deg, lon_deg, yaw_deg)`` of one GT message (yaw NaN when the type has no orientation); None for a
    NavSatFix without a fix. Local-frame types are converted through ``local_frame`` (ENU-aligned)."""
    if msgtype == bags.NAVSATFIX:
        if int(msg.status.status) < 0 or not (np.isfinite(msg.latitude) and np.isfinite(msg.longitude)):
            return None
        return float(msg.latitude), float(msg.longitude), math.nan
    if msgtype in (bags.GEOPOSE_STAMPED, bags.GEOPOSE_COV_STAMPED):
        pose = msg.pose if msgtype == bags.GEOPOSE_STAMPED else msg.pose.pose
        return float(pose.position.latitude), float(pose.position.longitude), _quat_yaw_deg(pose.orientation)
    if msgtype in GT_LOCAL:
        pose = msg.pose if msgtype == "geometry_msgs/msg/PoseStamped" else msg.pose.pose
        lat, lon = local_frame.from_en(float(pose.position.x), float(pose.position.y))
        return float(lat), float(lon), _quat_yaw_deg(pose.orientation)
    raise UnifyGeoError(f"unsupported GT type {msgtype}")


# ---------------------------------------------------------------------------------------------- localizers
def _load_localizer(index_dir: str | Path, checkpoint: str | None, device: str):
    try:
        from unifygeo_ros.localization.localizer import Localizer
    except ImportError as exc:  # pragma: no cover - the localizer ships with the package
        raise UnifyGeoError(f"the in-process localizer is unavailable ({exc})") from exc
    return Localizer.from_paths(index_dir, checkpoint=checkpoint, device=device)


def _index_meta(index_dir: str | Path) -> dict:
    """The index's ``index.json`` (empty when unreadable: only used for the origin and the map)."""
    try:
        from unifygeo_ros.index import store

        return store.read_meta(index_dir)
    except (UnifyGeoError, ImportError, OSError):
        return {}


def index_origin(index_dir: str | Path) -> geo.LocalENU | None:
    o = _index_meta(index_dir).get("origin")
    return geo.LocalENU(float(o["lat_deg"]), float(o["lon_deg"])) if isinstance(o, dict) else None


def localizer_origin(localizer: Any) -> geo.LocalENU | None:
    """The ENU origin of the localizer's index, if it exposes one (``origin`` or ``index.origin``)."""
    for obj in (localizer, getattr(localizer, "index", None)):
        o = getattr(obj, "origin", None)
        if isinstance(o, geo.LocalENU):
            return o
    return None


def _make_prior(localizer_module: Any, last: FrameResult) -> Any:
    """A prior from the previous fix (the node's tracking prior): position and its covariance."""
    Prior = getattr(localizer_module, "Prior")
    cov = np.asarray(last.cov_en_m2, float).reshape(2, 2)
    sigma = float(np.sqrt(max(np.nanmax(np.diag(cov)), 0.0))) if np.all(np.isfinite(cov)) else math.nan
    kwargs: dict[str, Any] = {}
    fields = getattr(Prior, "__dataclass_fields__", {})
    for name, value in (("latitude_deg", last.latitude_deg), ("longitude_deg", last.longitude_deg),
                        ("east_m", last.east_m), ("north_m", last.north_m), ("heading_deg",
                        geo.yaw_to_heading_deg(last.yaw_deg) if np.isfinite(last.yaw_deg) else None)):
        if name in fields:
            kwargs[name] = value
    for name in ("sigma_m", "std_m", "radius_m"):
        if name in fields and np.isfinite(sigma):
            kwargs[name] = sigma
    return Prior(**kwargs)


# ------------------------------------------------------------------------------------------------- replay
@dataclass
class ReplayConfig:
    bag: str
    index: str | None
    out: str
    image_topic: str
    gt_topic: str
    checkpoint: str | None = None
    every: int = 1
    rate_hz: float | None = None
    gt_frame_origin: tuple[float, float] | None = None
    prior: bool = False
    live: bool = False
    max_gap_s: float = trajectory.DEFAULT_MAX_GAP_S
    device: str = "auto"
    map_dir: str | None = None
    plots: bool = True
    node_input: str | None = None  # --live: default image / image/compressed
    node_output: str = "geopose_with_covariance"  # --live
    live_timeout_s: float = 5.0


def _select(index: int, t_ns: int, last_kept_ns: int | None, every: int, rate_hz: float | None) -> bool:
    if rate_hz:
        period = 1e9 / rate_hz
        return last_kept_ns is None or (t_ns - last_kept_ns) >= 0.999 * period
    return index % max(1, every) == 0


def replay(cfg: ReplayConfig, localizer: Any = None, origin: geo.LocalENU | None = None) -> ReplayReport:
    """Run the replay of ``cfg``; writes the outputs to ``cfg.out`` and returns the report.

    ``localizer`` (an object with ``localize(rgb, prior=None) -> Fix``) is loaded from ``cfg.index`` when None.
    ``origin`` is the ENU frame of the outputs: the localizer's index origin when not given.
    Raises :class:`UnifyGeoError` (BagError) when the bag cannot be read at all or lacks a topic; a bag that breaks
    part-way yields the results of what was read plus a warning.
    """
    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    warnings: list[str] = []
    gt = GroundTruth()
    frames: list[FrameResult] = []
    gt_type = ""
    image_type = ""

    with bags.open_bag(cfg.bag, warnings) as reader:
        img_conns = bags.connections_for(reader, cfg.image_topic, bags.IMAGE_TYPES)
        gt_conns = bags.connections_for(reader, cfg.gt_topic, GT_TYPES)
        image_type, gt_type = img_conns[0].msgtype, gt_conns[0].msgtype

        live = None
        if cfg.live:
            live = LiveNodeClient(image_type, cfg.node_input, cfg.node_output)
        elif localizer is None:
            if not cfg.index:
                raise UnifyGeoError("--index is required (or --live to score the running node)")
            localizer = _load_localizer(cfg.index, cfg.checkpoint, cfg.device)
        if origin is None and localizer is not None:
            origin = localizer_origin(localizer)
        if origin is None and cfg.index:
            origin = index_origin(cfg.index)
        local_frame: geo.LocalENU | None = (geo.LocalENU(*cfg.gt_frame_origin) if cfg.gt_frame_origin else None)

        loc_module = None
        if cfg.prior and localizer is not None:
            import importlib

            loc_module = importlib.import_module(type(localizer).__module__)

        index = -1
        last_kept: int | None = None
        last_fix: FrameResult | None = None
        try:
            for conn, log_ns, msg in bags.iter_messages(reader, img_conns + gt_conns, warnings):
                if conn.msgtype in GT_TYPES and conn.topic == cfg.gt_topic:
                    t = _stamp_or_log_time(msg, log_ns)
                    if gt_type in GT_LOCAL and local_frame is None:
                        if origin is None:
                            raise UnifyGeoError(f"GT {cfg.gt_topic} ({gt_type}) is in a local frame: pass "
                                                "--gt-frame-origin LAT,LON (its ENU origin)")
                        local_frame = origin
                        warnings.append(f"GT {cfg.gt_topic} ({gt_type}, frame "
                                        f"{getattr(msg.header, 'frame_id', '?')!r}) taken as ENU-aligned with its "
                                        "origin at the index's origin (no --gt-frame-origin given)")
                    s = gt_sample(msg, gt_type, local_frame or geo.LocalENU(0.0, 0.0))
                    if s is None:
                        gt.rejected += 1
                        continue
                    gt.t_ns.append(t)
                    gt.lat_deg.append(s[0])
                    gt.lon_deg.append(s[1])
                    gt.yaw_deg.append(s[2])
                    continue
                index += 1
                t = _stamp_or_log_time(msg, log_ns)
                if not _select(index, t, last_kept, cfg.every, cfg.rate_hz):
                    continue
                last_kept = t
                if live is not None:
                    live.publish(msg, t)
                    continue
                fr = _localize_one(localizer, loc_module, msg, conn.msgtype, index, t, last_fix if cfg.prior else None)
                frames.append(fr)
                if fr.status == FIX:
                    last_fix = fr
        except KeyboardInterrupt:
            warnings.append("interrupted: results cover the frames processed so far")
        if live is not None:
            frames = live.finish(cfg.live_timeout_s)
            warnings.extend(live.warnings)

    if origin is None:
        if gt.t_ns:
            origin = geo.LocalENU(gt.lat_deg[0], gt.lon_deg[0])
            warnings.append("the localizer exposes no index origin: the output ENU frame is anchored at the first "
                            f"GT fix ({gt.lat_deg[0]:.7f}, {gt.lon_deg[0]:.7f})")
        else:
            origin = geo.LocalENU(0.0, 0.0)
    if gt.rejected:
        warnings.append(f"{gt.rejected} GT messages without a fix (NavSatFix status NO_FIX or NaN) ignored")
    if not gt.t_ns:
        warnings.append(f"no usable GT on {cfg.gt_topic}: nothing is scored")
    if not frames:
        warnings.append(f"no images processed from {cfg.image_topic}")

    report, pairs = score_frames(frames, gt, origin, cfg, gt_type, image_type, warnings)
    write_outputs(out, frames, gt, origin, report, pairs, cfg)
    return report


def _localize_one(localizer: Any, loc_module: Any, msg: Any, msgtype: str, index: int, t_ns: int,
                  last_fix: FrameResult | None) -> FrameResult:
    fr = FrameResult(index=index, t_ns=t_ns, status=NO_FIX)
    try:
        rgb = bags.msg_to_rgb(msg, msgtype)
    except ImageError as exc:
        fr.status, fr.note = UNDECODABLE, str(exc)
        return fr
    prior = _make_prior(loc_module, last_fix) if (loc_module is not None and last_fix is not None) else None
    t0 = time.perf_counter()
    try:
        fix = localizer.localize(rgb, prior=prior) if prior is not None else localizer.localize(rgb)
    except ImageError as exc:
        fr.status, fr.note = UNDECODABLE, str(exc)
        return fr
    except UnifyGeoError as exc:
        fr.note = str(exc)
        return fr
    fr.latency_ms = (time.perf_counter() - t0) * 1e3
    if fix is None or not (np.isfinite(fix.latitude_deg) and np.isfinite(fix.longitude_deg)):
        fr.note = "localizer returned no fix"
        return fr
    fr.status = FIX
    fr.latitude_deg, fr.longitude_deg = float(fix.latitude_deg), float(fix.longitude_deg)
    fr.east_m, fr.north_m = float(fix.east_m), float(fix.north_m)  # index frame (for the prior); rescored later
    fr.yaw_deg = float(fix.yaw_deg)
    fr.cov_en_m2 = tuple(float(v) for v in np.asarray(fix.covariance_en_m2, float).reshape(4))
    fr.score = float(getattr(fix, "score", math.nan))
    return fr


# -------------------------------------------------------------------------------------------------- scoring
@dataclass
class ScoredPairs:
    """The fixes, their GT association, the indices (into ``fixes``) of the scored ones and their errors."""

    fixes: list[FrameResult]
    assoc: trajectory.Association
    scored: list[int]
    errors_m: np.ndarray
    gt: trajectory.Trajectory


def score_frames(frames: list[FrameResult], gt: GroundTruth, origin: geo.LocalENU, cfg: ReplayConfig,
                 gt_type: str, image_type: str, warnings: list[str]) -> tuple[ReplayReport, ScoredPairs]:
    """Associate each fix with GT, fill the frames' ENU positions, and compute the report."""
    if gt.t_ns:
        ge, gn = origin.to_en(np.asarray(gt.lat_deg), np.asarray(gt.lon_deg))
        gt_traj = trajectory.make_trajectory(gt.t_ns, ge, gn, gt.yaw_deg)
    else:
        gt_traj = trajectory.make_trajectory([], [], [], [])
    fixes = [f for f in frames if f.status == FIX]
    if fixes:
        e, n = origin.to_en(np.array([f.latitude_deg for f in fixes]), np.array([f.longitude_deg for f in fixes]))
        for f, ei, ni in zip(fixes, np.atleast_1d(e), np.atleast_1d(n)):
            f.east_m, f.north_m = float(ei), float(ni)
    assoc = trajectory.associate(gt_traj, [f.t_ns for f in fixes], cfg.max_gap_s)
    scored = [i for i, ok in enumerate(assoc.valid) if ok]
    err_en = np.array([[fixes[i].east_m - assoc.east_m[i], fixes[i].north_m - assoc.north_m[i]] for i in scored],
                      dtype=np.float64).reshape(-1, 2)
    errors = np.hypot(err_en[:, 0], err_en[:, 1])
    cov = np.array([fixes[i].cov_en_m2 for i in scored], dtype=np.float64).reshape(-1, 2, 2)
    status_counts = {s: sum(1 for f in frames if f.status == s) for s in (FIX, NO_FIX, UNDECODABLE, DROPPED)}
    without_fix = len(frames) - status_counts[FIX]
    if status_counts[UNDECODABLE]:
        first = next(f for f in frames if f.status == UNDECODABLE)
        warnings.append(f"{status_counts[UNDECODABLE]} undecodable images (counted as frames without a fix), "
                        f"first at t={first.t_ns * 1e-9:.3f} s: {first.note}")
    no_gt = len(fixes) - len(scored)
    if no_gt:
        warnings.append(f"{no_gt} fixes without GT within {cfg.max_gap_s:g} s (counted, not scored)")
    report = ReplayReport(
        count=len(scored), frames=len(frames),
        frames_without_fix=(without_fix / len(frames)) if frames else 0.0,
        frames_without_fix_count=without_fix, frames_without_gt=no_gt, status_counts=status_counts,
        position_error=trajectory.error_stats(errors),
        heading_error=trajectory.heading_stats([fixes[i].yaw_deg for i in scored], assoc.yaw_deg[scored]),
        covariance=trajectory.covariance_stats(err_en, cov),
        latency=trajectory.latency_stats([f.latency_ms for f in frames]),
        config={
            "bag": str(cfg.bag), "index": cfg.index, "checkpoint": cfg.checkpoint, "image_topic": cfg.image_topic,
            "image_type": image_type, "gt_topic": cfg.gt_topic, "gt_type": gt_type,
            "gt_frame": ("WGS84" if gt_type in GT_GEOGRAPHIC else
                         f"local ENU-aligned frame with origin {cfg.gt_frame_origin or 'at the index origin'}"),
            "origin": {"lat_deg": origin.lat0_deg, "lon_deg": origin.lon0_deg},
            "every": cfg.every, "rate_hz": cfg.rate_hz, "prior": cfg.prior, "live": cfg.live,
            "max_gap_s": cfg.max_gap_s, "gt_samples": len(gt_traj),
            "gt_has_orientation": bool(np.any(np.isfinite(gt_traj.yaw_deg))),
        },
        warnings=warnings,
    )
    return report, ScoredPairs(fixes, assoc, scored, errors, gt_traj)


# -------------------------------------------------------------------------------------------------- outputs
def write_outputs(out: Path, frames: list[FrameResult], gt: GroundTruth, origin: geo.LocalENU, report: ReplayReport,
                  pairs: ScoredPairs, cfg: ReplayConfig) -> None:
    fixes, assoc, scored, errors = pairs.fixes, pairs.assoc, pairs.scored, pairs.errors_m
    (out / "metrics.json").write_text(json.dumps(report.to_json(), indent=2, allow_nan=False, default=_json_default)
                                      + "\n")
    t = [fixes[i].t_ns for i in scored]
    trajectory.write_tum(out / "estimate.tum", t, [fixes[i].east_m for i in scored],
                         [fixes[i].north_m for i in scored], [fixes[i].yaw_deg for i in scored])
    trajectory.write_tum(out / "groundtruth.tum", t, assoc.east_m[scored], assoc.north_m[scored],
                         assoc.yaw_deg[scored])
    err_by_frame = {id(fixes[i]): (float(e), i) for i, e in zip(scored, errors)}
    with open(out / "frames.csv", "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["index", "t_s", "status", "latitude_deg", "longitude_deg", "east_m", "north_m", "yaw_deg",
                    "gt_east_m", "gt_north_m", "gt_yaw_deg", "error_m", "heading_error_deg", "cov_ee_m2",
                    "cov_en_m2", "cov_nn_m2", "score", "latency_ms", "note"])
        for f in frames:
            e, i = err_by_frame.get(id(f), (math.nan, None))
            ge = gn = gy = he = math.nan
            if i is not None:
                ge, gn, gy = assoc.east_m[i], assoc.north_m[i], assoc.yaw_deg[i]
                he = float(geo.angle_diff_deg(f.yaw_deg, gy)) if np.isfinite(gy) else math.nan
            w.writerow([f.index, trajectory.format_tum_time(f.t_ns), f.status, _fmt(f.latitude_deg, 9),
                        _fmt(f.longitude_deg, 9), _fmt(f.east_m), _fmt(f.north_m), _fmt(f.yaw_deg), _fmt(ge),
                        _fmt(gn), _fmt(gy), _fmt(e), _fmt(he), _fmt(f.cov_en_m2[0]), _fmt(f.cov_en_m2[1]),
                        _fmt(f.cov_en_m2[3]), _fmt(f.score), _fmt(f.latency_ms, 2), f.note])
    if cfg.plots:
        save_plots(out, frames, pairs, origin, cfg, report.warnings)


def _fmt(v: float, digits: int = 4) -> str:
    return "" if v is None or not np.isfinite(v) else f"{v:.{digits}f}"


def _json_default(o: Any):
    if isinstance(o, (np.floating, np.integer)):
        return o.item()
    raise TypeError(type(o).__name__)


# ---------------------------------------------------------------------------------------------------- plots
def _map_tiles(cfg: ReplayConfig, warnings: list[str]):
    """The aerial tiles to draw: ``--map`` (a VIGOR-layout city folder) or the index's tile source folder."""
    from unifygeo_ros.index.tiles import vigor_tiles

    candidates = [cfg.map_dir] if cfg.map_dir else []
    if cfg.index and not cfg.map_dir:
        src = _index_meta(cfg.index).get("source") or {}
        if isinstance(src, dict) and src.get("kind") == "vigor" and src.get("path"):
            candidates.append(src["path"])
    for c in candidates:
        try:
            return vigor_tiles(c)
        except UnifyGeoError as exc:
            warnings.append(f"map for the trajectory plot not drawn ({exc})")
    return None


def _draw_map(ax, tiles, origin: geo.LocalENU, bbox: tuple[float, float, float, float], max_px: int = 128) -> None:
    """Mosaic of the tiles overlapping ``bbox`` (east0, east1, north0, north1), each drawn north-up at its extent."""
    import cv2

    half = tiles.tile_m / 2.0
    lat = np.array([t.lat_deg for t in tiles.tiles])
    lon = np.array([t.lon_deg for t in tiles.tiles])
    e, n = origin.to_en(lat, lon)
    e, n = np.atleast_1d(e), np.atleast_1d(n)
    sel = np.where((e + half >= bbox[0]) & (e - half <= bbox[1]) & (n + half >= bbox[2]) & (n - half <= bbox[3]))[0]
    # draw tiles on a grid no finer than half a tile so overlapping tiles are not all painted
    seen: set[tuple[int, int]] = set()
    for i in sel[np.lexsort((e[sel], -n[sel]))]:
        key = (int(round(e[i] / half)), int(round(n[i] / half)))
        if key in seen:
            continue
        seen.add(key)
        img = tiles.read(int(i))
        if img.shape[0] > max_px:
            img = cv2.resize(img, (max_px, max_px), interpolation=cv2.INTER_AREA)
        ax.imshow(img, extent=(e[i] - half, e[i] + half, n[i] - half, n[i] + half), origin="upper", zorder=0,
                  interpolation="bilinear")


def save_plots(out: Path, frames: list[FrameResult], pairs: ScoredPairs, origin: geo.LocalENU, cfg: ReplayConfig,
               warnings: list[str]) -> list[Path]:
    """trajectory.png, error_over_time.png, error_cdf.png."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from unifygeo_ros.offline.plots import plot_error_cdf

    paths = []
    fixes, scored, errors = pairs.fixes, pairs.scored, pairs.errors_m
    gtt = pairs.gt
    est_e = np.array([fixes[i].east_m for i in scored])
    est_n = np.array([fixes[i].north_m for i in scored])
    unscored = [f for k, f in enumerate(fixes) if k not in set(scored)]

    # trajectory over the map
    fig, ax = plt.subplots(figsize=(7.0, 7.0), dpi=110)
    pts_e = np.concatenate([gtt.east_m, est_e, [f.east_m for f in unscored]])
    pts_n = np.concatenate([gtt.north_m, est_n, [f.north_m for f in unscored]])
    if pts_e.size:
        margin = 20.0
        bbox = (float(np.nanmin(pts_e)) - margin, float(np.nanmax(pts_e)) + margin,
                float(np.nanmin(pts_n)) - margin, float(np.nanmax(pts_n)) + margin)
        tiles = _map_tiles(cfg, warnings)
        if tiles is not None:
            _draw_map(ax, tiles, origin, bbox)
        ax.set_xlim(bbox[0], bbox[1])
        ax.set_ylim(bbox[2], bbox[3])
    ax.plot(gtt.east_m, gtt.north_m, "-", color="white", lw=3.0, zorder=1)
    ax.plot(gtt.east_m, gtt.north_m, "-", color="black", lw=1.2, zorder=2, label="ground truth")
    if scored:
        for i, (e, n) in zip(scored, zip(est_e, est_n)):
            ax.plot([e, pairs.assoc.east_m[i]], [n, pairs.assoc.north_m[i]], "-", color="0.3", lw=0.5, zorder=2)
        vmax = max(10.0, float(np.percentile(errors, 95)))
        sc = ax.scatter(est_e, est_n, c=errors, cmap="turbo", vmin=0.0, vmax=vmax, s=18, edgecolors="k",
                        linewidths=0.3, zorder=3, label="estimate")
        fig.colorbar(sc, ax=ax, shrink=0.75, label="position error (m)")
    if unscored:
        ax.scatter([f.east_m for f in unscored], [f.north_m for f in unscored], marker="x", color="m", s=14,
                   zorder=3, label="estimate without GT")
    ax.set_aspect("equal")
    ax.set_xlabel(f"east (m) from {origin.lat0_deg:.6f}, {origin.lon0_deg:.6f}")
    ax.set_ylabel("north (m)")
    ax.set_title(f"{Path(cfg.bag).name}: {len(scored)} scored fixes of {len(frames)} frames")
    ax.legend(loc="upper right", fontsize=7)
    fig.tight_layout()
    paths.append(out / "trajectory.png")
    fig.savefig(paths[-1])
    plt.close(fig)

    # error over time (frames without a fix marked at the bottom)
    fig, ax = plt.subplots(figsize=(8.0, 3.4), dpi=110)
    t0 = min((f.t_ns for f in frames), default=0)
    if scored:
        ts = np.array([(fixes[i].t_ns - t0) * 1e-9 for i in scored])
        ax.plot(ts, errors, ".-", lw=0.8, ms=4, label="position error")
    bad = [(f.t_ns - t0) * 1e-9 for f in frames if f.status != FIX]
    if bad:
        ax.plot(bad, np.zeros(len(bad)), "|", color="r", ms=12, label="frame without a fix")
    ax.set_xlabel("time since first frame (s)")
    ax.set_ylabel("position error (m)")
    ax.grid(alpha=0.3)
    ax.legend(loc="upper right", fontsize=7)
    fig.tight_layout()
    paths.append(out / "error_over_time.png")
    fig.savefig(paths[-1])
    plt.close(fig)

    paths.append(plot_error_cdf({"replay": errors}, out / "error_cdf.png", title=f"Error CDF: {Path(cfg.bag).name}"))
    return paths


# ---------------------------------------------------------------------------------------------------- live
class LiveNodeClient:
    """Plays images to the running localizer node over DDS and collects what it publishes.

    Publishes the bag's images (original header stamps) on the node's input topic (``image`` for
    ``sensor_msgs/Image``, ``image/compressed`` for ``sensor_msgs/CompressedImage``) at the recorded rate, and
    subscribes to its output (``geopose_with_covariance``, ``fix`` or ``pose``). The node stamps each output with
    the stamp of the image it came from, so outputs are matched to images by stamp; an image without an output
    ``live_timeout_s`` after the last one is a dropped frame (a frame without a fix). Latency = time from publishing
    an image to receiving its output.
    """

    def __init__(self, image_type: str, node_input: str | None, node_output: str, discovery_timeout_s: float = 20.0):
        try:
            import rclpy
            from rclpy.executors import SingleThreadedExecutor
            from rclpy.qos import QoSProfile, ReliabilityPolicy, HistoryPolicy
        except ImportError as exc:
            raise UnifyGeoError(f"--live needs rclpy (source scripts/ros_env.sh): {exc}") from exc
        import threading

        self.warnings: list[str] = []
        self.image_type = image_type
        self._rclpy = rclpy
        if not rclpy.ok():
            rclpy.init()
        self.node = rclpy.create_node("unifygeo_replay_live")
        if image_type == bags.COMPRESSED_IMAGE:
            from sensor_msgs.msg import CompressedImage as ImgT

            topic_in = node_input or "image/compressed"
        else:
            from sensor_msgs.msg import Image as ImgT

            topic_in = node_input or "image"
        self._ImgT = ImgT
        out_t, self._out_kind = _output_type(node_output)
        qos = QoSProfile(depth=50, reliability=ReliabilityPolicy.RELIABLE, history=HistoryPolicy.KEEP_LAST)
        self.pub = self.node.create_publisher(ImgT, topic_in, qos)
        self.sub = self.node.create_subscription(out_t, node_output, self._on_output, qos)
        self.topic_in, self.topic_out = self.pub.topic_name, node_output
        self._sent: dict[int, tuple[int, float]] = {}  # stamp -> (index, publish wall time)
        self._got: dict[int, tuple[Any, float]] = {}
        self._lock = threading.Lock()
        self._index = -1
        self._t0_bag: int | None = None
        self._t0_wall = 0.0
        self.executor = SingleThreadedExecutor()
        self.executor.add_node(self.node)
        self._spin = threading.Thread(target=self.executor.spin, daemon=True)
        self._spin.start()
        deadline = time.monotonic() + discovery_timeout_s
        while self.pub.get_subscription_count() == 0:
            if time.monotonic() > deadline:
                self.close()
                raise UnifyGeoError(f"--live: no subscriber on {self.topic_in} after {discovery_timeout_s:g} s; start "
                                    "the node first (ros2 run unifygeo_ros localizer_node) with the same ROS_DOMAIN_ID")
            time.sleep(0.1)

    def _on_output(self, msg: Any) -> None:
        t = int(msg.header.stamp.sec) * 1_000_000_000 + int(msg.header.stamp.nanosec)
        with self._lock:
            self._got.setdefault(t, (msg, time.monotonic()))

    def publish(self, bag_msg: Any, t_ns: int) -> None:
        """Publish one image at its recorded time (relative to the first one)."""
        self._index += 1
        if self._t0_bag is None:
            self._t0_bag, self._t0_wall = t_ns, time.monotonic()
        wait = self._t0_wall + (t_ns - self._t0_bag) * 1e-9 - time.monotonic()
        if wait > 0:
            time.sleep(wait)
        m = self._ImgT()
        m.header.stamp.sec, m.header.stamp.nanosec = int(t_ns // 1_000_000_000), int(t_ns % 1_000_000_000)
        m.header.frame_id = str(bag_msg.header.frame_id)
        if self.image_type == bags.COMPRESSED_IMAGE:
            m.format = str(bag_msg.format)
            m.data = bytes(np.asarray(bag_msg.data, dtype=np.uint8).tobytes())
        else:
            m.height, m.width, m.encoding = int(bag_msg.height), int(bag_msg.width), str(bag_msg.encoding)
            m.is_bigendian, m.step = int(bag_msg.is_bigendian), int(bag_msg.step)
            m.data = bytes(np.asarray(bag_msg.data, dtype=np.uint8).tobytes())
        with self._lock:
            self._sent[t_ns] = (self._index, time.monotonic())
        self.pub.publish(m)

    def finish(self, timeout_s: float) -> list[FrameResult]:
        """Wait up to ``timeout_s`` for outstanding outputs, then turn everything into frame results."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            with self._lock:
                if all(t in self._got for t in self._sent):
                    break
            time.sleep(0.05)
        frames = []
        with self._lock:
            for t, (index, sent_wall) in sorted(self._sent.items()):
                fr = FrameResult(index=index, t_ns=t, status=DROPPED, note="no output from the node")
                if t in self._got:
                    msg, got_wall = self._got[t]
                    fr.latency_ms = (got_wall - sent_wall) * 1e3
                    _fill_from_output(fr, msg, self._out_kind)
                frames.append(fr)
            extra = [t for t in self._got if t not in self._sent]
        if extra:
            self.warnings.append(f"--live: {len(extra)} outputs on {self.topic_out} with stamps of no published image "
                                 "(another publisher on the input topic?) ignored")
        self.close()
        return frames

    def close(self) -> None:
        try:
            self.executor.shutdown(timeout_sec=1.0)
            self.node.destroy_node()
        finally:
            if self._rclpy.ok():
                self._rclpy.shutdown()


def _output_type(topic: str):
    name = topic.rstrip("/").rsplit("/", 1)[-1]
    if name == "fix":
        from sensor_msgs.msg import NavSatFix

        return NavSatFix, "fix"
    if name == "pose":
        from geometry_msgs.msg import PoseWithCovarianceStamped

        return PoseWithCovarianceStamped, "pose"
    try:
        from geographic_msgs.msg import GeoPoseWithCovarianceStamped
    except ImportError as exc:
        raise UnifyGeoError(f"--live: geographic_msgs Python bindings missing ({exc}); run scripts/setup_ros_env.sh "
                            "or score the node's `fix` output (--node-output fix)") from exc
    return GeoPoseWithCovarianceStamped, "geopose_with_covariance"


def _fill_from_output(fr: FrameResult, msg: Any, kind: str) -> None:
    """Frame result from one node output. Covariances: NavSatFix ``position_covariance`` is ENU (east, north,
    up) m^2; GeoPoseWithCovariance's 6x6 is ordered (Lat, Lon, Alt, ...) as its message definition says - north
    first - in m^2, so its first 2x2 block is swapped into (east, north)."""
    if kind == "fix":
        if int(msg.status.status) < 0:
            fr.status, fr.note = NO_FIX, "node published STATUS_NO_FIX"
            return
        lat, lon, yaw = msg.latitude, msg.longitude, math.nan
        c = np.asarray(msg.position_covariance, float).reshape(3, 3)[:2, :2]
    elif kind == "geopose_with_covariance":
        p = msg.pose.pose
        lat, lon = p.position.latitude, p.position.longitude
        yaw = _quat_yaw_deg(p.orientation)
        c = np.asarray(msg.pose.covariance, float).reshape(6, 6)[:2, :2][::-1, ::-1]  # (lat, lon) -> (E, N)
    else:
        raise UnifyGeoError("--live: scoring the local `pose` output needs the node's map origin; use "
                            "geopose_with_covariance or fix")
    if not (np.isfinite(lat) and np.isfinite(lon)):
        fr.status, fr.note = NO_FIX, "node published NaN position"
        return
    fr.status, fr.note = FIX, ""
    fr.latitude_deg, fr.longitude_deg, fr.yaw_deg = float(lat), float(lon), float(yaw)
    fr.cov_en_m2 = tuple(float(v) for v in c.reshape(4))


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
    parser.add_argument("--prior", action="store_true", help="pass the previous fix as a prior (tracking mode)")
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
    parser.add_argument("--no-plots", dest="plots", action="store_false", help="skip the PNG plots")


def run(args: argparse.Namespace) -> int:
    if args.every < 1:
        raise UnifyGeoError(f"--every must be >= 1, got {args.every}")
    if args.rate_hz is not None and args.rate_hz <= 0:
        raise UnifyGeoError(f"--rate must be > 0, got {args.rate_hz}")
    cfg = ReplayConfig(bag=args.bag, index=args.index, out=args.out, image_topic=args.image_topic,
                       gt_topic=args.gt_topic, checkpoint=args.checkpoint, every=args.every, rate_hz=args.rate_hz,
                       gt_frame_origin=args.gt_frame_origin, prior=args.prior, live=args.live,
                       max_gap_s=args.max_gap_s, device=args.device, map_dir=args.map_dir, plots=args.plots,
                       node_input=args.node_input, node_output=args.node_output, live_timeout_s=args.live_timeout_s)
    rep = replay(cfg)
    pe = rep.position_error
    f = (lambda v, u: "n/a" if v is None else f"{v:.2f} {u}")
    print(f"frames {rep.frames}, scored {rep.count}, without fix {100 * rep.frames_without_fix:.1f} %, "
          f"without GT {rep.frames_without_gt}")
    print(f"position error: mean {f(pe['mean_m'], 'm')}, median {f(pe['median_m'], 'm')}, RMSE {f(pe['rmse_m'], 'm')}"
          f"; heading median {f(rep.heading_error['median_deg'], 'deg')}; latency p50 {f(rep.latency['p50_ms'], 'ms')}")
    for w in rep.warnings:
        print(f"warning: {w}")
    print(f"outputs in {args.out}")
    return 0
