"""``localizer_node``: the ROS 2 shell around the localizer (parameters, topics, diagnostics; no maths here).

    ros2 run unifygeo_ros localizer_node --ros-args --params-file config/localize.yaml -p index:=/path/ix

Subscribes (sensor-data QoS, relative names): ``image`` (sensor_msgs/Image, input_mode ``panorama``),
``image/compressed`` (sensor_msgs/CompressedImage, ``compressed``), or ``cameras/<name>/image`` (or with
``cameras.transport: compressed`` ``cameras/<name>/image/compressed``) + ``cameras/<name>/camera_info``
(``cameras``). Publishes, stamped with the image's stamp: ``geopose``
(geographic_msgs/GeoPoseStamped), ``geopose_with_covariance`` (GeoPoseWithCovarianceStamped), ``fix``
(sensor_msgs/NavSatFix), ``pose`` (geometry_msgs/PoseWithCovarianceStamped in the local ENU ``map`` frame),
and ``/diagnostics``. docs/NODE.md describes every parameter, topic, covariance and the robot_localization set-up.

The work is done by plain objects: :mod:`unifygeo_ros.localization.pipeline` (the pipeline ``unifygeo replay``
drives too: localizer, gate, prior, stats), :mod:`unifygeo_ros.ros.worker` (the inference thread),
:mod:`unifygeo_ros.image.codec`, :mod:`unifygeo_ros.image.stitch`, :mod:`unifygeo_ros.ros.messages`,
:mod:`unifygeo_ros.ros.params`.
"""
from __future__ import annotations

import sys
import time
from typing import Any, Callable

import rclpy
from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue
from geographic_msgs.msg import GeoPoseStamped, GeoPoseWithCovarianceStamped
from geometry_msgs.msg import PoseWithCovarianceStamped
from rcl_interfaces.msg import ParameterDescriptor, SetParametersResult
from rclpy.exceptions import ParameterException
from rclpy.executors import ExternalShutdownException
from rclpy.node import Node
from rclpy.qos import QoSProfile, ReliabilityPolicy, qos_profile_sensor_data
from nav_msgs.msg import Odometry
from sensor_msgs.msg import CameraInfo, CompressedImage, Image, Imu, NavSatFix, NavSatStatus

from unifygeo_ros import geo
from unifygeo_ros.ros import messages as fix_messages
from unifygeo_ros.errors import UnifyGeoError
from unifygeo_ros.image.codec import compressed_fields_to_rgb, image_msg_to_rgb
from unifygeo_ros.ros.params import PARAMETERS, NodeSettings
from unifygeo_ros.localization.pipeline import WITHHELD_REASONS, Frame, PipelineStats
from unifygeo_ros.localization.sensor_feed import HeadingFeed, stamp_s, twist_reading
from unifygeo_ros.image.rig import RigCollector, RigFrame, rectified_mismatch
from unifygeo_ros.ros.worker import LatestFrameWorker, Throttle, error_kind, load_pipeline


def _process_age_s() -> float:
    """Seconds since this process started (start-up time as the user sees it), else since this import."""
    try:
        import psutil  # optional (test extra): without it, start-up time counts from this module's import

        return time.time() - psutil.Process().create_time()
    except Exception:  # psutil missing: count from the import of this module
        return time.monotonic() - _IMPORTED


_IMPORTED = time.monotonic()
OUTPUT_QOS = QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE)
#: odometry and IMU: best effort like the sensor-data profile, but 100 deep - every message counts (dead reckoning
#: integrates them all) and a 5-deep queue overflows at 100 Hz when the process is starved for 50 ms
MOTION_QOS = QoSProfile(depth=100, reliability=ReliabilityPolicy.BEST_EFFORT)


