"""A known-orientation model is given the camera heading (an IMU or compass): how do its fixes degrade when that
heading is wrong, and how does that depend on ``model.heading_window`` (the heading hypotheses its metric head
keeps around the given heading: 0 = that heading alone, 1 = +-1 bin, -1 = all of them)?

    python benchmarks/bench_heading_noise.py [--checkpoint models/demo] [--city out/demo/data/DemoCity] \\
        [--errors 0,5,10,20,45] [--windows -1,0,1] [--out benchmarks/results/heading_noise.json]

The same weights are run with each window (the window is no weight: only which hypotheses count); each variant
gets its own aerial index of the city (built in a temporary folder). The city's panoramas are north-aligned and
the Localizer is told a heading of ``error`` degrees, so the network sees each panorama rotated by that error.
Reported per (window, error): re-ranked R@1 (the fix's tile is the positive), recall within 5 m and the median
position error, as a table, JSON and a plot (``--out`` with ``.png``). ``unifygeo demo`` renders the default city
(out/demo/data/DemoCity). Figures only.
"""
from __future__ import annotations

import argparse
import json
import math
import os
import sys
import tempfile
from pathlib import Path

import numpy as np


def variant(checkpoint: str, window: int):
    """The checkpoint's model with ``model.heading_window = window`` (same weights) as a ModelHandle."""
    from unifygeo_ros.model.handle import from_model
    from unifygeo_ros.model import build_model
    from unifygeo_ros.model.checkpoint import load_checkpoint

    model, cfg, _ = load_checkpoint(checkpoint, map_location="cpu")
    cfg.model.heading_window = int(window)
    cfg.validate()
    other = build_model(cfg)
    other.load_state_dict(model.state_dict())
    return from_model(other.float(), cfg.to_dict(), device="cpu")


def plot(results: list[dict], path: Path) -> None:
    """Recall within 5 m and R@1 against the heading error, one line per window."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(9, 3.4))
    for w in sorted({r["heading_window"] for r in results}):
        rows = [r for r in results if r["heading_window"] == w]
        label = "all hypotheses (-1)" if w < 0 else f"+-{w} bin(s)" if w else "given heading only (0)"
        x = [r["heading_error_deg"] for r in rows]
        axes[0].plot(x, [100 * r["recall_5m"] for r in rows], marker="o", label=label)
        axes[1].plot(x, [100 * r["rerank_r1"] for r in rows], marker="o", label=label)
    for ax, name in zip(axes, ("fixes within 5 m (%)", "R@1 after re-ranking (%)")):
        ax.set_xlabel("error of the given heading (deg)")
        ax.set_ylabel(name)
        ax.set_ylim(0, 100)
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=8, title="model.heading_window", title_fontsize=8)
    fig.suptitle(f"known-orientation demo model on DemoCity ({rows[0]['queries']} panoramas)", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--checkpoint", default="models/demo")
    ap.add_argument("--city", default="out/demo/data/DemoCity", help="a city folder with geo.json (unifygeo demo)")
    ap.add_argument("--errors", default="0,5,10,20,45", help="heading errors in degrees")
    ap.add_argument("--windows", default="-1,0,1", help="model.heading_window values")
    ap.add_argument("--out", default="benchmarks/results/heading_noise.json")
    args = ap.parse_args(argv)

    import torch

    from unifygeo_ros.offline.demo import demo_queries
    from unifygeo_ros.index import build as index_build
    from unifygeo_ros.index import store, tiles
    from unifygeo_ros.localization.localizer import Localizer
    from unifygeo_ros.image.preprocess import load_image

    torch.set_num_threads(int(os.environ.get("UNIFYGEO_BENCH_THREADS", "2")))
    errors = [float(v) for v in args.errors.split(",")]
    windows = [int(v) for v in args.windows.split(",")]
    city_dir = Path(args.city)
    if not (city_dir / "geo.json").exists():
        raise SystemExit(f"{city_dir}/geo.json not found: run `unifygeo demo` first (it renders DemoCity)")
    handles = {w: variant(args.checkpoint, w) for w in windows}
    first = handles[windows[0]]
    bins = int(first.config["model"]["orientation_bins"])
    src = tiles.vigor_tiles(city_dir, height=first.aerial_channels == 4)
    queries = demo_queries(city_dir, src.origin, None)
    images = [load_image(q.path) for q in queries]
    results, lines = [], []
    for w in windows:
        handle = handles[w]
        with tempfile.TemporaryDirectory() as tmp:
            index_build.build_index(handle, src, Path(tmp) / "ix", progress=False)
            loc = Localizer(store.load_index(Path(tmp) / "ix"), handle)
            for e in errors:
                fixes = loc.localize_batch(images, headings=[e] * len(images))
                err = np.array([math.hypot(f.east_m - q.true_en[0], f.north_m - q.true_en[1])
                                for q, f in zip(queries, fixes)])
                r1 = float(np.mean([f.tile_id == q.positive for q, f in zip(queries, fixes)]))
                row = {"heading_window": w, "heading_error_deg": e, "rerank_r1": r1,
                       "recall_5m": float((err <= 5).mean()), "median_m": float(np.median(err)),
                       "queries": len(queries)}
                results.append(row)
                lines.append(f"| {w} | {e:g} | {100 * r1:.0f} | {100 * row['recall_5m']:.0f} | "
                              f"{row['median_m']:.1f} |")
                print(lines[-1], file=sys.stderr)
    table = ("| heading_window | heading error (deg) | R@1 after re-ranking % | within 5 m % | median m |\n"
             "|---|---|---|---|---|\n" + "\n".join(lines))
    print(table)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"checkpoint": args.checkpoint, "city": str(city_dir), "bin_deg": 360.0 / bins,
                               "results": results, "table_markdown": table}, indent=1) + "\n")
    plot(results, out.with_suffix(".png"))
    print(f"plot: {out.with_suffix('.png')}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
