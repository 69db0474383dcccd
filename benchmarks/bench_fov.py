"""Benchmark: limited fields of view - pinhole cameras stitched as the node stitches them, several models side by side.

    python benchmarks/bench_fov.py --checkpoint models/demo --checkpoint models/fov [--label demo --label fov]
                                   [--data out/bench_fov_data] [--demo-data out/demo/data] [--queries N]
                                   [--distortion MODEL:D [--ignore-distortion]]

Cities never trained on: the five cross-area benchmark cities (seeds 1,000,001-1,000,005, the stream's style,
rendered here with 512 x 256 panoramas into ``--data``; each searched in its own 49 tiles) and DemoCity (seed 2026,
``make demo``'s, 512 x 256). Known orientation (the demo's setting): each query gets a robot heading drawn from its
index; the cameras (320 x 240 px, 4:3, square pixels, pitch 0) are mounted on the robot and see the scene of the
query's north-aligned panorama rolled to that heading (:func:`~unifygeo_ros.image.stitch.pinhole_view`); their
images are stitched at 512 px by :func:`~unifygeo_ros.image.stitch.stitcher_for` (``input_mode: cameras``), rolled
back by the heading as the Localizer does, and resized to the model's input. Views:

* ``360``: the panorama itself (no cameras);
* ``4 x 90``: front / left / back / right, 90 deg each (full horizontal coverage, limited vertical extent);
* ``180``: two 90-deg cameras side by side looking front-left and front-right (no pinhole camera sees 180 deg);
* ``120`` and ``90``: one front camera.

Per model, view and set (:func:`unifygeo_ros.offline.evaluate.evaluate`, the Localizer's fix choice, K = the
checkpoint's ``loss.rerank_k``): R@1 of the descriptors, R@1 after re-ranking (the re-ranked fix's tile is the
positive), hierarchical recall within 5 / 10 m and the median error of the re-ranked fix; and the share of queries
the integrity gate's out-of-distribution test lets through (:mod:`unifygeo_ros.localization.input_check`: the
image statistics of the stitched panorama, and - for a checkpoint with ``calibration.json`` - the best descriptor
cosine against the city's tiles at or above the calibrated floor). With several checkpoints, each after the first is
compared with it query by query (within 5 m: the difference, its 95 % paired bootstrap interval, the queries only one
of the two has). Writes ``--out/fov.json`` and ``--out/fov.png``.
Figures only; nothing is asserted.
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

from bench_unified_vs_decoupled import CROSS_AREA_SEEDS, SAME_AREA_SEEDS, prepare  # noqa: E402
from unifygeo_ros.data.vigor import VigorDataset  # noqa: E402
from unifygeo_ros.image.preprocess import (load_image, normalize_to_tensor, resize_image, roll_panorama,  # noqa: E402
                                           validate_panorama)
from unifygeo_ros.image.stitch import PinholeCamera, intrinsics_for_fov, pinhole_view, stitcher_for  # noqa: E402

#: view name -> cameras as (yaw deg REP-103 in the robot frame, horizontal FOV deg); None = the panorama itself
VIEWS: dict[str, list[tuple[float, float]] | None] = {
    "360": None,
    "4 x 90": [(0.0, 90.0), (90.0, 90.0), (180.0, 90.0), (-90.0, 90.0)],
    "180": [(45.0, 90.0), (-45.0, 90.0)],
    "120": [(0.0, 120.0)],
    "90": [(0.0, 90.0)],
}
CAM_W, CAM_H = 320, 240
STITCH_W = 512  # the node's default panorama_width (--stitch-width)
PANO_W = 512    # the benchmark cities' panoramas


def rig(view: str, lens: tuple[str, tuple] = ("", ())) -> list[PinholeCamera] | None:
    """The view's cameras (320 x 240, ``K`` from the field of view), with lens distortion ``lens`` = (model, D)."""
    spec = VIEWS[view]
    if spec is None:
        return None
    return [PinholeCamera(f"cam{i}", intrinsics_for_fov(CAM_W, CAM_H, fov), CAM_W, CAM_H, yaw, 0.0, *lens)
            for i, (yaw, fov) in enumerate(spec)]


