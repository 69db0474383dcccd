"""Scoring a replay: each fix associated with the ground truth (in the index's ENU frame) -> the report."""
from __future__ import annotations

import collections
import dataclasses
from dataclasses import dataclass

import numpy as np

from unifygeo_ros import geo
from unifygeo_ros.localization.integrity import finite_or_none, trust_report
from unifygeo_ros.rosbag import trajectory
from unifygeo_ros.rosbag.replay_quality import CleanGroundTruth, DataQuality, clean_ground_truth, gt_warning
from unifygeo_ros.rosbag.replay_types import (DROPPED, FIX, GT_GEOGRAPHIC, NO_FIX, UNDECODABLE, FrameResult,
                                              GroundTruth, ReplayConfig, ReplayReport)


@dataclass
class ScoredPairs:
    """The fixes, their GT association, the indices (into ``fixes``) of the scored ones and their errors."""

    fixes: list[FrameResult]
    assoc: trajectory.Association
    scored: list[int]
    errors_m: np.ndarray
    gt: trajectory.Trajectory
    #: every frame with a fix, published or withheld, that has GT: error (m), protection level (m), published
    integrity: tuple[np.ndarray, np.ndarray, np.ndarray] = (np.zeros(0), np.zeros(0), np.zeros(0, bool))
    #: whether the published headings are measurements to score against the GT's (:func:`heading_not_scored`)
    heading_scored: bool = True


def heading_not_scored(heading_source: str, mode: str) -> str | None:
    """Why the published headings are not scored against the GT's orientation, or None when they are. Frame by
    frame, ``heading_source: north_aligned`` publishes the convention 0 (the panorama's centre column looks north),
    not a measurement of the vehicle's heading; the tracking filter publishes its belief's heading (the IMU's and the
    odometry's), which is one."""
    if heading_source == "north_aligned" and mode != "tracking":
        return "heading_source north_aligned publishes the convention 0 frame by frame, not a measured heading"
    return None


def _gt_trajectory(gt: GroundTruth, origin: geo.LocalENU) -> CleanGroundTruth:
    """GT in the replay's ENU frame, one sample per stamp (replay_quality's duplicate rule)."""
    if not gt.t_ns:
        return clean_ground_truth([], np.zeros(0), np.zeros(0), [])
    ge, gn = origin.to_en(np.asarray(gt.lat_deg), np.asarray(gt.lon_deg))
    return clean_ground_truth(gt.t_ns, ge, gn, gt.yaw_deg)


