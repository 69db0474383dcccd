"""The map EKF's process noise on x, y vs the consistency of the fused trajectory (issue #15, "NEES consistent").

    .venv/bin/python benchmarks/bench_fusion_noise.py [--cities DemoCity Synth1000001 Synth1000002 Synth1000003]
        [--seeds 0 1] [--q-xy 0.05 0.25 0.5 1.0] [--duration 90] [--out out/bench_fusion_noise] [--write]

Why: successive fixes of one place share most of their error (the same tiles, the same façades), while the EKF
treats them as independent; at robot_localization's default process noise (0.05 m^2/s on x and y) it averages
them into a covariance far tighter than its error (BENCHMARKS.md 0b: fused NEES 6.8-8.9, 2 = consistent). A larger
process noise on x, y makes the filter forget old fixes faster: a wider, honest covariance, at some cost in APE.

For each city (DemoCity from ``unifygeo demo``'s output; the cross-area benchmark cities from ``out/bench_data``,
written by benchmarks/bench_calibration.py; never trained on) and route seed: one drive from ``unifygeo bag synth``
(north-aligned panoramas at 2 Hz, the default noisy wheel odometry and IMU), an index of the city (built once
into ``--out`` when the city is not DemoCity), then ``unifygeo replay --fuse`` once per value of ``--q-xy`` with a
copy of the shipped ``config/robot_localization/ekf.yaml`` whose map section has that process noise on x and y
(everything else as shipped; the node's default gate). Reports per value: fused APE RMSE, mean / median NEES, the
largest jump, pooled over all drives and per drive; ``--write`` puts JSON and a plot in benchmarks/results/.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import os
import platform
import shutil
import sys
import time
from pathlib import Path

import numpy as np
import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("OMP_NUM_THREADS", "1")  # before torch is imported (through replay)

from unifygeo_ros.localization.pipeline import PipelineSettings  # noqa: E402
from unifygeo_ros.plots import plt  # noqa: E402
from unifygeo_ros.rosbag.fusion import FusionConfig  # noqa: E402
from unifygeo_ros.rosbag.fusion_config import MAP_SECTION  # noqa: E402
from unifygeo_ros.rosbag.replay import ReplayConfig, replay  # noqa: E402
from unifygeo_ros.rosbag.synth import GEOPOSE_TOPIC, IMAGE_TOPIC, SynthBagConfig, synth_bag  # noqa: E402

EKF_YAML = ROOT / "config" / "robot_localization" / "ekf.yaml"
RESULTS = ROOT / "benchmarks" / "results"


def ekf_with_q(q_xy: float, path: Path) -> Path:
    """A copy of the shipped ekf.yaml whose map section has process noise ``q_xy`` (m^2/s) on x and y."""
    doc = yaml.safe_load(EKF_YAML.read_text())
    q = list(doc[MAP_SECTION]["ros__parameters"]["process_noise_covariance"])
    q[0], q[16] = float(q_xy), float(q_xy)  # (x, x) and (y, y) of the 15 x 15 row-major matrix
    doc[MAP_SECTION]["ros__parameters"]["process_noise_covariance"] = q
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    return path


def city_and_index(name: str, args, out: Path) -> tuple[Path, Path]:
    if name == "DemoCity":
        return Path(args.demo) / "data" / "DemoCity", ROOT / "models" / "demo" / "index"
    city, index = Path(args.bench_data) / name, out / f"index_{name}"
    if not (index / "index.json").exists():
        from unifygeo_ros import cli

        rc = cli.main(["index", "build", "--checkpoint", args.checkpoint, "--vigor", str(city), "--out", str(index),
                       "--aerial", "features", "--no-progress"])
        if rc:
            raise SystemExit(f"index build for {name} failed ({rc})")
    return city, index


def one_drive(city: Path, index: Path, seed: int, args, out: Path, tag: str) -> list[dict]:
    bag = out / f"bag_{tag}"
    shutil.rmtree(bag, ignore_errors=True)
    synth_bag(SynthBagConfig(data=str(city), out=str(bag), duration_s=args.duration, rate_hz=2.0,
                             north_aligned=True, seed=seed))
    rows = []
    for q in args.q_xy:
        r_out = out / f"replay_{tag}_q{q:g}"
        cfg = ReplayConfig(bag=str(bag), index=str(index), checkpoint=args.checkpoint, out=str(r_out),
                           image_topic=IMAGE_TOPIC, gt_topic=GEOPOSE_TOPIC, device="cpu", plots=False,
                           pipeline=dataclasses.replace(PipelineSettings()),
                           fusion=FusionConfig(ekf_yaml=str(ekf_with_q(q, out / f"ekf_q{q:g}.yaml"))))
        fz = replay(cfg).fusion
        rows.append({"drive": tag, "q_xy": q, "rmse_m": fz["ape"]["rmse_m"], "nees_mean": fz["nees"]["mean"],
                     "nees_median": fz["nees"]["median"], "largest_jump_m": fz["largest_jump_m"],
                     "availability": fz["availability"], "fixes_fused": fz["fixes_fused"],
                     "fixes_rejected": fz["fixes_rejected"]})
        print(f"  {tag} q_xy {q:<5g} APE RMSE {fz['ape']['rmse_m']:.2f} m  NEES mean {fz['nees']['mean']:.2f} "
              f"median {fz['nees']['median']:.2f}  jump {fz['largest_jump_m']:.2f} m  fused {fz['fixes_fused']} "
              f"rejected {fz['fixes_rejected']}", flush=True)
    return rows


def pooled(rows: list[dict], q: float) -> dict:
    sel = [r for r in rows if r["q_xy"] == q]
    return {"q_xy": q, "drives": len(sel),
            "rmse_m_mean": float(np.mean([r["rmse_m"] for r in sel])),
            "rmse_m_max": float(np.max([r["rmse_m"] for r in sel])),
            "nees_mean_of_drives": float(np.mean([r["nees_mean"] for r in sel])),
            "nees_mean_range": [float(np.min([r["nees_mean"] for r in sel])),
                                float(np.max([r["nees_mean"] for r in sel]))],
            "nees_median_of_drives": float(np.median([r["nees_median"] for r in sel])),
            "largest_jump_m": float(np.max([r["largest_jump_m"] for r in sel]))}


def plot(summary: list[dict], rows: list[dict], path: Path) -> None:
    fig, (a, b) = plt.subplots(1, 2, figsize=(10, 4))
    qs = [s["q_xy"] for s in summary]
    for drive in sorted({r["drive"] for r in rows}):
        sel = sorted((r for r in rows if r["drive"] == drive), key=lambda r: r["q_xy"])
        a.plot([r["q_xy"] for r in sel], [r["nees_mean"] for r in sel], "-", color="0.75", lw=1)
        b.plot([r["q_xy"] for r in sel], [r["rmse_m"] for r in sel], "-", color="0.75", lw=1)
    a.plot(qs, [s["nees_mean_of_drives"] for s in summary], "o-", color="C0", label="mean over drives")
    a.axhspan(1.5, 2.6, color="C2", alpha=0.15, label="consistent (issue #15: 1.5-2.6)")
    b.plot(qs, [s["rmse_m_mean"] for s in summary], "o-", color="C1", label="mean over drives")
    b.axhline(2.0, color="C3", ls="--", lw=1, label="target <= 2 m")
    for ax, title in ((a, "fused NEES (2-D position)"), (b, "fused APE RMSE (m)")):
        ax.set_xscale("log")
        ax.set_xlabel("map EKF process noise on x, y (m^2/s)")
        ax.set_title(title)
        ax.legend(fontsize=8)
        ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--cities", nargs="+", default=["DemoCity", "Synth1000001", "Synth1000002", "Synth1000003"])
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    ap.add_argument("--q-xy", type=float, nargs="+", default=[0.05, 0.25, 0.5, 1.0])
    ap.add_argument("--duration", type=float, default=90.0)
    ap.add_argument("--demo", default=str(ROOT / "out" / "demo"))
    ap.add_argument("--bench-data", default=str(ROOT / "out" / "bench_data"))
    ap.add_argument("--checkpoint", default=str(ROOT / "models" / "demo"))
    ap.add_argument("--out", default=str(ROOT / "out" / "bench_fusion_noise"))
    ap.add_argument("--write", action="store_true", help="write benchmarks/results/fusion_noise.{json,png}")
    args = ap.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    t0, rows = time.perf_counter(), []
    for name in args.cities:
        city, index = city_and_index(name, args, out)
        for seed in args.seeds:
            print(f"{name} seed {seed}", flush=True)
            rows += one_drive(city, index, seed, args, out, f"{name}_s{seed}")
    summary = [pooled(rows, q) for q in args.q_xy]
    print(f"\n{len(rows) // len(args.q_xy)} drives of {args.duration:g} s, {time.perf_counter() - t0:.0f} s in all")
    print(f"{'q_xy m^2/s':>11s} {'APE RMSE mean/max m':>20s} {'NEES mean (range)':>22s} {'NEES median':>12s} "
          f"{'max jump m':>11s}")
    for s in summary:
        lo, hi = s["nees_mean_range"]
        print(f"{s['q_xy']:>11g} {s['rmse_m_mean']:>10.2f} / {s['rmse_m_max']:<7.2f} {s['nees_mean_of_drives']:>8.2f} "
              f"({lo:.1f}-{hi:.1f}) {s['nees_median_of_drives']:>12.2f} {s['largest_jump_m']:>11.2f}")
    if args.write:
        RESULTS.mkdir(parents=True, exist_ok=True)
        meta = {"date": time.strftime("%Y-%m-%d %H:%M"), "machine": platform.processor() or platform.machine(),
                "load_1min": os.getloadavg()[0], "cities": args.cities, "seeds": args.seeds,
                "duration_s": args.duration}
        (RESULTS / "fusion_noise.json").write_text(json.dumps({"meta": meta, "summary": summary, "drives": rows},
                                                              indent=2) + "\n")
        plot(summary, rows, RESULTS / "fusion_noise.png")
        print(f"wrote {RESULTS / 'fusion_noise.json'} and fusion_noise.png")
    return 0


if __name__ == "__main__":
    sys.exit(main())
