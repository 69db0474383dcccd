"""Tracking a robot that stands still (issue #17; docs/TRACKING.md 'Standing still'): drives that stand before they
move and again at a stop, replayed in ``mode: tracking``, with figures per phase (standing / driving); the same for
drives that lose their odometry for a while or have worse sensors ('Odometry gaps', 'An odometry whose scale is off').

    nice .venv/bin/python benchmarks/bench_tracking_stops.py [--seeds 5151,5252,5353]
        [--rigs pano2,pin2,pin10,rig5,pano10] [--duration 180] [--stops 0:60,110:30]
        [--work out/stops] [--runs rpn] [--tag tracking_stops] [--out benchmarks/results]
    # a creeping robot (1.2 m/s, 10 Hz: 0.12 m between frames), with another evidence_min_share
    nice .venv/bin/python benchmarks/bench_tracking_stops.py --seeds 5151,5252 --rigs pano10,pin10 --duration 90 \\
        --speed 1.2 --stops "" --work out/creep --runs runs_low --track-set evidence_min_share=0.025
    # odometry gaps instead of stops: the drives without stops, their wheel odometry cut from 40 s to 50 s
    nice .venv/bin/python benchmarks/bench_tracking_stops.py --seeds 5252 --rigs pano2,pin2 --duration 120 \\
        --stops "" --odometry-gap 40:10 --work out/odogap --runs runs --tag tracking_odometry_gap
    # worse sensors: drives with a kidnap whose wheel odometry's scale is off by several per cent (each city its
    # own sensor seed); one --work per sensor set (symlink cities/ and ix_* from out/stops to share them)
    nice .venv/bin/python benchmarks/bench_tracking_stops.py --rigs pano2,pin2,rig5 --duration 150 --stops "" \\
        --synth-args "--sensor-seed {seed} --kidnap-at 60 --odom-speed-bias 0.05 --odom-yaw-rate-bias 0.5" \\
        --work out/sens/odo --runs runs --tag tracking_sensors_odo

1. **Cities**: ``unifygeo synth --city Stop<seed> --seed <seed> --size-m 300 --panos 20 --no-map`` (seeds no
   training run, tuning or other benchmark uses), indexed with models/demo (panoramas) and models/fov (pinhole
   cameras) like ``unifygeo index build --vigor``; written under ``--work`` when missing.
2. **Drives**: ``unifygeo bag synth`` (its own code) per city and rig, ``--duration`` s at ``--speed`` (8 m/s) with
   ``--stops`` (default: standing the first 60 s, then 30 s from 110 s; ``bag synth --stop``), the default wheel
   odometry and IMU noise (or ``--synth-args``: more ``bag synth`` flags, ``{seed}`` the city's seed; a
   ``--kidnap-at`` a small city cannot jump 200 m from is moved on by 2.5 s until it can), MCAP. Rigs: ``pano2`` /
   ``pano10`` a vehicle-aligned panorama at 2 / 10 Hz, ``pin2`` / ``pin10`` one front 90 deg camera at 2 / 10 Hz,
   ``rig5`` four 90 deg cameras at 5 Hz.
3. **Replays**: ``unifygeo replay BAG --index IX --checkpoint MODEL --track`` (topics taken from the bag) into
   ``<work>/<runs>/<bag>``, skipped where its ``metrics.json`` exists: to compare code versions, run this script in
   a worktree of each with its own ``--runs`` (the drives are shared).
   With ``--odometry-gap S:DURATION`` each bag is copied without its ``/wheel/odometry`` messages from S for
   DURATION seconds (a driver restart, a CAN bus that drops out) and the copy is replayed; the phases are then
   before, during and after the gap.
4. **Figures** per replay and phase (each stop, and the driving between and after them; with a kidnap and no
   stops: before it, its first 10 s, after them): frames, published, error
   median / max, protection level median, published frames beyond their protection level and > 20 m off, mean NEES
   of the published frames; per replay availability and (re)initialisations; with ``--synth-args``, what the
   drive's sensors got wrong (:func:`sensor_errors`).

Writes ``<out>/<tag>.json`` and ``<tag>.png`` (error over time of each replay, the stops shaded). Nothing is
asserted.
"""
from __future__ import annotations

import argparse
import csv
import json
import os
import platform
import shlex
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_tracking_defaults import frame_nees  # noqa: E402

RIGS = {"pano2": ["--rate", "2"], "pano10": ["--rate", "10"],
        "pin2": ["--rate", "2", "--camera", "pinhole", "--hfov", "90"],
        "pin10": ["--rate", "10", "--camera", "pinhole", "--hfov", "90"],
        "rig5": ["--rate", "5", "--camera", "pinhole", "--cameras", "4", "--hfov", "90"]}


