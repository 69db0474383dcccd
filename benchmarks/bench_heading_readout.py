"""Can a known-orientation model read the error of the heading it was given? (docs/TRACKING.md 'An IMU whose heading
is off'; the measurement behind the ``image_heading`` variant, git d00ef03, not adopted.)

    nice .venv/bin/python benchmarks/bench_heading_readout.py [--checkpoint models/demo]
        [--cities Synth1000011,Synth1000015] [--index-work out/bench_tune] [--queries 40]
        [--errors -20,-10,-5,0,5,10,20] [--out benchmarks/results/heading_readout.json]

Each city's first ``--queries`` north-aligned panoramas are localized with the heading given ``error`` degrees off
(``Localizer.localize_with_maps`` on the tiles holding the truth, so the panorama is rolled by that error before the
network sees it), and the metric head's heading vector is read at the true position (the tiles' vectors at the
truth's cell, weighted by their maps there). A head that reads the rest of the heading within its window (+-1 bin)
returns about minus the error. Reported per error: median, mean and 10th / 90th percentiles of the readout (deg).
Cities and indexes as ``bench_tracking_rates.py`` uses them (``bench_unified_vs_decoupled.prepare`` and
``<index-work>/index/demo/<city>``). Figures only.
"""
from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def readout_deg(loc, image: np.ndarray, true_en: tuple[float, float], error_deg: float) -> float:
    """The compass heading the metric head reads at ``true_en`` for ``image`` rolled by ``error_deg``."""
    ix = loc.index
    e, n = true_en
    rows = np.nonzero((np.abs(ix.en_m[:, 0] - e) <= ix.tile_m / 2) & (np.abs(ix.en_m[:, 1] - n) <= ix.tile_m / 2))[0]
    _, maps = loc.localize_with_maps(image, rows, heading_deg=float(error_deg), global_search=False)
    h, w = maps.maps.shape[1:]
    vec = np.zeros(2)
    for k in range(len(rows)):
        de, dn = e - maps.centres_en_m[k, 0], n - maps.centres_en_m[k, 1]
        c = int(np.clip((de / ix.tile_m + 0.5) * w, 0, w - 1))
        r = int(np.clip((0.5 - dn / ix.tile_m) * h, 0, h - 1))
        vec += float(maps.maps[k, r, c]) * maps.heading_vectors_en[k, :, r, c]
    return math.degrees(math.atan2(vec[0], vec[1]))


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--checkpoint", default="models/demo")
    ap.add_argument("--cities", default="Synth1000011,Synth1000015")
    ap.add_argument("--index-work", default="out/bench_tune")
    ap.add_argument("--queries", type=int, default=40)
    ap.add_argument("--errors", default="-20,-10,-5,0,5,10,20")
    ap.add_argument("--out", default="benchmarks/results/heading_readout.json")
    args = ap.parse_args(argv)

    import torch

    from unifygeo_ros.image.preprocess import load_image
    from unifygeo_ros.index import store
    from unifygeo_ros.localization.localizer import Localizer
    from unifygeo_ros.model.handle import load_model
    from unifygeo_ros.offline.demo import demo_queries

    torch.set_num_threads(1)
    t0, load0 = time.perf_counter(), os.getloadavg()[0]
    handle = load_model(ROOT / args.checkpoint, device="cpu")
    model = Path(args.checkpoint).name
    errors = [float(v) for v in args.errors.split(",")]
    reads: dict[float, list[float]] = {e: [] for e in errors}
    for city in args.cities.split(","):
        ix = store.load_index(ROOT / args.index_work / "index" / model / city)
        loc = Localizer(ix, handle)
        queries = demo_queries(ROOT / "out/bench_data" / city, ix.origin, None)[:args.queries]
        for i, q in enumerate(queries):
            image = load_image(q.path)
            for e in errors:
                reads[e].append(readout_deg(loc, image, q.true_en, e))
            print(f"  {city}: {i + 1}/{len(queries)}", end="\r", file=sys.stderr, flush=True)
        print(file=sys.stderr)
    lines = ["| heading given off by (deg) | readout median | mean | p10 / p90 | |error + readout| median |",
             "|---|---|---|---|---|"]
    rows = []
    for e, v in reads.items():
        v = np.array(v)
        row = {"error_deg": e, "median_deg": float(np.median(v)), "mean_deg": float(v.mean()),
               "p10_deg": float(np.percentile(v, 10)), "p90_deg": float(np.percentile(v, 90)),
               "residual_median_deg": float(np.median(np.abs(e + v))), "queries": len(v)}
        rows.append(row)
        lines.append(f"| {e:+g} | {row['median_deg']:+.1f} | {row['mean_deg']:+.1f} | {row['p10_deg']:+.1f} / "
                     f"{row['p90_deg']:+.1f} | {row['residual_median_deg']:.1f} |")
    print("\n".join(lines))
    out = ROOT / args.out
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"checkpoint": args.checkpoint, "cities": args.cities, "date": time.strftime(
        "%Y-%m-%d %H:%M"), "wall_s": time.perf_counter() - t0, "load_avg_1min": [load0, os.getloadavg()[0]],
        "threads": 1, "results": rows, "table": lines}, indent=1) + "\n")
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
