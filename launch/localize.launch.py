"""Start unifygeo_ros' localizer_node (node name ``unifygeo_localizer``).

    ros2 launch unifygeo_ros localize.launch.py                                  # the embedded demo model + index
    ros2 launch unifygeo_ros localize.launch.py index:=/data/ix checkpoint:=/data/ckpt image_topic:=/cam/pano
    ros2 launch unifygeo_ros localize.launch.py input_mode:=compressed compressed_topic:=/cam/pano/compressed
    ros2 launch unifygeo_ros localize.launch.py mode:=tracking odom_topic:=/wheel/odometry imu_topic:=/imu/data
    ros2 launch unifygeo_ros localize.launch.py params_file:=/robot/unifygeo.yaml   # its index, mode, ... as written

Arguments: params_file (default: the installed config/localize.yaml), checkpoint and index, device, backend, mode
(single | tracking), input_mode, heading_source, namespace, image_topic / compressed_topic / imu_topic / odom_topic
(remaps of ``image`` / ``image/compressed`` / ``imu`` / ``odom``), log_level. The node parameters among them
(checkpoint, index, device, backend, mode, input_mode, heading_source: :data:`OVERRIDES`) override the parameter
file only when given: left empty, the parameter file's value holds (the shipped file's: the embedded demo model and
index, device auto, backend torch, mode single, input_mode panorama, heading_source auto).
"""
import os

from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument, OpaqueFunction
from launch.substitutions import LaunchConfiguration
from launch_ros.actions import Node
from launch_ros.parameter_descriptions import ParameterValue

PACKAGE = "unifygeo_ros"
FROM_FILE = "empty = the parameter file's"


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
    ("checkpoint", "", f"model checkpoint folder; {FROM_FILE} (shipped: empty = the embedded demo model)"),
    ("index", "", f"aerial index folder; {FROM_FILE} (shipped: empty = the embedded demo index)"),
    ("device", "", f"auto | cpu | cuda ({FROM_FILE}, shipped: auto)"),
    ("backend", "", f"torch | onnxruntime ({FROM_FILE}, shipped: torch; docs/DEPLOYMENT.md)"),
    ("mode", "", f"single | tracking (one fix per frame, or the sequential localizer on odometry: TRACKING.md; "
                 f"{FROM_FILE}, shipped: single)"),
    ("input_mode", "", f"panorama | compressed | cameras ({FROM_FILE}, shipped: panorama)"),
    ("heading_source", "", f"auto | model | north_aligned | imu ({FROM_FILE}, shipped: auto; config/localize.yaml)"),
    ("imu_topic", "imu", "sensor_msgs/Imu topic the node's 'imu' is remapped to (heading_source imu)"),
    ("odom_topic", "odom", "nav_msgs/Odometry topic the node's 'odom' is remapped to (mode tracking)"),
    ("namespace", "", "namespace of the node and its topics"),
    ("image_topic", "image", "panorama topic (sensor_msgs/Image) the node's 'image' is remapped to"),
    ("compressed_topic", "image/compressed", "topic the node's 'image/compressed' is remapped to"),
    ("log_level", "info", "debug | info | warn | error"),
)
#: the arguments that are node parameters: given (not empty), they override the parameter file
OVERRIDES = ("checkpoint", "index", "device", "backend", "mode", "input_mode", "heading_source")


def overrides(values: dict) -> dict:
    """The node parameters the launch arguments set: those of :data:`OVERRIDES` given a value (not empty)."""
    return {name: values[name] for name in OVERRIDES if values.get(name, "")}


def localizer_node(context) -> list:
    """The node, its parameters the parameter file's with the given arguments on top (OpaqueFunction: an argument
    left empty must not reach the node at all, or it would replace the file's value)."""
    cfg = {name: LaunchConfiguration(name) for name, _, _ in ARGUMENTS}
    given = overrides({name: cfg[name].perform(context) for name in OVERRIDES})
    return [Node(
        package=PACKAGE,
        executable="localizer_node",
        name="unifygeo_localizer",
        namespace=cfg["namespace"],
        output="screen",
        emulate_tty=True,
        parameters=[cfg["params_file"], {name: ParameterValue(value, value_type=str) for name, value in given.items()}],
        remappings=[("image", cfg["image_topic"]), ("image/compressed", cfg["compressed_topic"]),
                    ("imu", cfg["imu_topic"]), ("odom", cfg["odom_topic"])],
        arguments=["--ros-args", "--log-level", cfg["log_level"]],
    )]


def generate_launch_description() -> LaunchDescription:
    args = [DeclareLaunchArgument(name, default_value=default, description=desc) for name, default, desc in ARGUMENTS]
    return LaunchDescription([*args, OpaqueFunction(function=localizer_node)])
