"""``metrics.json`` ``tracking``: how a replay's published trajectory behaves over time (issue #17, item 5), and its
two plots. Computed for every replay (``mode`` says which pipeline published): with ``--track`` it describes the
sequential localizer; in single mode the same figures describe the published single fixes, the baseline to put
beside it.

Definitions (``t`` = seconds since the first processed frame; ``e(t)`` = horizontal distance between the published
estimate at a frame and the ground truth interpolated at its stamp, in the index's ENU frame; a frame with no
published estimate - withheld, undecodable, dropped by the node - has ``e = inf``; frames without GT within
``--max-gap`` are left out of the timeline):

* ``converged_after_s``: the first frame time ``t0`` (before the kidnap, when there is one) such that every frame in
  ``[t0, t0 + 10 s]`` has ``e <= 5 m``, the whole window inside the drive (before the kidnap); null if never;
* ``recovered_after_kidnap_s``: the same search from the kidnap on, minus the kidnap's time; null without a kidnap
  or if never;
* ``after_convergence``: the frames from ``converged_after_s`` to the kidnap and from the recovery on (the frames
  between a kidnap and its recovery are not "after convergence"): over those with a published estimate,
  ``median_m``, ``p95_m``, ``rmse_m``, ``max_m``, ``count``; ``frames`` and ``availability`` (published share) of the
  whole span;
* ``nees_mean``, ``nees_median``: 2-D NEES ``e' C^-1 e`` of those published estimates with their published
  covariance (the belief's in tracking mode; 2 and 1.39 when consistent); ``hmi``: how many of them have ``e``
  above their protection level (in-process only);
* ``availability``: published / processed frames over the whole drive;
* ``kidnap_at_s`` (and ``kidnap_source``: ``/gt/kidnap`` or the bag's metadata), ``reinitialisations`` (tracking,
  in-process: time and reason of each (re)initialisation of the belief);
* ``sensors`` (tracking, in-process): the last ``odometry_scale`` and ``imu_heading_offset_deg`` the filter reported
  (what it learnt or measured of the robot's odometry and IMU over the drive; null when never measured);
* ``step_ms_median`` / ``_p95`` (the pipeline's time per frame, decoding included), ``beyond_single_ms_median`` /
  ``_p95`` (tracking, in-process: the step beyond the single-frame localizer);
* ``single_frame`` (tracking, in-process): the filter's global fixes on the same frames - ``all`` and
  ``accepted`` (by the integrity gate) error stats over the after-convergence frames, ``every_frame`` over every frame
  with GT (gate or not), ``availability`` of accepted fixes over all frames. Error stats carry ``within_5m``, the
  share of their frames within 5 m.
"""
from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from unifygeo_ros import geo
from unifygeo_ros.localization.integrity import nees
from unifygeo_ros.rosbag import trajectory
from unifygeo_ros.rosbag.replay_types import FIX, FrameResult

CONVERGED_M = 5.0  #: issue #17: "within 5 m ..."
CONVERGED_FOR_S = 10.0  #: "... for 10 s"


def first_stable(t_s: np.ndarray, err_m: np.ndarray, t_from: float, t_to: float) -> float | None:
    """First ``t_s[i] >= t_from`` such that every frame in ``[t_s[i], t_s[i] + CONVERGED_FOR_S]`` has an error
    within ``CONVERGED_M``, the window ending by ``t_to``; None if there is none."""
    for i in np.nonzero((t_s >= t_from) & (t_s + CONVERGED_FOR_S <= t_to + 1e-9))[0]:
        window = (t_s >= t_s[i]) & (t_s <= t_s[i] + CONVERGED_FOR_S + 1e-9)
        if np.all(err_m[window] <= CONVERGED_M):
            return float(t_s[i])
    return None