def robot_heading_deg(index: int) -> float:
    """The query's robot heading (compass), the same for every model and view."""
    return float(np.random.default_rng([int(index), 0xF0B]).uniform(-180.0, 180.0))


def rig_image(pano: np.ndarray, cams: list[PinholeCamera] | None, heading_deg: float,
              stitch_w: int = STITCH_W, stitched_as: list[PinholeCamera] | None = None) -> np.ndarray:
    """What the node (stitching at ``stitch_w`` px) and the Localizer make of the rig's images of this north-aligned
    panorama's scene; ``stitched_as``: the cameras the stitcher is told of (default ``cams``; without their lens
    distortion: what a node that ignores CameraInfo's D did)."""
    if cams is None:
        return pano
    robot_frame, _ = roll_panorama(pano, heading_deg)  # the scene as the robot, facing heading_deg, sees it
    stitched = stitcher_for(stitched_as or cams, stitch_w).stitch([pinhole_view(robot_frame, c) for c in cams])
    return roll_panorama(stitched, -heading_deg)[0]  # Localizer._checked: north-aligned for the model


class RigQueries(VigorDataset):
    """A city's queries as seen through one view's rig (ground images cached across models: same for all)."""

    view = "360"
    stitch_w = STITCH_W
    lens: tuple = ("", ())   #: the cameras' lens distortion (model, D)
    ignore_lens = False      #: stitch as if the images were rectified (D ignored)
    _cache: dict = {}

    def load_ground(self, index: int, delta_heading_deg: float = 0.0):
        return normalize_to_tensor(self.view_image(index)[0]), 0.0

    def view_image(self, index: int) -> tuple[np.ndarray, str]:
        """(the model-size image, the input check's verdict on the stitched panorama: "" = looks like a camera's)"""
        from unifygeo_ros.localization.input_check import camera_image_problem

        key = (self.pano_paths[index], self.view, self.ground_size_hw, self.stitch_w, self.lens, self.ignore_lens)
        if key not in self._cache:
            pano = validate_panorama(load_image(self.pano_paths[index]))
            full = rig_image(pano, rig(self.view, self.lens), robot_heading_deg(index), self.stitch_w,
                             rig(self.view) if self.ignore_lens else None)
            self._cache[key] = (resize_image(full, self.ground_size_hw), camera_image_problem(full))
        return self._cache[key]


def gate_passes(model, ds: RigQueries, indices: list[int], floor: float) -> tuple[np.ndarray, np.ndarray]:
    """Per query: (the image check passes, the best descriptor cosine against the city's tiles reaches ``floor``)."""
    import torch

    with torch.inference_mode():
        g = torch.stack([ds.load_ground(i)[0] for i in indices])
        a = torch.stack([ds.load_aerial(t) for t in range(len(ds.gallery()))])
        cos = model.similarity(model.encode_ground(g), model.encode_aerial(a)).max(dim=1).values.numpy()
    image_ok = np.array([ds.view_image(i)[1] == "" for i in indices])
    return image_ok, cos >= floor


def evaluate_view(model, cfg, city_dirs: list[Path], view: str, limit: int | None, floor: float,
                  stitch_w: int = STITCH_W, lens: tuple = ("", ()), ignore_lens: bool = False) -> dict:
    """Per-city galleries, queries pooled: the figures of one model and view on one set of cities."""
    from unifygeo_ros.offline.evaluate import evaluate, summarise

    parts, sizes, image_ok, cos_ok = [], set(), [], []
    for city_dir in city_dirs:
        ds = RigQueries(str(city_dir.parent), [city_dir.name], split="cross", train=False,
                        ground_size_hw=tuple(cfg.model.ground_hw), aerial_px=int(cfg.model.aerial_px),
                        orientation=cfg.data.orientation, corrected=True, seed=0,
                        aerial_height=bool(cfg.model.aerial_height))
        ds.view, ds.stitch_w, ds.lens, ds.ignore_lens = view, stitch_w, lens, ignore_lens
        idx = list(range(len(ds) if limit is None else min(limit, len(ds))))
        parts.append(evaluate(model, ds, ds.gallery(), top_k=int(cfg.loss.rerank_k), batch_size=32,
                              query_indices=idx).per_query)
        sizes.add(len(ds.gallery()))
        ok_img, ok_cos = gate_passes(model, ds, idx, floor)
        image_ok.append(ok_img)
        cos_ok.append(ok_cos)
    pooled = {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}
    consensus = (float(cfg.model.consensus_radius_m), float(cfg.model.consensus_temperature))
    rep = summarise(pooled, max(sizes), int(cfg.loss.rerank_k), tile_assignment=True, consensus=consensus).to_dict()
    err = pooled["hier_err_m"][:, 1]
    return {"queries": int(err.size), "r1_descriptors": rep["retrieval"]["r1"],
            "r1_reranked": rep["hierarchical"]["rerank"]["r1"], "within_5m": float(np.mean(err <= 5.0)),
            "within_10m": float(np.mean(err <= 10.0)), "median_m": float(np.median(err)),
            "image_check_passes": float(np.mean(np.concatenate(image_ok))),
            "descriptor_floor_passes": float(np.mean(np.concatenate(cos_ok))), "_errors_m": err}


