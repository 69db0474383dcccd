"""Tracking vs single-frame localization through ``unifygeo replay`` on recorded drives (issue #17, items 4-5).

    nice .venv/bin/python benchmarks/bench_tracking_replay.py [--cities Synth1000001,...,Synth1000005,DemoCity]
        [--rigs panorama,pinhole1,pinhole4] [--models demo,fov] [--duration 150] [--kidnap-at 75]
        [--stage bags|replay|all|plot] [--work out/bench_tracking_replay] [--tag tracking_replay] [--out benchmarks/results]
        [--modes single,tracking] [--track-set KEY=VALUE ...]   # e.g. --track-set cold_start=candidates
    # the limited-FOV model, once committed (its own index per city is built on first use):
    nice .venv/bin/python benchmarks/bench_tracking_replay.py --models fov --tag tracking_replay_fov

1. **Drives**: per city one recording by ``unifygeo bag synth``'s own code (:func:`~unifygeo_ros.rosbag.synth.
   synth_bag`): a random route inside the tiles' central quarters at 8 m/s, 2 Hz, ``--duration`` seconds, the
   city's seed as the drive's seed, the default wheel odometry (20 Hz) and IMU (50 Hz) noise, a kidnap of at least
   200 m at ``--kidnap-at`` or the first 2.5 s step after it where the city allows one (the odometry does not
   see it). Rigs: ``panorama`` (vehicle-aligned, the city's
   ``pano_px`` width), ``pinhole1`` (one front camera, 90 deg, 320 x 240), ``pinhole4`` (four 90 deg cameras at
   yaw 0/90/180/-90: front, left, back, right). Cities: the cross-area benchmark cities ``out/bench_data/
   Synth1000001..5`` (seeds no training run uses) and ``DemoCity`` (``out/demo/data/DemoCity``, held out).
2. **Indexes**: per city and model, the index of its tiles with that model (``aerial features``; the demo model's
   ``_calib`` indexes of bench_trust.py / bench_tracking.py when their model identity matches, ``models/demo/index``
   for DemoCity; else built like ``unifygeo index build --vigor CITY --aerial features``).
3. **Replays**: per (drive, model) two in-process replays through the node's pipeline (``unifygeo replay`` without
   topic flags, :func:`~unifygeo_ros.rosbag.replay.replay`): the node's defaults (single frames: prior, gate) and
   ``--track`` (the sequential localizer with its defaults), one torch thread, heading from the bag's IMU.
4. **Figures** (``metrics.json`` ``tracking`` of both, definitions in docs/REPLAY.md 'Tracking'): converged_after_s,
   after_convergence median / p95 / count, recovered_after_kidnap_s, NEES mean / median, HMI, availability, ms per
   frame (the pipeline's time per frame, decoding and stitching included; tracking: also beyond the single-frame
   localizer), and in tracking mode the filter's own global fixes on the same frames.

Writes ``<out>/tracking_replay.json`` and ``tracking_replay.png`` (error over time per drive: tracking vs single
frames, the kidnap marked). Machine, load (1-min average before and after each replay) and threads are stored.
Figures only; nothing is asserted.
"""
from __future__ import annotations

import argparse
import csv
import json
import math
import os
import platform
import sys
import time
from dataclasses import replace
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("OMP_NUM_THREADS", "1")

from unifygeo_ros.errors import UnifyGeoError  # noqa: E402
from unifygeo_ros.index import build as index_build  # noqa: E402
from unifygeo_ros.index import store  # noqa: E402
from unifygeo_ros.index.tiles import vigor_tiles  # noqa: E402
from unifygeo_ros.localization.pipeline import PipelineSettings  # noqa: E402
from unifygeo_ros.rosbag.replay_cli import track_setting, tracking_settings  # noqa: E402
from unifygeo_ros.localization.localizer import Localizer  # noqa: E402
from unifygeo_ros.model.handle import load_model  # noqa: E402
from unifygeo_ros.offline.calibrate import index_dir_for  # noqa: E402
from unifygeo_ros.rosbag.replay import ReplayConfig, replay  # noqa: E402
from unifygeo_ros.rosbag.synth import SynthBagConfig, synth_bag  # noqa: E402

RIGS = {"panorama": dict(camera="panorama"), "pinhole1": dict(camera="pinhole", cameras=1, hfov_deg=90.0),
        "pinhole4": dict(camera="pinhole", cameras=4, hfov_deg=90.0),
        "pinhole2w": dict(camera="pinhole", cameras=2, hfov_deg=120.0)}  # front and back (bench_tracking_rates.py)
MODELS = {"demo": "models/demo", "fov": "models/fov"}
DEFAULT_CITIES = "Synth1000001,Synth1000002,Synth1000003,Synth1000004,Synth1000005,DemoCity"


