"""Benchmark: the localizer node end to end over DDS - start-up time, latency, sustained rate, memory.

    source scripts/ros_env.sh
    python benchmarks/bench_node.py [--checkpoint DIR --index DIR] [--hz 30] [--seconds 10] [--threads 1]
        [--backend torch onnxruntime] [--onnx-export DIR] [--width 512]

Starts ``localizer_node`` (the console script) and a publisher/recorder process (test/node_driver.py) in a ROS
domain of their own, then measures:

* start-up: wall time from starting the process to its "ready" log line (imports, model + index load,
  warm-up), and the load time the node reports;
* latency: image header stamp -> the fix's ``pose`` received by the other process, one image at a time
  (p50/p95 over ``--single`` images), and the node's own processing time;
* sustained rate: fixes per second while images arrive at ``--hz`` for ``--seconds``, and frames dropped;
* memory: the node's resident set size after start-up and after the flood.

With several ``--backend`` values the node is started once per backend, one after the other, on the same images
(its ``backend`` parameter; onnxruntime loads ``--onnx-export`` or the automatic cache), and a table compares
them. ``--width``: the published panoramas' width (the world's 256 px renders resized; height = width / 2).

Default model and index: the embedded demo (models/demo) when present, else a randomly initialised model of
config/tiny.yaml (the demo architecture, so the timing is representative) on a small synthetic city.
Figures only; nothing is asserted.
"""
from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "test"))
sys.path.insert(0, str(ROOT))

