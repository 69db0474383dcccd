"""Benchmark: the localizer node end to end over DDS - start-up time, latency, sustained rate, memory.

    source scripts/ros_env.sh
    python benchmarks/bench_node.py [--checkpoint DIR --index DIR] [--hz 30] [--seconds 10] [--threads 1]
        [--backend torch onnxruntime] [--onnx-export DIR] [--width 512] [--stamp publish|build] [--stages]

Starts ``localizer_node`` (the console script) and a publisher/recorder process (test/node_driver.py's driver, run
from this file: see ``--stamp``) in a ROS domain of their own, then measures:

* start-up: wall time from starting the process to its "ready" log line (imports, model + index load,
  warm-up), and the load time the node reports;
* latency: image header stamp -> the fix's ``pose`` received by the other process, one image at a time
  (p50/p95 over ``--single`` images), and the node's own processing time;
* sustained rate: fixes per second while images arrive at ``--hz`` for ``--seconds``, and frames dropped;
* memory: the node's resident set size after start-up and after the flood.

With several ``--backend`` values the node is started once per backend, one after the other, on the same images
(its ``backend`` parameter; onnxruntime loads ``--onnx-export`` or the automatic cache), and a table compares
them. ``--width``: the published panoramas' width (the world's 256 px renders resized; height = width / 2).

``--stamp``: when the publisher stamps an image. ``publish`` (default): the message is built first (the driver
receives its pixels as base64 in JSON: decoding them and filling the message took 1.3 ms of the old figure), then
stamped with the clock and published at once, as a camera driver publishing a captured frame does; ``build``:
test/node_driver.py's own order (stamp, then decode and build), the method of the figures before 2026-12-01.
``--stages``: the node runs under a recorder (:func:`node_with_stages`: a few ``time.time_ns()`` calls per frame)
and the single-image latency is split into stages (p50, ms): stamp -> the publisher's publish call, -> the node's
image callback (serialisation, DDS, the executor, deserialisation), -> the worker has the frame, -> decoded, -> the
pipeline returned, -> ``pose`` built and its publish call starts, -> ``pose`` received by the driver (a subscriber
may receive a message before the publish call returns: the stages end at the call's start).

Default model and index: the embedded demo (models/demo) when present, else a randomly initialised model of
config/tiny.yaml (the demo architecture, so the timing is representative) on a small synthetic city.
Figures only; nothing is asserted.
"""
from __future__ import annotations

import argparse
import atexit
import json
import os
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

