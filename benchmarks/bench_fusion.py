"""Single frames vs the fused trajectory (issue #15, item 6): ``unifygeo replay --fuse`` on a drive through the demo
city with the embedded demo model, at the node's integrity gate and with the gate off.

    .venv/bin/python benchmarks/bench_fusion.py [--duration 120] [--seeds 0] [--out out/bench_fusion]

1. the demo city ``out/demo/data/DemoCity`` (rendered by ``unifygeo demo --out out/demo``; run first when missing,
   this script says so), a drive recorded by ``unifygeo bag synth``: ``--duration`` s (default 2 minutes) at 2 Hz,
   north-aligned panoramas (the demo model is trained with known orientation), wheel odometry and IMU on
   (rosbag/sensors.py's default noise, seeded by the route seed);
2. the bag replayed with ``--fuse`` through the node's pipeline with the embedded model and index (models/demo,
   models/demo/index), twice: the node's default gate (``max_protection_level_m``, 50 m) and ``inf`` (gate off;
   the default is not changed here);
3. printed side by side, per gate: single frames (the published fixes, as ``metrics.json`` scores them) and the
   fused trajectory (``metrics.json`` ``fusion``): APE RMSE and max (m, unaligned, the index's ENU frame), mean
   NEES (2-D position; 2 = consistent), the largest jump (single frames: the largest change of the position error
   between consecutive published fixes; fused: the largest displacement by one update, and the largest change of
   the error between consecutive fused poses), availability (single: published / frames; fused: frames with a
   fused pose / frames) and the fixes fused / rejected by the EKF's Mahalanobis gate.

Outputs (bags, replays with their plots, ``summary.json``) go to ``--out``. Figures only; nothing is asserted.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import math
import os
import shutil
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("OMP_NUM_THREADS", "1")  # before torch is imported (through replay)

from unifygeo_ros.localization.pipeline import PipelineSettings  # noqa: E402
from unifygeo_ros.rosbag import trajectory  # noqa: E402
from unifygeo_ros.rosbag.fusion import FusionConfig  # noqa: E402
from unifygeo_ros.rosbag.replay import ReplayConfig, replay  # noqa: E402
from unifygeo_ros.rosbag.synth import GEOPOSE_TOPIC, IMAGE_TOPIC, SynthBagConfig, synth_bag  # noqa: E402

GATES = (("node default", PipelineSettings().max_protection_level_m), ("gate off", math.inf))
TRACKING = "tracking"  # --track: the node's mode tracking (default gate), its estimates fused


def single_frame_jump(out: Path) -> float | None:
    """Largest change of the position error between consecutive published fixes (estimate.tum vs
    groundtruth.tum, the scored pairs)."""
    est, gt = trajectory.read_tum(out / "estimate.tum"), trajectory.read_tum(out / "groundtruth.tum")
    if len(est.t_s) < 2:
        return None
    err = est.xyz[:, :2] - gt.xyz[:, :2]
    return float(np.hypot(*np.diff(err, axis=0).T).max())


def figures(rep, out: Path) -> dict:
    pe, fz = rep.position_error, rep.fusion
    single = {"rmse_m": pe["rmse_m"], "max_m": pe["max_m"], "nees_mean": rep.covariance.get("nees_mean"),
              "largest_jump_m": single_frame_jump(out), "availability": rep.trust.get("availability"),
              "published": rep.status_counts["fix"], "frames": rep.frames}
    fused = {"rmse_m": fz["ape"]["rmse_m"], "max_m": fz["ape"]["max_m"], "nees_mean": fz["nees"]["mean"],
             "nees_median": fz["nees"]["median"], "largest_jump_m": fz["largest_jump_m"],
             "largest_error_change_m": fz["largest_error_change_m"], "availability": fz["availability"],
             "fixes_fused": fz["fixes_fused"], "fixes_rejected": fz["fixes_rejected"],
             "fixes_before_start": fz["fixes_before_start"]}
    return {"single": single, "fused": fused}


def _portable(path: str) -> str:
    """A path inside the repository as relative to it (no machine's absolute path in the results)."""
    p = Path(path).resolve()
    return str(p.relative_to(ROOT)) if p.is_relative_to(ROOT) else path


def _f(v, digits=2) -> str:
    return "n/a" if v is None or (isinstance(v, float) and not math.isfinite(v)) else f"{v:.{digits}f}"


def print_table(name: str, fig: dict) -> None:
    s, z = fig["single"], fig["fused"]
    print(f"  {name}")
    print(f"    {'':28s} {'single frames':>14s} {'fused':>10s}")
    print(f"    {'APE RMSE (m)':28s} {_f(s['rmse_m']):>14s} {_f(z['rmse_m']):>10s}")
    print(f"    {'APE max (m)':28s} {_f(s['max_m']):>14s} {_f(z['max_m']):>10s}")
    print(f"    {'NEES mean (2 = consistent)':28s} {_f(s['nees_mean']):>14s} {_f(z['nees_mean']):>10s}")
    print(f"    {'largest jump (m)':28s} {_f(s['largest_jump_m']):>14s} {_f(z['largest_jump_m']):>10s}"
          f"   (fused error change {_f(z['largest_error_change_m'])} m)")
    print(f"    {'availability (%)':28s} {_f(100 * s['availability'], 1):>14s} {_f(100 * z['availability'], 1):>10s}")
    print(f"    published {s['published']} / {s['frames']} frames; EKF: fused {z['fixes_fused']}, rejected "
          f"{z['fixes_rejected']}, before its start {z['fixes_before_start']}")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--demo", default=str(ROOT / "out" / "demo"), help="unifygeo demo's output (holds data/DemoCity)")
    ap.add_argument("--checkpoint", default=str(ROOT / "models" / "demo"))
    ap.add_argument("--index", default=str(ROOT / "models" / "demo" / "index"))
    ap.add_argument("--duration", type=float, default=120.0, help="seconds of driving (default 120)")
    ap.add_argument("--rate", type=float, default=2.0, help="camera rate, Hz (default 2)")
    ap.add_argument("--seeds", type=int, nargs="+", default=[0], help="route (and sensor) seeds (default 0)")
    ap.add_argument("--out", default=str(ROOT / "out" / "bench_fusion"))
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--track", action="store_true",
                    help="also replay in the node's mode tracking and fuse its estimates (they already hold the "
                         "odometry the EKF fuses again: docs/FUSION.md, 'With mode: tracking')")
    args = ap.parse_args()
    city = Path(args.demo) / "data" / "DemoCity"
    if not (city / "geo.json").exists():
        print(f"{city} missing: run `.venv/bin/unifygeo demo --out {args.demo}` first", file=sys.stderr)
        return 1
    out = Path(args.out)
    summary = {"duration_s": args.duration, "rate_hz": args.rate, "checkpoint": _portable(args.checkpoint),
               "index": _portable(args.index), "runs": []}
    for seed in args.seeds:
        bag = out / f"bag_seed{seed}"
        shutil.rmtree(bag, ignore_errors=True)
        t = time.perf_counter()
        rec = synth_bag(SynthBagConfig(data=str(city), out=str(bag), duration_s=args.duration, rate_hz=args.rate,
                                       north_aligned=True, seed=seed))
        print(f"seed {seed}: {rec.frames} panoramas, {rec.route_length_m:.0f} m driven, {rec.wheel_odom_messages} "
              f"odometry, {rec.imu_messages} IMU messages ({time.perf_counter() - t:.0f} s)")
        variants = [(name, limit, dataclasses.replace(PipelineSettings(), max_protection_level_m=limit),
                     "default" if math.isfinite(limit) else "inf") for name, limit in GATES]
        if args.track:
            default = PipelineSettings()
            variants.append((TRACKING, default.max_protection_level_m,
                             dataclasses.replace(default, mode="tracking"), "tracking"))
        for name, limit, pipeline, tag in variants:
            r_out = out / f"replay_seed{seed}_{tag}"
            cfg = ReplayConfig(bag=str(bag), index=args.index, checkpoint=args.checkpoint, out=str(r_out),
                               image_topic=IMAGE_TOPIC, gt_topic=GEOPOSE_TOPIC, device=args.device,
                               pipeline=pipeline, fusion=FusionConfig())
            t = time.perf_counter()
            rep = replay(cfg)
            fig = figures(rep, r_out)
            print_table(f"{name} (max_protection_level_m {limit:g}; {time.perf_counter() - t:.0f} s)", fig)
            summary["runs"].append({"seed": seed, "gate": name, "max_protection_level_m": limit
                                    if math.isfinite(limit) else None, "out": _portable(str(r_out)), **fig})
    out.mkdir(parents=True, exist_ok=True)
    (out / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    print(f"summary: {out / 'summary.json'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
