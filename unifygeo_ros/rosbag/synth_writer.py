"""The writer of ``unifygeo bag synth``: a rosbags ``Writer`` with the recording's connections and one method per
message kind (topics and frames: :mod:`.synth_topics`). Serialises what the drive, the cameras and the sensor
models computed; decides nothing.
"""
from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from unifygeo_ros import geo
from unifygeo_ros.errors import UnifyGeoError
from unifygeo_ros.rosbag import io as bags
from unifygeo_ros.rosbag import sensors as sens
from unifygeo_ros.rosbag.camera_rig import CameraRig, mount_quaternion_xyzw
from unifygeo_ros.rosbag.mcap_check import write_chunk_crcs
from unifygeo_ros.rosbag.msgtypes import IMU
from unifygeo_ros.rosbag.synth_topics import (BASE_FRAME, CAMERA_FRAME, CAMERA_INFO, FIX_TOPIC, GEOPOSE_TOPIC, HEADER,
                                              IMAGE_TOPIC, IMU_FRAME, IMU_TOPIC, KIDNAP_TOPIC, MAP_FRAME,
                                              METADATA_KEY, ODOM_FRAME, ODOM_TOPIC, TF_MESSAGE, TF_STATIC_TOPIC,
                                              WHEEL_ODOM_TOPIC, camera_frame, camera_image_topic, camera_info_topic)


@dataclass(frozen=True)
class Topics:
    """Which optional connections a recording has."""

    compressed: bool = False
    gt_odom: bool = False  # --odom
    sensors: bool = True  # wheel odometry and IMU (not --no-sensors)
    kidnap: bool = False  # --kidnap-at


