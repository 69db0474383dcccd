"""config/robot_localization/ and launch/fusion.launch.py against robot_localization's own source.

robot_localization, launch and launch_ros are C++/ROS packages no registry reachable here serves, so nothing is
run: the YAML is read as YAML, the launch file as Python source (``ast``), and both are checked against facts
taken from robot_localization's source, written down below with the file and function they come from. Each test
names the mistake it catches; every one of them was in the shipped examples before issue #15.
"""
from __future__ import annotations

import ast
import math
import re
from pathlib import Path

import numpy as np
import pytest
import yaml
from scipy.stats import chi2

REPO = Path(__file__).resolve().parents[1]
RL_DIR = REPO / "config" / "robot_localization"
EKF_YAML = RL_DIR / "ekf.yaml"
NAVSAT_YAML = RL_DIR / "navsat.yaml"
FUSION_LAUNCH = REPO / "launch" / "fusion.launch.py"
LOCALIZE_LAUNCH = REPO / "launch" / "localize.launch.py"
NODE_PY = REPO / "unifygeo_ros" / "ros" / "node.py"
LOCALIZE_YAML = REPO / "config" / "localize.yaml"

# ------------------------------------------------------------------------------- robot_localization's facts
# Source: github.com/cra-ros-pkg/robot_localization, its ROS 2 code (rclcpp, the branch line that jazzy, kilted
# and rolling build from). Read for this file: src/ros_filter.cpp RosFilter<T>::loadParams() at revision
# 0009b577ef9395a0395797b709ca1be7622244bb (every `this->declare_parameter(...)`), cross-checked against a later
# ROS 2 revision of the same file (declare_parameter(..., rclcpp::PARAMETER_DOUBLE_ARRAY), same names);
# src/navsat_transform.cpp NavSatTransform::NavSatTransform() at 01c15ec2daffeb000370a8e7e6393170119b1c41 and a
# later ROS 2 revision (broadcast_cartesian_transform, use_local_cartesian, datum_at_sea_level, utm_frame_id).
# Only names found there are accepted: a misspelt key is silently ignored by a ROS 2 node (never declared).

EKF_PARAMETERS = frozenset({
    "print_diagnostics", "gravitational_acceleration", "debug", "debug_out_file", "map_frame", "odom_frame",
    "base_link_frame", "base_link_frame_output", "world_frame", "tf_prefix", "publish_tf", "publish_acceleration",
    "permit_corrected_publication", "transform_time_offset", "transform_timeout", "frequency", "sensor_timeout",
    "two_d_mode", "smooth_lagged_data", "history_length", "reset_on_time_jump", "use_control", "control_timeout",
    "control_config", "acceleration_limits", "acceleration_gains", "deceleration_limits", "deceleration_gains",
    "dynamic_process_noise_covariance", "initial_state", "disabled_at_startup", "process_noise_covariance",
    "initial_estimate_covariance",
})
# Per-sensor keys: "<kind><N>" (the topic) plus these suffixes. loadParams() reads odom0, odom1, ... and stops
# at the first missing index, so the indices must be contiguous from 0. Note the different gate names: odom and
# imu inputs have one gate per part of the message, pose and twist inputs a single one.
EKF_SENSOR_SUFFIXES = {
    "odom": {"", "_config", "_differential", "_relative", "_queue_size", "_pose_rejection_threshold",
             "_twist_rejection_threshold"},
    "pose": {"", "_config", "_differential", "_relative", "_queue_size", "_rejection_threshold"},
    "twist": {"", "_config", "_queue_size", "_rejection_threshold"},
    "imu": {"", "_config", "_differential", "_relative", "_queue_size", "_pose_rejection_threshold",
            "_twist_rejection_threshold", "_linear_acceleration_rejection_threshold",
            "_remove_gravitational_acceleration"},
}
# Which state variables (indices into the 15-vector) each gate covers (ros_filter.cpp: the pose / twist /
# acceleration update vectors the thresholds are attached to).
GATE_BLOCKS = {"_pose_rejection_threshold": range(0, 6), "_rejection_threshold": None,
               "_twist_rejection_threshold": range(6, 12), "_linear_acceleration_rejection_threshold": range(12, 15)}