def _stats(e: np.ndarray) -> dict | None:
    e = e[np.isfinite(e)]
    if not e.size:
        return None
    return {"median_m": float(np.median(e)), "p95_m": float(np.percentile(e, 95)),
            "rmse_m": float(np.sqrt(np.mean(e ** 2))), "max_m": float(np.max(e)), "count": int(e.size),
            "within_5m": float(np.mean(e <= CONVERGED_M))}


def _pct(v: list[float], q: float) -> float | None:
    a = np.asarray([x for x in v if np.isfinite(x)], float)
    return float(np.percentile(a, q)) if a.size else None


class Timeline:
    """Per processed frame with GT: time, published estimate and truth (ENU), error (inf without an estimate)."""

    def __init__(self, frames: list[FrameResult], gt: trajectory.Trajectory, origin: geo.LocalENU,
                 max_gap_s: float):
        self.t0_ns = min((f.t_ns for f in frames), default=0)
        assoc = trajectory.associate(gt, [f.t_ns for f in frames], max_gap_s)
        keep = np.asarray(assoc.valid, bool)
        self.frames = [f for f, k in zip(frames, keep) if k]
        self.t_s = np.array([(f.t_ns - self.t0_ns) * 1e-9 for f in self.frames])
        self.truth = np.stack([assoc.east_m[keep], assoc.north_m[keep]], 1) if keep.any() else np.zeros((0, 2))
        self.published = np.array([f.status == FIX for f in self.frames], bool)
        self.est = np.array([[f.east_m, f.north_m] for f in self.frames], float).reshape(-1, 2)
        self.est[~self.published] = np.nan
        err = np.hypot(*(self.est - self.truth).T) if len(self.frames) else np.zeros(0)
        self.err = np.where(self.published & np.isfinite(err), err, np.inf)
        self.cov = np.array([f.cov_en_m2 for f in self.frames], float).reshape(-1, 2, 2)
        self.pl = np.array([f.protection_level_m for f in self.frames], float)
        lat = np.array([f.single_latitude_deg for f in self.frames], float)
        lon = np.array([f.single_longitude_deg for f in self.frames], float)
        self.single = np.full((len(self.frames), 2), np.nan)
        ok = np.isfinite(lat) & np.isfinite(lon)
        if ok.any():
            e, n = origin.to_en(lat[ok], lon[ok])
            self.single[ok] = np.stack([np.atleast_1d(e), np.atleast_1d(n)], 1)
        self.single_accepted = np.array([f.single_accepted for f in self.frames], bool)