@dataclass
class BagWriter:
    """A rosbags ``Writer`` with the drive's connections; one method per message kind."""

    writer: Any
    ts: Any  # the project typestore (geographic_msgs registered)
    rig: CameraRig
    topics: Topics
    conns: dict = field(default_factory=dict)  # topic -> connection

    @classmethod
    def open(cls, out: Path, storage: Any, rig: CameraRig, topics: Topics) -> BagWriter:
        from rosbags.rosbag2 import Writer, WriterError  # optional extra (pip install .[bags])

        ts = bags.make_typestore()
        try:
            writer = Writer(out, version=9, storage_plugin=storage)
            writer.open()
        except WriterError as exc:
            raise UnifyGeoError(f"cannot write bag {out}: {exc}") from exc
        self = cls(writer, ts, rig, topics)
        try:
            for topic, msgtype in self.connection_types():
                self.conns[topic] = writer.add_connection(topic, msgtype, typestore=ts)
        except BaseException:
            writer.close()
            raise
        return self

    def connection_types(self) -> list[tuple[str, str]]:
        """(topic, message type) of every connection, in the order they are added."""
        img_type = bags.COMPRESSED_IMAGE if self.topics.compressed else bags.IMAGE
        suffix = "/compressed" if self.topics.compressed else ""
        if self.rig.kind == "panorama":
            out = [(IMAGE_TOPIC + suffix, img_type)]
        else:
            out = [(TF_STATIC_TOPIC, TF_MESSAGE)]
            for c in self.rig.cameras:
                out += [(camera_image_topic(c.name) + suffix, img_type), (camera_info_topic(c.name), CAMERA_INFO)]
        out += [(FIX_TOPIC, bags.NAVSATFIX), (GEOPOSE_TOPIC, bags.GEOPOSE_STAMPED)]
        out += [(ODOM_TOPIC, bags.ODOMETRY)] if self.topics.gt_odom else []
        out += [(WHEEL_ODOM_TOPIC, bags.ODOMETRY), (IMU_TOPIC, IMU)] if self.topics.sensors else []
        out += [(KIDNAP_TOPIC, HEADER)] if self.topics.kidnap else []
        return out

    def close(self, description: dict | None = None) -> None:
        """Close the bag; ``description`` goes into metadata.yaml's ``custom_data`` (:data:`METADATA_KEY`, JSON)."""
        if description is not None:
            self.writer.set_custom_data(METADATA_KEY, json.dumps(description, sort_keys=True))
        self.writer.close()
        for mcap in sorted(Path(self.writer.path).glob("*.mcap")):  # rosbags leaves chunk CRCs 0: fill them, so
            write_chunk_crcs(mcap)  # damage inside a chunk is detected on replay (rosbag/mcap_check.py)

    def _write(self, topic: str, t_ns: int, msg: Any) -> None:
        conn = self.conns[topic]
        self.writer.write(conn, t_ns, self.ts.serialize_cdr(msg, conn.msgtype))

    def _image_msg(self, t_ns: int, rgb: np.ndarray, frame: str) -> Any:
        return (bags.rgb_to_compressed_msg(self.ts, rgb, t_ns, frame) if self.topics.compressed
                else bags.rgb_to_image_msg(self.ts, rgb, t_ns, frame))

    def write_images(self, t_ns: int, images: list[np.ndarray]) -> None:
        """One frame of the rig: the panorama, or each pinhole camera's image and its CameraInfo."""
        suffix = "/compressed" if self.topics.compressed else ""
        if self.rig.kind == "panorama":
            self._write(IMAGE_TOPIC + suffix, t_ns, self._image_msg(t_ns, images[0], CAMERA_FRAME))
            return
        for cam, rgb in zip(self.rig.cameras, images):
            frame = camera_frame(cam.name)
            self._write(camera_image_topic(cam.name) + suffix, t_ns, self._image_msg(t_ns, rgb, frame))
            self._write(camera_info_topic(cam.name), t_ns, camera_info_msg(self.ts, t_ns, cam, frame))

    def write_tf_static(self, t_ns: int, camera_height_m: float) -> None:
        """The pinhole cameras' mounting: ``base_link`` -> each camera's optical frame (nothing for a panorama)."""
        if self.rig.kind != "pinhole":
            return
        T = self.ts.types
        tfs = []
        for cam in self.rig.cameras:
            q = mount_quaternion_xyzw(cam)
            tfs.append(T["geometry_msgs/msg/TransformStamped"](
                header=bags.header(self.ts, t_ns, BASE_FRAME), child_frame_id=camera_frame(cam.name),
                transform=T["geometry_msgs/msg/Transform"](
                    translation=T["geometry_msgs/msg/Vector3"](x=0.0, y=0.0, z=float(camera_height_m)),
                    rotation=T["geometry_msgs/msg/Quaternion"](x=q[0], y=q[1], z=q[2], w=q[3]))))
        self._write(TF_STATIC_TOPIC, t_ns, T[TF_MESSAGE](transforms=tfs))

    def write_kidnap(self, t_ns: int) -> None:
        """The moment of the kidnap: a std_msgs/Header stamped with it, frame ``map``."""
        self._write(KIDNAP_TOPIC, t_ns, bags.header(self.ts, t_ns, MAP_FRAME))

    def write_fix(self, t_ns: int, lat_deg: float, lon_deg: float, altitude_m: float) -> None:
        T = self.ts.types
        frame = CAMERA_FRAME if self.rig.kind == "panorama" else BASE_FRAME
        fix = T[bags.NAVSATFIX](
            header=bags.header(self.ts, t_ns, frame),
            status=T["sensor_msgs/msg/NavSatStatus"](status=2, service=1),  # GBAS (RTK-like) fix, GPS
            latitude=lat_deg, longitude=lon_deg, altitude=altitude_m,
            position_covariance=np.diag([1e-4, 1e-4, 4e-4]).reshape(-1),
            position_covariance_type=2)  # diagonal known
        self._write(FIX_TOPIC, t_ns, fix)

    def write_geopose(self, t_ns: int, lat_deg: float, lon_deg: float, altitude_m: float,
                      heading_deg: float) -> None:
        """The vehicle's GeoPose: orientation ENU, yaw = 90 deg - compass ``heading_deg`` (the vehicle's heading, also
        for north-aligned panoramas: a GT orientation is the body's, as a real INS gives it)."""
        T = self.ts.types
        q = geo.yaw_to_quaternion_xyzw(float(geo.heading_to_yaw_deg(heading_deg)))
        quat = T["geometry_msgs/msg/Quaternion"](x=q[0], y=q[1], z=q[2], w=q[3])
        gp = T[bags.GEOPOSE_STAMPED](
            header=bags.header(self.ts, t_ns, MAP_FRAME),
            pose=T["geographic_msgs/msg/GeoPose"](
                position=T["geographic_msgs/msg/GeoPoint"](latitude=lat_deg, longitude=lon_deg, altitude=altitude_m),
                orientation=quat))
        self._write(GEOPOSE_TOPIC, t_ns, gp)

    def write_odometry(self, t_ns: int, en_m: np.ndarray, heading_deg: float, speed_mps: float,
                       yaw_rate_dps: float, cam_height_m: float) -> None:
        """The vehicle in ``map`` (ENU at the city origin), twist in ``base_link``; nothing without --odom."""
        if self.topics.gt_odom:
            self._write(ODOM_TOPIC, t_ns, gt_odometry_msg(self.ts, t_ns, en_m, heading_deg, speed_mps,
                                                          yaw_rate_dps, cam_height_m))

    def write_wheel_odometry(self, t_ns: int, odom: sens.OdomSamples, k: int) -> None:
        self._write(WHEEL_ODOM_TOPIC, t_ns, wheel_odometry_msg(self.ts, t_ns, odom, k))

    def write_imu(self, t_ns: int, imu: sens.ImuSamples, k: int) -> None:
        self._write(IMU_TOPIC, t_ns, imu_msg(self.ts, t_ns, imu, k))