NAVSAT_PARAMETERS = frozenset({
    "magnetic_declination_radians", "yaw_offset", "zero_altitude", "publish_filtered_gps", "use_odometry_yaw",
    "wait_for_datum", "frequency", "delay", "transform_timeout", "datum", "broadcast_utm_transform",
    "broadcast_utm_transform_as_parent_frame", "broadcast_cartesian_transform",
    "broadcast_cartesian_transform_as_parent_frame", "use_local_cartesian", "datum_at_sea_level", "utm_frame_id",
    "publish_gps_odom_in_cartesian_frame",
})
# Topics (relative names). ekf_node: publishes odometry/filtered (and accel/filtered with publish_acceleration),
# subscribes its odomN/poseN/twistN/imuN values and set_pose (ros_filter.cpp initialize(), loadParams()).
# navsat_transform_node: subscribes odometry/filtered, gps/fix and - unless use_odometry_yaw or wait_for_datum -
# imu (not imu/data); publishes odometry/gps and, with publish_filtered_gps, gps/filtered.
EKF_OUTPUT = "odometry/filtered"
EKF_OWN_TOPICS = {"odometry/filtered", "accel/filtered", "set_pose"}
NAVSAT_INPUTS = ("gps/fix", "imu", "odometry/filtered")
NAVSAT_TOPICS = {"gps/fix", "imu", "odometry/filtered", "odometry/gps", "gps/filtered"}
# The gate: FilterBase::checkMahalanobisThreshold() rejects when innovation' S^-1 innovation >= n_sigmas^2, so
# the parameter is a Mahalanobis *distance* (sigmas). The state's default initial covariance: FilterBase::reset()
# sets 1e-9 * I; the first measurement overwrites only the variables it measures (processMeasurement()).
RL_DEFAULT_INITIAL_VARIANCE = 1e-9
STATE = ("x", "y", "z", "roll", "pitch", "yaw", "vx", "vy", "vz", "vroll", "vpitch", "vyaw", "ax", "ay", "az")
N = len(STATE)

# ------------------------------------------------------------------------------------ what we require of it
# The map origin is the index's south-west corner; a first fix can be anywhere in the index. 20 km covers a large
# city's diagonal: the gate must let a first fix that far from the origin in.
FARTHEST_FIRST_FIX_M = 20_000.0
GATE_CONFIDENCE = (0.99, 0.9999)  # a gate keeps between 99 % and 99.99 % of the fixes that agree with the filter
MIN_HISTORY_S = 1.0  # smooth_lagged_data's window must cover the fix latency (BENCHMARKS.md section 5: p95 0.15 s)


def _rl(path: Path) -> dict:
    return yaml.safe_load(path.read_text())


def _sections() -> list[tuple[str, str, dict]]:
    """(file name, node name, ros__parameters) of every section of both files."""
    out = []
    for path in (EKF_YAML, NAVSAT_YAML):
        for node, body in _rl(path).items():
            assert set(body) == {"ros__parameters"}, (path.name, node)
            out.append((path.name, node, body["ros__parameters"]))
    return out


def _ekf_sections():
    return [s for s in _sections() if s[1].startswith("ekf_filter_node")]


def _map_sections():
    return [s for s in _sections() if s[1] == "ekf_filter_node_map"]


def _enabled(vec) -> set[str]:
    assert isinstance(vec, list) and len(vec) == N and all(isinstance(b, bool) for b in vec), vec
    return {n for n, b in zip(STATE, vec) if b}


