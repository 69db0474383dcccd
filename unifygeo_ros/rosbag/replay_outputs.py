"""The files a replay writes: ``metrics.json``, ``frames.csv``, the TUM pair and the plots."""
from __future__ import annotations

import csv
import json
import math
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from unifygeo_ros import geo
from unifygeo_ros.errors import UnifyGeoError
from unifygeo_ros.index import store
from unifygeo_ros.index.portable import recorded_source
from unifygeo_ros.index.tiles import vigor_tiles
from unifygeo_ros.plots import plot_error_cdf, plot_reliability, plot_stanford, plt  # pyplot: Agg, set up there
from unifygeo_ros.rosbag import trajectory
from unifygeo_ros.rosbag.replay_scoring import ScoredPairs
from unifygeo_ros.rosbag.replay_types import FIX, FrameResult, GroundTruth, ReplayConfig, ReplayReport


def index_meta(index_dir: str | Path) -> dict:
    """The index's ``index.json`` (empty when unreadable: only used for the origin and the map)."""
    try:
        return store.read_meta(index_dir)
    except (UnifyGeoError, OSError):
        return {}


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
                    "cov_en_m2", "cov_nn_m2", "score", "protection_level_m", "latency_ms", "tracking_state",
                    "evidence_log_ratio", "reinitialised", "note", "odometry_scale",
                    "imu_heading_offset_deg"])
        for f in frames:
            e, i = err_by_frame.get(id(f), (math.nan, None))
            ge = gn = gy = he = math.nan
            if i is not None:
                ge, gn, gy = assoc.east_m[i], assoc.north_m[i], assoc.yaw_deg[i]
                he = float(geo.angle_diff_deg(f.yaw_deg, gy)) if np.isfinite(gy) and pairs.heading_scored else math.nan
            w.writerow([f.index, trajectory.format_tum_time(f.t_ns), f.status, _fmt(f.latitude_deg, 9),
                        _fmt(f.longitude_deg, 9), _fmt(f.east_m), _fmt(f.north_m), _fmt(f.yaw_deg), _fmt(ge),
                        _fmt(gn), _fmt(gy), _fmt(e), _fmt(he), _fmt(f.cov_en_m2[0]), _fmt(f.cov_en_m2[1]),
                        _fmt(f.cov_en_m2[3]), _fmt(f.score), _fmt(f.protection_level_m, 2), _fmt(f.latency_ms, 2),
                        f.tracking_state, _fmt_ratio(f.evidence_log_ratio), f.reinitialised, f.note,
                        _fmt(f.odometry_scale, 4), _fmt(f.imu_heading_offset_deg, 2)])
    if cfg.plots:
        save_plots(out, frames, pairs, origin, cfg, report)


def _fmt(v: float, digits: int = 4) -> str:
    return "" if v is None or not np.isfinite(v) else f"{v:.{digits}f}"


def _fmt_ratio(v: float) -> str:
    """A log evidence ratio: "" when not measured (NaN), "inf" without an outside term (uncalibrated model)."""
    return ("inf" if v > 0 else "-inf") if v is not None and np.isinf(v) else _fmt(v, 2)


def _json_default(o: Any):
    if isinstance(o, (np.floating, np.integer)):
        return o.item()
    raise TypeError(type(o).__name__)


# ---------------------------------------------------------------------------------------------------- plots
def map_tiles(cfg: ReplayConfig, warnings: list[str]):
    """The aerial tiles to draw: ``--map`` (a VIGOR-layout city folder) or the index's tile source folder."""
    candidates = [cfg.map_dir] if cfg.map_dir else []
    if cfg.index and not cfg.map_dir:
        src = index_meta(cfg.index).get("source") or {}
        folder = recorded_source(cfg.index) if isinstance(src, dict) and src.get("kind") == "vigor" else None
        if folder is not None:
            candidates.append(str(folder))
    for c in candidates:
        try:
            return vigor_tiles(c)
        except UnifyGeoError as exc:
            warnings.append(f"map for the trajectory plot not drawn ({exc})")
    return None


def draw_map(ax, tiles, origin: geo.LocalENU, bbox: tuple[float, float, float, float], max_px: int = 128) -> None:
    """Mosaic of the tiles overlapping ``bbox`` (east0, east1, north0, north1), each drawn north-up at its extent."""
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
               report: ReplayReport) -> list[Path]:
    """trajectory.png, error_over_time.png, error_cdf.png, reliability.png, stanford.png."""
    warnings = report.warnings
    err, pl, published = pairs.integrity
    return [_plot_trajectory(out / "trajectory.png", frames, pairs, origin, cfg, warnings),
            _plot_error_over_time(out / "error_over_time.png", frames, pairs),
            plot_error_cdf({"replay": pairs.errors_m}, out / "error_cdf.png",
                           title=f"Error CDF: {Path(cfg.bag).name}"),
            plot_reliability({"published fixes": report.trust.get("reliability", {})}, out / "reliability.png",
                             title=f"Covariance reliability: {Path(cfg.bag).name}"),
            plot_stanford(err, pl, published, out / "stanford.png", cfg.pipeline.max_protection_level_m,
                          title=f"Stanford plot: {Path(cfg.bag).name}")]


def _save(fig, path: Path) -> Path:
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path


def _plot_trajectory(path: Path, frames: list[FrameResult], pairs: ScoredPairs, origin: geo.LocalENU,
                     cfg: ReplayConfig, warnings: list[str]) -> Path:
    """Ground truth and the estimates (coloured by error) over the aerial map."""
    fixes, scored, errors, gtt = pairs.fixes, pairs.scored, pairs.errors_m, pairs.gt
    est_e = np.array([fixes[i].east_m for i in scored])
    est_n = np.array([fixes[i].north_m for i in scored])
    unscored = [f for k, f in enumerate(fixes) if k not in set(scored)]
    fig, ax = plt.subplots(figsize=(7.0, 7.0), dpi=110)
    pts_e = np.concatenate([gtt.east_m, est_e, [f.east_m for f in unscored]])
    pts_n = np.concatenate([gtt.north_m, est_n, [f.north_m for f in unscored]])
    if pts_e.size:
        margin = 20.0
        bbox = (float(np.nanmin(pts_e)) - margin, float(np.nanmax(pts_e)) + margin,
                float(np.nanmin(pts_n)) - margin, float(np.nanmax(pts_n)) + margin)
        tiles = map_tiles(cfg, warnings)
        if tiles is not None:
            draw_map(ax, tiles, origin, bbox)
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
    return _save(fig, path)


def _plot_error_over_time(path: Path, frames: list[FrameResult], pairs: ScoredPairs) -> Path:
    """Position error per scored frame; frames without a fix marked at the bottom."""
    fig, ax = plt.subplots(figsize=(8.0, 3.4), dpi=110)
    t0 = min((f.t_ns for f in frames), default=0)
    if pairs.scored:
        ts = np.array([(pairs.fixes[i].t_ns - t0) * 1e-9 for i in pairs.scored])
        ax.plot(ts, pairs.errors_m, ".-", lw=0.8, ms=4, label="position error")
    bad = [(f.t_ns - t0) * 1e-9 for f in frames if f.status != FIX]
    if bad:
        ax.plot(bad, np.zeros(len(bad)), "|", color="r", ms=12, label="frame without a fix")
    ax.set_xlabel("time since first frame (s)")
    ax.set_ylabel("position error (m)")
    ax.grid(alpha=0.3)
    ax.legend(loc="upper right", fontsize=7)
    return _save(fig, path)
