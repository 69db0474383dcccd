"""A ROS 2 process the node tests drive through stdin/stdout: it publishes inputs and records every output.

Run with the ROS environment of test/ros_helpers.py:ros_subprocess_env(). One JSON object per line in, one per
line out (``{"ok": true, ...}`` or ``{"ok": false, "error": ...}``). Commands (``op``):

* ``publish``: ``topic``, ``kind`` (image | compressed | camera_info | imu | odometry), ``fields`` (message fields;
  ``data`` in base64), ``stamp_ns`` (default: now) -> ``stamp_ns``
* ``outputs``: ``ns``, ``stamp_ns``, ``timeout`` -> the four outputs with that stamp (``missing`` lists the others)
* ``roundtrip``: ``publish`` repeated every ``retry_s`` with a fresh stamp until ``outputs`` has all four (best-
  effort input may lose the first sample before discovery completes) -> outputs + ``stamp_ns``
* ``flood``: ``topic``, ``kind``, ``fields``, ``hz``, ``seconds`` -> ``published``, ``first_ns``, ``last_ns``
* ``count``: ``ns``, ``since_ns`` -> number of ``pose`` messages stamped at or after ``since_ns``
* ``latencies``: ``ns``, ``since_ns`` -> ``ms``: image stamp to receipt of its ``pose``, per fix
* ``diagnostics``: ``name_contains``, ``after_ns``, ``timeout``, optional ``until_message``/``until_level``
  -> the newest matching status received after ``after_ns`` ({level, message, values})
* ``set_param``: ``node``, ``name``, ``value`` -> ``successful``
* ``quit``
"""
from __future__ import annotations

import base64
import json
import sys
import threading
import time

import rclpy
from diagnostic_msgs.msg import DiagnosticArray
from geographic_msgs.msg import GeoPoseStamped, GeoPoseWithCovarianceStamped
from geometry_msgs.msg import PoseWithCovarianceStamped
from nav_msgs.msg import Odometry
from rclpy.executors import SingleThreadedExecutor
from rclpy.parameter import Parameter
from rclpy.qos import QoSProfile, ReliabilityPolicy
from sensor_msgs.msg import CameraInfo, CompressedImage, Image, Imu, NavSatFix

OUTPUTS = {"geopose": GeoPoseStamped, "geopose_with_covariance": GeoPoseWithCovarianceStamped, "fix": NavSatFix,
           "pose": PoseWithCovarianceStamped}
KINDS = {"image": Image, "compressed": CompressedImage, "camera_info": CameraInfo, "imu": Imu, "odometry": Odometry}
RELIABLE = QoSProfile(depth=50, reliability=ReliabilityPolicy.RELIABLE)
# inputs: reliable writer (matches the node's best-effort reader; delivery is then best effort)
INPUT_QOS = QoSProfile(depth=5, reliability=ReliabilityPolicy.RELIABLE)


def to_dict(m):
    if hasattr(m, "get_fields_and_field_types"):
        return {k: to_dict(getattr(m, k)) for k in m.get_fields_and_field_types()}
    if isinstance(m, (bytes, bytearray)):
        return len(m)
    if hasattr(m, "tolist"):
        return m.tolist()
    if isinstance(m, (list, tuple)):
        return [to_dict(x) for x in m]
    return m


def stamp_ns(stamp) -> int:
    return int(stamp.sec) * 1_000_000_000 + int(stamp.nanosec)