def _matrix(p: dict, key: str) -> np.ndarray:
    flat = p[key]
    assert isinstance(flat, list) and len(flat) == N * N, (key, len(flat))  # what every ROS 2 branch reads
    assert all(isinstance(v, float) for v in flat), key  # a double array: ROS 2 refuses mixed int/float arrays
    m = np.array(flat).reshape(N, N)
    assert np.allclose(m, m.T), key
    assert np.all(np.diag(m) > 0), key
    np.linalg.cholesky(m)  # positive definite
    return m


_SENSOR_KEY = re.compile(r"^(odom|pose|twist|imu)(\d+)(.*)$")


def _sensors(p: dict) -> dict[str, str]:
    """{"odom0": topic, ...} of one EKF section."""
    return {k: v for k, v in p.items() if _SENSOR_KEY.match(k) and _SENSOR_KEY.match(k).group(3) == ""}


# ------------------------------------------------------------------------------------------ parameter names


def test_every_key_is_a_robot_localization_parameter():
    """Catches `odom1_rejection_threshold` (not a parameter: odom inputs have _pose_/_twist_rejection_threshold)."""
    for fname, node, p in _sections():
        for key in p:
            if node == "navsat_transform_node":
                assert key in NAVSAT_PARAMETERS, f"{fname} {node}: {key} is not a navsat_transform_node parameter"
                continue
            m = _SENSOR_KEY.match(key)
            if m:
                kind, _, suffix = m.groups()
                assert suffix in EKF_SENSOR_SUFFIXES[kind], f"{fname} {node}: {key} is not an ekf_node parameter"
            else:
                assert key in EKF_PARAMETERS, f"{fname} {node}: {key} is not an ekf_node parameter"


def test_the_old_misspelt_gate_would_be_refused():
    m = _SENSOR_KEY.match("odom1_rejection_threshold")
    assert m.group(3) not in EKF_SENSOR_SUFFIXES["odom"]
    assert "_rejection_threshold" in EKF_SENSOR_SUFFIXES["pose"]  # ... which is pose0's spelling


def test_sensor_indices_are_contiguous_and_each_has_a_topic_and_a_config():
    for fname, node, p in _ekf_sections():
        sensors = _sensors(p)
        for kind in EKF_SENSOR_SUFFIXES:
            idx = sorted(int(k[len(kind):]) for k in sensors if k.startswith(kind) and k[len(kind):].isdigit())
            assert idx == list(range(len(idx))), f"{fname} {node}: {kind} indices {idx} (loading stops at a gap)"
        for key in p:
            m = _SENSOR_KEY.match(key)
            if m and m.group(3):
                assert f"{m.group(1)}{m.group(2)}" in p, f"{fname} {node}: {key} without its topic"
        for name, topic in sensors.items():
            assert isinstance(topic, str) and topic, (fname, node, name)
            assert _enabled(p[f"{name}_config"]), f"{fname} {node}: {name} fuses nothing"


def test_parameter_types_are_the_declared_ones():
    """ROS 2 parameters are strictly typed: a double declared by ekf_node must be written as a double."""
    for fname, node, p in _sections():
        for key, value in p.items():
            if key.endswith(("_threshold", "frequency", "sensor_timeout", "history_length", "delay",
                             "yaw_offset", "magnetic_declination_radians")):
                assert isinstance(value, float), (fname, node, key, value)
            elif key.endswith("_queue_size"):
                assert isinstance(value, int) and not isinstance(value, bool) and value >= 1, (fname, node, key)
            elif key.endswith(("_differential", "_relative", "two_d_mode", "publish_tf", "smooth_lagged_data",
                               "_remove_gravitational_acceleration", "zero_altitude", "wait_for_datum",
                               "use_odometry_yaw", "publish_filtered_gps", "print_diagnostics")):
                assert isinstance(value, bool), (fname, node, key, value)
            elif key.endswith("_covariance"):
                _matrix(p, key)


# ----------------------------------------------------------------------------- initial covariance, the gates