def tracking_report(frames: list[FrameResult], gt: trajectory.Trajectory, origin: geo.LocalENU, max_gap_s: float,
                    kidnap_ns: int | None, kidnap_source: str, mode: str) -> tuple[dict, Timeline]:
    """The ``tracking`` object (module doc) and the timeline it was computed on (for the plots)."""
    tl = Timeline(frames, gt, origin, max_gap_s)
    t, err = tl.t_s, tl.err
    end = float(t[-1]) if t.size else 0.0
    k_at = (kidnap_ns - tl.t0_ns) * 1e-9 if kidnap_ns is not None else None
    before = k_at if k_at is not None else end
    conv = first_stable(t, err, 0.0, before) if t.size else None
    rec = first_stable(t, err, k_at, end) if (k_at is not None and t.size) else None
    span = np.zeros(t.size, bool)
    if conv is not None:
        span |= (t >= conv) & (t < before)
    if rec is not None:
        span |= t >= rec
    use = span & tl.published
    d2 = nees(tl.est[use] - tl.truth[use], tl.cov[use]) if use.any() else np.zeros(0)
    pl = tl.pl[use]
    hmi = int(np.sum(err[use] > pl)) if np.isfinite(pl).any() else None
    single_err = np.hypot(*(tl.single - tl.truth).T) if t.size else np.zeros(0)
    has_single = bool(np.isfinite(single_err).any())
    report = {
        "mode": mode, "frames": int(len(frames)), "frames_with_gt": int(t.size),
        "availability": (float(np.mean([f.status == FIX for f in frames])) if frames else None),
        "converged_after_s": conv,
        "kidnap_at_s": k_at, "kidnap_source": kidnap_source if k_at is not None else None,
        "recovered_after_kidnap_s": (rec - k_at) if rec is not None else None,
        "after_convergence": {**(_stats(err[use]) or {"median_m": None, "p95_m": None, "rmse_m": None,
                                                      "max_m": None, "count": 0}),
                              "frames": int(span.sum()), "availability": float(use.sum() / span.sum())
                              if span.any() else None},
        "nees_mean": float(np.mean(d2)) if d2.size else None,
        "nees_median": float(np.median(d2)) if d2.size else None,
        "hmi": hmi,
        "reinitialisations": [{"t_s": round((f.t_ns - tl.t0_ns) * 1e-9, 3), "reason": f.reinitialised}
                              for f in frames if f.reinitialised],
        "sensors": {"odometry_scale": _last_finite([f.odometry_scale for f in frames]),
                    "imu_heading_offset_deg": _last_finite([f.imu_heading_offset_deg for f in frames])},
        "step_ms_median": _pct([f.latency_ms for f in frames], 50),
        "step_ms_p95": _pct([f.latency_ms for f in frames], 95),
        "beyond_single_ms_median": _pct([f.beyond_single_ms for f in frames], 50),
        "beyond_single_ms_p95": _pct([f.beyond_single_ms for f in frames], 95),
        "single_frame": None if not has_single else {
            "all": _stats(single_err[span]), "accepted": _stats(single_err[span & tl.single_accepted]),
            "every_frame": _stats(single_err), "availability": float(np.mean(tl.single_accepted)) if t.size else None},
        "definitions": "docs/REPLAY.md, 'Tracking' (unifygeo_ros/rosbag/replay_tracking.py)",
    }
    return report, tl


def _last_finite(values: list[float]) -> float | None:
    finite = [float(v) for v in values if v is not None and math.isfinite(v)]
    return finite[-1] if finite else None


# ---------------------------------------------------------------------------------------------------- plots
def _ellipse(ax, centre, cov, k: float = 2.0, **kw) -> None:
    """The ``k``-sigma ellipse of a 2 x 2 covariance around ``centre``."""
    vals, vecs = np.linalg.eigh(0.5 * (cov + cov.T))
    a = np.linspace(0.0, 2.0 * math.pi, 48)
    pts = (vecs * (k * np.sqrt(np.maximum(vals, 0.0)))) @ np.stack([np.cos(a), np.sin(a)])
    ax.plot(centre[0] + pts[0], centre[1] + pts[1], **kw)


def _break_jumps(gt: trajectory.Trajectory, jump_m: float = 20.0) -> tuple[np.ndarray, np.ndarray]:
    """GT east/north with a NaN between samples farther apart than ``jump_m`` (a kidnap is not a road)."""
    e, n = np.asarray(gt.east_m, float), np.asarray(gt.north_m, float)
    if e.size < 2:
        return e, n
    cut = np.nonzero(np.hypot(np.diff(e), np.diff(n)) > jump_m)[0] + 1
    return np.insert(e, cut, np.nan), np.insert(n, cut, np.nan)