def score_frames(frames: list[FrameResult], gt: GroundTruth, origin: geo.LocalENU, cfg: ReplayConfig,
                 gt_type: str, image_type: str, warnings: list[str], quality: DataQuality | None = None,
                 heading_unscored: str | None = None) -> tuple[ReplayReport, ScoredPairs]:
    """Associate each fix with GT, fill the frames' ENU positions, and compute the report. ``quality``
    (default: a new one) receives the GT's exclusions and the frames not scored for them (replay_quality);
    ``heading_unscored``: why the headings are not scored (:func:`heading_not_scored`), None to score them."""
    quality = quality if quality is not None else DataQuality()
    clean = _gt_trajectory(gt, origin)
    gt_traj = clean.traj
    fixes = [f for f in frames if f.status == FIX]
    if fixes:
        e, n = origin.to_en(np.array([f.latitude_deg for f in fixes]), np.array([f.longitude_deg for f in fixes]))
        for f, ei, ni in zip(fixes, np.atleast_1d(e), np.atleast_1d(n)):
            f.east_m, f.north_m = float(ei), float(ni)
    assoc = trajectory.associate(gt_traj, [f.t_ns for f in fixes], cfg.max_gap_s)
    scored = [i for i, ok in enumerate(assoc.valid) if ok]
    unknown = np.flatnonzero(assoc.unknown)
    for i in unknown:
        fixes[i].note = (fixes[i].note + "; " if fixes[i].note else "") + "GT contradicts itself here: not scored"
    quality.add_ground_truth(gt.excluded, clean)
    quality.frames_not_scored["conflicting_gt"] = int(unknown.size)
    if (line := gt_warning(cfg.gt_topic, gt.excluded, clean, int(unknown.size))) is not None:
        warnings.append(line)
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
    no_gt = len(fixes) - len(scored) - int(unknown.size)
    if no_gt:
        warnings.append(f"{no_gt} fixes without GT within {cfg.max_gap_s:g} s (counted, not scored)")
    pl = np.array([fixes[i].protection_level_m for i in scored], dtype=np.float64)
    trust = trust_report(err_en, cov, pl, np.ones(len(scored), bool), frames=len(frames))
    trust.availability = (len(fixes) / len(frames)) if frames else 0.0  # published / frames, GT or not
    report = ReplayReport(
        count=len(scored), frames=len(frames), trust=trust.to_json(),
        frames_without_fix=(without_fix / len(frames)) if frames else 0.0,
        frames_without_fix_count=without_fix, frames_without_gt=no_gt, status_counts=status_counts,
        withheld_by_reason=dict(collections.Counter(f.reason for f in frames if f.reason)),
        position_error=trajectory.error_stats(errors),
        heading_error=(trajectory.heading_stats([fixes[i].yaw_deg for i in scored], assoc.yaw_deg[scored])
                       if heading_unscored is None else
                       dict(trajectory.heading_stats([], []), not_scored=heading_unscored)),
        covariance=trajectory.covariance_stats(err_en, cov),
        latency=trajectory.latency_stats([f.latency_ms for f in frames]),
        config={
            "bag": str(cfg.bag), "index": cfg.index, "checkpoint": cfg.checkpoint, "image_topic": cfg.image_topic,
            "image_type": image_type, "gt_topic": cfg.gt_topic, "gt_type": gt_type,
            "gt_frame": ("WGS84" if gt_type in GT_GEOGRAPHIC else
                         f"local ENU-aligned frame with origin {cfg.gt_frame_origin or 'at the index origin'}"),
            "origin": {"lat_deg": origin.lat0_deg, "lon_deg": origin.lon0_deg},
            "every": cfg.every, "rate_hz": cfg.rate_hz, "live": cfg.live,
            "pipeline": finite_or_none(dataclasses.asdict(cfg.pipeline)),
            "max_gap_s": cfg.max_gap_s, "gt_samples": len(gt_traj),
            "gt_has_orientation": bool(np.any(np.isfinite(gt_traj.yaw_deg))),
        },
        warnings=warnings, data_quality=quality.to_json(),
    )
    return report, ScoredPairs(fixes, assoc, scored, errors, gt_traj, _integrity_points(frames, gt_traj, origin, cfg),
                               heading_scored=heading_unscored is None)


def _integrity_points(frames: list[FrameResult], gt_traj, origin: geo.LocalENU, cfg: ReplayConfig):
    """(errors m, protection levels m, published) of every frame with a fix - published or withheld - and GT."""
    with_fix = [f for f in frames if np.isfinite(f.latitude_deg) and np.isfinite(f.protection_level_m)]
    if not with_fix:
        return np.zeros(0), np.zeros(0), np.zeros(0, bool)
    e, n = origin.to_en(np.array([f.latitude_deg for f in with_fix]), np.array([f.longitude_deg for f in with_fix]))
    assoc = trajectory.associate(gt_traj, [f.t_ns for f in with_fix], cfg.max_gap_s)
    ok = np.asarray(assoc.valid, bool)
    err = np.hypot(np.atleast_1d(e) - assoc.east_m, np.atleast_1d(n) - assoc.north_m)[ok]
    return (err, np.array([f.protection_level_m for f in with_fix])[ok],
            np.array([f.status == FIX for f in with_fix])[ok])
