"""Fuse unifygeo_ros' fixes with wheel odometry and an IMU in robot_localization (two EKFs, REP-105).

    ros2 launch unifygeo_ros fusion.launch.py index:=/data/ix checkpoint:=/data/ckpt image_topic:=/cam/pano
    ros2 launch unifygeo_ros fusion.launch.py use_navsat:=true          # option B: fix -> navsat_transform_node
    ros2 launch unifygeo_ros fusion.launch.py start_localizer:=false    # the localizer runs elsewhere

Needs ``ros-$ROS_DISTRO-robot-localization`` (and tf2_ros for the camera transform). docs/FUSION.md explains
every node, remap and parameter.

Nodes (all in ``namespace``):

* ``ekf_filter_node_odom`` (robot_localization ekf_node, config/robot_localization/ekf.yaml): wheel odometry +
  IMU, odom -> base_link; its ``odometry/filtered`` is remapped to ``odometry/local``.
* ``ekf_filter_node_map`` (ekf_node): map -> odom; its ``odometry/filtered`` is remapped to ``odometry/global``.
  use_navsat false (option A): ekf.yaml's section, our ``pose`` as pose0. use_navsat true (option B): navsat.yaml's
  section, navsat_transform_node's ``odometry/gps`` as odom1.
* ``navsat_transform_node`` (use_navsat true, navsat.yaml): ``gps/fix`` <- our ``fix``, ``imu`` <- imu_topic,
  ``odometry/filtered`` <- ``odometry/global`` (the map EKF only: navsat takes its world frame from it).
* a static base_link -> ``camera_frame`` transform (tf2_ros static_transform_publisher) when camera_frame is set.
  Give the localizer the same ``sensor_frame`` (its parameter file) so that ``fix`` carries that frame.
* localize.launch.py (start_localizer true), with the arguments below passed on: its node parameters (checkpoint,
  index, device, backend, mode, input_mode, heading_source) override localizer_params_file only when given, the
  IMU and the wheel odometry are the EKFs' (imu_topic, odom_topic); every argument of this file that it also takes
  is passed explicitly (an included file would inherit a same-named argument of this one silently).

The node names are the section names of the parameter files: robot_localization reads only the section of its
own node name.
"""
import os

from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument, IncludeLaunchDescription
from launch.conditions import IfCondition, UnlessCondition
from launch.launch_description_sources import PythonLaunchDescriptionSource
from launch.substitutions import LaunchConfiguration, PythonExpression
from launch_ros.actions import Node

PACKAGE = "unifygeo_ros"
HERE = os.path.dirname(os.path.abspath(__file__))


def config_file(*parts: str) -> str:
    """An installed config file (ament share directory), else the source tree's."""
    try:
        from ament_index_python.packages import get_package_share_directory

        path = os.path.join(get_package_share_directory(PACKAGE), "config", *parts)
        if os.path.isfile(path):
            return path
    except Exception:  # not installed through ament (a source checkout)
        pass
    return os.path.join(os.path.dirname(HERE), "config", *parts)


ARGUMENTS = (
    ("namespace", "", "namespace of every node and topic (the EKFs must share the localizer's)"),
    ("use_navsat", "false", "false: option A, our pose into the map EKF; true: option B, our fix through "
                            "navsat_transform_node into the map EKF"),
    ("ekf_params_file", config_file("robot_localization", "ekf.yaml"),
     "robot_localization parameters: ekf_filter_node_odom (both options) and ekf_filter_node_map (option A)"),
    ("navsat_params_file", config_file("robot_localization", "navsat.yaml"),
     "robot_localization parameters: navsat_transform_node and ekf_filter_node_map (option B)"),
    ("odom_topic", "wheel/odometry", "nav_msgs/Odometry of the wheel encoders (remap of the EKFs' wheel/odometry "
                                     "and the localizer's odom, mode tracking)"),
    ("imu_topic", "imu/data", "sensor_msgs/Imu, earth-referenced ENU yaw (remap of the EKFs' imu/data, "
                              "navsat_transform_node's imu and the localizer's imu)"),
    ("camera_frame", "", "child frame of a static base_link -> camera transform; empty: none (camera at base_link)"),
    ("camera_x", "0.0", "camera position in base_link, forward, m"),
    ("camera_y", "0.0", "camera position in base_link, left, m"),
    ("camera_z", "0.0", "camera position in base_link, up, m"),
    ("camera_yaw", "0.0", "yaw of the panorama's centre column in base_link, rad (REP-103, left positive)"),
    ("start_localizer", "true", "true: include localize.launch.py with the arguments below"),
    ("localizer_params_file", config_file("localize.yaml"), "the localizer's parameter file (localize.launch.py "
                                                            "params_file; set sensor_frame there)"),
    ("checkpoint", "", "model checkpoint folder; empty = localizer_params_file's (shipped: the embedded demo)"),
    ("index", "", "aerial index folder; empty = localizer_params_file's (shipped: the embedded demo)"),
    ("device", "", "auto | cpu | cuda (empty = localizer_params_file's, shipped: auto)"),
    ("backend", "", "torch | onnxruntime (empty = localizer_params_file's, shipped: torch)"),
    ("mode", "", "single | tracking (empty = localizer_params_file's, shipped: single; tracking takes odom_topic)"),
    ("input_mode", "", "panorama | compressed | cameras (empty = localizer_params_file's, shipped: panorama)"),
    ("heading_source", "", "auto | model | north_aligned | imu (empty = localizer_params_file's, shipped: auto)"),
    ("image_topic", "image", "panorama topic (sensor_msgs/Image) of the localizer"),
    ("log_level", "info", "debug | info | warn | error"),
)


