"""Benchmark: can a filter trust a pinhole rig's single-frame fixes? The integrity gate on limited fields of view.

    python benchmarks/bench_fov_trust.py --checkpoint models/fov [--checkpoint runs/X/ckpt ...] [--label ...]
                                         [--views "4 x 90,90"] [--same-area] [--queries N] [--out runs/fov_trust]

``unifygeo calibrate`` fits a checkpoint's calibration on full panoramas; models/fov is used on pinhole rigs. This
measures what the node's gate (``gate_fix``: an image like a camera's, the calibrated descriptor floor, protection
level at most the limit, ``min_score``) lets through of a rig's fixes, made with each checkpoint's stored
``calibration.json``: the rig images are bench_fov.py's
(320 x 240 cameras cut from the city's 512-px panoramas, a robot heading per query, stitched as the node stitches
them), localized by the Localizer against each city's own index (built once per model under ``--data/_calib``, as
``unifygeo calibrate`` does: :func:`unifygeo_ros.offline.calibrate.collect` with a ``view``). Per checkpoint, view
and gate limit: availability (accepted / queries), truth inside the 1- / 2-sigma ellipses, mean NEES, HMI (error >
protection level) and the accepted fixes more than 20 m off. Cities: the five cross-area benchmark cities (never
trained or fitted on), or with ``--same-area`` the five calibration cities (to choose without touching the
measurement). Writes ``--out/fov_trust.json``. Figures only; nothing is asserted.
"""
from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(ROOT))

from bench_fov import PANO_W, VIEWS, labels_and_views, rig, rig_image, robot_heading_deg  # noqa: E402
from bench_unified_vs_decoupled import CROSS_AREA_SEEDS, SAME_AREA_SEEDS, prepare  # noqa: E402

LIMITS_M = (20.0, 50.0, 100.0)
GROSS_M = 20.0


def figures(queries, limits_m=LIMITS_M) -> dict:
    """The gate's figures at each protection-level limit: a query's fix (made with the checkpoint's calibration) is
    accepted when the node's gate (:func:`~unifygeo_ros.localization.gate.gate_fix`, default ``min_score``) passes it
    at that limit."""
    from unifygeo_ros.localization.gate import GateSettings, gate_fix
    from unifygeo_ros.localization.integrity import trust_report

    err = np.array([q.evidence.fix_en_m - q.truth_en_m for q in queries])
    cov = np.array([q.fix.covariance_en_m2 for q in queries])
    pl = np.array([q.fix.protection_level_m for q in queries])
    dist = np.linalg.norm(err, axis=1)
    out = {}
    for limit in limits_m:
        accepted = np.array([gate_fix(q.fix, GateSettings.min_score, limit)[0] == "" for q in queries])
        r = trust_report(err, cov, pl, accepted).to_json()
        r.pop("reliability", None)
        r.pop("expected", None)
        r["accepted_gross"] = int(np.sum(accepted & (dist > GROSS_M)))
        out[f"{limit:g}"] = r
    out["all_fixes"] = {"within_5m": float(np.mean(dist <= 5.0)), "median_m": float(np.median(dist)),
                        "queries": int(dist.size)}
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--checkpoint", action="append", required=True, help="model folder (repeat for several)")
    ap.add_argument("--label", action="append", default=None, help="a name per --checkpoint (default: the path)")
    ap.add_argument("--data", default="out/bench_fov_data", help="bench_fov.py's 512-px cities")
    ap.add_argument("--views", default="4 x 90,90", help="comma-separated subset of " + ", ".join(VIEWS))
    ap.add_argument("--queries", type=int, default=None, help="queries per city (default: all 100)")
    ap.add_argument("--same-area", action="store_true", help="the five calibration cities instead of the cross-area")
    ap.add_argument("--out", default="benchmarks/results")
    args = ap.parse_args(argv)
    import torch

    from unifygeo_ros.localization.posterior import load_calibration
    from unifygeo_ros.model.handle import load_model
    from unifygeo_ros.offline.calibrate import collect

    torch.set_num_threads(1)
    labels, views = labels_and_views(args)
    root = Path(args.data)
    seeds = SAME_AREA_SEEDS if args.same_area else CROSS_AREA_SEEDS
    dirs = [root / c for c in prepare(root, seeds, 96, PANO_W)]
    t0 = time.time()
    results: dict = {}
    for ckpt, label in zip(args.checkpoint, labels):
        handle, cal = load_model(ckpt, device="cpu"), load_calibration(ckpt)
        for view in views:
            cams = rig(view)

            def seen(pano: np.ndarray, i: int, cams=cams) -> np.ndarray:
                return rig_image(pano, cams, robot_heading_deg(i))

            queries = collect(handle, dirs, root / "_calib", args.queries, progress=False, view=seen, calibration=cal)
            r = figures(queries)
            results.setdefault(label, {})[view] = r
            for limit in LIMITS_M:
                g = r[f"{limit:g}"]
                f = (lambda v, k=1.0: "-" if v is None else f"{k * v:.1f}")
                print(f"{label:14s} {view:7s} PL <= {limit:4g} m: availability {100 * g['availability']:5.1f} %  "
                      f"1/2-sigma {f(g['inside_1sigma'], 100)} / {f(g['inside_2sigma'], 100)} %  NEES "
                      f"{f(g['nees_mean'])}  HMI {g['hmi']}  accepted > {GROSS_M:g} m off {g['accepted_gross']}"
                      f"  (of {g['frames']})", flush=True)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    doc = {"checkpoints": dict(zip(labels, args.checkpoint)), "views": views,
           "cities": "same-area (seeds 100-104)" if args.same_area else "cross-area (seeds 1,000,001-1,000,005)",
           "queries_per_city": args.queries or 100, "gross_m": GROSS_M,
           "machine": f"{platform.machine()}, {platform.processor() or '?'}, torch 1 thread",
           "date": time.strftime("%Y-%m-%d %H:%M"), "wall_s": round(time.time() - t0, 1), "results": results}
    (out / "fov_trust.json").write_text(json.dumps(doc, indent=1, default=float) + "\n")
    print(f"written {out / 'fov_trust.json'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
