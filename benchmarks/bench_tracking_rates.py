"""Tracking at other camera rates and speeds (issue #17; docs/TRACKING.md 'Evidence per metre'): panorama drives
recorded at several (rate, speed) pairs in the tuning cities, replayed in ``mode: tracking`` with each variant.

    nice .venv/bin/python benchmarks/bench_tracking_rates.py [--cities Synth1000011,Synth1000015] [--rig panorama]
        [--rates 10:8,2:2,4:12,1:5,2:8] [--duration 120] [--kidnap-at 60]
        [--variant NAME:KEY=VALUE+KEY=VALUE ...] [--index-work out/bench_tune] [--work out/bench_tracking_rates]
        [--tag tracking_rates] [--out benchmarks/results]

Every other tracking benchmark drives at 8 m/s with a 2 Hz panorama: 4 m between frames, the spacing the tracking
defaults were tuned at. Here ``unifygeo bag synth`` records each city at every ``RATE_HZ:SPEED_MPS`` pair
(``--duration`` s, a >= 200 m kidnap at ``--kidnap-at`` s or the first time after it the city allows one, the
default wheel odometry and IMU noise, vehicle-aligned panoramas - or ``--rig pinhole1`` / ``pinhole4``,
bench_tracking_replay.py's 90 deg rigs), and each is replayed with each variant (``unifygeo replay --track-set``
values; a variant with no values is the defaults) through the node's pipeline with models/demo (the rigs:
models/fov) and the city's index (``--index-work``'s ``index/<model>/<city>``, built there when missing),
one torch thread. Per (rate, speed) and variant over the cities, bench_tracking_defaults.py's figures: converged,
median / p95 after convergence, kidnaps recovered within 30 s, availability, published frames beyond their
protection level (within 50 m / beyond), mean NEES within 50 m. Writes ``<out>/<tag>.json`` and ``.png``.
Figures only; nothing is asserted.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))
os.environ.setdefault("OMP_NUM_THREADS", "1")

from bench_tracking_defaults import parse_variant, summarise  # noqa: E402
from bench_tracking_replay import RIGS, index_for, make_bag, run_replay  # noqa: E402
from unifygeo_ros.index import store  # noqa: E402
from unifygeo_ros.localization.localizer import Localizer  # noqa: E402
from unifygeo_ros.model.handle import load_model  # noqa: E402
from unifygeo_ros.rosbag.replay_cli import tracking_settings  # noqa: E402


def parse_rates(text: str) -> list[tuple[float, float]]:
    """``10:8,2:2`` -> [(10.0, 8.0), (2.0, 2.0)] (camera rate Hz, speed m/s)."""
    try:
        out = [(float(r), float(v)) for r, v in (p.split(":") for p in text.split(","))]
    except ValueError:
        raise argparse.ArgumentTypeError(f"--rates is RATE_HZ:SPEED_MPS,..., got {text!r}") from None
    if not out or any(r <= 0 or v <= 0 for r, v in out):
        raise argparse.ArgumentTypeError(f"--rates needs positive rates and speeds, got {text!r}")
    return out


def label(rate_hz: float, speed_mps: float) -> str:
    return f"r{rate_hz:g}v{speed_mps:g}"


def plot(summary: dict, path: Path) -> None:
    """NEES (within 50 m) and median after convergence per (rate, speed), one bar per variant."""
    from unifygeo_ros.plots import plt

    pairs = list(summary)
    variants = sorted({v for p in pairs for v in summary[p]})
    fig, axes = plt.subplots(1, 2, figsize=(11, 3.6))
    width = 0.8 / max(len(variants), 1)
    for i, v in enumerate(variants):
        x = np.arange(len(pairs)) + i * width
        nees = [summary[p].get(v, {}).get("nees_mean_within_50m") or 0.0 for p in pairs]
        med = [np.median([d["median_m"] for d in summary[p].get(v, {}).get("drives", []) if d["median_m"] is not None]
                         or [0.0]) for p in pairs]
        axes[0].bar(x, nees, width, label=v)
        axes[1].bar(x, med, width, label=v)
    for ax, title in zip(axes, ("mean NEES of published frames within 50 m (2 = consistent)",
                                "median error after convergence (m, median over cities)")):
        ax.set_xticks(np.arange(len(pairs)) + width * (len(variants) - 1) / 2)
        ax.set_xticklabels([p.replace("r", "").replace("v", " Hz\n") + " m/s" for p in pairs], fontsize=8)
        ax.set_title(title, fontsize=9)
        ax.legend(fontsize=8)
    axes[0].axhline(2.0, color="k", ls="--", lw=0.6)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--cities", default="Synth1000011,Synth1000015")
    ap.add_argument("--rig", choices=sorted(RIGS), default="panorama", help="the camera (models/fov for the rigs)")
    ap.add_argument("--rates", type=parse_rates, default=parse_rates("10:8,2:2,4:12,1:5,2:8"))
    ap.add_argument("--duration", type=float, default=120.0)
    ap.add_argument("--kidnap-at", type=float, default=60.0)
    ap.add_argument("--variant", type=parse_variant, action="append", default=None)
    ap.add_argument("--index-work", default="out/bench_tune", help="where the cities' indexes are (index/demo/<city>)")
    ap.add_argument("--work", default="out/bench_tracking_rates")
    ap.add_argument("--tag", default="tracking_rates")
    ap.add_argument("--out", default="benchmarks/results")
    args = ap.parse_args(argv)
    variants = args.variant or [("defaults", [])]
    work, t0 = ROOT / args.work, time.perf_counter()
    load0 = os.getloadavg()[0]
    rig = args.rig
    model = "demo" if rig == "panorama" else "fov"
    handle = load_model(ROOT / f"models/{model}", device="cpu")
    summary: dict = {}
    tag = "" if rig == "panorama" else f"_{rig}"  # the panorama's bags and runs keep their names
    for city in args.cities.split(","):
        loc = Localizer(store.load_index(index_for(ROOT / args.index_work, city, model, handle)), handle)
        for rate, speed in args.rates:
            bag = make_bag(work, city, rig, args.duration, args.kidnap_at, rate, speed,
                           f"{city}_{label(rate, speed)}{tag}")
            for name, sets in variants:
                settings = tracking_settings([tuple(kv.split("=", 1)) for kv in sets])
                run_dir = work / f"{name}_{label(rate, speed)}{tag}"
                out = run_dir / "runs" / f"{city}_{rig}_{model}_tracking"
                r = run_replay(bag, loc, out, "tracking", city, settings)
                tk = r["tracking"]
                print(f"{city} {rate:g} Hz {speed:g} m/s {name}: converged {tk['converged_after_s']}, availability "
                      f"{tk['availability']:.2f}, {r['wall_s']:.0f} s", flush=True)
    for rate, speed in args.rates:
        summary[label(rate, speed)] = {name: summarise([work / f"{name}_{label(rate, speed)}{tag}"]).get(rig, {})
                                       for name, _ in variants}
    lines = ["| rate, speed | variant | converged | median / p95 after (m) | recovered <= 30 s | availability | "
             "beyond PL, <= 50 m | > 50 m off | NEES (<= 50 m) |", "|" + "---|" * 9]
    for pair, per in summary.items():
        for name, a in per.items():
            d = a["drives"]
            meds = [x["median_m"] for x in d if x["median_m"] is not None]
            p95s = [x["p95_m"] for x in d if x["p95_m"] is not None]
            lines.append(f"| {pair} | {name} | {a['converged']}/{a['runs']} | "
                         f"{'/'.join(f'{m:.2f}' for m in meds) or '-'} / {'/'.join(f'{m:.2f}' for m in p95s) or '-'} | "
                         f"{a['recovered_within_30s']}/{a['runs']} | "
                         f"{'/'.join(format(100 * x['availability'], '.0f') for x in d)} % | {a['beyond_pl_near']} | "
                         f"{a['beyond_pl_far']} | {'-' if a['nees_mean_within_50m'] is None else format(a['nees_mean_within_50m'], '.2f')} |")
    print("\n".join(lines))
    res = {"machine": {"cpu": platform.processor() or platform.machine(), "cores": os.cpu_count(), "threads": 1,
                       "load_avg_1min": [load0, os.getloadavg()[0]]},
           "date": time.strftime("%Y-%m-%d %H:%M"), "wall_s": time.perf_counter() - t0, "cities": args.cities,
           "rig": rig,
           "rates": args.rates, "duration_s": args.duration, "variants": [list(v) for v in variants],
           "summary": summary, "table": lines}
    out_dir = ROOT / args.out
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / f"{args.tag}.json").write_text(json.dumps(res, indent=1))
    plot(summary, out_dir / f"{args.tag}.png")
    print(f"wrote {out_dir / args.tag}.json and .png")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
