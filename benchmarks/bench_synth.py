"""Speed of the synthetic world: ``unifygeo synth`` end to end, one panorama, and the training stream.

    .venv/bin/python benchmarks/bench_synth.py                 # 1 km x 1 km city, 2000 panoramas (the target: < 5 min)
    .venv/bin/python benchmarks/bench_synth.py --quick         # 300 m, 100 panoramas, and the micro-benchmarks
    .venv/bin/python benchmarks/bench_synth.py --only-micro    # panorama ms and stream samples/s only

Prints wall and CPU seconds (the machine may be shared: CPU time is what the code costs, wall time what you
wait). Not a test: nothing passes or fails.
"""
from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

from unifygeo_ros.data import render as R  # noqa: E402
from unifygeo_ros.data import synth as S  # noqa: E402
from unifygeo_ros.data import world as W  # noqa: E402


def bench_cli(size_m: float, panos: int, out: str | None, style: str) -> None:
    root = out or tempfile.mkdtemp(prefix="bench_synth_")
    try:
        t, c = time.perf_counter(), time.process_time()
        res = S.write_city(root, "BenchCity", 1, size_m, panos, style, overwrite=True, progress=True)
        wall, cpu = time.perf_counter() - t, time.process_time() - c
        print(f"unifygeo synth {size_m:g} m x {size_m:g} m, {panos} panoramas (512x256), {res.n_tiles} tiles "
              f"(320 px): wall {wall:.1f} s, cpu {cpu:.1f} s")
        print("  stages (wall): " + ", ".join(f"{k} {v:.1f} s" for k, v in res.timings_s.items()))
    finally:
        if out is None:
            shutil.rmtree(root, ignore_errors=True)


def bench_panorama(n: int = 30) -> None:
    city = W.generate_city(5, 280, "mixed")
    grid = S.tile_grid(280, 70)
    pos = S.sample_camera_positions(city, grid, n, np.random.default_rng(0))
    for w, h in ((512, 256), (256, 128)):
        R.render_panorama(city, tuple(pos[0]), 0.0, w, h)
        walls, cpus = [], []
        for k in range(n):
            t, c = time.perf_counter(), time.process_time()
            R.render_panorama(city, tuple(pos[k]), float(k * 37 % 360), w, h)
            walls.append(time.perf_counter() - t)
            cpus.append(time.process_time() - c)
        print(f"render_panorama {w}x{h}: median wall {np.median(walls) * 1e3:.1f} ms, "
              f"median cpu {np.median(cpus) * 1e3:.1f} ms")
    centres = grid.centres()
    R.render_aerial(city, tuple(centres[0]), 70.0, 320)  # shades the orthophoto once
    t, c = time.perf_counter(), time.process_time()
    for k in range(n):
        R.render_aerial(city, tuple(centres[k % len(centres)]), 70.0, 320)
    print(f"render_aerial 320 px (orthophoto cached): {(time.perf_counter() - t) / n * 1e3:.2f} ms wall per tile")


def bench_stream(cities: int = 4, per_city: int = 64) -> None:
    from unifygeo_ros.data.stream import CityStream

    ds = CityStream(base_seed=1000, samples_per_city=per_city, num_cities=cities)
    t, c = time.perf_counter(), time.process_time()
    n = sum(1 for _ in ds)
    wall, cpu = time.perf_counter() - t, time.process_time() - c
    print(f"CityStream (280 m cities, {per_city} samples/city, pano 256x128, tile 128 px, one process): "
          f"{n / wall:.1f} samples/s wall, {n / cpu:.1f} samples/s per CPU core")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--size-m", type=float, default=1000.0)
    ap.add_argument("--panos", type=int, default=2000)
    ap.add_argument("--style", default="mixed")
    ap.add_argument("--out", default=None, help="keep the output here (default: a temporary folder, deleted)")
    ap.add_argument("--quick", action="store_true", help="300 m and 100 panoramas")
    ap.add_argument("--only-micro", action="store_true", help="skip the CLI run")
    args = ap.parse_args()
    if args.quick:
        args.size_m, args.panos = 300.0, 100
    if not args.only_micro:
        bench_cli(args.size_m, args.panos, args.out, args.style)
    bench_panorama()
    bench_stream()


if __name__ == "__main__":
    main()
