"""Unified (UnifyGeo) vs decoupled (retrieval-only + localization-only), same-area vs cross-area, with and
without re-ranking, on synthetic cities in the VIGOR layout.

    python benchmarks/bench_unified_vs_decoupled.py --unified runs/demo/ckpt \\
        [--decoupled runs/retrieval_only/ckpt runs/localization_only/ckpt] [--out benchmarks/results/uvd.json]

Same-area cities are cities the training stream rendered (seeds ``SAME_AREA_SEEDS``: the stream of a run with
``train.seed 0`` renders city seeds 0, 1, 2, ... at 280 m; every new panorama of such a city is a same-area query).
Cross-area cities have seeds no training run uses (``CROSS_AREA_SEEDS``). Both are written with the stream's own
city size, style rule, raster cell and image sizes, then read back through the VIGOR reader like real data, and
evaluated with :func:`unifygeo_ros.offline.evaluate.evaluate`: by default each city's queries against that city's own
49 tiles (pooled over the five cities), or with ``--gallery joint`` one gallery of all five cities' tiles.
Prints a Markdown table and writes the full reports as JSON.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import numpy as np

from unifygeo_ros import cli
from unifygeo_ros.data import world as W

SAME_AREA_SEEDS = (100, 101, 102, 103, 104)
CROSS_AREA_SEEDS = (1_000_001, 1_000_002, 1_000_003, 1_000_004, 1_000_005)
CITY_SIZE_M = 280.0  # the training stream's city size
PANOS_PER_CITY = 100


def stream_style(seed: int) -> str:
    """The style the training stream (CityStream, style "any") draws for this city seed."""
    rng = np.random.default_rng([seed & 0xFFFFFFFF, 0x57EA])
    return W.STYLES[int(rng.integers(len(W.STYLES)))]


def city_name(seed: int) -> str:
    return f"Synth{seed}"


def _city_is_current(city_dir: Path, aerial_px: int, pano_width: int) -> bool:
    """The city folder was written for these image sizes, with surface heights (satellite_height/)."""
    try:
        meta = json.loads((city_dir / "geo.json").read_text())
    except (OSError, ValueError):
        return False
    return (int(meta.get("tile_px", -1)) == aerial_px and int(meta.get("pano_px", [-1])[0]) == pano_width
            and (city_dir / "satellite_height").is_dir())


def prepare(root: Path, seeds, aerial_px: int, pano_width: int) -> list[str]:
    """Write the cities (skipping those already there) and return their names."""
    names = []
    for seed in seeds:
        name = city_name(seed)
        if not _city_is_current(root / name, aerial_px, pano_width):
            rc = cli.main(["synth", "--out", str(root), "--city", name, "--seed", str(seed), "--overwrite",
                           "--size-m", str(CITY_SIZE_M), "--panos", str(PANOS_PER_CITY),
                           "--style", stream_style(seed), "--tile-px", str(aerial_px),
                           "--pano-width", str(pano_width), "--cell-m", "0.5", "--no-progress"])
            if rc:
                raise SystemExit(f"synth failed for {name}")
        names.append(name)
    return names


def evaluate_system(model, cfg, root: Path, cities: list[str], orientation: str, gallery: str = "per-city") -> dict:
    """One report over all queries of ``cities``. ``gallery="per-city"``: each city's queries are searched in
    that city's own tiles (an index of the area the robot is in; the issue's "on a city"), and the per-query
    results are pooled; ``"joint"``: one gallery of every city's tiles."""
    from unifygeo_ros.data.vigor import VigorDataset
    from unifygeo_ros.offline.evaluate import evaluate, summarise

    def dataset(names):
        return VigorDataset(str(root), names, split="cross", train=False,
                            ground_size_hw=tuple(cfg.model.ground_hw), aerial_px=int(cfg.model.aerial_px),
                            orientation=orientation, corrected=True, seed=0,
                            aerial_height=bool(cfg.model.aerial_height))

    k = int(cfg.loss.rerank_k)
    if gallery == "joint":
        ds = dataset(cities)
        return evaluate(model, ds, ds.gallery(), top_k=k, batch_size=32).to_dict()
    parts, sizes = [], set()
    for name in cities:
        ds = dataset([name])
        parts.append(evaluate(model, ds, ds.gallery(), top_k=k, batch_size=32).per_query)
        sizes.add(len(ds.gallery()))
    if len(sizes) != 1:
        raise SystemExit(f"per-city pooling needs equal gallery sizes, got {sorted(sizes)}")
    size = sizes.pop()
    pooled = {key: np.concatenate([p[key] for p in parts]) for key in parts[0]}
    consensus = (float(cfg.model.consensus_radius_m), float(cfg.model.consensus_temperature))
    rep = summarise(pooled, size, k, tile_assignment=True, consensus=consensus).to_dict()
    rep["gallery"] = f"per-city: {len(cities)} galleries of {size} tiles"
    return rep