def unifygeo(*args: str, log: Path | None = None) -> None:
    """Run the ``unifygeo`` command of this checkout (one torch thread), its output to ``log``."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
    if log is not None:
        log.parent.mkdir(parents=True, exist_ok=True)
    with open(log or os.devnull, "w") as fh:
        subprocess.run([sys.executable, "-m", "unifygeo_ros.cli", *args], check=True, stdout=fh,
                       stderr=subprocess.STDOUT, env=env)


def prepare(work: Path, seed: int, rigs: list[str], duration_s: float, stops: list[str], speed_mps: float,
            synth_args: list[str] = ()) -> None:
    city = work / "cities" / f"Stop{seed}"
    if not (city / "geo.json").is_file():
        unifygeo("synth", "--out", str(work / "cities"), "--city", city.name, "--seed", str(seed), "--size-m", "300",
                 "--panos", "20", "--no-map", "--no-progress")
    for model in ("demo", "fov"):
        ix = work / f"ix_{model}_{seed}"
        if not (ix / "index.json").is_file():
            unifygeo("index", "build", "--checkpoint", str(ROOT / "models" / model), "--out", str(ix), "--vigor",
                     str(city))
    for rig in rigs:
        bag = work / "bags" / f"{rig}_{seed}"
        if not (bag / "metadata.yaml").is_file():
            t0 = time.perf_counter()
            extra = [a.format(seed=seed) for a in synth_args]
            while True:
                try:
                    unifygeo("bag", "synth", "--data", str(city), "--out", str(bag), "--duration", f"{duration_s:g}",
                             "--speed", f"{speed_mps:g}", "--storage", "mcap",
                             *[a for s in stops for a in ("--stop", s)], *RIGS[rig], *extra, log=work / "synth.log")
                    break
                except subprocess.CalledProcessError:  # a small city allows 200 m jumps from some places only
                    k = extra.index("--kidnap-at") + 1 if "--kidnap-at" in extra else None
                    if k is None or "cannot teleport" not in (work / "synth.log").read_text() or \
                            float(extra[k]) >= duration_s - 30.0:
                        raise
                    extra[k] = f"{float(extra[k]) + 2.5:g}"
            print(f"  bag {bag.name}: {time.perf_counter() - t0:.0f} s", flush=True)


def sensor_errors(bag: Path) -> dict:
    """What the drive's sensors got wrong, measured against its ground truth: the IMU's yaw minus the true yaw
    (median, and the 95th percentile of its size, deg; /imu/data vs /gt/geopose interpolated, a kidnap's second
    left out) and the wheel odometry's distance over the true distance minus 1 (its speed scale error)."""
    from unifygeo_ros import geo
    from unifygeo_ros.rosbag.io import iter_messages, open_bag

    series: dict[str, list] = {"/imu/data": [], "/gt/geopose": [], "/wheel/odometry": [], "/gt/fix": []}
    with open_bag(bag) as r:
        conns = [c for c in r.connections if c.topic in series]
        for c, t_ns, m in iter_messages(r, conns):
            t = m.header.stamp.sec + 1e-9 * m.header.stamp.nanosec
            if c.topic == "/wheel/odometry":
                series[c.topic].append((t, m.twist.twist.linear.x))
            elif c.topic == "/gt/fix":
                series[c.topic].append((t, m.latitude, m.longitude))
            else:
                q = m.pose.orientation if c.topic == "/gt/geopose" else m.orientation
                series[c.topic].append((t, np.degrees(np.arctan2(2 * (q.w * q.z + q.x * q.y),
                                                                 1 - 2 * (q.y * q.y + q.z * q.z)))))
    imu, gt = np.array(series["/imu/data"]), np.array(series["/gt/geopose"])
    gt_yaw = np.interp(imu[:, 0], gt[:, 0], np.degrees(np.unwrap(np.radians(gt[:, 1]))))
    d_yaw = (imu[:, 1] - gt_yaw + 180.0) % 360.0 - 180.0
    odo, fix = np.array(series["/wheel/odometry"]), np.array(series["/gt/fix"])
    en = np.stack(geo.LocalENU(fix[0, 1], fix[0, 2]).to_en(fix[:, 1], fix[:, 2]), axis=1)
    step = np.linalg.norm(np.diff(en, axis=0), axis=1)
    jump = step > 5.0  # a kidnap: the truth jumps, the odometry does not
    true_m = float(step[~jump].sum())
    odo_m = float(np.sum(odo[1:, 1] * np.diff(odo[:, 0])))
    near_jump = np.zeros(len(imu), bool)
    for t in fix[1:][jump, 0]:  # the truth's heading across a jump is no heading: leave 1 s around it out
        near_jump |= np.abs(imu[:, 0] - t) < 1.0
    d_yaw = d_yaw[~near_jump]
    return {"imu_yaw_error_median_deg": float(np.median(d_yaw)), "imu_yaw_error_p95_deg": float(
            np.percentile(np.abs(d_yaw), 95)), "odometry_scale_error": odo_m / true_m - 1.0 if true_m > 0 else None}


