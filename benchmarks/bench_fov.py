"""Benchmark: how localization degrades when the panorama is stitched from a few pinhole cameras.

    python benchmarks/bench_fov.py [--checkpoint models/demo --index models/demo/index] [--queries 40]

For each query panorama (rendered at a known pose in the index's city, random heading) the localizer is run on:
the full panorama; then on partial panoramas stitched (unifygeo_ros.image.stitch) from pinhole views of it for the
rigs below (the unseen part zero, as in ``input_mode: cameras``). Reports, per rig: horizontal coverage, median
position error, recall within 5 / 10 m, median yaw error, mean score. No ROS needed.

Rigs: 4 x 90 deg (front/left/back/right), 3 x 90 deg (front/left/right), 2 x 90 deg (front/back),
1 x 90 deg (front), 1 x 60 deg (front).

The figures only mean something for a model trained with limited fields of view (``mask_fov`` augmentation):
a model trained on full panoramas only sees an out-of-distribution input. Without ``--checkpoint`` (and without
the embedded demo) a random-weights model is used: that exercises the code, and its figures are noise.
"""
from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "test"))
sys.path.insert(0, str(ROOT))

from node_world import build_world, distance_m, heading_error_deg  # noqa: E402

RIGS = {
    "full panorama": None,
    "4 x 90 deg": [("front", 0.0, 90.0), ("left", 90.0, 90.0), ("back", 180.0, 90.0), ("right", -90.0, 90.0)],
    "3 x 90 deg": [("front", 0.0, 90.0), ("left", 90.0, 90.0), ("right", -90.0, 90.0)],
    "2 x 90 deg": [("front", 0.0, 90.0), ("back", 180.0, 90.0)],
    "1 x 90 deg": [("front", 0.0, 90.0)],
    "1 x 60 deg": [("front", 0.0, 60.0)],
}
CAM_W, CAM_H = 320, 240


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--checkpoint", default=None)
    ap.add_argument("--index", default=None)
    ap.add_argument("--queries", type=int, default=40)
    ap.add_argument("--device", default="auto")
    args = ap.parse_args()
    from unifygeo_ros import geo
    from unifygeo_ros.localization.localizer import Localizer
    from unifygeo_ros.image.stitch import PanoramaStitcher, PinholeCamera, intrinsics_for_fov, pinhole_view

    world = build_world(Path(tempfile.mkdtemp(prefix="bench_fov_")), n_queries=args.queries)
    loc = Localizer.from_paths(args.index or world.index, args.checkpoint or world.checkpoint, device=args.device)
    w = world.queries[0].rgb.shape[1]
    report = {"model": "demo" if world.trained else "random weights (figures are noise)", "rigs": {}}
    for name, rig in RIGS.items():
        errs, yaw_errs, scores = [], [], []
        cams = None if rig is None else [PinholeCamera(n, intrinsics_for_fov(CAM_W, CAM_H, fov), CAM_W, CAM_H, yaw)
                                         for n, yaw, fov in rig]
        st = None if cams is None else PanoramaStitcher(cams, w)
        for q in world.queries:
            img = q.rgb if st is None else st.stitch([pinhole_view(q.rgb, c) for c in cams])
            fix = loc.localize(img)
            errs.append(distance_m(q.east_m, q.north_m, fix.east_m, fix.north_m))
            yaw_errs.append(heading_error_deg(fix.yaw_deg, float(geo.heading_to_yaw_deg(q.heading_deg))))
            scores.append(fix.score)
        e = np.array(errs)
        report["rigs"][name] = {
            "coverage": 1.0 if st is None else round(st.coverage, 3),
            "median_error_m": round(float(np.median(e)), 2), "recall_5m": round(float((e <= 5).mean()), 3),
            "recall_10m": round(float((e <= 10).mean()), 3),
            "median_yaw_error_deg": round(float(np.median(yaw_errs)), 1), "mean_score": round(float(np.mean(scores)), 3)}
        print(f"{name:14s} coverage {report['rigs'][name]['coverage']:.2f}  median {np.median(e):6.1f} m  "
              f"<=5 m {(e <= 5).mean():5.1%}  <=10 m {(e <= 10).mean():5.1%}  yaw {np.median(yaw_errs):5.1f} deg  "
              f"score {np.mean(scores):.2f}", flush=True)
    print(json.dumps(report, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
