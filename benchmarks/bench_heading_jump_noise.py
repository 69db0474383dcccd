"""How far an IMU's turn and the wheel odometry's disagree between consecutive frames (``tracking.heading_jump_deg``).

    python benchmarks/bench_heading_jump_noise.py BAG [BAG ...] [--out benchmarks/results/heading_jump_noise.json]

For each bag of ``unifygeo bag synth`` (``/imu/data``, ``/wheel/odometry``, the first image topic, ``/gt/kidnap``):
the IMU's yaw and the odometry's integrated yaw rate at the frames' stamps, and per pair of consecutive frames the
IMU's turn less the odometry's. Normal driving (every pair but the one spanning a kidnap) gives the rule's noise
floor; the kidnap's pair what a teleport that turns the robot looks like. Prints one line per bag and writes the
figures as JSON. Figures only; nothing is asserted.
"""
from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from unifygeo_ros import geo  # noqa: E402


def bag_series(bag: Path) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, list[int]]:
    """(IMU stamps ns, IMU yaw rad (unwrapped), odometry stamps ns, odometry yaw rate rad/s, frame stamps, kidnaps)."""
    from rosbags.highlevel import AnyReader
    with AnyReader([bag]) as r:
        by = {c.topic: c for c in r.connections}
        image = next(c for c in r.connections
                     if c.msgtype in ("sensor_msgs/msg/Image", "sensor_msgs/msg/CompressedImage"))
        imu, yaw = [], []
        for c, t, raw in r.messages(connections=[by["/imu/data"]]):
            q = r.deserialize(raw, c.msgtype).orientation
            imu.append(t)
            yaw.append(math.radians(geo.quaternion_xyzw_to_yaw_deg(q.x, q.y, q.z, q.w)))
        odo, rate = [], []
        for c, t, raw in r.messages(connections=[by["/wheel/odometry"]]):
            odo.append(t)
            rate.append(r.deserialize(raw, c.msgtype).twist.twist.angular.z)
        frames = sorted({t for _, t, _ in r.messages(connections=[image])})
        kidnaps = [t for _, t, _ in r.messages(connections=[by["/gt/kidnap"]])] if "/gt/kidnap" in by else []
    return (np.array(imu), np.unwrap(np.array(yaw)), np.array(odo), np.array(rate), np.array(frames), kidnaps)


def turn_differences_deg(bag: Path) -> tuple[np.ndarray, np.ndarray]:
    """(|IMU turn - odometry turn| per consecutive frame pair in normal driving, the same across each kidnap), deg."""
    imu_t, imu_yaw, odo_t, rate, frames, kidnaps = bag_series(bag)
    odo_yaw = np.concatenate([[0.0], np.cumsum(rate[1:] * np.diff(odo_t) / 1e9)])
    diff = np.diff(np.interp(frames, imu_t, imu_yaw)) - np.diff(np.interp(frames, odo_t, odo_yaw))
    diff = np.degrees(np.abs(geo.wrap_pi(diff)))
    across = np.zeros(len(diff), bool)
    for k in kidnaps:
        across |= (frames[:-1] <= k) & (frames[1:] >= k)
    return diff[~across], diff[across]


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("bags", nargs="+", type=Path)
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "heading_jump_noise.json")
    args = ap.parse_args(argv)
    rows = []
    for bag in args.bags:
        normal, kidnap = turn_differences_deg(bag)
        name = f"{bag.parent.parent.name}/{bag.name}"  # the drive set and the drive
        rows.append({"bag": name, "frame_pairs": int(len(normal)), "max_deg": float(normal.max()),
                     "p99_deg": float(np.percentile(normal, 99)), "kidnap_deg": [float(x) for x in kidnap]})
        print(f"{name:40s} {len(normal):4d} frame pairs: |IMU turn - odometry turn| max {normal.max():5.2f} deg, "
              f"p99 {np.percentile(normal, 99):4.1f} deg; across the kidnap {', '.join(f'{x:.0f}' for x in kidnap)}")
    pairs = sum(r["frame_pairs"] for r in rows)
    worst = max(r["max_deg"] for r in rows)
    kid = [x for r in rows for x in r["kidnap_deg"]]
    print(f"{len(rows)} bags, {pairs} frame pairs: normal driving at most {worst:.2f} deg; kidnaps "
          f"{min(kid):.0f}-{max(kid):.0f} deg" if kid else "")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"bags": rows, "frame_pairs": pairs, "max_deg": worst}, indent=1) + "\n")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