def test_map_filters_start_with_a_wide_x_y_yaw_covariance():
    """Catches the missing initial_estimate_covariance: robot_localization's default is 1e-9, and the first fix
    (km from the map origin; usually not the filter's first measurement) is gated out or fused with gain ~0."""
    for fname, node, p in _map_sections():
        assert "initial_estimate_covariance" in p, f"{fname}: no initial_estimate_covariance"
        P = _matrix(p, "initial_estimate_covariance")
        gate = min(v for k, v in p.items() if k.endswith("rejection_threshold"))
        for i in (STATE.index("x"), STATE.index("y")):
            assert P[i, i] > 1e6 * RL_DEFAULT_INITIAL_VARIANCE
            assert gate * math.sqrt(P[i, i]) >= FARTHEST_FIRST_FIX_M, (fname, STATE[i], P[i, i])
        yaw = STATE.index("yaw")
        assert gate * math.sqrt(P[yaw, yaw]) >= math.pi, (fname, "any heading must pass the gate")


def test_odom_filter_starts_at_its_origin():
    p = _rl(EKF_YAML)["ekf_filter_node_odom"]["ros__parameters"]
    P = _matrix(p, "initial_estimate_covariance")
    assert P[0, 0] <= 1e-6 and P[1, 1] <= 1e-6  # odom starts where the robot starts


def _gate_dof(p: dict, key: str) -> int:
    m = _SENSOR_KEY.match(key)
    name, suffix = f"{m.group(1)}{m.group(2)}", m.group(3)
    enabled = _enabled(p[f"{name}_config"])
    block = GATE_BLOCKS[suffix]
    if block is None:  # poseN / twistN: the whole message
        block = range(0, 6) if m.group(1) == "pose" else range(6, 12)
    return len(enabled & {STATE[i] for i in block})


def test_rejection_thresholds_are_mahalanobis_distances():
    """Catches 16.3 (a chi-square value) used where robot_localization compares d^2 with threshold^2."""
    found = 0
    for fname, node, p in _ekf_sections():
        for key, thr in p.items():
            if not key.endswith("rejection_threshold"):
                continue
            found += 1
            dof = _gate_dof(p, key)
            assert dof >= 1, (fname, key, "gates variables this input does not fuse")
            assert 1.0 < thr < 10.0, (fname, key, thr, "a distance in sigmas, not a chi-square value")
            kept = chi2.cdf(thr * thr, dof)  # share of consistent measurements the gate keeps
            assert GATE_CONFIDENCE[0] <= kept <= GATE_CONFIDENCE[1], (fname, key, thr, dof, kept)
    assert found >= 2  # pose0 (option A) and odom1 (option B) are gated
    assert chi2.cdf(16.3 ** 2, 3) > GATE_CONFIDENCE[1]  # the old value would not pass


def test_gate_values_are_the_documented_quantiles():
    a = _rl(EKF_YAML)["ekf_filter_node_map"]["ros__parameters"]
    b = _rl(NAVSAT_YAML)["ekf_filter_node_map"]["ros__parameters"]
    assert a["pose0_rejection_threshold"] == pytest.approx(math.sqrt(chi2.ppf(0.999, 3)), abs=0.005)  # x, y, yaw
    assert b["odom1_pose_rejection_threshold"] == pytest.approx(math.sqrt(chi2.ppf(0.999, 2)), abs=0.005)  # x, y
    doc = (REPO / "docs" / "FUSION.md").read_text()
    for value in ("4.03", "3.72"):
        assert value in doc and value in EKF_YAML.read_text() + NAVSAT_YAML.read_text()


# -------------------------------------------------------------------------------------------- lagged fixes


def test_lagged_fixes_are_smoothed_in_the_map_filters():
    """Catches smooth_lagged_data off: a fix stamped one inference ago would be fused as if current."""
    for fname, node, p in _map_sections():
        assert p.get("smooth_lagged_data") is True, fname
        assert p.get("history_length", 0.0) >= MIN_HISTORY_S, fname


# --------------------------------------------------------------------------------------- what is fused where