STAGES = ("to_publish", "dds_in", "hand_off", "decode", "pipeline", "outputs", "dds_out")


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
    ap.add_argument("--stamp", choices=("publish", "build"), default="publish",
                    help="publish: build the image message, then stamp and publish it (default); build: stamp "
                         "before building it (test/node_driver.py's order, the figures before 2026-12-01)")
    ap.add_argument("--stages", action="store_true", help="split the single-image latency into stages (the node "
                    "runs under a recorder)")
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
                "frames_dropped", "flood_latency_ms_p50", "flood_latency_ms_p95", "startup_wall_s")
        keys += tuple(f"stage_ms_p50_{k}" for k in STAGES) if args.stages else ()
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
    stages_file = tmp / "stages.json"
    if args.stages:
        env["BENCH_NODE_STAGES"] = str(stages_file)
    cmd = ([sys.executable, __file__, "--node-with-stages"] if args.stages else
           [exe] if exe else [sys.executable, "-m", "unifygeo_ros.ros.node"]) + [
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
        driver = bench_driver(env, ["/bench"], args.stamp)
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
        times = driver.call("times", since_ns=since, until_ns=f["first_ns"]) if args.stages else None
        report = {
            "model": "demo" if world.trained and not args.checkpoint else str(ckpt),
            "device": v.get("device"), "backend": backend, "backend_detail": v.get("backend"),
            "cpu_threads": args.threads, "panorama_px": f"{fields[0]['width']}x{fields[0]['height']}",
            "dds_profile": Path(args.dds_profile).name if args.dds_profile else "Fast DDS defaults",
            "params": list(args.param), "stamp": args.stamp,
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
    if args.stages and times and stages_file.is_file():
        report.update({f"stage_ms_p50_{k}": v for k, v in stage_split(json.loads(stages_file.read_text()),
                                                                      times).items()})
    return report


def stage_split(node_stamps: dict, driver_times: dict) -> dict:
    """p50 (ms) of each stage of the single images: from the driver's publish call and receipts and the node's
    recorded times (wall clock in ns on both sides, keyed by the image stamp)."""
    rows = []
    for stamp, (pub_start, _) in driver_times["publish"].items():
        n, recv = node_stamps.get(stamp, {}), driver_times["received"].get(stamp)
        if recv is None or not all(k in n for k in ("callback", "work", "decoded", "processed", "pose_publish")):
            continue
        t = [int(stamp), pub_start, n["callback"], n["work"], n["decoded"], n["processed"], n["pose_publish"], recv]
        rows.append([(b - a) / 1e6 for a, b in zip(t, t[1:])])
    return {k: round(float(np.median([r[i] for r in rows])), 2) if rows else None for i, k in enumerate(STAGES)}


# ------------------------------------------------------------------------------------------ the publisher
def bench_driver(env: dict, namespaces: list[str], stamp: str) -> DriverProc:
    """test/node_driver.py's driver as a child, run through this file (``--driver``) with ``stamp``'s order."""
    return DriverProc(env, namespaces, [sys.executable, __file__, "--driver", stamp, json.dumps(namespaces)],
                      stderr=subprocess.DEVNULL)


def run_driver(stamp: str, namespaces_json: str) -> int:
    """The publisher process: test/node_driver.py's Driver; with ``stamp == "publish"`` each image message is
    built before it is stamped, and the publish call and each ``pose`` receipt are recorded (``times``)."""
    import time as _time

    import node_driver as nd

    class BenchDriver(nd.Driver):
        def __init__(self, namespaces):
            super().__init__(namespaces)
            self.published_ns: dict[int, tuple[int, int]] = {}  # stamp -> publish call (start, end), wall clock

        def _send(self, topic, kind, msg, t_ns):
            if topic not in self.pubs:
                self.pubs[topic] = self.node.create_publisher(nd.KINDS[kind], topic, nd.INPUT_QOS)
            msg.header.stamp.sec, msg.header.stamp.nanosec = divmod(int(t_ns), 1_000_000_000)
            start = _time.time_ns()
            self.pubs[topic].publish(msg)
            self.published_ns[int(t_ns)] = (start, _time.time_ns())

        def publish(self, topic, kind, fields, stamp_ns=None):
            if stamp == "build":
                return super().publish(topic, kind, fields, stamp_ns)
            msg = self._msg(kind, fields, 0)  # decoded and filled before the stamp
            t = int(stamp_ns) if stamp_ns is not None else self.now_ns()
            self._send(topic, kind, msg, t)
            return {"stamp_ns": t}

        def roundtrip(self, topic, kind, fields, ns, timeout=30.0, retry_s=2.0, extra=()):
            if stamp == "build" or extra:
                return super().roundtrip(topic, kind, fields, ns, timeout, retry_s, extra)
            msg = self._msg(kind, fields, 0)
            deadline, stamps = _time.monotonic() + float(timeout), []
            while _time.monotonic() < deadline:
                stamps.append(self.now_ns())
                self._send(topic, kind, msg, stamps[-1])
                end = min(deadline, _time.monotonic() + float(retry_s))
                while _time.monotonic() < end:
                    for s in stamps:
                        r = self.outputs(ns, s, 0.0)
                        if not r["missing"]:
                            return {**r, "stamp_ns": s, "attempts": len(stamps)}
                    _time.sleep(0.01)
            return {"outputs": {}, "missing": list(nd.OUTPUTS), "stamp_ns": None, "attempts": len(stamps)}

        def flood(self, topic, kind, fields, hz, seconds):
            if stamp == "build":
                return super().flood(topic, kind, fields, hz, seconds)
            msg, period, n, first, last = self._msg(kind, fields, 0), 1.0 / float(hz), 0, None, None
            t0 = _time.monotonic()
            while _time.monotonic() - t0 < float(seconds):
                last = self.now_ns()
                self._send(topic, kind, msg, last)
                first = first or last
                n += 1
                _time.sleep(max(0.0, t0 + n * period - _time.monotonic()))
            return {"published": n, "first_ns": first, "last_ns": last}

        def times(self, since_ns, until_ns):
            with self.lock:
                recv = {str(s): r for (t, s), r in self.received_ns.items() if t.endswith("/pose")}
            return {"publish": {str(s): v for s, v in self.published_ns.items() if since_ns <= s < until_ns},
                    "received": recv}

    nd.Driver = BenchDriver
    sys.argv = [sys.argv[0], namespaces_json]
    return nd.main()


# ---------------------------------------------------------------------------------- the node, with stages
def node_with_stages(ros_args: list[str]) -> int:
    """``localizer_node`` with wall-clock times (ns) per image stamp written to $BENCH_NODE_STAGES at exit:
    ``callback`` (the executor's image callback), ``work`` (the worker took the frame), ``decoded``, ``processed``
    (the pipeline returned), ``pose_publish`` (``pose`` built, its publish call starts)."""
    import time as _time

    from unifygeo_ros.ros import node as node_mod

    rec: dict[str, dict[str, int]] = {}

    def mark(stamp, what):
        rec.setdefault(str(stamp.sec * 1_000_000_000 + stamp.nanosec), {})[what] = _time.time_ns()

    cls = node_mod.LocalizerNode
    on_image, localize, publish_fix = cls._on_image, cls._localize, cls._publish_fix

    def _on_image(self, msg):
        mark(msg.header.stamp, "callback")
        on_image(self, msg)

    def _localize(self, frame):
        mark(frame.stamp, "work")
        decode = frame.decode

        def timed_decode():
            rgb = decode()
            mark(frame.stamp, "decoded")
            return rgb

        frame.decode = timed_decode
        localize(self, frame)

    def _publish_fix(self, frame, fix):
        mark(frame.stamp, "processed")
        pub = self.pub_pose

        class Marked:
            def publish(self, msg):
                mark(msg.header.stamp, "pose_publish")
                pub.publish(msg)

        self.pub_pose = Marked()
        try:
            publish_fix(self, frame, fix)
        finally:
            self.pub_pose = pub

    cls._on_image, cls._localize, cls._publish_fix = _on_image, _localize, _publish_fix
    atexit.register(lambda: Path(os.environ["BENCH_NODE_STAGES"]).write_text(json.dumps(rec)))
    return node_mod.main(ros_args)


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--driver":
        sys.exit(run_driver(sys.argv[2], sys.argv[3]))
    if len(sys.argv) > 1 and sys.argv[1] == "--node-with-stages":
        sys.exit(node_with_stages([sys.argv[0]] + sys.argv[2:]))
    sys.exit(main())
