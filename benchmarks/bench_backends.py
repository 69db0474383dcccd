"""Benchmark: torch vs onnxruntime side by side, per stage, in-process (the Localizer), at 1 and 2 threads.

    python benchmarks/bench_backends.py [--checkpoint models/demo] [--index models/demo/index]
        [--city out/demo/data/DemoCity] [--fixes 100] [--threads 1 2] [--compete 1] [--export DIR] [--json OUT]

For each thread count both backends are loaded (``Localizer.from_paths(backend=...)``, the node's path) and fed
the same frames alternately (frame i to torch, then to onnxruntime), so a load spike from other jobs falls on
both. Per frame: ``decode`` = the node's decoder of a ``sensor_msgs/Image`` rgb8 buffer
(:func:`~unifygeo_ros.image.codec.image_fields_to_rgb`), then the Localizer's stages (``preprocess``, ``encode``
= the ground encoder, ``search``, ``localize`` = the metric head, ``rerank`` = scores, consensus, tile
assignment, posterior; with a prior both passes), ``total`` = the frame's wall time; p50 per stage, p50 / p99 / max of the total,
CPU ms per frame (process CPU time, which other jobs do not inflate). ``--compete N`` runs N busy processes (one
thread each, numpy matrix products) during the measurement: the "another job on the same cores" case. The two
backends' fixes are compared (largest position difference). Panoramas: the city's files (``--city``; the demo
city's are 512x256), else random 512x256 images. ``--pipeline``: through the node's
:class:`~unifygeo_ros.localization.pipeline.LocalizationPipeline` with bench_node.py's settings (prior on, so two
metric passes per frame once a fix is published; gates off). Figures only; nothing is asserted.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

BACKENDS = ("torch", "onnxruntime")
STAGES = ("decode", "preprocess", "encode", "search", "localize", "rerank", "total")
_BUSY = "import numpy as np\na = np.random.rand(300, 300)\nwhile True:\n    a = (a @ a) / 300.0\n"


def start_competitors(n: int) -> list[subprocess.Popen]:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    return [subprocess.Popen([sys.executable, "-c", _BUSY], env=env) for _ in range(n)]


def stop(procs: list[subprocess.Popen]) -> None:
    for p in procs:
        p.terminate()
    for p in procs:
        p.wait(10)


def load_panoramas(city: str | None, n: int) -> list[np.ndarray]:
    if city:
        from unifygeo_ros.image.preprocess import load_image

        files = sorted((Path(city) / "panorama").iterdir())[:n]
        return [load_image(f) for f in files]
    rng = np.random.default_rng(0)
    return [rng.integers(0, 256, (256, 512, 3), dtype=np.uint8) for _ in range(n)]


def measure(locs: dict, panos: list[np.ndarray], pipeline: bool = False) -> dict:
    """Alternate the backends frame by frame; per backend: stage times (ms), CPU ms, fixes. ``pipeline``: each
    frame goes through the node's pipeline object (its prior on, the gates off as in bench_node.py)."""
    from unifygeo_ros.image.codec import image_fields_to_rgb, rgb_to_image_fields
    from unifygeo_ros.localization.pipeline import Frame, LocalizationPipeline, PipelineSettings

    msgs = [rgb_to_image_fields(p) for p in panos]
    out = {b: {"stages": {k: [] for k in STAGES}, "cpu_ms": [], "fixes": []} for b in locs}
    settings = PipelineSettings(min_score=0.0, max_protection_level_m=float("inf"))
    pipes = {b: LocalizationPipeline.from_settings(loc, settings) for b, loc in locs.items()} if pipeline else {}
    for i, m in enumerate(msgs):
        for b, loc in locs.items():
            dec = []

            def decode(m=m, dec=dec):
                t = time.perf_counter()
                img = image_fields_to_rgb(m["encoding"], m["height"], m["width"], m["step"], m["is_bigendian"],
                                          m["data"])
                dec.append(1000.0 * (time.perf_counter() - t))
                return img

            c0, t0 = time.process_time(), time.perf_counter()
            fix = pipes[b].process(Frame(i, i / 30.0, decode)).fix if pipeline else loc.localize(decode())
            wall = 1000.0 * (time.perf_counter() - t0)
            out[b]["cpu_ms"].append(1000.0 * (time.process_time() - c0))
            st = out[b]["stages"]
            st["decode"].append(dec[0])
            for k in STAGES[1:-1]:
                st[k].append(fix.timings_ms[k])
            st["total"].append(wall)
            out[b]["fixes"].append((fix.east_m, fix.north_m, fix.score))
    return out