def _node_publishers() -> set[str]:
    """Topics unifygeo_ros' localizer_node publishes (its create_publisher calls)."""
    names = set()
    for call in ast.walk(ast.parse(NODE_PY.read_text())):
        if (isinstance(call, ast.Call) and isinstance(call.func, ast.Attribute)
                and call.func.attr == "create_publisher" and isinstance(call.args[1], ast.Constant)):
            names.add(call.args[1].value)
    assert {"pose", "fix"} <= names, names
    return names


def test_option_a_fuses_our_pose_as_pose0():
    p = _rl(EKF_YAML)["ekf_filter_node_map"]["ros__parameters"]
    assert p["pose0"] == "pose" and "pose" in _node_publishers()
    assert _enabled(p["pose0_config"]) == {"x", "y", "yaw"}
    assert p["pose0_differential"] is False and p["pose0_relative"] is False
    node_map = yaml.safe_load(LOCALIZE_YAML.read_text())["/**"]["ros__parameters"]["map_frame"]
    assert p["world_frame"] == p["map_frame"] == node_map  # pose's frame_id is the filter's world frame
    yaw_sources = [k for k in _sensors(p) if "yaw" in _enabled(p[f"{k}_config"])
                   and not p.get(f"{k}_differential", False)]
    assert yaw_sources == ["pose0"], yaw_sources  # one absolute yaw source
    assert not any(v == "odometry/gps" for v in _sensors(p).values())  # the fix is not fused twice


def test_option_b_fuses_the_fix_only_through_navsat():
    p = _rl(NAVSAT_YAML)["ekf_filter_node_map"]["ros__parameters"]
    assert p["odom1"] == "odometry/gps" and _enabled(p["odom1_config"]) == {"x", "y"}
    assert not any(k.startswith("pose") for k in _sensors(p))  # not also our pose: the same fix twice
    nav = _rl(NAVSAT_YAML)["navsat_transform_node"]["ros__parameters"]
    assert nav["zero_altitude"] is True
    if not (nav["wait_for_datum"] or nav["use_odometry_yaw"]):  # then navsat subscribes `imu` for its heading
        assert "yaw" in _enabled(p["imu0_config"])  # and the map filter's yaw is that IMU's


def test_odom_filter_lives_in_one_file():
    """Both options use ekf.yaml's odom filter (fusion.launch.py): navsat.yaml has no copy to drift apart."""
    assert "ekf_filter_node_odom" in _rl(EKF_YAML) and "ekf_filter_node_odom" not in _rl(NAVSAT_YAML)


# ------------------------------------------------------------------------------------- the launch file, wiring


def _launch_table(path: Path) -> dict[str, str]:
    """A launch file's ARGUMENTS table evaluated without ``launch``: {name: default}."""
    tree = ast.parse(path.read_text())
    keep = [n for n in tree.body
            if not (isinstance(n, ast.ImportFrom) and (n.module or "").split(".")[0] in ("launch", "launch_ros"))
            and not (isinstance(n, ast.FunctionDef) and n.name == "generate_launch_description")]
    ns = {"__file__": str(path), "__name__": "launch_static"}
    exec(compile(ast.Module(body=keep, type_ignores=[]), str(path), "exec"), ns)
    return {name: default for name, default, _ in ns["ARGUMENTS"]}


def _function(path: Path) -> ast.FunctionDef:
    return next(n for n in ast.parse(path.read_text()).body
                if isinstance(n, ast.FunctionDef) and n.name == "generate_launch_description")


