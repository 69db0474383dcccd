"""``unifygeo eval``'s command line: read a VIGOR-layout folder and a checkpoint, run
:func:`~unifygeo_ros.offline.evaluate.evaluate`, write the JSON report, the table, the per-query CSV and the plots
(:mod:`~unifygeo_ros.offline.eval_report`)."""
from __future__ import annotations

import argparse
import json
from pathlib import Path

from unifygeo_ros.data.vigor import VigorDataset
from unifygeo_ros.data.vigor_layout import CROSS_TEST_CITIES, CROSS_TRAIN_CITIES, check_city_folders, resolve_cities
from unifygeo_ros.model.backends import add_backend_arguments, backend_from_args
from unifygeo_ros.model.handle import rerank_k_of
from unifygeo_ros.offline.eval_report import (PER_QUERY_HEADER, format_report, json_default, save_report_plots,
                                              write_per_query_csv)
from unifygeo_ros.offline.evaluate import evaluate, limit_indices, load_for_eval

#: ``--labels`` -> the reader's ``corrected`` argument
LABELS = {"corrected": True, "original": False, "auto": "auto"}


def configure_parser(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--data", required=True, help="VIGOR-layout root (real VIGOR or `unifygeo synth` output)")
    parser.add_argument("--checkpoint", required=True, help="model checkpoint folder")
    parser.add_argument("--split", choices=("same", "cross"), default="same",
                        help="same: same_area_balanced_test.txt queries; cross: every panorama of the test cities")
    parser.add_argument("--cities", default=None,
                        help="comma-separated cities (default: all four for same, SanFrancisco,Chicago for cross)")
    parser.add_argument("--json", required=True, help="write the report (JSON) here")
    parser.add_argument("--plots", default=None, help="write the error CDF and examples into this folder")
    parser.add_argument("--examples", type=int, default=4, help="example figures with --plots (default 4)")
    parser.add_argument("--top-k", type=int, default=None,
                        help="candidates localized and re-ranked (default: the checkpoint's loss.rerank_k, what the "
                             "Localizer and the node re-rank)")
    parser.add_argument("--per-query", default=None, metavar="FILE.csv",
                        help="one row per query: " + ",".join(PER_QUERY_HEADER))
    parser.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--workers", type=int, default=2, help="data loading processes (0: in-process)")
    parser.add_argument("--orientation", choices=("known", "unknown"), default="known",
                        help="unknown: each panorama rotated by a fixed random heading (seeded per query)")
    parser.add_argument("--labels", choices=tuple(LABELS), default="corrected",
                        help="position labels: corrected (HC-Net, default), original VIGOR, or auto (corrected "
                             "where present, else original)")
    parser.add_argument("--original-mpp", action="store_true",
                        help="the original VIGOR scale, 0.114 m/px at 640 px for every city (default: the per-city "
                             "CCVPE/HC-Net scales); cities with a geo.json keep their exact scale")
    parser.add_argument("--limit", type=int, default=None,
                        help="evaluate N queries spread evenly over the split (the gallery stays complete)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the unknown-orientation headings")
    parser.add_argument("--no-progress", action="store_true", help="no progress bars")
    parser.add_argument("--no-tile-assignment", action="store_true",
                        help="re-ranked list = the learned order alone (default: the candidate holding the fix "
                             "most centrally goes first)")
    add_backend_arguments(parser)


def run(args: argparse.Namespace) -> int:
    backend = backend_from_args(args)
    cities = [c.strip() for c in args.cities.split(",") if c.strip()] if args.cities else None
    check_city_folders(args.data, resolve_cities(args.split, False, cities, CROSS_TRAIN_CITIES, CROSS_TEST_CITIES),
                       "--cities A,B")
    model, cfg, meta = load_for_eval(args.checkpoint, args.device, backend)
    top_k = args.top_k if args.top_k is not None else rerank_k_of(cfg.to_dict())
    ground_hw = tuple(int(v) for v in cfg.model.ground_hw)
    query_ds = VigorDataset(args.data, cities, split=args.split, train=False, ground_size_hw=ground_hw,
                            aerial_px=int(cfg.model.aerial_px), orientation=args.orientation,
                            corrected=LABELS[args.labels], seed=args.seed, original_mpp=args.original_mpp,
                            aerial_height=bool(cfg.model.aerial_height))
    gallery_ds = query_ds.gallery()
    indices = limit_indices(len(query_ds), args.limit)
    with_plots = bool(args.plots)
    report = evaluate(model, query_ds, gallery_ds, top_k=top_k, batch_size=args.batch_size,
                      num_workers=args.workers, query_indices=indices,
                      num_examples=args.examples if with_plots else 0, progress=not args.no_progress,
                      tile_assignment=not args.no_tile_assignment,
                      extra={"checkpoint": {"path": str(args.checkpoint), "step": meta.step,
                                            "model_hash": meta.model_hash},
                             "config": cfg.to_dict(),
                             "data": {"root": str(args.data), "split": args.split, "cities": list(query_ds.cities),
                                      "orientation": args.orientation, "labels": args.labels,
                                      "original_mpp": bool(args.original_mpp),
                                      "limit": args.limit, "top_k": top_k, "backend": backend.backend,
                                      "threads": backend.threads,
                                      "device": str(next(model.parameters()).device)}})
    out = Path(args.json)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report.to_dict(), indent=2, default=json_default) + "\n")
    print(format_report(report))
    print(f"report: {out}")
    if args.per_query:
        print(f"per-query fixes: {write_per_query_csv(report, args.per_query)}")
    if with_plots:
        paths = save_report_plots(report, args.plots)
        print(f"plots: {len(paths)} figures in {args.plots}")
    return 0


__all__ = ["LABELS", "configure_parser", "run"]