def camera_info_msg(ts: Any, t_ns: int, cam: Any, frame: str) -> Any:
    """``sensor_msgs/CameraInfo`` of a :class:`PinholeCamera`: its distortion model and D (plumb_bob zeros without
    distortion), R = I, P = [K | 0]."""
    T = ts.types
    k = [float(x) for x in cam.K]
    p = [k[0], k[1], k[2], 0.0, k[3], k[4], k[5], 0.0, k[6], k[7], k[8], 0.0]
    return T[CAMERA_INFO](
        header=bags.header(ts, t_ns, frame), height=int(cam.height), width=int(cam.width),
        distortion_model=cam.distortion_model or "plumb_bob",
        d=np.asarray(cam.D, np.float64) if cam.D else np.zeros(5), k=np.asarray(k), r=np.eye(3).reshape(-1),
        p=np.asarray(p),
        binning_x=0, binning_y=0,
        roi=T["sensor_msgs/msg/RegionOfInterest"](x_offset=0, y_offset=0, height=0, width=0, do_rectify=False))


def _quaternion(T: Any, yaw_rad: float) -> Any:
    """``geometry_msgs/Quaternion`` of a rotation by ``yaw_rad`` about +z."""
    x, y, z, w = geo.yaw_to_quaternion_xyzw(math.degrees(yaw_rad))
    return T["geometry_msgs/msg/Quaternion"](x=x, y=y, z=z, w=w)