def plot_tracking(out: Path, tl: Timeline, report: dict, gt: trajectory.Trajectory, draw_map, title: str,
                  ellipse_every: int = 2) -> list[Path]:
    """``tracking_trajectory.png`` (GT, the published estimates and their 2-sigma ellipses, over the map drawn by
    ``draw_map(ax, bbox)``) and ``tracking_error.png`` (error over time, the protection level, 5 m, convergence and
    the kidnap marked)."""
    from unifygeo_ros.plots import plt

    paths = []
    fig, ax = plt.subplots(figsize=(7.0, 7.0), dpi=110)
    pub = tl.published & np.all(np.isfinite(tl.est), axis=1)
    pts = np.concatenate([np.stack([gt.east_m, gt.north_m], 1), tl.est[pub]]) if len(gt) else tl.est[pub]
    if len(pts):
        bbox = (float(pts[:, 0].min()) - 20, float(pts[:, 0].max()) + 20, float(pts[:, 1].min()) - 20,
                float(pts[:, 1].max()) + 20)
        draw_map(ax, bbox)
        ax.set_xlim(bbox[0], bbox[1])
        ax.set_ylim(bbox[2], bbox[3])
    ge, gn = _break_jumps(gt)
    ax.plot(ge, gn, "-", color="white", lw=3.0, zorder=1)
    ax.plot(ge, gn, "-", color="black", lw=1.2, zorder=2, label="ground truth")
    if pub.any():
        ax.plot(tl.est[pub, 0], tl.est[pub, 1], ".", color="tab:blue", ms=3, zorder=3, label="published estimate")
        for j, i in enumerate(np.nonzero(pub)[0]):
            if j % ellipse_every == 0 and np.all(np.isfinite(tl.cov[i])):
                _ellipse(ax, tl.est[i], tl.cov[i], color="tab:orange", lw=0.7, zorder=3,
                         label="2-sigma ellipse" if j == 0 else None)
    if report.get("kidnap_at_s") is not None and tl.t_s.size:
        after = np.nonzero(tl.t_s >= report["kidnap_at_s"])[0]
        if after.size:  # the first frame after the teleport: where the vehicle landed
            ax.plot(*tl.truth[after[0]], "r*", ms=12, zorder=4, label="kidnap: landed here")
    ax.set_aspect("equal")
    ax.set_xlabel("east (m)")
    ax.set_ylabel("north (m)")
    ax.set_title(f"{title} ({report['mode']})")
    ax.legend(loc="upper right", fontsize=7)
    fig.tight_layout()
    fig.savefig(out / "tracking_trajectory.png")
    plt.close(fig)
    paths.append(out / "tracking_trajectory.png")

    fig, ax = plt.subplots(figsize=(9.0, 3.6), dpi=110)
    fin = np.isfinite(tl.err)
    ax.semilogy(tl.t_s, np.where(fin, np.maximum(tl.err, 0.02), np.nan), ".-", lw=0.8, ms=3,
                label="error of the published estimate")
    pl = np.where(pub, tl.pl, np.nan)
    if np.isfinite(pl).any():
        ax.semilogy(tl.t_s, pl, "-", color="0.6", lw=0.8, label="protection level")
    single = np.hypot(*(tl.single - tl.truth).T) if tl.t_s.size else np.zeros(0)
    if np.isfinite(single).any():
        ax.semilogy(tl.t_s, np.maximum(single, 0.02), ".", color="0.5", ms=2, label="single-frame global fix")
    if (~fin).any():
        ax.plot(tl.t_s[~fin], np.full(int((~fin).sum()), 0.03), "|", color="r", ms=8, label="nothing published")
    ax.axhline(CONVERGED_M, color="k", ls="--", lw=0.6)
    if report["converged_after_s"] is not None:
        ax.axvline(report["converged_after_s"], color="g", lw=1.0, label="converged")
    if report.get("kidnap_at_s") is not None:
        ax.axvline(report["kidnap_at_s"], color="r", lw=1.2, label="kidnap")
        if report["recovered_after_kidnap_s"] is not None:
            ax.axvline(report["kidnap_at_s"] + report["recovered_after_kidnap_s"], color="g", ls=":", lw=1.0,
                       label="recovered")
    ax.set_xlabel("time since the first frame (s)")
    ax.set_ylabel("error (m)")
    ax.set_title(f"{title}: error over time ({report['mode']})")
    ax.grid(alpha=0.3)
    ax.legend(loc="upper right", fontsize=7, ncol=3)
    fig.tight_layout()
    fig.savefig(out / "tracking_error.png")
    plt.close(fig)
    paths.append(out / "tracking_error.png")
    return paths
