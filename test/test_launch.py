"""The launch file, the parameter file and the robot_localization examples.

Statically: the launch file's arguments and node (imported when ``launch`` is importable, else parsed), the
parameter file against the node's parameter list, the robot_localization YAML against what the node publishes.
For real, where colcon and the ROS environment exist: the package is built with colcon into a scratch
workspace, ``ros2 launch unifygeo_ros localize.launch.py index:=... checkpoint:=...`` starts the node, and a
panorama published on the remapped topic comes back as a fix.
"""
from __future__ import annotations

import ast
import importlib.util
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from unifygeo_ros.node_params import PARAMETER_NAMES, PARAMETERS, NodeSettings

REPO = Path(__file__).resolve().parents[1]
LAUNCH_FILE = REPO / "launch" / "localize.launch.py"
PARAMS_FILE = REPO / "config" / "localize.yaml"
RL_DIR = REPO / "config" / "robot_localization"
LAUNCH_ARGS = {"params_file", "checkpoint", "index", "device", "input_mode", "namespace", "image_topic",
               "compressed_topic", "log_level", "heading_source", "imu_topic"}


def _flatten(d: dict, prefix: str = "") -> dict:
    out = {}
    for k, v in d.items():
        if isinstance(v, dict):
            out.update(_flatten(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = v
    return out


# --------------------------------------------------------------------------------------------- parameters


def test_parameter_file_sets_exactly_the_node_parameters_with_their_defaults():
    doc = yaml.safe_load(PARAMS_FILE.read_text())
    params = _flatten(doc["/**"]["ros__parameters"])
    assert set(params) == set(PARAMETER_NAMES)
    for p in PARAMETERS:
        assert params[p.name] == p.default, p.name
        assert type(params[p.name]) is type(p.default), p.name  # ROS parameters are strictly typed
    NodeSettings.from_params(params)  # and they pass the node's checks


def test_every_parameter_has_a_description():
    for p in PARAMETERS:
        assert len(p.description) > 15, p.name


def test_impossible_parameters_are_refused_with_a_clear_message():
    from unifygeo_ros.errors import UnifyGeoError

    for bad, text in [({"device": "tpu"}, "device"), ({"min_score": 1.5}, "min_score"),
                      ({"input_mode": "cameras", "cameras.yaw_deg": [0.0]}, "4 cameras"),
                      ({"map_frame": " "}, "map_frame"), ({"vertical_variance_m2": 0.0}, "vertical_variance_m2")]:
        with pytest.raises(UnifyGeoError, match=text):
            NodeSettings.from_params(bad)


def test_demo_paths_resolve_or_say_where_they_were_looked_for(tmp_path):
    from unifygeo_ros.errors import UnifyGeoError
    from unifygeo_ros.node_params import resolve_model_paths

    (tmp_path / "c").mkdir()
    (tmp_path / "i").mkdir()
    assert resolve_model_paths(str(tmp_path / "c"), str(tmp_path / "i")) == (tmp_path / "c", tmp_path / "i")
    with pytest.raises(UnifyGeoError, match="parameter index"):
        resolve_model_paths(str(tmp_path / "c"), str(tmp_path / "missing"))
    try:
        ckpt, ix = resolve_model_paths()
        assert ckpt.name == "demo" and ix.name == "index"
    except UnifyGeoError as exc:  # no demo model committed yet
        assert "models/demo" in str(exc) and "checkpoint:=PATH" in str(exc)


# -------------------------------------------------------------------------------------------- launch file


def _launch_importable() -> bool:
    return importlib.util.find_spec("launch") is not None and importlib.util.find_spec("launch_ros") is not None


def test_launch_file_arguments_statically():
    """Without importing ``launch``: the ARGUMENTS table names every argument, the node is ours."""
    tree = ast.parse(LAUNCH_FILE.read_text())
    table = next(n for n in tree.body if isinstance(n, ast.Assign) and n.targets[0].id == "ARGUMENTS")
    names = {elt.elts[0].value for elt in table.value.elts}
    assert names == LAUNCH_ARGS
    src = LAUNCH_FILE.read_text()
    assert 'executable="localizer_node"' in src and 'PACKAGE = "unifygeo_ros"' in src


@pytest.mark.skipif(not _launch_importable(), reason="launch / launch_ros are not importable here")
def test_launch_description_declares_the_arguments_and_the_node():
    from launch.actions import DeclareLaunchArgument
    from launch_ros.actions import Node

    spec = importlib.util.spec_from_file_location("localize_launch", LAUNCH_FILE)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    ld = mod.generate_launch_description()
    args = {e.name: e for e in ld.entities if isinstance(e, DeclareLaunchArgument)}
    assert set(args) == LAUNCH_ARGS
    assert Path(args["params_file"].default_value[0].text).name == "localize.yaml"
    for name in ("checkpoint", "index"):  # empty = the embedded demo
        assert args[name].default_value[0].text == ""
    assert args["device"].default_value[0].text == "auto"
    nodes = [e for e in ld.entities if isinstance(e, Node)]
    assert len(nodes) == 1
    assert nodes[0].node_package == "unifygeo_ros" and nodes[0].node_executable == "localizer_node"


# ---------------------------------------------------------------------------------------- robot_localization

BOOL15 = ("x", "y", "z", "roll", "pitch", "yaw", "vx", "vy", "vz", "vroll", "vpitch", "vyaw", "ax", "ay", "az")


def _rl(name: str) -> dict:
    return yaml.safe_load((RL_DIR / name).read_text())


def _enabled(vec) -> set:
    assert isinstance(vec, list) and len(vec) == 15 and all(isinstance(b, bool) for b in vec), vec
    return {n for n, b in zip(BOOL15, vec) if b}


@pytest.mark.parametrize("name", ["ekf.yaml", "navsat.yaml"])
def test_robot_localization_configs_are_well_formed(name):
    doc = _rl(name)
    node_map = yaml.safe_load(PARAMS_FILE.read_text())["/**"]["ros__parameters"]["map_frame"]
    for node, body in doc.items():
        p = body["ros__parameters"]
        for key, value in p.items():
            if key.endswith("_config"):
                _enabled(value)
                assert key.replace("_config", "") in p, f"{node}: {key} without its topic"
        if node.startswith("ekf_filter_node"):
            assert p["map_frame"] == node_map and p["odom_frame"] == "odom" and p["base_link_frame"] == "base_link"
            assert p["world_frame"] == ("odom" if node.endswith("_odom") else "map")
            assert p["two_d_mode"] is True
            if node.endswith("_odom"):  # the continuous filter takes no absolute position
                assert not any(k.startswith(("pose", "odom1")) for k in p)


def test_option_a_fuses_our_pose_as_an_absolute_measurement_of_what_it_measures():
    p = _rl("ekf.yaml")["ekf_filter_node_map"]["ros__parameters"]
    assert p["pose0"] == "pose"  # the node's output topic (relative)
    assert _enabled(p["pose0_config"]) == {"x", "y", "yaw"}  # not z/roll/pitch: the node does not measure them
    assert p["pose0_differential"] is False and p["pose0_relative"] is False
    assert p["pose0_rejection_threshold"] > 0
    assert "yaw" not in _enabled(p["imu0_config"])  # one absolute yaw source in the map filter


def test_option_b_feeds_navsat_transform_with_our_fix():
    doc = _rl("navsat.yaml")
    nav = doc["navsat_transform_node"]["ros__parameters"]
    assert nav["zero_altitude"] is True and len(nav["datum"]) == 3
    assert abs(nav["yaw_offset"]) < 1e-9 or abs(abs(nav["yaw_offset"]) - 1.5707963) < 1e-6
    m = doc["ekf_filter_node_map"]["ros__parameters"]
    assert m["odom1"] == "odometry/gps" and _enabled(m["odom1_config"]) == {"x", "y"}
    assert m["odom1_differential"] is False


# ---------------------------------------------------------------------------------------- colcon + ros2 launch


def _real_launch_prerequisites() -> str:
    from ros_helpers import ros_available, ros_subprocess_env

    ok, why = ros_available()
    if not ok:
        return why
    env = ros_subprocess_env()
    for tool in ("colcon", "ros2"):
        if not shutil.which(tool, path=env.get("PATH")):
            return f"{tool} is not on PATH (scripts/setup_ros_env.sh installs it into the venv)"
    if not _launch_importable():
        return "launch / launch_ros are not installed"
    return ""


_WHY_NOT = _real_launch_prerequisites()


@pytest.fixture(scope="module")
def colcon_install(tmp_path_factory):
    """The package built by colcon into a scratch workspace (the source tree stays clean)."""
    from ros_helpers import ros_subprocess_env

    ws = tmp_path_factory.mktemp("colcon_ws")
    src = ws / "src" / "unifygeo_ros"
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc", "*.egg-info")
    for item in ("setup.py", "setup.cfg", "package.xml", "resource", "unifygeo_ros", "launch", "config", "models"):
        p = REPO / item
        if p.is_dir():
            shutil.copytree(p, src / item, ignore=ignore)
        elif p.exists():
            src.mkdir(parents=True, exist_ok=True)
            shutil.copy2(p, src / item)
    env = ros_subprocess_env()
    r = subprocess.run(["colcon", "build", "--base-paths", "src", "--event-handlers", "console_direct-"], cwd=ws,
                       env=env, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stdout + r.stderr
    prefix = ws / "install" / "unifygeo_ros"
    assert (prefix / "lib" / "unifygeo_ros" / "localizer_node").exists()  # where `ros2 run` looks
    assert (prefix / "share" / "unifygeo_ros" / "launch" / "localize.launch.py").exists()
    assert (prefix / "share" / "unifygeo_ros" / "config" / "robot_localization" / "ekf.yaml").exists()
    return prefix


@pytest.mark.skipif(bool(_WHY_NOT), reason=_WHY_NOT or "ok")
@pytest.mark.timeout(400)
def test_ros2_launch_starts_the_node_and_a_fix_comes_back(colcon_install, tmp_path):
    from node_world import DriverProc, build_world, image_fields
    from ros_helpers import ros_subprocess_env, unique_domain_id

    world = build_world(tmp_path / "world", n_queries=1)
    env = ros_subprocess_env(domain_id=unique_domain_id())
    # what `source install/setup.bash` adds
    site = colcon_install / "lib" / f"python{sys.version_info[0]}.{sys.version_info[1]}" / "site-packages"
    env["AMENT_PREFIX_PATH"] = f"{colcon_install}{os.pathsep}{env.get('AMENT_PREFIX_PATH', '')}"
    env["PYTHONPATH"] = f"{site}{os.pathsep}{env.get('PYTHONPATH', '')}"
    log = tmp_path / "launch.log"
    with open(log, "w") as fh:
        launch = subprocess.Popen(
            ["ros2", "launch", "unifygeo_ros", "localize.launch.py", f"index:={world.index}",
             f"checkpoint:={world.checkpoint}", "device:=cpu", "namespace:=launched", "image_topic:=/launch_test/pano",
             f"heading_source:={'north_aligned' if world.known_orientation else 'auto'}",
             "sigterm_timeout:=30"],  # a loaded CI machine may need more than launch's default 5 s to shut down
            env=env, stdout=fh, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True)
    driver = None
    try:
        deadline = time.monotonic() + 240
        while "ready" not in log.read_text(errors="replace"):
            assert launch.poll() is None and time.monotonic() < deadline, log.read_text()
            time.sleep(0.3)
        import psutil

        cmdlines = [" ".join(c.cmdline()) for c in psutil.Process(launch.pid).children(recursive=True)]
        exe = str(colcon_install / "lib" / "unifygeo_ros" / "localizer_node")
        assert any(exe in c for c in cmdlines), cmdlines  # the colcon-installed executable, as `ros2 run` finds it
        assert "/launch_test/pano" in log.read_text()  # remapped input
        driver = DriverProc(env, ["/launched"])
        # min_score 0.5 (the parameter file): a random-weights model may score below; lower it at run time
        assert driver.call("set_param", node="/launched/unifygeo_localizer", name="min_score",
                           value=0.0)["successful"]
        r = driver.call("roundtrip", topic="/launch_test/pano", kind="image", fields=image_fields(world.queries[0].rgb),
                        ns="/launched", timeout=30)
        assert not r["missing"], r
        assert r["outputs"]["pose"]["header"]["frame_id"] == "map"
    finally:
        if driver is not None:
            driver.close()
        if launch.poll() is None:
            os.killpg(launch.pid, signal.SIGINT)
            try:
                launch.wait(20)
            except subprocess.TimeoutExpired:
                os.killpg(launch.pid, signal.SIGKILL)
                launch.wait()
    assert "process has finished cleanly" in log.read_text(), log.read_text()
