"""Benchmark: large panoramas over DDS to localizer_node, side by side: Fast DDS set-ups x image sizes and formats.

    source scripts/ros_env.sh
    nice python benchmarks/bench_dds_large.py [--hz 10] [--seconds 15] [--setups defaults,large_data,profile,...]
        [--cases raw_1024,raw_2048,jpeg_2048,jpeg_2048_noisy] [--json out/bench_dds_large.json]

For each set-up (test/large_images.py: SETUPS - Fast DDS's defaults, FASTDDS_BUILTIN_TRANSPORTS=LARGE_DATA, the
profile config/fastdds_large_data.xml in every process, the profile in the node only) two localizer_node processes
(``/raw``: sensor_msgs/Image, ``/jpeg``: sensor_msgs/CompressedImage) and one publisher (test/node_driver.py) are
started in a ROS domain of their own, each with that set-up's environment; then every case streams one panorama
with a fresh stamp at ``--hz`` for ``--seconds``:

* ``raw_1024`` / ``raw_2048``: rgb8 Image 1024x512 (1.5 MB) / 2048x1024 (6 MB);
* ``jpeg_2048``: the rendered 2048x1024 panorama as JPEG quality 90 (a rendered image compresses far better than a
  photograph: ~0.2 MB);
* ``jpeg_2048_noisy``: the same with camera-like noise (sigma 8 grey levels), JPEG quality 95: ~1 MB.

Per stream: frames published, received by the node (DDS delivery), processed by the network, dropped from the
node's one-frame slot (a newer frame came first: by design when inference is slower than the input), fixes
published - all from the node's own /diagnostics counters. The node runs the embedded demo model with
cpu_threads 1 and heading_source north_aligned (the rendered panoramas are north-aligned). Figures only; the
delivery under the profile is asserted by test/test_dds_large.py.
"""
from __future__ import annotations

import argparse
import base64
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "test"))
sys.path.insert(0, str(ROOT))

from large_images import (SETUPS, NodeUnderTest, large_panorama, setup_env, stream,  # noqa: E402
                          wait_subscribed, with_sensor_noise)
from node_world import DriverProc, build_world, image_fields, jpeg_fields  # noqa: E402
from ros_helpers import ros_subprocess_env, unique_domain_id  # noqa: E402

CASES = ("raw_1024", "raw_2048", "jpeg_2048", "jpeg_2048_noisy")
NOISE_SIGMA, NOISY_QUALITY = 8.0, 95


def _jpeg(rgb: np.ndarray, quality: int) -> dict:
    ok, buf = cv2.imencode(".jpg", rgb[:, :, ::-1], [cv2.IMWRITE_JPEG_QUALITY, quality])
    assert ok
    return {"format": "jpeg", "data": base64.b64encode(buf.tobytes()).decode()}


def case_inputs(world) -> dict[str, tuple[str, str, dict, int]]:
    """case -> (namespace, kind, message fields, message bytes)."""
    big = large_panorama(world, 2048)
    mid = cv2.resize(big, (1024, 512), interpolation=cv2.INTER_AREA)
    out = {"raw_1024": ("/raw", "image", image_fields(mid)), "raw_2048": ("/raw", "image", image_fields(big)),
           "jpeg_2048": ("/jpeg", "compressed", _jpeg(big, 90)),
           "jpeg_2048_noisy": ("/jpeg", "compressed", _jpeg(with_sensor_noise(big, NOISE_SIGMA), NOISY_QUALITY))}
    return {k: (ns, kind, f, len(base64.b64decode(f["data"]))) for k, (ns, kind, f) in out.items()}


def run_setup(name: str, world, cases: dict, args, tmp: Path) -> list[dict]:
    node_vars, pub_vars = SETUPS[name]
    base = ros_subprocess_env(domain_id=unique_domain_id())
    common = {"checkpoint": world.checkpoint, "index": world.index, "device": "cpu", "cpu_threads": args.threads,
              "heading_source": "north_aligned" if world.known_orientation else "auto"}
    nodes = {ns: NodeUnderTest(setup_env(base, node_vars), ns, {**common, "input_mode": mode},
                               tmp / f"{name}{ns.replace('/', '_')}.log")
             for ns, mode in (("/raw", "panorama"), ("/jpeg", "compressed"))}
    driver, rows = None, []
    try:
        for n in nodes.values():
            n.wait_ready()
        driver = DriverProc(setup_env(base, pub_vars), list(nodes))
        small = world.queries[0].rgb
        wait_subscribed(driver, "/raw", "/raw/image", "image", image_fields(small))
        wait_subscribed(driver, "/jpeg", "/jpeg/image/compressed", "compressed", jpeg_fields(small))
        for case, (ns, kind, fields, nbytes) in cases.items():
            topic = f"{ns}/image" if kind == "image" else f"{ns}/image/compressed"
            load = os.getloadavg()[0]
            r = stream(driver, ns, topic, kind, fields, args.hz, args.seconds)
            row = {"setup": name, "case": case, "message_mb": round(nbytes / 1e6, 2), "load_1min": round(load, 2),
                   **r.as_dict()}
            rows.append(row)
            print(json.dumps(row), flush=True)
    finally:
        if driver is not None:
            driver.close()
        for n in nodes.values():
            n.stop()
    return rows


def table(rows: list[dict]) -> str:
    lines = ["| set-up | case | MB | published (Hz) | received | processed | slot drops | fixes | delivered | "
             "processed share | processing p50 / p95 ms | load |",
             "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for r in rows:
        lines.append(f"| {r['setup']} | {r['case']} | {r['message_mb']} | {r['published']} ({r['publish_rate_hz']}) | "
                     f"{r['received']} | {r['processed']} | {r['dropped']} | {r['fixes']} | {r['delivered']:.1%} | "
                     f"{r['processed_share']:.1%} | {r['processing_ms_p50']:.0f} / {r['processing_ms_p95']:.0f} | "
                     f"{r['load_1min']} |")
    return "\n".join(lines)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--hz", type=float, default=10.0)
    ap.add_argument("--seconds", type=float, default=15.0)
    ap.add_argument("--threads", type=int, default=1, help="the node's cpu_threads")
    ap.add_argument("--setups", default=",".join(SETUPS))
    ap.add_argument("--cases", default=",".join(CASES))
    ap.add_argument("--json", default=None, help="also write the rows here")
    args = ap.parse_args()
    setups = [s for s in args.setups.split(",") if s]
    unknown = [s for s in setups if s not in SETUPS] + [c for c in args.cases.split(",") if c not in CASES]
    if unknown:
        ap.error(f"unknown set-up or case: {', '.join(unknown)}")
    tmp = Path(tempfile.mkdtemp(prefix="bench_dds_large_"))
    world = build_world(tmp, n_queries=1)
    all_cases = case_inputs(world)
    cases = {c: all_cases[c] for c in args.cases.split(",") if c}
    t0 = time.time()
    rows = [row for s in setups for row in run_setup(s, world, cases, args, tmp)]
    meta = {"model": "demo" if world.trained else "random weights (no models/demo)", "hz": args.hz,
            "seconds": args.seconds, "cpu_threads": args.threads, "wall_s": round(time.time() - t0, 1),
            "load_1_5_15_end": [round(x, 2) for x in os.getloadavg()]}
    print(json.dumps(meta))
    print(table(rows))
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps({"meta": meta, "rows": rows}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