def city_dir(name: str) -> Path:
    return ROOT / ("out/demo/data/DemoCity" if name == "DemoCity" else f"out/bench_data/{name}")


def city_seed(name: str) -> int:
    return int(json.loads((city_dir(name) / "geo.json").read_text())["seed"])


def make_bag(work: Path, city: str, rig: str, duration_s: float, kidnap_at_s: float, rate_hz: float = 2.0,
             speed_mps: float = 8.0, name: str | None = None) -> Path:
    """The drive's bag ``<work>/bags/<name>`` (default ``<city>_<rig>``), recorded when missing: the kidnap at the
    first time from ``kidnap_at_s`` the city allows one."""
    bag = work / "bags" / (name or f"{city}_{rig}")
    if (bag / "metadata.yaml").is_file():
        return bag
    t0 = time.perf_counter()
    for at in np.arange(kidnap_at_s, duration_s - 30.0, 2.5):  # a small city allows 200 m jumps from some places
        try:
            res = synth_bag(SynthBagConfig(data=str(city_dir(city)), out=str(bag), storage="sqlite3",
                                           duration_s=duration_s, rate_hz=rate_hz, seed=city_seed(city),
                                           speed_mps=speed_mps,
                                           kidnap_at_s=float(at), **RIGS[rig]))
            break
        except UnifyGeoError as exc:
            if "cannot teleport" not in str(exc):
                raise
    else:
        raise UnifyGeoError(f"{city}: no kidnap of 200 m possible between {kidnap_at_s} and {duration_s - 30} s")
    print(f"  bag {bag.name}: {res.frames} frames, kidnap at {at:g} s ({res.kidnap_jump_m:.0f} m), "
          f"{time.perf_counter() - t0:.0f} s", flush=True)
    return bag


def index_for(work: Path, city: str, model: str, handle) -> Path:
    """The city's index with this model (module doc, step 2)."""
    candidates = [ROOT / "models/demo/index"] if (city == "DemoCity" and model == "demo") else []
    candidates += [index_dir_for(ROOT / "out/bench_data/_calib", city, handle.identity), work / "index" / model / city]
    for c in candidates:
        if (c / "index.json").is_file() and store.load_index(c).model_identity == handle.identity:
            return c
    out = work / "index" / model / city
    print(f"  building the index of {city} with {model} -> {out}", flush=True)
    index_build.build_index(handle, vigor_tiles(city_dir(city), height=handle.aerial_channels == 4), out,
                            aerial_mode="features", progress=False)
    return out


def run_replay(bag: Path, loc: Localizer, out: Path, mode: str, city: str, tracking=None) -> dict:
    settings = replace(PipelineSettings(), mode=mode)
    if tracking is not None:
        settings = replace(settings, tracking=tracking)
    load0 = os.getloadavg()[0]
    t0 = time.perf_counter()
    rep = replay(ReplayConfig(bag=str(bag), index=None, out=str(out), pipeline=settings, device="cpu",
                              map_dir=str(city_dir(city))), localizer=loc, origin=loc.index.origin)
    wall = time.perf_counter() - t0
    m = json.loads((out / "metrics.json").read_text())
    return {"tracking": m["tracking"], "trust": {k: m["trust"].get(k) for k in ("availability", "nees_mean", "hmi")},
            "position_error": m["position_error"], "withheld_by_reason": m["withheld_by_reason"],
            "frames": rep.frames, "wall_s": wall, "load_avg_1min": [load0, os.getloadavg()[0]]}