def summary(r: dict) -> dict:
    st = {k: np.asarray(v) for k, v in r["stages"].items()}
    tot = st["total"]
    return {**{f"{k}_p50_ms": round(float(np.percentile(v, 50)), 2) for k, v in st.items()},
            "total_p99_ms": round(float(np.percentile(tot, 99)), 2), "total_max_ms": round(float(tot.max()), 2),
            "cpu_ms_p50": round(float(np.percentile(r["cpu_ms"], 50)), 2), "frames": int(tot.size)}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--checkpoint", default=str(ROOT / "models" / "demo"))
    p.add_argument("--index", default=str(ROOT / "models" / "demo" / "index"))
    p.add_argument("--city", default=None, help="VIGOR-layout city folder with panorama/ (default: random)")
    p.add_argument("--fixes", type=int, default=100)
    p.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    p.add_argument("--compete", type=int, default=0, help="busy processes running during the measurement")
    p.add_argument("--pipeline", action="store_true",
                   help="through the node's pipeline object (prior on: two metric passes per frame; gates off)")
    p.add_argument("--export", default=None, help="ONNX export folder (default: the automatic cache)")
    p.add_argument("--device", default="cpu", help="cpu (default) | cuda | auto")
    p.add_argument("--precision", default="auto", help="onnxruntime on a GPU: auto | fp32 | fp16")
    p.add_argument("--json", default=None, help="write the figures here")
    args = p.parse_args(argv)

    import onnxruntime
    import torch

    from unifygeo_ros.localization.localizer import Localizer
    from unifygeo_ros.model.backends import BackendSettings

    panos = load_panoramas(args.city, args.fixes)
    load = os.getloadavg()
    print(f"# bench_backends: {args.checkpoint}, {len(panos)} panoramas {panos[0].shape[1]}x{panos[0].shape[0]}, "
          f"torch {torch.__version__}, onnxruntime {onnxruntime.__version__}, {os.cpu_count()} CPUs, "
          f"device {args.device}, competing jobs {args.compete}, {'pipeline (prior on)' if args.pipeline else 'Localizer.localize'}, "
          f"load average before {load[0]:.2f}")
    rows, agree = [], []
    for threads in args.threads:
        locs = {b: Localizer.from_paths(args.index, args.checkpoint, device=args.device,
                                        backend=BackendSettings(b, threads, args.export if b != "torch" else None,
                                                                args.precision))
                for b in BACKENDS}
        for loc in locs.values():  # warm-up
            for pano in panos[:3]:
                loc.localize(pano)
        procs = start_competitors(args.compete)
        try:
            time.sleep(0.5 if procs else 0.0)
            res = measure(locs, panos, args.pipeline)
        finally:
            stop(procs)
        a, b = (np.asarray(res[k]["fixes"]) for k in BACKENDS)
        agree.append({"threads": threads, "max_position_diff_m": float(np.hypot(*(a[:, :2] - b[:, :2]).T).max()),
                      "max_score_diff": float(np.abs(a[:, 2] - b[:, 2]).max())})
        for backend in BACKENDS:
            rows.append({"backend": backend, "threads": threads, "torch_threads": torch.get_num_threads(),
                         **summary(res[backend])})
    load_after = os.getloadavg()
    print("\n| backend | threads | " + " | ".join(f"{k} p50" for k in STAGES) + " | total p99 | max | CPU ms p50 |")
    print("|---|---:|" + "---:|" * (len(STAGES) + 3))
    for r in rows:
        print(f"| {r['backend']} | {r['threads']} | " + " | ".join(f"{r[f'{k}_p50_ms']:.2f}" for k in STAGES)
              + f" | {r['total_p99_ms']:.1f} | {r['total_max_ms']:.1f} | {r['cpu_ms_p50']:.2f} |")
    for a in agree:
        print(f"threads {a['threads']}: torch vs onnxruntime fixes differ by at most {a['max_position_diff_m']:.2e} m "
              f"in position, {a['max_score_diff']:.1e} in score")
    print(f"load average after {load_after[0]:.2f} (1 min), {load_after[1]:.2f} (5 min)")
    if args.json:
        Path(args.json).write_text(json.dumps({"rows": rows, "agreement": agree, "compete": args.compete,
                                               "pipeline": args.pipeline,
                                               "load_before": load, "load_after": load_after}, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
