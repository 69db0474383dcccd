"""Start unifygeo_ros' localizer_node.

    ros2 launch unifygeo_ros localize.launch.py                                  # the embedded demo model + index
    ros2 launch unifygeo_ros localize.launch.py index:=/data/ix checkpoint:=/data/ckpt image_topic:=/cam/pano
    ros2 launch unifygeo_ros localize.launch.py input_mode:=compressed compressed_topic:=/cam/pano/compressed
    ros2 launch unifygeo_ros localize.launch.py mode:=tracking odom_topic:=/wheel/odometry imu_topic:=/imu/data

Arguments: params_file (default: the installed config/localize.yaml), checkpoint and index ("" = the embedded
demo), device, backend, input_mode, heading_source, mode (single | tracking), namespace, image_topic /
compressed_topic / imu_topic / odom_topic (remaps of ``image`` / ``image/compressed`` / ``imu`` / ``odom``),
log_level. Values given here override the parameter file.
"""
import os

from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument
from launch.substitutions import LaunchConfiguration
from launch_ros.actions import Node
from launch_ros.parameter_descriptions import ParameterValue

PACKAGE = "unifygeo_ros"


def default_params_file() -> str:
    """The installed config/localize.yaml (ament share directory), else the source tree's."""
    try:
        from ament_index_python.packages import get_package_share_directory

        path = os.path.join(get_package_share_directory(PACKAGE), "config", "localize.yaml")
        if os.path.isfile(path):
            return path
    except Exception:  # not installed through ament (a source checkout)
        pass
    return os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "config", "localize.yaml")


ARGUMENTS = (
    ("params_file", default_params_file(), "YAML parameter file of the node"),
    ("checkpoint", "", "model checkpoint folder; empty = the embedded demo model"),
    ("index", "", "aerial index folder; empty = the embedded demo index"),
    ("device", "auto", "auto | cpu | cuda"),
    ("backend", "torch", "torch | onnxruntime (docs/DEPLOYMENT.md)"),
    ("mode", "single", "single | tracking (one fix per frame, or the sequential localizer on odometry: TRACKING.md)"),
    ("input_mode", "panorama", "panorama | compressed | cameras"),
    ("heading_source", "auto", "auto | model | north_aligned | imu (see config/localize.yaml)"),
    ("imu_topic", "imu", "sensor_msgs/Imu topic the node's 'imu' is remapped to (heading_source imu)"),
    ("odom_topic", "odom", "nav_msgs/Odometry topic the node's 'odom' is remapped to (mode tracking)"),
    ("namespace", "", "namespace of the node and its topics"),
    ("image_topic", "image", "panorama topic (sensor_msgs/Image) the node's 'image' is remapped to"),
    ("compressed_topic", "image/compressed", "topic the node's 'image/compressed' is remapped to"),
    ("log_level", "info", "debug | info | warn | error"),
)


def generate_launch_description() -> LaunchDescription:
    args = [DeclareLaunchArgument(name, default_value=default, description=desc) for name, default, desc in ARGUMENTS]
    cfg = {name: LaunchConfiguration(name) for name, _, _ in ARGUMENTS}
    node = Node(
        package=PACKAGE,
        executable="localizer_node",
        name="unifygeo_localizer",
        namespace=cfg["namespace"],
        output="screen",
        emulate_tty=True,
        parameters=[
            cfg["params_file"],
            {name: ParameterValue(cfg[name], value_type=str) for name in ("checkpoint", "index", "device", "backend",
                                                                          "input_mode", "heading_source", "mode")},
        ],
        remappings=[("image", cfg["image_topic"]), ("image/compressed", cfg["compressed_topic"]),
                    ("imu", cfg["imu_topic"]), ("odom", cfg["odom_topic"])],
        arguments=["--ros-args", "--log-level", cfg["log_level"]],
    )
    return LaunchDescription([*args, node])