def error_series(out: Path) -> tuple[list[float], list[float]]:
    """(t since the first frame, error or NaN) per frame of a replay's frames.csv."""
    with open(out / "frames.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    t0 = float(rows[0]["t_s"]) if rows else 0.0
    return ([float(r["t_s"]) - t0 for r in rows],
            [float(r["error_m"]) if r["error_m"] and r["status"] == "fix" else math.nan for r in rows])


def plot(results: dict, work: Path, path: Path, duration_s: float) -> None:
    """Error over time of the drives where something was published (the pinhole rigs with the demo model publish
    nothing: their rows would be empty; each run's own tracking_error.png shows its global fixes)."""
    from unifygeo_ros.plots import plt

    keys = [k for k in results if any(r["tracking"]["availability"] for r in results[k].values())]
    fig, axes = plt.subplots(len(keys), 1, figsize=(10, 2.4 * len(keys)), squeeze=False)
    for ax, key in zip(axes[:, 0], keys):
        for mode, style in (("single", "."), ("tracking", "-")):
            if mode in results[key]:
                t, e = error_series(work / "runs" / f"{key}_{mode}")
                ax.semilogy(t, np.maximum(np.asarray(e), 0.05), style, ms=2, lw=1, label=mode)
        tk = results[key].get("tracking", next(iter(results[key].values())))["tracking"]
        if tk["kidnap_at_s"] is not None:
            ax.axvline(tk["kidnap_at_s"], color="r", lw=1, label="kidnap")
        if tk["converged_after_s"] is not None:
            ax.axvline(tk["converged_after_s"], color="g", ls=":", lw=1, label="tracking converged")
        ax.axhline(5.0, color="k", ls="--", lw=0.6)
        ax.set_xlim(0.0, duration_s)
        ax.set_title(key, fontsize=9)
        ax.set_ylabel("error (m)")
        ax.legend(fontsize=7, ncol=4, loc="upper right")
    axes[-1, 0].set_xlabel("time since the first frame (s)")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def _f(v, d=2):
    return "-" if v is None else f"{v:.{d}f}"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--cities", default=DEFAULT_CITIES)
    ap.add_argument("--rigs", default="panorama,pinhole1,pinhole4")
    ap.add_argument("--models", default="demo,fov", help="models/fov is used only when it exists")
    ap.add_argument("--duration", type=float, default=150.0)
    ap.add_argument("--kidnap-at", type=float, default=75.0)
    ap.add_argument("--stage", choices=("bags", "replay", "all", "plot"), default="all",
                    help="plot: redraw the PNG from <out>/tracking_replay.json and the runs")
    ap.add_argument("--modes", default="single,tracking", help="the node modes replayed (default both)")
    ap.add_argument("--track-set", type=track_setting, action="append", default=[], metavar="KEY=VALUE",
                    help="tracking settings on top of the defaults, as unifygeo replay's --track-set")
    ap.add_argument("--work", default="out/bench_tracking_replay")
    ap.add_argument("--tag", default="tracking_replay", help="name of the JSON and PNG written (e.g. tracking_replay_fov "
                                                            "for a run with --models fov)")
    ap.add_argument("--out", default="benchmarks/results")
    args = ap.parse_args(argv)
    import torch

    torch.set_num_threads(1)
    work = ROOT / args.work
    if args.stage == "plot":
        saved = json.loads((ROOT / args.out / f"{args.tag}.json").read_text())
        plot(saved["runs"], work, ROOT / args.out / f"{args.tag}.png", saved["args"]["duration"])
        return 0
    cities, rigs = args.cities.split(","), args.rigs.split(",")
    track_settings = tracking_settings(args.track_set) if args.track_set else None
    models = [m for m in args.models.split(",") if (ROOT / MODELS[m] / "model.safetensors").is_file()]
    machine = {"cpu": platform.processor() or platform.machine(), "cores": os.cpu_count(),
               "load_avg_1min": os.getloadavg()[0], "torch_threads": torch.get_num_threads()}
    print(f"machine: {machine}; models: {models}", flush=True)
    bags = {(c, r): make_bag(work, c, r, args.duration, args.kidnap_at) for c in cities for r in rigs}
    if args.stage == "bags":
        return 0
    results: dict = {}
    for model in models:
        handle = load_model(ROOT / MODELS[model], device="cpu")
        for city in cities:
            loc = Localizer(store.load_index(index_for(work, city, model, handle)), handle)
            loc.localize(np.zeros((handle.ground_hw[1] // 2, handle.ground_hw[1], 3), np.uint8))  # warm-up
            for rig in rigs:
                key = f"{city}_{rig}_{model}"
                results[key] = {}
                for mode in args.modes.split(","):
                    r = run_replay(bags[(city, rig)], loc, work / "runs" / f"{key}_{mode}", mode, city,
                                   track_settings)
                    results[key][mode] = r
                    tk, ac = r["tracking"], r["tracking"]["after_convergence"]
                    print(f"{key:28s} {mode:8s} converged {_f(tk['converged_after_s'], 1)} s, after: median "
                          f"{_f(ac['median_m'])} p95 {_f(ac['p95_m'])} m (n={ac['count']}), recovered "
                          f"{_f(tk['recovered_after_kidnap_s'], 1)} s, NEES {_f(tk['nees_mean'])}/"
                          f"{_f(tk['nees_median'])}, HMI {tk['hmi']}, availability {_f(tk['availability'])}, "
                          f"ms/frame {_f(tk['step_ms_median'], 1)} (+{_f(tk['beyond_single_ms_median'], 1)}), "
                          f"load {r['load_avg_1min'][0]:.1f}-{r['load_avg_1min'][1]:.1f}", flush=True)
    out = ROOT / args.out
    out.mkdir(parents=True, exist_ok=True)
    (out / f"{args.tag}.json").write_text(json.dumps({"machine": machine, "args": vars(args), "models": models,
                                                          "runs": results}, indent=1) + "\n")
    plot(results, work, out / f"{args.tag}.png", args.duration)
    print(f"wrote {out / args.tag}.json and .png")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