def without_odometry(src: Path, dst: Path, start_s: float, duration_s: float,
                     topic: str = "/wheel/odometry") -> None:
    """A copy of the bag ``src`` without ``topic``'s messages logged from ``start_s`` for ``duration_s`` (seconds
    after the bag's start); the bag's metadata description goes along."""
    import yaml
    from rosbags.rosbag2 import Reader, StoragePlugin, Writer

    from unifygeo_ros.rosbag.synth_topics import METADATA_KEY

    custom = yaml.safe_load((src / "metadata.yaml").read_text())["rosbag2_bagfile_information"].get("custom_data")
    with Reader(src) as r:
        w = Writer(dst, version=9, storage_plugin=StoragePlugin.MCAP)
        w.open()
        conns = {c.id: w.add_connection(c.topic, c.msgtype, msgdef=c.msgdef.data, rihs01=c.digest,
                                        serialization_format=c.ext.serialization_format,
                                        offered_qos_profiles=c.ext.offered_qos_profiles) for c in r.connections}
        for c, t_ns, raw in r.messages():
            if not (c.topic == topic and start_s <= (t_ns - r.start_time) / 1e9 < start_s + duration_s):
                w.write(conns[c.id], t_ns, raw)
        if custom and METADATA_KEY in custom:
            w.set_custom_data(METADATA_KEY, custom[METADATA_KEY])
        w.close()


def phases(duration_s: float, stops: list[str]) -> list[tuple[float, float, str]]:
    """(start, end, name) of every stop and of the driving before, between and after them."""
    out, t = [], 0.0
    for k, s in enumerate(stops):
        at, dur = (float(x) for x in s.split(":"))
        if at > t:
            out.append((t, at, f"drive{k}"))
        out.append((at, at + dur, f"stand{k}"))
        t = at + dur
    out.append((t, duration_s + 1.0, f"drive{len(stops)}"))
    return out