def row(name: str, setting: str, rep: dict, rerank: bool) -> str:
    h = rep["hierarchical"]["rerank" if rerank else "no_rerank"]
    r = rep["retrieval"]
    iso = rep["metric_isolated"]
    pct = lambda v: f"{100 * v:.1f}"  # noqa: E731
    hr1 = pct(h["r1"])
    detail = rep.get("rerank_detail")
    if rerank and detail and detail["tile_assignment"]:
        hr1 += f" ({pct(detail['r1_learned_order'])})"  # the learned order alone, before the tile assignment
    return (f"| {name} | {setting} | {'yes' if rerank else 'no'} | {pct(r['r1'])} | {pct(r['r5'])} | "
            f"{pct(r['hit'])} | {hr1} | {h['median_m']:.1f} | {pct(h['recall_1m'])} | "
            f"{pct(h['recall_5m'])} | {iso['median_m']:.2f} | {pct(iso['recall_1m'])} | {pct(iso['recall_5m'])} | "
            f"{rep['queries']} |")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--unified", nargs="+", required=True, metavar="CKPT",
                    help="one or more unified checkpoints (e.g. a snapshot at the decoupled runs' step and the final)")
    ap.add_argument("--decoupled", nargs=2, metavar=("RETRIEVAL_CKPT", "LOCALIZATION_CKPT"))
    ap.add_argument("--data", default="out/bench_data", help="where the evaluation cities are written")
    ap.add_argument("--gallery", choices=("per-city", "joint"), default="per-city",
                    help="search each city's queries in its own tiles (default) or in one gallery of all cities")
    ap.add_argument("--out", default="benchmarks/results/unified_vs_decoupled.json")
    args = ap.parse_args(argv)

    import torch

    from unifygeo_ros.offline.evaluate import load_for_eval
    from unifygeo_ros.model.decoupled import DecoupledModel

    torch.set_num_threads(int(os.environ.get("UNIFYGEO_BENCH_THREADS", "2")))
    systems = []
    for ck in args.unified:
        model, cfg, meta = load_for_eval(ck, "auto")
        systems.append((f"unified ({ck}, step {meta.step})", model, cfg))
    if args.decoupled:
        ret, rcfg, rmeta = load_for_eval(args.decoupled[0], "auto")
        loc, lcfg, lmeta = load_for_eval(args.decoupled[1], "auto")
        systems.append((f"decoupled (steps {rmeta.step}+{lmeta.step})", DecoupledModel(ret, loc), lcfg))
    cfg0 = systems[0][2]
    orientation = cfg0.data.orientation
    root = Path(args.data)
    pano_width = int(cfg0.model.ground_hw[1])
    settings = {"same-area": prepare(root, SAME_AREA_SEEDS, int(cfg0.model.aerial_px), pano_width),
                "cross-area": prepare(root, CROSS_AREA_SEEDS, int(cfg0.model.aerial_px), pano_width)}
    results, lines = {}, []
    for name, model, cfg in systems:
        for setting, cities in settings.items():
            t0 = time.perf_counter()
            rep = evaluate_system(model, cfg, root, cities, orientation, args.gallery)
            results[f"{name} / {setting}"] = rep
            print(f"[bench] {name} {setting}: {time.perf_counter() - t0:.0f} s", file=sys.stderr)
            lines.append(row(name, setting, rep, False))
            lines.append(row(name, setting, rep, True))
    header = ("| system | setting | re-rank | R@1 | R@5 | hit | hier. R@1 (learned order) | hier. median m | "
              "hier. <1 m | hier. <5 m | isolated median m | isolated <1 m | isolated <5 m | queries |\n"
              "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|")
    table = header + "\n" + "\n".join(lines)
    print(table)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"table_markdown": table, "orientation": orientation, "gallery": args.gallery,
                               "same_area_seeds": SAME_AREA_SEEDS, "cross_area_seeds": CROSS_AREA_SEEDS,
                               "city_size_m": CITY_SIZE_M, "reports": results}, indent=1, default=float) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