class _Launch:
    """fusion.launch.py's actions, evaluated for given argument values (launch's own rules, no ``launch``)."""

    def __init__(self, **overrides: str):
        self.values = {**_launch_table(FUSION_LAUNCH), **overrides}
        fn = _function(FUSION_LAUNCH)
        self.env = {t.targets[0].id: t.value for t in fn.body
                    if isinstance(t, ast.Assign) and isinstance(t.targets[0], ast.Name)}

    def eval(self, node: ast.AST):
        if isinstance(node, ast.Constant):
            return node.value
        if isinstance(node, ast.Subscript) and isinstance(node.value, ast.Name) and node.value.id == "cfg":
            return self.values[node.slice.value]
        if isinstance(node, ast.Name):
            return self.eval(self.env[node.id])
        if isinstance(node, (ast.List, ast.Tuple)):
            out = []
            for e in node.elts:
                out.extend(self.eval(e.value) if isinstance(e, ast.Starred) else [self.eval(e)])
            return out if isinstance(node, ast.List) else tuple(out)
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Name):
            if node.func.id in ("IfCondition", "UnlessCondition"):
                text = str(self.eval(node.args[0])).strip().lower()
                assert text in ("true", "false", "1", "0"), text  # what launch's conditions accept
                return (text in ("true", "1")) == (node.func.id == "IfCondition")
            if node.func.id == "PythonExpression":
                return str(eval("".join(str(p) for p in self.eval(node.args[0]))))  # noqa: S307 - as launch
        raise AssertionError(f"cannot evaluate {ast.dump(node)}")

    def nodes(self) -> list[dict]:
        """The Node actions that run with these argument values: {package, executable, name, ...} each."""
        out = []
        for call in self.env.values():
            if isinstance(call, ast.Call) and isinstance(call.func, ast.Name) and call.func.id == "Node":
                kw = {k.arg: k.value for k in call.keywords}
                if "condition" in kw and not self.eval(kw["condition"]):
                    continue
                out.append({k: self.eval(v) for k, v in kw.items() if k != "condition"})
        return out


MODES = {"option A": {"use_navsat": "false"}, "option B": {"use_navsat": "true"}}


def _rl_nodes(launch: _Launch) -> list[dict]:
    return [n for n in launch.nodes() if n["package"] == "robot_localization"]


def _section(node: dict) -> dict:
    (params_file,) = node["parameters"]
    doc = _rl(Path(params_file))
    assert node["name"] in doc, f"{node['name']} has no section in {params_file}: it would run on defaults"
    return doc[node["name"]]["ros__parameters"]


@pytest.mark.parametrize("mode", MODES)
def test_launched_node_names_match_the_yaml_sections(mode):
    """Catches EKFs started without the names their sections need (they would run on robot_localization's
    defaults: no inputs, world_frame odom twice)."""
    launch = _Launch(**MODES[mode])
    nodes = _rl_nodes(launch)
    names = [n["name"] for n in nodes]
    assert len(names) == len(set(names)), names
    expected = {"ekf_filter_node_odom", "ekf_filter_node_map"} | ({"navsat_transform_node"}
                                                                  if mode == "option B" else set())
    assert set(names) == expected
    for n in nodes:
        p = _section(n)
        assert n["executable"] == ("navsat_transform_node" if n["name"] == "navsat_transform_node" else "ekf_node")
        if n["executable"] == "ekf_node":
            assert p["world_frame"] == ("odom" if n["name"].endswith("_odom") else "map")
    map_node = next(n for n in nodes if n["name"] == "ekf_filter_node_map")
    uses = "pose0" if mode == "option A" else "odom1"
    assert uses in _section(map_node)


def _remaps(node: dict) -> dict[str, str]:
    pairs = node.get("remappings", [])
    keys = [a for a, _ in pairs]
    assert len(keys) == len(set(keys)), keys
    return dict(pairs)


def _resolved(node: dict, topic: str) -> str:
    return _remaps(node).get(topic, topic)


