"""The files ``unifygeo replay --fuse`` adds (the figures go into ``metrics.json``'s ``fusion`` object):

* ``fused.tum`` - the fused pose at every processed frame's stamp from the first accepted fix on (evo's TUM:
  ``t tx ty tz qx qy qz qw``, local ENU metres of the replay's frame, z = 0, yaw about +z);
* ``fused_groundtruth.tum`` - GT interpolated at the stamps of ``fused.tum`` that have GT, so
  ``evo_ape tum fused_groundtruth.tum fused.tum`` (no ``-a``) reports the ``fusion.ape`` figures;
* ``fusion.png`` - GT, the fused trajectory and the fixes (fused / rejected by the gate) in ENU, and the
  position error over time of the fused track and of the single-frame fixes, with the fused 2-sigma radius.
"""
from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from unifygeo_ros.plots import plt  # pyplot with the Agg backend, set up once there
from unifygeo_ros.rosbag import trajectory
from unifygeo_ros.rosbag.fusion import FusionResult


def write_fusion_outputs(out: Path, res: FusionResult, title: str = "", plots: bool = True) -> list[Path]:
    tr = res.track
    ok = tr.fused
    paths = [trajectory.write_tum(out / "fused.tum", tr.frame_t_ns[ok], tr.east_m[ok], tr.north_m[ok],
                                  np.degrees(tr.yaw_rad[ok]))]
    scored = ok & np.all(np.isfinite(res.err_en_m), axis=1)
    assoc = trajectory.associate(res.gt, tr.frame_t_ns[scored], math.inf)
    paths.append(trajectory.write_tum(out / "fused_groundtruth.tum", tr.frame_t_ns[scored], assoc.east_m,
                                      assoc.north_m, assoc.yaw_deg))
    if plots:
        paths.append(plot_fusion(out / "fusion.png", res, title))
    return paths


def plot_fusion(path: Path, res: FusionResult, title: str = "") -> Path:
    """Left: GT, fused track, fixes fused / rejected (ENU). Right: error over time, fused vs single frames."""
    tr, gt = res.track, res.gt
    fig, (ax, bx) = plt.subplots(1, 2, figsize=(13.0, 5.6), dpi=110, gridspec_kw={"width_ratios": [1.0, 1.25]})
    ax.plot(gt.east_m, gt.north_m, "-", color="black", lw=1.2, label="ground truth", zorder=2)
    ax.plot(tr.east_m, tr.north_m, "-", color="tab:blue", lw=1.0, label="fused", zorder=3)
    for status, style, label in (("fused", dict(marker=".", color="tab:green", s=14), "fix fused"),
                                 ("started", dict(marker="*", color="tab:green", s=90), "first fix (start)"),
                                 ("rejected", dict(marker="x", color="tab:red", s=30), "fix rejected (gate)"),
                                 ("before_start", dict(marker="x", color="0.5", s=20),
                                  "fix rejected before the start")):
        pts = [(f.east_m, f.north_m) for f, s in zip(tr.fixes, tr.fix_status) if s == status]
        if pts:
            ax.scatter(*np.array(pts).T, zorder=4, label=f"{label} ({len(pts)})", **style)
    ax.set_aspect("equal", adjustable="datalim")
    ax.set_xlabel("east (m)")
    ax.set_ylabel("north (m)")
    ax.legend(loc="best", fontsize=7)
    ax.grid(alpha=0.3)
    t0 = int(tr.frame_t_ns[0]) if tr.frame_t_ns.size else 0
    ts = (tr.frame_t_ns - t0) * 1e-9
    err = np.hypot(res.err_en_m[:, 0], res.err_en_m[:, 1])
    bx.plot(ts, err, "-", color="tab:blue", lw=1.0, label="fused")
    two_sigma = 2.0 * np.sqrt(np.clip(np.trace(tr.cov_m2, axis1=1, axis2=2), 0.0, None))
    bx.plot(ts, two_sigma, "--", color="tab:blue", lw=0.7, alpha=0.7, label="fused 2-sigma radius (2 sqrt tr P)")
    if tr.fixes:
        fa = trajectory.associate(gt, [f.t_ns for f in tr.fixes], math.inf)
        fe = np.hypot(np.array([f.east_m for f in tr.fixes]) - fa.east_m,
                      np.array([f.north_m for f in tr.fixes]) - fa.north_m)
        ft = (np.array([f.t_ns for f in tr.fixes]) - t0) * 1e-9
        rej = np.array([s == "rejected" for s in tr.fix_status], bool)
    top = max(5.0, float(np.nanpercentile(np.concatenate([err[np.isfinite(err)], [1.0]]), 99) * 3.0))
    if tr.fixes:
        bx.plot(ft[~rej], np.minimum(fe[~rej], top), ".", color="tab:green", ms=4,
                label="single-frame fix (off-scale ones at the top)")
        if rej.any():
            bx.plot(ft[rej], np.minimum(fe[rej], top), "x", color="tab:red", ms=6, clip_on=False,
                    label="fix rejected by the gate")
    bx.set_ylim(0.0, top)
    bx.set_xlabel("time since first frame (s)")
    bx.set_ylabel("position error (m)")
    bx.grid(alpha=0.3)
    bx.legend(loc="upper right", fontsize=7)
    r = res.report
    ape, nees = r["ape"], r["nees"]
    fmt = (lambda v: "n/a" if v is None else f"{v:.2f}")
    fig.suptitle(f"{title} fused: APE RMSE {fmt(ape['rmse_m'])} m, max {fmt(ape['max_m'])} m, NEES mean "
                 f"{fmt(nees['mean'])}, largest jump {r['largest_jump_m']:.2f} m; fixes fused {r['fixes_fused']}, "
                 f"rejected {r['fixes_rejected']}", fontsize=9)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path
