"""Benchmark: localizer latency per fix (p50/p95, by stage), batched throughput, and the aerial-store choice.

    python benchmarks/bench_localizer.py [--checkpoint models/demo] [--city DIR] [--fixes 50] [--threads 2]

Builds two indexes of the same tiles - dense aerial features cached ("features") and tiles re-encoded at query
time ("tiles") - and reports, for each: bytes per tile on disk, index load time, resident memory after loading
and after the queries, and per-fix latency by stage (one panorama at a time, ``Localizer.localize``), then
the throughput of ``Localizer.localize_batch``. Without a checkpoint a randomly initialised model of
``config/tiny.yaml`` is used (the architecture - hence the latency - is the demo model's; accuracy is not
measured here). Without ``--city`` the tiles and panoramas are random images (content does not change latency).
Figures only; nothing is asserted.
"""
from __future__ import annotations

import argparse
import os
import resource
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from unifygeo_ros import geo  # noqa: E402


def rss_mb() -> float:
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20
    except OSError:  # pragma: no cover - not Linux
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def random_source(n_side: int = 9, tile_px: int = 320, tile_m: float = 70.0, channels: int = 3):
    from unifygeo_ros.index.tiles import TileSource, TileSpec

    origin = geo.LocalENU(47.6, -122.3)
    specs = []
    for i in range(n_side):
        for j in range(n_side):
            e, n = tile_m / 2 + i * tile_m / 2, tile_m / 2 + j * tile_m / 2
            lat, lon = origin.from_en(e, n)
            specs.append(TileSpec(f"t{i:02d}_{j:02d}", float(lat), float(lon), e, n))

    def read(k: int) -> np.ndarray:
        return np.random.default_rng(k).integers(0, 256, (tile_px, tile_px, channels), dtype=np.uint8)

    return TileSource("random", "random", origin, tile_m, tile_px, specs, read, channels=channels)


def load_handle(checkpoint: str | None, device: str):
    from unifygeo_ros.model.handle import from_model, load_model

    if checkpoint and Path(checkpoint).exists():
        return load_model(checkpoint, device=device), f"checkpoint {checkpoint}"
    import torch

    from unifygeo_ros.config import load_config
    from unifygeo_ros.model import build_model

    cfg = load_config(ROOT / "config" / "tiny.yaml")
    torch.manual_seed(0)
    return from_model(build_model(cfg), cfg.to_dict(), device=device), "random init of config/tiny.yaml"


def percentiles(values) -> str:
    v = np.asarray(values, float)
    return f"{np.percentile(v, 50):7.1f} {np.percentile(v, 95):7.1f}"


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--checkpoint", default=str(ROOT / "models" / "demo"))
    p.add_argument("--city", default=None, help="VIGOR-layout city folder (default: random tiles)")
    p.add_argument("--fixes", type=int, default=50)
    p.add_argument("--batch", type=int, nargs="+", default=[8, 32])
    p.add_argument("--device", default="cpu")
    p.add_argument("--threads", type=int, default=0, help="torch threads (0: library default)")
    p.add_argument("--work", default=None, help="folder for the two indexes (default: a temporary one)")
    args = p.parse_args(argv)

    import torch

    if args.threads:
        torch.set_num_threads(args.threads)
    from unifygeo_ros.index import build as index_build
    from unifygeo_ros.index import store
    from unifygeo_ros.index.tiles import vigor_tiles
    from unifygeo_ros.localization.localizer import STAGES, Localizer

    handle, what = load_handle(args.checkpoint, args.device)
    source = (vigor_tiles(args.city, height=handle.aerial_channels == 4) if args.city
              else random_source(channels=handle.aerial_channels))
    h, w = handle.ground_hw
    rng = np.random.default_rng(0)
    if args.city:
        from unifygeo_ros.image.preprocess import load_image

        files = sorted((Path(args.city) / "panorama").iterdir())[: args.fixes]
        panos = [load_image(f) for f in files]
    else:
        panos = [rng.integers(0, 256, (512, 1024, 3), dtype=np.uint8) for _ in range(args.fixes)]
    print(f"# bench_localizer: {what}; {len(source)} tiles of {source.tile_m:g} m; device {handle.device}, "
          f"torch threads {torch.get_num_threads()}, {os.cpu_count()} CPUs; panoramas {panos[0].shape[1]}x"
          f"{panos[0].shape[0]} -> {w}x{h}; aerial {handle.aerial_px} px; K = {handle.rerank_k}")
    work = Path(args.work or tempfile.mkdtemp(prefix="bench_loc_"))
    with torch.inference_mode():  # warm the network up so the memory figures below are the index's
        g = handle.encode_ground_tensor(handle.ground_batch(panos[:1]))
        a = handle.encode_aerial([source.read(0)] * handle.rerank_k)
        handle.model.rerank_scores(g, a, handle.model.localize(g, a))
    results = {}
    for mode in ("features", "tiles"):
        out = work / mode
        t0 = time.perf_counter()
        meta = index_build.build_index(handle, source, out, aerial_mode=mode, progress=False)
        build_s = time.perf_counter() - t0
        aerial_bytes = sum(r["bytes"] for k, r in meta["arrays"].items() if k.startswith("aerial_"))
        rss0 = rss_mb()
        t0 = time.perf_counter()
        index = store.load_index(out)
        load_ms = 1000 * (time.perf_counter() - t0)
        loc = Localizer(index, handle)
        loc.localize(panos[0])  # warm-up
        stage = {k: [] for k in STAGES}
        cpu = []
        for pano in panos:
            c0 = time.process_time()
            fix = loc.localize(pano)
            cpu.append(1000 * (time.process_time() - c0))
            for k in STAGES:
                stage[k].append(fix.timings_ms[k])
        results[mode] = dict(build_s=build_s, per_tile_kb=aerial_bytes / len(source) / 1024, load_ms=load_ms,
                             rss_delta_mb=rss_mb() - rss0, stage=stage, cpu=cpu, loc=loc)
    print(f"\n## aerial store: cached dense features vs tiles re-encoded at query time ({len(panos)} fixes, one at a time)")
    print(f"{'mode':<9} {'KiB/tile':>8} {'build s':>8} {'load ms':>8} {'RSS +MiB':>8}   " +
          "  ".join(f"{k + ' p50 p95':>17}" for k in STAGES) + f"  {'CPU ms p50 p95':>17}")
    for mode, r in results.items():
        print(f"{mode:<9} {r['per_tile_kb']:>8.1f} {r['build_s']:>8.2f} {r['load_ms']:>8.1f} {r['rss_delta_mb']:>8.1f}   " +
              "  ".join(f"{percentiles(r['stage'][k]):>17}" for k in STAGES) + f"  {percentiles(r['cpu']):>17}")
    print("(wall-clock ms per stage; CPU ms = process CPU time per fix, which contention on a shared machine "
          "does not inflate)")
    loc = results["features"]["loc"]
    print("\n## batched throughput (localize_batch, features mode)")
    for b in args.batch:
        t0, c0 = time.perf_counter(), time.process_time()
        loc.localize_batch(panos, batch_size=b)
        dt, dc = time.perf_counter() - t0, time.process_time() - c0
        print(f"batch {b:>3}: {len(panos) / dt:6.1f} fixes/s wall ({1000 * dt / len(panos):.1f} ms per fix), "
              f"{1000 * dc / len(panos):.1f} CPU ms per fix")
    return 0


if __name__ == "__main__":
    sys.exit(main())