def generate_launch_description() -> LaunchDescription:
    args = [DeclareLaunchArgument(name, default_value=default, description=desc) for name, default, desc in ARGUMENTS]
    cfg = {name: LaunchConfiguration(name) for name, _, _ in ARGUMENTS}
    sensors = [("wheel/odometry", cfg["odom_topic"]), ("imu/data", cfg["imu_topic"])]
    ekf_odom = Node(
        package="robot_localization",
        executable="ekf_node",
        name="ekf_filter_node_odom",
        namespace=cfg["namespace"],
        output="screen",
        parameters=[cfg["ekf_params_file"]],
        remappings=[("odometry/filtered", "odometry/local"), *sensors],
        arguments=["--ros-args", "--log-level", cfg["log_level"]],
    )
    ekf_map_pose = Node(  # option A
        package="robot_localization",
        executable="ekf_node",
        name="ekf_filter_node_map",
        namespace=cfg["namespace"],
        output="screen",
        parameters=[cfg["ekf_params_file"]],
        remappings=[("odometry/filtered", "odometry/global"), *sensors],
        arguments=["--ros-args", "--log-level", cfg["log_level"]],
        condition=UnlessCondition(cfg["use_navsat"]),
    )
    ekf_map_navsat = Node(  # option B
        package="robot_localization",
        executable="ekf_node",
        name="ekf_filter_node_map",
        namespace=cfg["namespace"],
        output="screen",
        parameters=[cfg["navsat_params_file"]],
        remappings=[("odometry/filtered", "odometry/global"), *sensors],
        arguments=["--ros-args", "--log-level", cfg["log_level"]],
        condition=IfCondition(cfg["use_navsat"]),
    )
    navsat = Node(
        package="robot_localization",
        executable="navsat_transform_node",
        name="navsat_transform_node",
        namespace=cfg["namespace"],
        output="screen",
        parameters=[cfg["navsat_params_file"]],
        remappings=[("gps/fix", "fix"), ("imu", cfg["imu_topic"]), ("odometry/filtered", "odometry/global")],
        arguments=["--ros-args", "--log-level", cfg["log_level"]],
        condition=IfCondition(cfg["use_navsat"]),
    )
    camera_tf = Node(
        package="tf2_ros",
        executable="static_transform_publisher",
        name="unifygeo_camera_tf",
        namespace=cfg["namespace"],
        output="screen",
        arguments=["--x", cfg["camera_x"], "--y", cfg["camera_y"], "--z", cfg["camera_z"],
                   "--yaw", cfg["camera_yaw"], "--frame-id", "base_link", "--child-frame-id", cfg["camera_frame"]],
        condition=IfCondition(PythonExpression(["'", cfg["camera_frame"], "' != ''"])),
    )
    localizer = IncludeLaunchDescription(
        PythonLaunchDescriptionSource(os.path.join(HERE, "localize.launch.py")),
        launch_arguments={
            "namespace": cfg["namespace"],
            "params_file": cfg["localizer_params_file"],
            "checkpoint": cfg["checkpoint"],
            "index": cfg["index"],
            "device": cfg["device"],
            "backend": cfg["backend"],
            "mode": cfg["mode"],
            "input_mode": cfg["input_mode"],
            "heading_source": cfg["heading_source"],
            "image_topic": cfg["image_topic"],
            "imu_topic": cfg["imu_topic"],
            "odom_topic": cfg["odom_topic"],
            "log_level": cfg["log_level"],
        }.items(),
        condition=IfCondition(cfg["start_localizer"]),
    )
    return LaunchDescription([*args, ekf_odom, ekf_map_pose, ekf_map_navsat, navsat, camera_tf, localizer])