def paired_within_5m(a_err: np.ndarray, b_err: np.ndarray, draws: int = 5000) -> dict:
    """B - A within 5 m over the same queries: the difference (points), its 95 % paired bootstrap interval, and how
    many queries only A / only B has within 5 m."""
    a, b = (a_err <= 5.0).astype(float), (b_err <= 5.0).astype(float)
    d = b - a
    rng = np.random.default_rng(0)
    boot = np.array([d[rng.integers(0, d.size, d.size)].mean() for _ in range(draws)])
    lo, hi = np.percentile(boot, [2.5, 97.5])
    return {"diff_points": 100 * float(d.mean()), "ci95_points": [100 * float(lo), 100 * float(hi)],
            "only_first": int(((a == 1) & (b == 0)).sum()), "only_this": int(((a == 0) & (b == 1)).sum())}


def plot(results: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    sets = list(next(iter(results.values())))
    fig, axes = plt.subplots(1, len(sets), figsize=(5.5 * len(sets), 4), squeeze=False)
    views = list(next(iter(results.values()))[sets[0]])
    for ax, s in zip(axes[0], sets):
        for (label, per_set), colour in zip(results.items(), plt.rcParams["axes.prop_cycle"].by_key()["color"]):
            rows = per_set[s]
            ax.plot(views, [100 * rows[v]["within_5m"] for v in views], "o-", color=colour, label=f"{label}: <= 5 m")
            ax.plot(views, [100 * rows[v]["r1_descriptors"] for v in views], "s--", color=colour, alpha=0.6,
                    label=f"{label}: R@1 descriptors")
        ax.set_title(s)
        ax.set_xlabel("view (deg of pinhole cameras; 360 = the panorama)")
        ax.set_ylabel("%")
        ax.set_ylim(0, 100)
        ax.grid(alpha=0.3)
    axes[0][0].legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def labels_and_views(args: argparse.Namespace) -> tuple[list[str], list[str]]:
    """A name per ``--checkpoint`` (its ``--label``, else its path) and the ``--views`` asked for."""
    labels = args.label or args.checkpoint
    if len(labels) != len(args.checkpoint):
        raise SystemExit("give one --label per --checkpoint")
    views = [v.strip() for v in args.views.split(",")]
    unknown = [v for v in views if v not in VIEWS]
    if unknown:
        raise SystemExit(f"unknown views {unknown}: choose from {', '.join(VIEWS)}")
    return labels, views


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--checkpoint", action="append", required=True, help="model folder (repeat for several)")
    ap.add_argument("--label", action="append", default=None, help="a name per --checkpoint (default: the path)")
    ap.add_argument("--data", default="out/bench_fov_data", help="where the 512-px cross-area cities are written")
    ap.add_argument("--demo-data", default="out/demo/data")
    ap.add_argument("--queries", type=int, default=None, help="queries per city (default: all 100)")
    ap.add_argument("--views", default=",".join(VIEWS), help="comma-separated subset of " + ", ".join(VIEWS))
    ap.add_argument("--out", default="benchmarks/results")
    ap.add_argument("--stitch-width", type=int, default=STITCH_W,
                    help="the stitched panorama's width, px (the node's cameras.panorama_width)")
    ap.add_argument("--same-area", action="store_true",
                    help="the five same-area cities (seeds 100-104, what calibrations are fitted on) instead of the "
                         "cross-area ones and DemoCity: to choose between models without touching the measurement")
    ap.add_argument("--distortion", default=None, metavar="MODEL:c1,c2,...",
                    help="every camera's lens distortion as a CameraInfo states it (e.g. plumb_bob:-0.25,0.06,0,0,0): "
                         "the views are cut through it")
    ap.add_argument("--ignore-distortion", action="store_true",
                    help="stitch the distorted views as if rectified (CameraInfo's D ignored: the node before "
                         "2026-12-01)")
    args = ap.parse_args(argv)
    import torch

    from unifygeo_ros.image.lens import parse_distortion

    lens = parse_distortion(args.distortion)

    from unifygeo_ros.localization.posterior import load_calibration
    from unifygeo_ros.offline.demo import DEMO_SEED, ensure_city
    from unifygeo_ros.offline.evaluate import load_for_eval

    torch.set_num_threads(1)
    labels, views = labels_and_views(args)
    root = Path(args.data)
    if args.same_area:
        sets = {"same-area (5 cities)": [root / c for c in prepare(root, SAME_AREA_SEEDS, 96, PANO_W)]}
    else:
        cross = [root / c for c in prepare(root, CROSS_AREA_SEEDS, 96, PANO_W)]
        sets = {"cross-area (5 cities)": cross,
                "DemoCity": [ensure_city(Path(args.demo_data), DEMO_SEED, 300.0, 100)]}
    results: dict = {}
    t0 = time.time()
    for ckpt, label in zip(args.checkpoint, labels):
        model, cfg, meta = load_for_eval(ckpt, "cpu")
        floor = load_calibration(ckpt).min_descriptor_cosine
        results[label] = {}
        for set_name, dirs in sets.items():
            results[label][set_name] = {}
            for view in views:
                r = evaluate_view(model, cfg, dirs, view, args.queries, floor, args.stitch_width, lens,
                                  args.ignore_distortion)
                results[label][set_name][view] = r
                print(f"{label:24s} {set_name:22s} {view:7s} R@1 {100 * r['r1_descriptors']:5.1f} / "
                      f"{100 * r['r1_reranked']:5.1f} %  <=5 m {100 * r['within_5m']:5.1f} %  <=10 m "
                      f"{100 * r['within_10m']:5.1f} %  median {r['median_m']:6.1f} m  gate: image "
                      f"{100 * r['image_check_passes']:3.0f} %, descriptor {100 * r['descriptor_floor_passes']:3.0f} %"
                      f"  ({r['queries']} q)", flush=True)
    paired: dict = {}  # every further checkpoint against the first, query by query
    for label in labels[1:]:
        for set_name in sets:
            for view in views:
                pr = paired_within_5m(results[labels[0]][set_name][view]["_errors_m"],
                                      results[label][set_name][view]["_errors_m"])
                paired.setdefault(label, {}).setdefault(set_name, {})[view] = pr
                print(f"{label:24s} {set_name:22s} {view:7s} within 5 m vs {labels[0]}: {pr['diff_points']:+.1f} "
                      f"points (95 % paired bootstrap {pr['ci95_points'][0]:+.1f} .. {pr['ci95_points'][1]:+.1f}; "
                      f"only {labels[0]} {pr['only_first']}, only this {pr['only_this']})", flush=True)
    for per_set in results.values():
        for per_view in per_set.values():
            for r in per_view.values():
                r.pop("_errors_m")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    doc = {"checkpoints": dict(zip(labels, args.checkpoint)), "views": {v: VIEWS[v] for v in views},
           "camera_px": [CAM_W, CAM_H], "stitch_width_px": args.stitch_width,
           "distortion": args.distortion, "distortion_ignored": bool(args.ignore_distortion),
           "queries_per_city": args.queries or 100,
           "machine": f"{platform.machine()}, {platform.processor() or '?'}, torch 1 thread",
           "date": time.strftime("%Y-%m-%d %H:%M"), "wall_s": round(time.time() - t0, 1), "results": results,
           "paired_within_5m_vs_first": paired}
    (out / "fov.json").write_text(json.dumps(doc, indent=1, default=float) + "\n")
    plot(results, out / "fov.png")
    print(f"written {out / 'fov.json'} and {out / 'fov.png'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