class LocalizerNode(Node):
    """Parameters, subscriptions, publishers and the diagnostics timer; the pipeline does the work."""

    def __init__(self, **kwargs):
        super().__init__("unifygeo_localizer", **kwargs)
        for p in PARAMETERS:
            self.declare_parameter(p.name, p.default, ParameterDescriptor(
                description=p.description + (f" ({'|'.join(p.choices)})" if p.choices else ""),
                read_only=p.read_only))
        self.settings = s = NodeSettings.from_params({p.name: self.get_parameter(p.name).value for p in PARAMETERS})
        self.stats = PipelineStats()
        self.pipeline, self.startup = load_pipeline(s, self.stats)
        self.map_enu = geo.LocalENU(self.startup.index_origin_lat_deg, self.startup.index_origin_lon_deg,
                                    s.altitude_m) if s.map_origin_from_index else \
            geo.LocalENU(s.map_origin_lat_deg, s.map_origin_lon_deg, s.altitude_m)
        self.throttle = Throttle(s.warn_throttle_s)
        self.heading_source = resolve_heading_source(s.heading_source, self.pipeline.localizer.known_orientation)
        self.pipeline.use_heading_source(self.heading_source)
        if self.heading_source == "north_aligned" and s.mode == "single":
            self.get_logger().warning("heading_source north_aligned: the published yaw is the panoramas' north, not "
                                      "the robot's heading - sent with the unmeasured variance (pi^2); leave yaw out "
                                      "of robot_localization's pose0_config")
        self.headings = HeadingFeed(s.imu_settings())  # the IMU -> the panorama's heading, as replay reads it
        self.imu_sub = None
        if self.heading_source == "imu" or s.mode == "tracking":  # tracking: the robot's heading whenever there is one
            self.imu_sub = self.create_subscription(Imu, "imu", self._guarded("imu", self.headings.add), MOTION_QOS)
        self.odom_sub = None
        if s.mode == "tracking":  # wheel odometry moves the belief between frames (pipeline.odometry)
            self.odom_sub = self.create_subscription(Odometry, "odom", self._guarded("odom", self._on_odometry),
                                                     MOTION_QOS)

        self.pub_geopose = self.create_publisher(GeoPoseStamped, "geopose", OUTPUT_QOS)
        self.pub_geopose_cov = self.create_publisher(GeoPoseWithCovarianceStamped, "geopose_with_covariance",
                                                     OUTPUT_QOS)
        self.pub_fix = self.create_publisher(NavSatFix, "fix", OUTPUT_QOS)
        self.pub_pose = self.create_publisher(PoseWithCovarianceStamped, "pose", OUTPUT_QOS)
        self.pub_diag = self.create_publisher(DiagnosticArray, "/diagnostics", OUTPUT_QOS)

        self.rig: RigCollector | None = None  # input_mode cameras: the camera callbacks' bookkeeping
        if s.input_mode == "panorama":
            self.inputs = [self.create_subscription(Image, "image", self._guarded("image", self._on_image),
                                                    qos_profile_sensor_data)]
        elif s.input_mode == "compressed":
            self.inputs = [self.create_subscription(CompressedImage, "image/compressed",
                                                    self._guarded("image/compressed", self._on_compressed),
                                                    qos_profile_sensor_data)]
        else:
            self.rig = RigCollector(s)
            self.inputs = []
            img_type, suffix = (CompressedImage, "image/compressed") if s.camera_transport == "compressed" \
                else (Image, "image")
            for name in s.camera_names:
                self.inputs.append(self.create_subscription(
                    img_type, f"cameras/{name}/{suffix}",
                    self._guarded(f"cameras/{name}/{suffix}", lambda m, n=name: self._on_camera_image(n, m)),
                    qos_profile_sensor_data))
                self.inputs.append(self.create_subscription(
                    CameraInfo, f"cameras/{name}/camera_info",
                    self._guarded(f"cameras/{name}/camera_info", lambda m, n=name: self._on_camera_info(n, m)),
                    qos_profile_sensor_data))
            if (line := rectified_mismatch([sub.topic_name for sub in self.inputs[::2]], s.camera_rectified)):
                self.get_logger().warning(line)  # the remapped topic names; the usual image_proc trap
        self.worker = LatestFrameWorker(self._localize, self._on_worker_exception).start()
        self.add_on_set_parameters_callback(self._on_set_parameters)
        self.startup_s = _process_age_s()
        self.diag_timer = self.create_timer(s.diagnostics_period_s, self._publish_diagnostics)
        st = self.startup
        self.get_logger().info(
            f"ready {self.startup_s:.1f} s after process start (model + index loaded in {st.load_s:.2f} s): "
            f"model {st.model_identity[:12]} from {st.checkpoint}, index {st.index} ({st.index_tiles} tiles), "
            f"device {st.device} ({st.backend}), input {s.input_mode} on {self.inputs[0].topic_name}, "
            f"min_score {s.min_score:g}, "
            f"max_protection_level_m {s.max_protection_level_m:g}, mode {s.mode}"
            + (f" (odometry on {self.odom_sub.topic_name}, IMU on {self.imu_sub.topic_name})" if self.odom_sub else ""))

    def _on_set_parameters(self, params) -> SetParametersResult:
        for p in params:
            if p.name == "min_score":
                if not isinstance(p.value, float) or not 0.0 <= p.value <= 1.0:
                    return SetParametersResult(successful=False, reason="min_score must be a float within [0, 1]")
            if p.name == "max_protection_level_m":
                if not isinstance(p.value, float) or not p.value > 0.0:
                    return SetParametersResult(successful=False,
                                               reason="max_protection_level_m must be a positive float (metres, "
                                                      "or .inf)")
        for p in params:
            if p.name in ("min_score", "max_protection_level_m"):
                setattr(self.pipeline, p.name, float(p.value))
                self.get_logger().info(f"{p.name} set to {p.value:g}")
        return SetParametersResult(successful=True)

    # ---- inputs (executor thread: cheap, never blocking) -----------------------------------------------------
    def _arrival_stamp(self, stamp, topic: str):
        """An image's stamp, or the time of its arrival when the driver left it zero (replay takes the bag's log
        time then: one policy), said in a throttled warning."""
        if stamp.sec or stamp.nanosec:
            return stamp
        if self.throttle.ready(f"zero_stamp:{topic}"):
            self.get_logger().warning(f"{topic}: image stamp is zero; stamped with its time of arrival (outputs carry "
                                      "it: a filter fuses them at that time)")
        return self.get_clock().now().to_msg()

    def _offer(self, stamp, decode, source: str) -> None:
        stamp = self._arrival_stamp(stamp, source)
        self.stats.received()
        frame = Frame(stamp, stamp_s(stamp), decode, source=source)  # the IMU feed's clock
        self.pipeline.set_heading(frame, self.headings, self.imu_sub.topic_name if self.imu_sub else "imu")
        self.worker.submit(frame)

    def _on_odometry(self, msg: Odometry) -> None:
        problem = self.pipeline.odometry.add(twist_reading(msg))
        if problem:  # refused and counted (odometry_rejected); the node goes on with the next sample
            topic = self.odom_sub.topic_name
            self.stats.bad_message(f"{topic}: {problem}")
            if self.throttle.ready("odometry"):
                self.get_logger().warning(f"{topic}: {problem} ({self.pipeline.odometry.rejected} refused so far; "
                                          "/diagnostics odometry_rejected)")

    def _guarded(self, topic: str, callback: Callable[[Any], None]) -> Callable[[Any], None]:
        """``callback`` as a subscription's: an exception it raises on one message is logged (throttled) and
        reported in /diagnostics as an error, and the node goes on (a message must never stop the executor)."""
        def run(msg: Any) -> None:
            try:
                callback(msg)
            except Exception as exc:  # noqa: BLE001 - the node's contract: log, report, keep running
                self.stats.bad_message(f"{topic}: {type(exc).__name__}: {exc}", status="error")
                if self.throttle.ready(f"callback:{topic}"):
                    self.get_logger().error(f"{topic}: message dropped, {type(exc).__name__}: {exc}")
        return run

    def _on_image(self, msg: Image) -> None:
        self._offer(msg.header.stamp, lambda: image_msg_to_rgb(msg, "image"), "image")

    def _on_compressed(self, msg: CompressedImage) -> None:
        self._offer(msg.header.stamp, lambda: compressed_fields_to_rgb(msg.format, msg.data), "image/compressed")

    def _on_camera_info(self, name: str, msg: CameraInfo) -> None:
        self._offer_rig(self.rig.info(name, msg))

    def _on_camera_image(self, name: str, msg: Image | CompressedImage) -> None:
        msg.header.stamp = self._arrival_stamp(msg.header.stamp, f"cameras/{name}")  # the set's sync needs stamps
        self._offer_rig(self.rig.image(name, msg))

    def _offer_rig(self, frame: RigFrame | None) -> None:
        if frame is not None:
            self._offer(frame.stamp, frame.decode, "cameras")
        elif self.rig.waiting_kind == "out_of_sync" and self.throttle.ready("rig:out_of_sync"):
            self.get_logger().warning(f"cameras: {self.rig.waiting}: not stitched ({self.rig.out_of_sync} times so "
                                      "far; /diagnostics rig_out_of_sync)")
        elif self.rig.waiting_kind == "stale" and self.throttle.ready("rig:stale"):
            self.get_logger().warning(f"cameras: {self.rig.waiting}: not stitched")

    # ---- work (worker thread) -----------------------------------------------------------------------------
    def _localize(self, frame: Frame) -> None:
        out = self.pipeline.process(frame)
        if out.published:
            self._publish_fix(frame, out.pose)  # the fix, or the belief in mode tracking
            now_s = self.get_clock().now().nanoseconds * 1e-9
            self.stats.published(1000.0 * (now_s - frame.stamp_s))
        elif out.status in ("bad_input", "error") and self.throttle.ready(f"{out.status}:{error_kind(out.message)}"):
            log = self.get_logger().error if out.status == "error" else self.get_logger().warning
            log(f"{frame.source}: {out.message} (no fix published; more like it are counted in /diagnostics)")

    def _on_worker_exception(self, frame: Frame, exc: BaseException) -> None:
        if self.throttle.ready(f"worker:{type(exc).__name__}"):
            self.get_logger().error(f"publishing failed: {type(exc).__name__}: {exc}")

    def _publish_fix(self, frame: Frame, fix) -> None:
        """The four outputs, each published as soon as it is built, ``pose`` (the EKF's input) first."""
        s = self.settings
        o = fix_messages.fix_outputs(fix, self.map_enu, s.altitude_m, s.vertical_variance_m2, s.unmeasured_variance)
        qx, qy, qz, qw = o.quaternion_xyzw

        pose = PoseWithCovarianceStamped()
        pose.header.stamp, pose.header.frame_id = frame.stamp, s.map_frame
        p = pose.pose.pose
        p.position.x, p.position.y, p.position.z = o.east_m, o.north_m, o.up_m
        p.orientation.x, p.orientation.y, p.orientation.z, p.orientation.w = qx, qy, qz, qw
        pose.pose.covariance = o.pose_covariance
        self.pub_pose.publish(pose)

        gp = GeoPoseStamped()
        gp.header.stamp, gp.header.frame_id = frame.stamp, s.sensor_frame
        gp.pose.position.latitude, gp.pose.position.longitude = o.latitude_deg, o.longitude_deg
        gp.pose.position.altitude = o.altitude_m
        gp.pose.orientation.x, gp.pose.orientation.y, gp.pose.orientation.z, gp.pose.orientation.w = qx, qy, qz, qw

        nav = NavSatFix()
        nav.header = gp.header
        nav.status.status = NavSatStatus.STATUS_FIX
        nav.status.service = fix_messages.SERVICE_UNKNOWN
        nav.latitude, nav.longitude, nav.altitude = o.latitude_deg, o.longitude_deg, o.altitude_m
        nav.position_covariance = o.navsat_covariance
        nav.position_covariance_type = o.navsat_covariance_type
        self.pub_fix.publish(nav)

        gpc = GeoPoseWithCovarianceStamped()
        gpc.header = gp.header
        gpc.pose.pose = gp.pose
        gpc.pose.covariance = o.geopose_covariance
        self.pub_geopose_cov.publish(gpc)
        self.pub_geopose.publish(gp)

    # ---- diagnostics (executor thread) ---------------------------------------------------------------------
    def _publish_diagnostics(self) -> None:
        snap = self.stats.snapshot()
        rig = self.rig
        level, message = diagnostic_level(snap, self.settings.diagnostics_period_s, self.inputs[0].topic_name,
                                          rig.waiting if rig is not None else None)
        st = self.startup
        values = {
            **{k: v for k, v in snap.items()
               if k not in ("last_error", "last_error_status", "last_status", "withheld_by_reason")
               and not (k.startswith("tracking_") and self.odom_sub is None)},
            **{f"withheld_{r}": snap["withheld_by_reason"].get(r, 0) for r in WITHHELD_REASONS},
            "frames_dropped": self.worker.dropped,
            "fixes_withheld": snap["withheld"],
            "min_score": self.pipeline.min_score,
            "max_protection_level_m": self.pipeline.max_protection_level_m,
            "alpha": self.pipeline.localizer.alpha,
            "prior_active": self.pipeline.prior.active if self.pipeline.prior else False,
            "prior_resets": self.pipeline.prior.resets if self.pipeline.prior else 0,
            "last_error": snap["last_error"],
            "model_identity": st.model_identity, "checkpoint": st.checkpoint, "index": st.index,
            "index_tiles": st.index_tiles, "device": st.device, "backend": st.backend,
            "startup_load_s": round(st.load_s, 3),
            "startup_s": round(self.startup_s, 3),
            "input_mode": self.settings.input_mode, "input_topic": self.inputs[0].topic_name,
            "heading_source": self.heading_source,
            "mode": self.pipeline.mode,
            **({"odometry_samples": self.pipeline.odometry.samples, "odometry_gaps": self.pipeline.odometry.gaps,
                "odometry_rejected": self.pipeline.odometry.rejected, "odometry_topic": self.odom_sub.topic_name}
               if self.odom_sub is not None else {}),
            **({"rig_sets_stitched": rig.sets, "rig_out_of_sync": rig.out_of_sync, "rig_restarts": rig.restarts,
                "rig_waiting": rig.waiting,
                "rig_lens": rig.lens_summary()} if rig is not None else {}),
        }
        status = DiagnosticStatus(level=level, name=f"{self.get_fully_qualified_name()}: localization", message=message,
                                  hardware_id=f"unifygeo model {st.model_identity[:12]}")
        status.values = [KeyValue(key=k, value=_fmt(v)) for k, v in values.items()]
        arr = DiagnosticArray()
        arr.header.stamp = self.get_clock().now().to_msg()
        arr.status = [status]
        self.pub_diag.publish(arr)

    def destroy_node(self):
        worker = getattr(self, "worker", None)  # absent when start-up failed (bad model or index): nothing to stop
        if worker is not None:
            worker.stop(timeout_s=5.0)
        return super().destroy_node()