def wheel_odometry_msg(ts: Any, t_ns: int, odom: sens.OdomSamples, k: int) -> Any:
    """Sample ``k`` of ``odom`` as ``nav_msgs/Odometry``: pose in ``odom`` (z = 0, roll = pitch = 0 unmeasured),
    twist in ``base_link`` (vx, wz measured; vy = 0 by the non-holonomic constraint)."""
    T = ts.types
    V3 = T["geometry_msgs/msg/Vector3"]
    return T[bags.ODOMETRY](
        header=bags.header(ts, t_ns, ODOM_FRAME), child_frame_id=BASE_FRAME,
        pose=T["geometry_msgs/msg/PoseWithCovariance"](
            pose=T["geometry_msgs/msg/Pose"](
                position=T["geometry_msgs/msg/Point"](x=float(odom.x_m[k]), y=float(odom.y_m[k]), z=0.0),
                orientation=_quaternion(T, float(odom.yaw_rad[k]))),
            covariance=sens.pose_cov_6x6(odom.pose_cov[k])),
        twist=T["geometry_msgs/msg/TwistWithCovariance"](
            twist=T["geometry_msgs/msg/Twist"](linear=V3(x=float(odom.speed_mps[k]), y=0.0, z=0.0),
                                               angular=V3(x=0.0, y=0.0, z=float(odom.yaw_rate_rps[k]))),
            covariance=sens.twist_cov_6x6(float(odom.speed_var[k]), odom.yaw_rate_var, odom.lateral_speed_var)))


def imu_msg(ts: Any, t_ns: int, imu: sens.ImuSamples, k: int) -> Any:
    """Sample ``k`` of ``imu`` as ``sensor_msgs/Imu`` in ``IMU_FRAME``: ENU orientation (roll = pitch = 0),
    angular velocity, linear acceleration (gravity included), diagonal covariances."""
    T = ts.types
    V3 = T["geometry_msgs/msg/Vector3"]
    g, a = imu.gyro_rps[k], imu.accel_mps2[k]
    return T[IMU](
        header=bags.header(ts, t_ns, IMU_FRAME),
        orientation=_quaternion(T, float(imu.yaw_rad[k])),
        orientation_covariance=sens.imu_orientation_cov(float(imu.yaw_var[k]), imu.tilt_var),
        angular_velocity=V3(x=float(g[0]), y=float(g[1]), z=float(g[2])),
        angular_velocity_covariance=np.diag([imu.gyro_var] * 3).reshape(-1),
        linear_acceleration=V3(x=float(a[0]), y=float(a[1]), z=float(a[2])),
        linear_acceleration_covariance=np.diag([imu.accel_var] * 3).reshape(-1))


def gt_odometry_msg(ts: Any, t_ns: int, en_m: np.ndarray, heading_deg: float, speed_mps: float,
                    yaw_rate_dps: float, cam_height_m: float) -> Any:
    """The ground truth as ``nav_msgs/Odometry`` in ``map`` (ENU at the city origin), child ``base_link``."""
    T = ts.types
    q = geo.yaw_to_quaternion_xyzw(float(geo.heading_to_yaw_deg(heading_deg)))
    pose_cov = np.diag([1e-4, 1e-4, 4e-4, 1e-4, 1e-4, 3e-4]).reshape(-1)
    twist_cov = np.diag([1e-3, 1e-3, 1e-3, 1e-4, 1e-4, 1e-4]).reshape(-1)
    V3 = T["geometry_msgs/msg/Vector3"]
    return T[bags.ODOMETRY](
        header=bags.header(ts, t_ns, MAP_FRAME), child_frame_id=BASE_FRAME,
        pose=T["geometry_msgs/msg/PoseWithCovariance"](
            pose=T["geometry_msgs/msg/Pose"](position=T["geometry_msgs/msg/Point"](x=float(en_m[0]),
                                                                                 y=float(en_m[1]), z=cam_height_m),
                                             orientation=T["geometry_msgs/msg/Quaternion"](x=q[0], y=q[1], z=q[2],
                                                                                           w=q[3])),
            covariance=pose_cov),
        twist=T["geometry_msgs/msg/TwistWithCovariance"](
            twist=T["geometry_msgs/msg/Twist"](linear=V3(x=speed_mps, y=0.0, z=0.0),
                                               angular=V3(x=0.0, y=0.0, z=math.radians(yaw_rate_dps))),
            covariance=twist_cov))
