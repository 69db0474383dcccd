"""Where does a tracking replay's remaining error point? (issue #17: the panorama's median target)

    python benchmarks/bench_tracking_bias.py RUN_DIR [RUN_DIR ...] [--index-root DIR ...]

Reads replays that already ran (``unifygeo replay --track`` output folders holding ``frames.csv``, e.g.
``out/bench_holdout_runs/seed0_fs4/runs/*_panorama_demo_tracking``) and splits the error of the converged, published
frames within 10 m into directions that would show a modelling error rather than the maps' own:

* along / across the direction of travel (from the ground truth's track): a mean along-track error is a time
  offset between the images and the odometry (8 m/s x 0.1 s = 0.8 m);
* towards the nearest tile centre, and towards the centre of the 35 m lattice cell the four covering tiles share:
  a metric head that pulls a camera towards the centre of the tiles evaluated would show a positive mean;
* against the truth's offset from the nearest cell centre of the 24 x 24 map (2.9 m cells): a likelihood read off
  the cell centres would show a slope near -1.

The index of each city (for the tile centres) is looked up under ``--index-root`` (folders named by city) and in
``out/bench_data/_calib/<city>/``. Prints one line per replay and writes ``--out`` (JSON). Figures only.
"""
from __future__ import annotations

import argparse
import csv
import json
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from unifygeo_ros.index import store  # noqa: E402


def find_index(city: str, roots: list[Path]):
    candidates = [r / city for r in roots] + sorted((ROOT / "out/bench_data/_calib" / city).glob("*"))
    if city == "DemoCity":
        candidates.append(ROOT / "models/demo/index")
    for c in candidates:
        if (c / "index.json").is_file():
            return store.load_index(c, device="cpu")
    return None


def unit(v: np.ndarray) -> np.ndarray:
    return v / (np.linalg.norm(v, axis=1, keepdims=True) + 1e-9)


def bias_figures(frames_csv: Path, index) -> dict:
    with open(frames_csv, newline="") as f:
        rows = [r for r in csv.DictReader(f) if r["status"] == "fix" and r["tracking_state"] == "converged"]
    est = np.array([[float(r["east_m"]), float(r["north_m"])] for r in rows])
    gt = np.array([[float(r["gt_east_m"]), float(r["gt_north_m"])] for r in rows])
    err = est - gt
    travel = np.stack([np.gradient(gt[:, 0]), np.gradient(gt[:, 1])], 1)
    ok = (np.hypot(*err.T) < 10.0) & (np.linalg.norm(travel, axis=1) > 0.5)
    err, gt, u = err[ok], gt[ok], unit(travel[ok])
    along = (err * u).sum(1)
    across = err[:, 1] * u[:, 0] - err[:, 0] * u[:, 1]
    centres = np.asarray(index.en_m, np.float64)
    nearest = centres[np.argmin(np.linalg.norm(centres[None] - gt[:, None], axis=2), axis=1)]
    stride = float(index.tile_m) / 2
    lattice = centres.min(axis=0) + (np.floor((gt - centres.min(axis=0)) / stride) + 0.5) * stride
    cell = float(index.tile_m) / 24
    phase = ((gt - nearest) / cell + 0.5) % 1.0
    phase = np.where(phase < 0.5, phase, phase - 1.0) * cell  # truth's offset from the nearest cell centre (m)
    slope = [float(np.polyfit(phase[:, k], err[:, k], 1)[0]) for k in (0, 1)]
    return {"frames": int(ok.sum()), "median_m": float(np.median(np.hypot(*err.T))),
            "along_mean_m": float(along.mean()), "along_std_m": float(along.std()),
            "across_mean_m": float(across.mean()), "across_std_m": float(across.std()),
            "towards_tile_centre_mean_m": float((err * unit(nearest - gt)).sum(1).mean()),
            "towards_lattice_centre_mean_m": float((err * unit(lattice - gt)).sum(1).mean()),
            "cell_phase_slope_east_north": slope}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("runs", nargs="+", type=Path, help="replay output folders (with frames.csv)")
    ap.add_argument("--index-root", type=Path, action="append", default=[],
                    help="a folder of per-city indexes (repeat)")
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks/results/tracking_bias.json")
    args = ap.parse_args(argv)
    result = {}
    for run in args.runs:
        city = run.name.split("_")[0]
        index = find_index(city, args.index_root)
        if index is None or not (run / "frames.csv").is_file():
            print(f"{run}: no frames.csv or no index of {city}; skipped")
            continue
        r = bias_figures(run / "frames.csv", index)
        result[str(run.relative_to(ROOT) if run.is_absolute() else run)] = r
        print(f"{city:13s} {r['frames']:4d} frames, median {r['median_m']:.2f} m; along {r['along_mean_m']:+.2f} "
              f"(sd {r['along_std_m']:.2f}), across {r['across_mean_m']:+.2f} (sd {r['across_std_m']:.2f}); towards "
              f"tile centre {r['towards_tile_centre_mean_m']:+.2f}, lattice centre "
              f"{r['towards_lattice_centre_mean_m']:+.2f}; cell-phase slope {r['cell_phase_slope_east_north'][0]:+.2f}"
              f" / {r['cell_phase_slope_east_north'][1]:+.2f}")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=1) + "\n")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