def resolve_heading_source(requested: str, known_orientation: bool) -> str:
    """The heading source the node uses. A known-orientation model cannot estimate the heading: ``model`` is
    refused for it, and ``auto`` means ``imu``; for an unknown-orientation model ``auto`` means ``model``."""
    if requested == "auto":
        return "imu" if known_orientation else "model"
    if requested == "model" and known_orientation:
        raise UnifyGeoError("heading_source model: this checkpoint was trained with known orientation "
                            "(north-aligned panoramas) and cannot estimate the heading; use heading_source imu "
                            "or north_aligned")
    return requested


def _fmt(v) -> str:
    if isinstance(v, float):
        return f"{v:.6g}"
    return "" if v is None else str(v)


#: the status goes WARN after this many of the camera's usual intervals without an image (and at least the
#: diagnostics' recent window: max(3 periods, 5 s))
INPUT_SILENCE_PERIODS = 3.0


def diagnostic_level(snap: dict, period_s: float, topic: str, rig_waiting: str | None = None) -> tuple[bytes, str]:
    """(level, message) of the node's status from a :meth:`PipelineStats.snapshot` (``rig_waiting``: input_mode
    cameras, why the cameras' last message completed no set)."""
    recent = max(3.0 * period_s, 5.0)
    since_err = snap["seconds_since_error"]
    if since_err is not None and since_err <= recent:
        lvl = DiagnosticStatus.ERROR if snap["last_error_status"] == "error" else DiagnosticStatus.WARN
        return lvl, f"{snap['last_error_status'].replace('_', ' ')}: {snap['last_error']}"
    if snap["received"] == 0:
        if rig_waiting:
            return DiagnosticStatus.WARN, f"no set of camera images stitched yet: {rig_waiting}"
        return DiagnosticStatus.WARN, f"no images received yet on {topic}"
    since_input, period = snap.get("seconds_since_input"), snap.get("input_period_s_p50")
    if since_input is not None and since_input > max(recent, INPUT_SILENCE_PERIODS * (period or 0.0)):
        # a camera that stopped, a remap lost on restart, images DDS dropped: the status must not stay OK
        waiting = f" ({rig_waiting})" if rig_waiting else ""
        return DiagnosticStatus.WARN, (f"no image for {since_input:.0f} s on {topic}{waiting}: nothing localized "
                                       f"since (last {snap['published']} published)")
    tracking = snap.get("tracking_state", "")
    if snap["last_status"] == "withheld":
        return DiagnosticStatus.WARN, (f"{'estimate' if tracking else 'fix'} withheld: {snap['last_withheld_reason']} "
                                       f"({snap['withheld']} withheld so far, availability {snap['availability']:.0%})")
    if tracking:
        return DiagnosticStatus.OK, (f"tracking: {tracking}, {snap['fix_rate_hz']:.1f} estimates/s, protection level "
                                     f"{snap['last_protection_level_m']:.1f} m, {snap['published']} published "
                                     f"(availability {snap['availability']:.0%}), "
                                     f"{snap.get('tracking_reinitialisations', 0)} (re)initialisations")
    return DiagnosticStatus.OK, (f"localizing: {snap['fix_rate_hz']:.1f} fixes/s, last protection level "
                                 f"{snap['last_protection_level_m']:.1f} m, score {snap['last_score']:.2f}, "
                                 f"{snap['published']} published (availability {snap['availability']:.0%})")


def main(args=None) -> int:
    rclpy.init(args=args)
    node = None
    try:
        node = LocalizerNode()
        rclpy.spin(node)
    except (UnifyGeoError, ParameterException) as exc:
        print(f"[localizer_node] error: {exc}", file=sys.stderr, flush=True)
        return 1
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    except RuntimeError:
        # rclpy race (ros2/rclpy#398, ros-visualization/rqt#357): a SIGINT's handler shuts the context down while
        # the executor builds its wait set, which raises RCLError instead of ExternalShutdownException. After a
        # shutdown that is a clean exit; anything else is a real error.
        if rclpy.ok():
            raise
    finally:
        try:
            if node is not None:
                node.destroy_node()
            rclpy.try_shutdown()
        except KeyboardInterrupt:  # a second Ctrl-C while shutting down
            pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