from node_world import DriverProc, build_world, image_fields  # noqa: E402
from ros_helpers import ros_subprocess_env, unique_domain_id  # noqa: E402


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--checkpoint", default=None)
    ap.add_argument("--index", default=None)
    ap.add_argument("--device", default="auto")
    ap.add_argument("--threads", type=int, default=1, help="cpu_threads parameter (0 = the libraries' default)")
    ap.add_argument("--backend", nargs="+", default=["torch"], choices=("torch", "onnxruntime"),
                    help="the node's backend parameter; several: one node per backend, compared")
    ap.add_argument("--onnx-export", default="", help="the node's onnx_export parameter (onnxruntime)")
    ap.add_argument("--width", type=int, default=256, help="width of the published panoramas, px")
    ap.add_argument("--dds-profile", default=None,
                    help="Fast DDS XML profile for both processes (FASTDDS_DEFAULT_PROFILES_FILE), e.g. "
                         "config/fastdds_large_data.xml: 512x256 rgb8 (393 KB) hardly fits the default 512 KB "
                         "shared-memory segment")
    ap.add_argument("--param", action="append", default=[], metavar="NAME:=VALUE",
                    help="another node parameter (repeatable), e.g. use_prior:=false")
    ap.add_argument("--hz", type=float, default=30.0)
    ap.add_argument("--seconds", type=float, default=10.0)
    ap.add_argument("--single", type=int, default=20, help="images sent one at a time for the latency figure")
    args = ap.parse_args()
    import cv2

    tmp = Path(tempfile.mkdtemp(prefix="bench_node_"))
    world = build_world(tmp, n_queries=4)
    fields = [image_fields(cv2.resize(q.rgb, (args.width, args.width // 2), interpolation=cv2.INTER_LINEAR))
              for q in world.queries]
    reports = []
    for backend in args.backend:
        reports.append(run_node(args, world, fields, backend))
        print(json.dumps(reports[-1], indent=1), flush=True)
    if len(reports) > 1:
        keys = ("latency_single_ms_p50", "latency_single_ms_p95", "processing_ms_p50", "sustained_fix_rate_hz",
                "frames_dropped", "flood_latency_ms_p50", "startup_wall_s")
        print("\n| backend | " + " | ".join(keys) + " |\n|---|" + "---:|" * len(keys))
        for r in (r for r in reports if r):
            print(f"| {r['backend']} | " + " | ".join(str(r[k]) for k in keys) + " |")
    return 0 if all(reports) else 1


def run_node(args, world, fields: list[dict], backend: str) -> dict:
    """Start the node with ``backend``, measure, stop it; the figures (empty when the node did not start)."""
    import psutil

    ckpt, index = args.checkpoint or world.checkpoint, args.index or world.index
    tmp = Path(tempfile.mkdtemp(prefix=f"bench_node_{backend}_"))
    env = ros_subprocess_env(domain_id=unique_domain_id())
    if args.dds_profile:
        env["FASTDDS_DEFAULT_PROFILES_FILE"] = str(Path(args.dds_profile).resolve())
    exe = shutil.which("localizer_node", path=env["PATH"])
    cmd = ([exe] if exe else [sys.executable, "-m", "unifygeo_ros.ros.node"]) + [
        "--ros-args", "-r", "__ns:=/bench", "--params-file", str(ROOT / "config" / "localize.yaml"),
        "-p", f"checkpoint:={ckpt}", "-p", f"index:={index}", "-p", f"device:={args.device}",
        "-p", f"cpu_threads:={args.threads}", "-p", "min_score:=0.0", "-p", f"backend:={backend}",
        "-p", "max_protection_level_m:=.inf",  # the gates off: every processed frame is published and timed
        *(["-p", f"onnx_export:={args.onnx_export}"] if backend == "onnxruntime" and args.onnx_export else []),
        "-p", "heading_source:=north_aligned",  # the synthetic panoramas are north-aligned
        *(x for p in args.param for x in ("-p", p))]
    log = tmp / "node.log"
    fh = open(log, "w")
    t0 = time.monotonic()
    node = subprocess.Popen(cmd, env=env, stdout=fh, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    driver = None
    try:
        while "ready" not in log.read_text(errors="replace"):
            if node.poll() is not None:
                print(log.read_text(), file=sys.stderr)
                return {}
            time.sleep(0.05)
        startup_wall_s = time.monotonic() - t0
        proc = psutil.Process(node.pid)
        rss_ready = proc.memory_info().rss / 2**20
        driver = DriverProc(env, ["/bench"])
        # latency, one image at a time
        driver.call("roundtrip", topic="/bench/image", kind="image", fields=fields[0], ns="/bench", timeout=30)
        since = driver.call("publish", topic="/bench/image", kind="image", fields=fields[0])["stamp_ns"]
        for i in range(args.single):
            driver.call("roundtrip", topic="/bench/image", kind="image", fields=fields[i % len(fields)],
                        ns="/bench", timeout=30, retry_s=5.0)
        single = np.array(driver.call("latencies", ns="/bench", since_ns=since)["ms"])
        # sustained rate under a flood
        f = driver.call("flood", wait_s=args.seconds + 30, topic="/bench/image", kind="image", fields=fields[1],
                        hz=args.hz, seconds=args.seconds)
        time.sleep(1.0)
        n_fix = driver.call("count", ns="/bench", since_ns=f["first_ns"])["count"]
        flood_lat = np.array(driver.call("latencies", ns="/bench", since_ns=f["first_ns"])["ms"])
        diag = driver.call("diagnostics", name_contains="/bench/", after_ns=f["last_ns"], timeout=5)["status"]
        rss_after = proc.memory_info().rss / 2**20
        v = diag["values"] if diag else {}
        report = {
            "model": "demo" if world.trained and not args.checkpoint else str(ckpt),
            "device": v.get("device"), "backend": backend, "backend_detail": v.get("backend"),
            "cpu_threads": args.threads, "panorama_px": f"{fields[0]['width']}x{fields[0]['height']}",
            "dds_profile": Path(args.dds_profile).name if args.dds_profile else "Fast DDS defaults",
            "params": list(args.param),
            "startup_wall_s": round(startup_wall_s, 2), "startup_reported_s": float(v.get("startup_s", "nan")),
            "model_index_load_s": float(v.get("startup_load_s", "nan")),
            "latency_single_ms_p50": round(float(np.percentile(single, 50)), 1),
            "latency_single_ms_p95": round(float(np.percentile(single, 95)), 1),
            "processing_ms_p50": float(v.get("processing_ms_p50", "nan")),
            "flood_input_hz": round(f["published"] / args.seconds, 1),
            "sustained_fix_rate_hz": round(n_fix / args.seconds, 2),
            "flood_latency_ms_p50": round(float(np.percentile(flood_lat, 50)), 1) if flood_lat.size else None,
            "flood_latency_ms_p95": round(float(np.percentile(flood_lat, 95)), 1) if flood_lat.size else None,
            "frames_dropped": int(v.get("frames_dropped", -1)),
            "rss_ready_mb": round(rss_ready, 1), "rss_after_flood_mb": round(rss_after, 1),
        }
    finally:
        if driver is not None:
            driver.close()
        node.send_signal(2)
        try:
            node.wait(15)
        except subprocess.TimeoutExpired:
            node.kill()
        fh.close()
    return report


if __name__ == "__main__":
    sys.exit(main())