def figures(run: Path, spans: list[tuple[float, float, str]]) -> dict:
    with open(run / "frames.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    t0 = float(rows[0]["t_s"])
    metrics = json.loads((run / "metrics.json").read_text())
    tr = metrics["tracking"]
    out = {"availability": tr["availability"], "kidnap_at_s": tr.get("kidnap_at_s"),
           "recovered_after_kidnap_s": tr.get("recovered_after_kidnap_s"),
           "reinitialisations": sum(1 for r in rows if r["reinitialised"]), "phases": {}}
    k = tr.get("kidnap_at_s")
    if k is not None and len(spans) == 1:  # a drive without stops or gaps, with a kidnap: before, its 10 s, after
        spans = [(0.0, k, "before_kidnap"), (k, k + 10.0, "kidnap_10s"), (k + 10.0, spans[0][1], "after_kidnap")]
    for a, b, name in spans:
        ph = [r for r in rows if a <= float(r["t_s"]) - t0 < b]
        pub = [r for r in ph if r["status"] == "fix"]
        err = np.array([float(r["error_m"]) for r in pub])
        pl = np.array([float(r["protection_level_m"]) for r in pub])
        nees = [v for v in map(frame_nees, pub) if v is not None]
        out["phases"][name] = {
            "frames": len(ph), "published": len(pub),
            "error_median_m": float(np.median(err)) if len(pub) else None,
            "error_max_m": float(err.max()) if len(pub) else None,
            "pl_median_m": float(np.median(pl)) if len(pub) else None,
            "beyond_pl": int((err > pl).sum()), "over_20m": int((err > 20.0).sum()),
            "nees_mean": float(np.mean(nees)) if nees else None}
    return out


def plot(results: dict, work: Path, runs: str, stops: list[str], path: Path) -> None:
    from unifygeo_ros.plots import plt

    names = sorted(results)
    fig, axes = plt.subplots(len(names), 1, figsize=(10, 1.6 * len(names)), squeeze=False, sharex=True)
    for ax, name in zip(axes[:, 0], names):
        with open(work / runs / name / "frames.csv", newline="") as fh:
            rows = list(csv.DictReader(fh))
        t0 = float(rows[0]["t_s"])
        t = np.array([float(r["t_s"]) - t0 for r in rows])
        e = np.array([float(r["error_m"]) if r["status"] == "fix" and r["error_m"] else np.nan for r in rows])
        pl = np.array([float(r["protection_level_m"]) if r["status"] == "fix" else np.nan for r in rows])
        for s in stops:
            at, dur = (float(x) for x in s.split(":"))
            ax.axvspan(at, at + dur, color="0.9")
        ax.semilogy(t, np.maximum(e, 0.05), ".", ms=2, label="error (published)")
        ax.semilogy(t, pl, "-", lw=0.8, label="protection level")
        ax.set_ylabel(name, fontsize=8)
    axes[0, 0].legend(fontsize=7, loc="upper right")
    axes[-1, 0].set_xlabel("time since the first frame (s); grey: standing (or no odometry)")
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seeds", default="5151,5252,5353")
    ap.add_argument("--rigs", default="pano2,pin2,pin10,rig5,pano10")
    ap.add_argument("--duration", type=float, default=180.0)
    ap.add_argument("--stops", default="0:60,110:30", help="bag synth --stop values, comma-separated ('': none)")
    ap.add_argument("--speed", type=float, default=8.0, help="cruise speed of the drives, m/s")
    ap.add_argument("--track-set", action="append", default=[], metavar="KEY=VALUE",
                    help="tracking settings for the replays (unifygeo replay --track-set)")
    ap.add_argument("--odometry-gap", metavar="S:DURATION", help="replay copies of the bags without wheel odometry "
                    "from S for DURATION seconds")
    ap.add_argument("--synth-args", default="", metavar="'FLAGS'",
                    help="more bag synth flags, shell-split; {seed} is the city's seed, e.g. "
                         "'--sensor-seed {seed} --imu-yaw-bias 10'")
    ap.add_argument("--work", default="out/stops")
    ap.add_argument("--runs", default="runs", help="folder under --work for this code version's replays")
    ap.add_argument("--tag", default="tracking_stops")
    ap.add_argument("--out", default="benchmarks/results")
    args = ap.parse_args(argv)
    work, t_start, load0 = ROOT / args.work, time.perf_counter(), os.getloadavg()[0]
    rigs, stops = args.rigs.split(","), [x for x in args.stops.split(",") if x]
    gap = tuple(float(x) for x in args.odometry_gap.split(":")) if args.odometry_gap else None
    spans = phases(args.duration, [args.odometry_gap] if gap else stops)
    if gap:
        spans = [(a, b, n.replace("stand", "gap")) for a, b, n in spans]
    results = {}
    for seed in (int(s) for s in args.seeds.split(",")):
        prepare(work, seed, rigs, args.duration, stops, args.speed, shlex.split(args.synth_args))
        for rig in rigs:
            name = f"{rig}_{seed}"
            bag = work / "bags" / name
            if gap:
                name = f"{name}_gap"
                if not (work / "bags" / name / "metadata.yaml").is_file():
                    without_odometry(bag, work / "bags" / name, *gap)
                bag = work / "bags" / name
            run = work / args.runs / name
            if not (run / "metrics.json").is_file():
                model = "demo" if rig.startswith("pano") else "fov"
                t0 = time.perf_counter()
                unifygeo("replay", str(bag), "--index", str(work / f"ix_{model}_{seed}"),
                         "--checkpoint", str(ROOT / "models" / model), "--track", "--out", str(run),
                         *[a for kv in args.track_set for a in ("--track-set", kv)],
                         log=work / args.runs / f"{name}.log")
                print(f"  replay {name}: {time.perf_counter() - t0:.0f} s", flush=True)
            results[name] = figures(run, spans)
            if args.synth_args:
                results[name]["sensor_errors"] = sensor_errors(bag)
    lines = ["| drive | phase | published / frames | error median / max (m) | PL median (m) | beyond PL | > 20 m off | "
             "NEES |", "|" + "---|" * 8]
    for name, r in sorted(results.items()):
        for ph, f in r["phases"].items():
            med = "-" if f["error_median_m"] is None else f"{f['error_median_m']:.2f} / {f['error_max_m']:.2f}"
            lines.append(f"| {name} | {ph} | {f['published']} / {f['frames']} | {med} | "
                         f"{'-' if f['pl_median_m'] is None else format(f['pl_median_m'], '.2f')} | {f['beyond_pl']} | "
                         f"{f['over_20m']} | {'-' if f['nees_mean'] is None else format(f['nees_mean'], '.2f')} |")
    print("\n".join(lines))
    res = {"machine": {"cpu": platform.processor() or platform.machine(), "cores": os.cpu_count(), "threads": 1,
                       "load_avg_1min": [load0, os.getloadavg()[0]]},
           "date": time.strftime("%Y-%m-%d %H:%M"), "wall_s": time.perf_counter() - t_start, "seeds": args.seeds,
           "rigs": rigs, "stops": stops, "duration_s": args.duration, "synth_args": args.synth_args,
           "runs": args.runs, "results": results,
           "table": lines}
    out_dir = ROOT / args.out
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / f"{args.tag}.json").write_text(json.dumps(res, indent=1))
    plot(results, work, args.runs, [args.odometry_gap] if gap else stops, out_dir / f"{args.tag}.png")
    print(f"wrote {out_dir / args.tag}.json and .png")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