class Driver:
    def __init__(self, namespaces: list[str]):
        self.node = rclpy.create_node("unifygeo_test_driver")
        self.lock = threading.Lock()
        self.got: dict[tuple[str, str, int], dict] = {}
        self.received_ns: dict[tuple[str, int], int] = {}  # (topic, stamp) -> wall-clock receipt
        self.diag: list[tuple[int, dict]] = []
        self.pubs = {}
        for ns in namespaces:
            for name, cls in OUTPUTS.items():
                topic = f"{ns}/{name}"
                self.node.create_subscription(cls, topic, lambda m, t=topic: self._store(t, m), RELIABLE)
        self.node.create_subscription(DiagnosticArray, "/diagnostics", self._on_diag, RELIABLE)
        self.executor = SingleThreadedExecutor()
        self.executor.add_node(self.node)
        threading.Thread(target=self.executor.spin, daemon=True).start()

    def _store(self, topic, m):
        now = self.now_ns()
        with self.lock:
            self.got[(topic, stamp_ns(m.header.stamp))] = to_dict(m)
            self.received_ns[(topic, stamp_ns(m.header.stamp))] = now

    def _on_diag(self, m):
        now = time.time_ns()
        with self.lock:
            for s in m.status:
                self.diag.append((now, {"name": s.name, "level": int.from_bytes(s.level, "little")
                                        if isinstance(s.level, bytes) else int(s.level), "message": s.message,
                                        "values": {kv.key: kv.value for kv in s.values}}))
            del self.diag[:-200]

    def now_ns(self) -> int:
        return self.node.get_clock().now().nanoseconds

    def _msg(self, kind, fields, t_ns):
        msg = KINDS[kind]()
        for k, v in fields.items():
            if k == "data":
                msg.data = base64.b64decode(v)
            elif k == "header":
                msg.header.frame_id = v.get("frame_id", "")
            elif k == "orientation":  # Imu: {"x", "y", "z", "w"}
                for axis, value in v.items():
                    setattr(msg.orientation, axis, float(value))
            elif k == "twist":  # Odometry: {"linear": {"x": ...}, "angular": {"z": ...}, "covariance": [36]}
                for part in ("linear", "angular"):
                    for axis, value in v.get(part, {}).items():
                        setattr(getattr(msg.twist.twist, part), axis, float(value))
                if "covariance" in v:
                    msg.twist.covariance = [float(x) for x in v["covariance"]]
            else:
                setattr(msg, k, v)
        msg.header.stamp.sec, msg.header.stamp.nanosec = divmod(int(t_ns), 1_000_000_000)
        return msg

    def publish(self, topic, kind, fields, stamp_ns=None):
        if topic not in self.pubs:
            self.pubs[topic] = self.node.create_publisher(KINDS[kind], topic, INPUT_QOS)
        t = int(stamp_ns) if stamp_ns is not None else self.now_ns()
        self.pubs[topic].publish(self._msg(kind, fields, t))
        return {"stamp_ns": t}

    def outputs(self, ns, stamp_ns, timeout=10.0):
        deadline = time.monotonic() + float(timeout)
        while True:
            with self.lock:
                out = {n: self.got.get((f"{ns}/{n}", int(stamp_ns))) for n in OUTPUTS}
            missing = [n for n, v in out.items() if v is None]
            if not missing or time.monotonic() > deadline:
                return {"outputs": {k: v for k, v in out.items() if v is not None}, "missing": missing}
            time.sleep(0.02)

    def roundtrip(self, topic, kind, fields, ns, timeout=30.0, retry_s=2.0, extra=()):
        deadline = time.monotonic() + float(timeout)
        stamps = []
        while time.monotonic() < deadline:
            t = self.now_ns()
            for e in extra:  # e.g. the other cameras of a rig, same stamp
                self.publish(e["topic"], e["kind"], e["fields"], t)
            self.publish(topic, kind, fields, t)
            stamps.append(t)
            end = min(deadline, time.monotonic() + float(retry_s))
            while time.monotonic() < end:
                for s in stamps:
                    r = self.outputs(ns, s, 0.0)
                    if not r["missing"]:
                        return {**r, "stamp_ns": s, "attempts": len(stamps)}
                time.sleep(0.05)
        return {"outputs": {}, "missing": list(OUTPUTS), "stamp_ns": None, "attempts": len(stamps)}

    def flood(self, topic, kind, fields, hz, seconds):
        period = 1.0 / float(hz)
        n, first = 0, None
        t0 = time.monotonic()
        while time.monotonic() - t0 < float(seconds):
            r = self.publish(topic, kind, fields)
            first = first or r["stamp_ns"]
            n += 1
            time.sleep(max(0.0, t0 + n * period - time.monotonic()))
        return {"published": n, "first_ns": first, "last_ns": r["stamp_ns"]}

    def latencies(self, ns, since_ns):
        """Image stamp -> receipt of its ``pose`` here, ms, for the fixes stamped at or after ``since_ns``."""
        with self.lock:
            return {"ms": [(r - s) / 1e6 for (t, s), r in self.received_ns.items()
                           if t == f"{ns}/pose" and s >= int(since_ns)]}

    def count(self, ns, since_ns):
        with self.lock:
            return {"count": sum(1 for (t, s) in self.got if t == f"{ns}/pose" and s >= int(since_ns))}

    def diagnostics(self, name_contains, after_ns, timeout=10.0, until_message=None, until_level=None):
        deadline = time.monotonic() + float(timeout)
        while True:
            with self.lock:
                hits = [d for t, d in self.diag if t >= int(after_ns) and name_contains in d["name"]
                        and (until_message is None or until_message.lower() in d["message"].lower())
                        and (until_level is None or d["level"] == int(until_level))]
            if hits or time.monotonic() > deadline:
                return {"status": hits[-1] if hits else None}
            time.sleep(0.05)

    def set_param(self, node, name, value):
        from rclpy.parameter_client import AsyncParameterClient

        client = AsyncParameterClient(self.node, node)
        if not client.wait_for_services(timeout_sec=10.0):
            return {"successful": False, "reason": "parameter services not available"}
        fut = client.set_parameters([Parameter(name, value=value)])
        deadline = time.monotonic() + 10.0
        while not fut.done() and time.monotonic() < deadline:
            time.sleep(0.02)
        res = fut.result().results[0] if fut.done() else None
        return {"successful": bool(res and res.successful), "reason": res.reason if res else "timeout"}


def main() -> int:
    rclpy.init()
    driver = Driver(json.loads(sys.argv[1]))
    print(json.dumps({"ok": True, "ready": True}), flush=True)
    for line in sys.stdin:
        if not line.strip():
            continue
        req = json.loads(line)
        op = req.pop("op")
        if op == "quit":
            break
        try:
            res = {"ok": True, **getattr(driver, op)(**req)}
        except Exception as exc:  # reported to the test
            res = {"ok": False, "error": f"{type(exc).__name__}: {exc}"}
        print(json.dumps(res), flush=True)
    driver.executor.shutdown(timeout_sec=1.0)
    rclpy.try_shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main())
