"""``unifygeo replay --live``: plays a bag's images (a panorama, or a pinhole rig's images and CameraInfo), wheel
odometry and IMU to the running localizer node over DDS and collects what it publishes, as replay rows
(:class:`~unifygeo_ros.rosbag.replay_types.FrameResult`). Imports ROS (rclpy)."""
from __future__ import annotations

import math
import threading
import time
from typing import Any

import numpy as np
import rclpy
from geographic_msgs.msg import GeoPoseWithCovarianceStamped
from geometry_msgs.msg import PoseWithCovarianceStamped
from rclpy.executors import SingleThreadedExecutor
from rclpy.qos import HistoryPolicy, QoSProfile, ReliabilityPolicy
from nav_msgs.msg import Odometry
from sensor_msgs.msg import CameraInfo, CompressedImage, Image, Imu, NavSatFix

from unifygeo_ros.errors import UnifyGeoError
from unifygeo_ros.rosbag import io as bags
from unifygeo_ros.rosbag.replay_types import DROPPED, FIX, NO_FIX, FrameResult, quat_yaw_deg


class LiveNodeClient:
    """Plays images to the running localizer node over DDS and collects what it publishes.

    Publishes the bag's images (original header stamps) on the node's input topic (``image`` for
    ``sensor_msgs/Image``, ``image/compressed`` for ``sensor_msgs/CompressedImage``) at the recorded rate, and
    subscribes to its output (``geopose_with_covariance``, ``fix`` or ``pose``). The node stamps each output with
    the stamp of the image it came from, so outputs are matched to images by stamp; an image without an output
    ``live_timeout_s`` after the last one is a dropped frame (a frame without a fix). Latency = time from publishing
    an image to receiving its output.
    """

    def __init__(self, image_type: str, node_input: str | None, node_output: str, discovery_timeout_s: float = 20.0,
                 *, node_ns: str = "", rig: tuple = ()):
        """``node_ns``: the node's namespace (its relative topics below it); ``rig``: (name, bag image topic, bag
        info topic) per camera of a pinhole rig, published on ``<ns>/cameras/<name>/image`` (``image/compressed``
        when ``image_type`` is CompressedImage: the node's ``cameras.transport: compressed``) and ``camera_info``."""
        self.warnings: list[str] = []
        self.image_type = image_type
        self._rclpy = rclpy
        if not rclpy.ok():
            rclpy.init()
        self.node = rclpy.create_node("unifygeo_replay_live")
        ns = node_ns.rstrip("/")
        rel = (lambda name: f"{ns}/{name}" if ns else name)  # noqa: E731
        if image_type == bags.COMPRESSED_IMAGE and not rig:
            ImgT, topic_in = CompressedImage, node_input or rel("image/compressed")
        else:
            ImgT, topic_in = Image, node_input or rel("image")
        self._ImgT = ImgT
        node_output = node_output if node_output.startswith("/") else rel(node_output)
        out_t, self._out_kind = _output_type(node_output)
        qos = QoSProfile(depth=50, reliability=ReliabilityPolicy.RELIABLE, history=HistoryPolicy.KEEP_LAST)
        self._pubs: dict[str, Any] = {}  # bag topic -> publisher (rig cameras)
        rig_t, rig_suffix = ((CompressedImage, "image/compressed") if image_type == bags.COMPRESSED_IMAGE
                             else (Image, "image"))  # the node's cameras.transport compressed / raw
        for name, image_topic, info_topic in rig:
            self._pubs[image_topic] = self.node.create_publisher(rig_t, rel(f"cameras/{name}/{rig_suffix}"), qos)
            self._pubs[info_topic] = self.node.create_publisher(CameraInfo, rel(f"cameras/{name}/camera_info"), qos)
        self._sensor_pubs = {"odometry": self.node.create_publisher(Odometry, rel("odom"), qos),
                             "imu": self.node.create_publisher(Imu, rel("imu"), qos)}
        self.pub = self._pubs[rig[0][1]] if rig else self.node.create_publisher(ImgT, topic_in, qos)
        self.sub = self.node.create_subscription(out_t, node_output, self._on_output, qos)
        self.topic_in, self.topic_out = self.pub.topic_name, node_output
        self._sent: dict[int, tuple[int, float]] = {}  # stamp -> (index, publish wall time)
        self._got: dict[int, tuple[Any, float]] = {}
        self._lock = threading.Lock()
        self._index = -1
        self._t0_bag: int | None = None
        self._t0_wall = 0.0
        self.executor = SingleThreadedExecutor()
        self.executor.add_node(self.node)
        self._spin = threading.Thread(target=self.executor.spin, daemon=True)
        self._spin.start()
        deadline = time.monotonic() + discovery_timeout_s
        while self.pub.get_subscription_count() == 0:
            if time.monotonic() > deadline:
                self.close()
                raise UnifyGeoError(f"--live: no subscriber on {self.topic_in} after {discovery_timeout_s:g} s; start "
                                    "the node first (ros2 run unifygeo_ros localizer_node) with the same ROS_DOMAIN_ID")
            time.sleep(0.1)
        deadline = time.monotonic() + 2.0  # the node's odometry and IMU subscriptions, when it has them
        while (time.monotonic() < deadline
               and any(p.get_subscription_count() == 0 for p in [*self._pubs.values(), *self._sensor_pubs.values()])):
            time.sleep(0.1)
        # Discovery is two-sided: we have matched the node's reader, but a best-effort reader drops samples from a
        # writer it has not matched yet (measured: the first frame of a replay lost now and then under load)
        time.sleep(SETTLE_S)

    def _on_output(self, msg: Any) -> None:
        t = int(msg.header.stamp.sec) * 1_000_000_000 + int(msg.header.stamp.nanosec)
        with self._lock:
            self._got.setdefault(t, (msg, time.monotonic()))

    def _wait(self, t_ns: int) -> None:
        """Sleep until the recorded time ``t_ns`` (relative to the first message published)."""
        if self._t0_bag is None:
            self._t0_bag, self._t0_wall = t_ns, time.monotonic()
        wait = self._t0_wall + (t_ns - self._t0_bag) * 1e-9 - time.monotonic()
        if wait > 0:
            time.sleep(wait)

    def publish_sensor(self, kind: str, topic: str, bag_msg: Any, t_ns: int) -> None:
        """Publish a wheel odometry (``kind`` odometry) or IMU message at its recorded time on the node's ``odom``
        or ``imu``."""
        self._wait(t_ns)
        pub = self._sensor_pubs[kind]
        pub.publish(to_ros(bag_msg, pub.msg_type))

    def publish_frame(self, messages: list[tuple[str, str, Any]], t_ns: int) -> None:
        """One frame at its recorded time: a panorama (``image``), or a rig's CameraInfo and images; its outputs are
        expected with stamp ``t_ns``."""
        if len(messages) == 1 and messages[0][0] == "image":
            self.publish(messages[0][2], t_ns)
            return
        self._index += 1
        self._wait(t_ns)
        with self._lock:
            self._sent[t_ns] = (self._index, time.monotonic())
        for _, topic, msg in messages:
            pub = self._pubs[topic]
            pub.publish(to_ros(msg, pub.msg_type))

    def publish(self, bag_msg: Any, t_ns: int) -> None:
        """Publish one image at its recorded time (relative to the first message)."""
        self._index += 1
        self._wait(t_ns)
        m = self._ImgT()
        m.header.stamp.sec, m.header.stamp.nanosec = int(t_ns // 1_000_000_000), int(t_ns % 1_000_000_000)
        m.header.frame_id = str(bag_msg.header.frame_id)
        if self.image_type == bags.COMPRESSED_IMAGE:
            m.format = str(bag_msg.format)
            m.data = bytes(np.asarray(bag_msg.data, dtype=np.uint8).tobytes())
        else:
            m.height, m.width, m.encoding = int(bag_msg.height), int(bag_msg.width), str(bag_msg.encoding)
            m.is_bigendian, m.step = int(bag_msg.is_bigendian), int(bag_msg.step)
            m.data = bytes(np.asarray(bag_msg.data, dtype=np.uint8).tobytes())
        with self._lock:
            self._sent[t_ns] = (self._index, time.monotonic())
        self.pub.publish(m)

    def finish(self, timeout_s: float) -> list[FrameResult]:
        """Wait up to ``timeout_s`` for outstanding outputs, then turn everything into frame results."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            with self._lock:
                if all(t in self._got for t in self._sent):
                    break
            time.sleep(0.05)
        frames = []
        with self._lock:
            for t, (index, sent_wall) in sorted(self._sent.items()):
                fr = FrameResult(index=index, t_ns=t, status=DROPPED, note="no output from the node")
                if t in self._got:
                    msg, got_wall = self._got[t]
                    fr.latency_ms = (got_wall - sent_wall) * 1e3
                    _fill_from_output(fr, msg, self._out_kind)
                frames.append(fr)
            extra = [t for t in self._got if t not in self._sent]
        if extra:
            self.warnings.append(f"--live: {len(extra)} outputs on {self.topic_out} with stamps of no published image "
                                 "(another publisher on the input topic?) ignored")
        self.close()
        return frames

    def close(self) -> None:
        try:
            self.executor.shutdown(timeout_sec=1.0)
            self.node.destroy_node()
        finally:
            if self._rclpy.ok():
                self._rclpy.shutdown()


#: seconds to wait after discovery before the first message (the node's side matching this client's writers)
SETTLE_S = 1.0


def _output_type(topic: str):
    name = topic.rstrip("/").rsplit("/", 1)[-1]
    if name == "fix":
        return NavSatFix, "fix"
    if name == "pose":
        return PoseWithCovarianceStamped, "pose"
    return GeoPoseWithCovarianceStamped, "geopose_with_covariance"


def _fill_from_output(fr: FrameResult, msg: Any, kind: str) -> None:
    """Frame result from one node output. Covariances: NavSatFix ``position_covariance`` is ENU (east, north,
    up) m^2; GeoPoseWithCovariance's 6x6 is ordered (Lat, Lon, Alt, ...) as its message definition says - north
    first - in m^2, so its first 2x2 block is swapped into (east, north)."""
    if kind == "fix":
        if int(msg.status.status) < 0:
            fr.status, fr.note = NO_FIX, "node published STATUS_NO_FIX"
            return
        lat, lon, yaw = msg.latitude, msg.longitude, math.nan
        c = np.asarray(msg.position_covariance, float).reshape(3, 3)[:2, :2]
    elif kind == "geopose_with_covariance":
        p = msg.pose.pose
        lat, lon = p.position.latitude, p.position.longitude
        yaw = quat_yaw_deg(p.orientation)
        c = np.asarray(msg.pose.covariance, float).reshape(6, 6)[:2, :2][::-1, ::-1]  # (lat, lon) -> (E, N)
    else:
        raise UnifyGeoError("--live: scoring the local `pose` output needs the node's map origin; use "
                            "geopose_with_covariance or fix")
    if not (np.isfinite(lat) and np.isfinite(lon)):
        fr.status, fr.note = NO_FIX, "node published NaN position"
        return
    fr.status, fr.note = FIX, ""
    fr.latitude_deg, fr.longitude_deg, fr.yaw_deg = float(lat), float(lon), float(yaw)
    fr.cov_en_m2 = tuple(float(v) for v in c.reshape(4))


def to_ros(src: Any, msg_type: type) -> Any:
    """A rosbags message -> the rclpy message of ``msg_type`` with the same fields (recursively; arrays of bytes
    as bytes, other arrays as lists)."""
    dst = msg_type()
    _fill(dst, src)
    return dst


def _fill(dst: Any, src: Any) -> None:
    for name, typ in dst.get_fields_and_field_types().items():
        value, current = getattr(src, name), getattr(dst, name)
        if hasattr(current, "get_fields_and_field_types"):
            _fill(current, value)
        elif isinstance(value, np.ndarray):
            setattr(dst, name, bytes(value.astype(np.uint8).tobytes()) if "uint8" in typ or "octet" in typ
                    else value.tolist())
        elif isinstance(current, (bool, int, float, str)):
            setattr(dst, name, type(current)(value))
        else:
            setattr(dst, name, value)