@pytest.mark.parametrize("mode", MODES)
def test_filter_outputs_are_distinct_and_navsat_hears_the_map_filter(mode):
    """Catches both EKFs publishing odometry/filtered (navsat would take its world frame from whichever it heard
    last) and navsat's `imu` left unremapped (it subscribes `imu`, not `imu/data`: no odometry/gps ever)."""
    launch = _Launch(**MODES[mode])
    by_name = {n["name"]: n for n in _rl_nodes(launch)}
    odom, mapf = by_name["ekf_filter_node_odom"], by_name["ekf_filter_node_map"]
    assert _resolved(odom, EKF_OUTPUT) == "odometry/local"  # robot_localization's dual-EKF example's names
    assert _resolved(mapf, EKF_OUTPUT) == "odometry/global"
    if mode == "option B":
        nav = by_name["navsat_transform_node"]
        assert _resolved(nav, "odometry/filtered") == _resolved(mapf, EKF_OUTPUT)
        assert _resolved(nav, "gps/fix") == "fix" and "fix" in _node_publishers()
        assert _resolved(nav, "imu") == launch.values["imu_topic"] == _resolved(mapf, "imu/data")
        assert set(_remaps(nav)) <= NAVSAT_TOPICS, "a remap of a name navsat_transform_node does not use"


@pytest.mark.parametrize("mode", MODES)
def test_every_remap_renames_a_topic_the_node_uses(mode):
    """A remap of a name the node never uses (robot_localization's own example remaps navsat's `imu/data`)
    does nothing."""
    for n in _rl_nodes(_Launch(**MODES[mode])):
        used = NAVSAT_TOPICS if n["executable"] == "navsat_transform_node" else \
            EKF_OWN_TOPICS | set(_sensors(_section(n)).values())
        assert set(_remaps(n)) <= used, (n["name"], set(_remaps(n)) - used)


@pytest.mark.parametrize("mode", MODES)
def test_every_input_is_published_by_a_launched_node_or_is_a_sensor_argument(mode):
    launch = _Launch(**MODES[mode])
    nodes = _rl_nodes(launch)
    assert launch.values["start_localizer"] == "true"  # the default: the localizer is launched too
    published = set(_node_publishers())  # relative names, like every name here: one namespace for all nodes
    for n in nodes:
        if n["executable"] == "ekf_node":
            published.add(_resolved(n, EKF_OUTPUT))
        else:
            published.add(_resolved(n, "odometry/gps"))
    sensors = {launch.values["odom_topic"], launch.values["imu_topic"]}
    for n in nodes:
        if n["executable"] == "ekf_node":
            inputs = list(_sensors(_section(n)).values())
        else:
            nav = _section(n)
            inputs = [t for t in NAVSAT_INPUTS if t != "imu" or not (nav["wait_for_datum"] or nav["use_odometry_yaw"])]
        for topic in inputs:
            target = _resolved(n, topic)
            assert target in published | sensors, f"{n['name']}: {topic} -> {target}: nobody publishes it"


def test_camera_transform_is_published_from_the_filters_base_link():
    frames = {p["base_link_frame"] for _, _, p in _ekf_sections()}
    assert frames == {"base_link"}
    assert not [n for n in _Launch().nodes() if n["package"] == "tf2_ros"]  # camera_frame empty: none
    (tf,) = [n for n in _Launch(camera_frame="pano_cam", camera_x="0.3", camera_z="1.2").nodes()
             if n["package"] == "tf2_ros"]
    assert tf["executable"] == "static_transform_publisher"
    args = tf["arguments"]
    flags = dict(zip(args[::2], args[1::2]))
    assert flags["--frame-id"] in frames and flags["--child-frame-id"] == "pano_cam"
    assert (flags["--x"], flags["--y"], flags["--z"], flags["--yaw"]) == ("0.3", "0.0", "1.2", "0.0")


def test_fusion_needs_no_more_than_the_launch_packages():
    """Imports of fusion.launch.py: launch, launch_ros, ament_index_python (as localize.launch.py) and os."""
    mods = set()
    for n in ast.walk(ast.parse(FUSION_LAUNCH.read_text())):
        if isinstance(n, ast.Import):
            mods |= {a.name.split(".")[0] for a in n.names}
        elif isinstance(n, ast.ImportFrom):
            mods.add((n.module or "").split(".")[0])
    assert mods <= {"os", "launch", "launch_ros", "ament_index_python"}, mods
