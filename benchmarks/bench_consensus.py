"""Fit the consensus step's two numbers (``model.consensus_radius_m``, ``model.consensus_temperature``) on the
benchmark cities - never on the demo city, which stays the held-out test.

    python benchmarks/bench_consensus.py --checkpoint models/demo [--data out/bench_data2] \\
        [--radii 3,5,8] [--temperatures 1,2,3,4,6] [--out benchmarks/results/consensus_sweep.json]

The same weights are evaluated with the consensus off and with every (radius, temperature) of the grid on the
ten cities of ``bench_unified_vs_decoupled.py`` (five same-area, five cross-area; each city's queries against its
own 49 tiles, pooled; the cities are written there first if missing). Reported per setting: R@1 after re-ranking
(consensus + tile assignment) and hierarchical recall within 5 m, as a table, JSON and a plot (``--out`` with
``.png``). The consensus needs no training: it only decides which candidate's map gives the fix (see
``unifygeo_ros/model/rerank.py``). Figures only.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_unified_vs_decoupled import CROSS_AREA_SEEDS, SAME_AREA_SEEDS, evaluate_system, prepare  # noqa: E402


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--checkpoint", default="models/demo")
    ap.add_argument("--data", default="out/bench_data2")
    ap.add_argument("--radii", default="3,5,8")
    ap.add_argument("--temperatures", default="1,2,3,4,6")
    ap.add_argument("--out", default="benchmarks/results/consensus_sweep.json")
    args = ap.parse_args(argv)
    import torch

    from unifygeo_ros.offline.evaluate import load_for_eval

    torch.set_num_threads(int(os.environ.get("UNIFYGEO_BENCH_THREADS", "2")))
    model, cfg, meta = load_for_eval(args.checkpoint, "auto")
    root = Path(args.data)
    width = int(cfg.model.ground_hw[1])
    settings = {"same-area": prepare(root, SAME_AREA_SEEDS, int(cfg.model.aerial_px), width),
                "cross-area": prepare(root, CROSS_AREA_SEEDS, int(cfg.model.aerial_px), width)}
    grid = [(0.0, 1.0)] + [(float(r), float(t)) for r in args.radii.split(",") for t in args.temperatures.split(",")]
    rows = []
    for radius, temperature in grid:
        cfg.model.consensus_radius_m, cfg.model.consensus_temperature = radius, temperature
        model.cfg.consensus_radius_m, model.cfg.consensus_temperature = radius, temperature
        row = {"radius_m": radius, "temperature": temperature}
        t0 = time.perf_counter()
        for setting, cities in settings.items():
            rep = evaluate_system(model, cfg, root, cities, cfg.data.orientation)
            row[setting] = {"r1": rep["hierarchical"]["rerank"]["r1"],
                            "recall_5m": rep["hierarchical"]["rerank"]["recall_5m"],
                            "r1_learned": rep["rerank_detail"]["r1_learned_order"]}
        rows.append(row)
        print(f"[consensus] radius {radius:g} m, T {temperature:g}: {time.perf_counter() - t0:.0f} s",
              file=sys.stderr)
    lines = ["| radius m | temperature | same-area R@1 | same-area < 5 m | cross-area R@1 | cross-area < 5 m |",
             "|---|---|---|---|---|---|"]
    for r in rows:
        name = ("off", "-") if r["radius_m"] == 0 else (f"{r['radius_m']:g}", f"{r['temperature']:g}")
        lines.append(f"| {name[0]} | {name[1]} | {100 * r['same-area']['r1']:.1f} | "
                     f"{100 * r['same-area']['recall_5m']:.1f} | {100 * r['cross-area']['r1']:.1f} | "
                     f"{100 * r['cross-area']['recall_5m']:.1f} |")
    table = "\n".join(lines)
    print(table)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"checkpoint": args.checkpoint, "model_hash": meta.model_hash, "rows": rows,
                               "table_markdown": table, "same_area_seeds": SAME_AREA_SEEDS,
                               "cross_area_seeds": CROSS_AREA_SEEDS}, indent=1) + "\n")
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(9, 3.4), sharey=True)
    off = rows[0]
    for ax, setting in zip(axes, ("same-area", "cross-area")):
        for radius in sorted({r["radius_m"] for r in rows[1:]}):
            sel = [r for r in rows[1:] if r["radius_m"] == radius]
            ax.plot([r["temperature"] for r in sel], [100 * r[setting]["r1"] for r in sel], marker="o",
                    label=f"R@1, radius {radius:g} m")
            ax.plot([r["temperature"] for r in sel], [100 * r[setting]["recall_5m"] for r in sel], marker="x",
                    ls="--", label=f"< 5 m, radius {radius:g} m")
        ax.axhline(100 * off[setting]["r1"], color="k", lw=1, label="R@1, consensus off")
        ax.axhline(100 * off[setting]["recall_5m"], color="k", lw=1, ls="--", label="< 5 m, consensus off")
        ax.set_title(setting, fontsize=9)
        ax.set_xlabel("temperature of the re-rank scores")
    axes[0].set_ylabel("%")
    axes[1].legend(fontsize=6, loc="lower left")
    fig.tight_layout()
    fig.savefig(out.with_suffix(".png"), dpi=110)
    print(f"wrote {out} and {out.with_suffix('.png')}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
