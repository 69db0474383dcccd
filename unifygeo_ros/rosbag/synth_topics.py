"""Topics, frames and message types of the bags ``unifygeo bag synth`` records (one place; the writer, the CLI
and the docs' tables use these names). Standard ROS 2 types only; docs/REPLAY.md lists them.
"""
from __future__ import annotations

#: the panorama camera (``--camera panorama``): sensor_msgs/Image, or CompressedImage on IMAGE_TOPIC/compressed
IMAGE_TOPIC = "/camera/panorama/image_raw"
CAMERA_FRAME = "camera_panorama"
#: ground truth: NavSatFix and GeoPoseStamped at the GT rate; nav_msgs/Odometry in ``map`` with ``--odom``
FIX_TOPIC = "/gt/fix"
GEOPOSE_TOPIC = "/gt/geopose"
ODOM_TOPIC = "/gt/odom"
#: ``--kidnap-at``: one std_msgs/Header, stamped with the moment the vehicle was teleported (frame ``map``)
KIDNAP_TOPIC = "/gt/kidnap"
#: wheel odometry (nav_msgs/Odometry, frame ODOM_FRAME, child BASE_FRAME) and IMU (sensor_msgs/Imu, IMU_FRAME);
#: robot_localization's conventional names (config/robot_localization: odom0 wheel/odometry, imu0 imu/data)
WHEEL_ODOM_TOPIC = "/wheel/odometry"
IMU_TOPIC = "/imu/data"
#: the pinhole rig's mounting: one tf2_msgs/TFMessage of the static transforms BASE_FRAME -> each camera's frame
TF_STATIC_TOPIC = "/tf_static"
MAP_FRAME = "map"
ODOM_FRAME = "odom"
BASE_FRAME = "base_link"
IMU_FRAME = BASE_FRAME  # the IMU is mounted aligned with the vehicle: no extra transform

CAMERA_INFO = "sensor_msgs/msg/CameraInfo"
HEADER = "std_msgs/msg/Header"
TF_MESSAGE = "tf2_msgs/msg/TFMessage"

#: the bag's metadata.yaml ``custom_data`` key holding the recording's description (JSON: camera kind, the rig
#: with each camera's topics, frame and mounting, the kidnap time and distance)
METADATA_KEY = "unifygeo.bag_synth"


def camera_image_topic(name: str) -> str:
    """The topic of camera ``name``'s images: the node's ``input_mode: cameras`` subscribes ``cameras/<name>/image``
    (``.../image/compressed``: the image_transport name of its JPEG stream)."""
    return f"/cameras/{name}/image"


def camera_info_topic(name: str) -> str:
    """The topic of camera ``name``'s sensor_msgs/CameraInfo (the node's ``cameras/<name>/camera_info``)."""
    return f"/cameras/{name}/camera_info"


def camera_frame(name: str) -> str:
    """Camera ``name``'s optical frame (REP-103 ``_optical`` suffix: x right, y down, z forward)."""
    return f"camera_{name}_optical"
