"""The launch file, the parameter file and the robot_localization examples.

Statically, everywhere (no ``launch`` package needed): the launch file is parsed with ``ast`` and its
ARGUMENTS table evaluated on its own (names, defaults, the choices named in the descriptions, against the
node's PARAMETERS), its one Node (package, executable, name, namespace, parameters, remappings, log level) and
that every argument is used; the parameter file against the node's parameter list; the robot_localization
YAML against what the node publishes.

For real, only where ROS 2 is installed from its own packages (apt: /opt/ros/$ROS_DISTRO sourced, ``ros2`` with
``ros2launch``, ``launch``/``launch_ros``, colcon; docs/ROS_ENV.md "Apt route"): the package is built with
colcon into a scratch workspace, ``ros2 launch unifygeo_ros localize.launch.py index:=... checkpoint:=...``
starts the node, and a panorama published on the remapped topic comes back as a fix. Elsewhere (the pip route:
PyPI has no launch, launch_ros or ros2cli) that test skips and says what is missing; UNIFYGEO_REQUIRE_ROS=1
does not change that (it makes test_node.py / test_ros_dds.py require rclpy and geographic_msgs only).
"""
from __future__ import annotations

import ast
import importlib.util
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from unifygeo_ros.ros.params import PARAMETER_NAMES, PARAMETERS, NodeSettings

REPO = Path(__file__).resolve().parents[1]
LAUNCH_FILE = REPO / "launch" / "localize.launch.py"
PARAMS_FILE = REPO / "config" / "localize.yaml"
RL_DIR = REPO / "config" / "robot_localization"
LAUNCH_ARGS = {"params_file", "checkpoint", "index", "device", "input_mode", "namespace", "image_topic",
               "compressed_topic", "log_level", "heading_source", "imu_topic", "backend", "mode", "odom_topic"}
#: the arguments that are node parameters (overriding the parameter file when given)
OVERRIDES = ("checkpoint", "index", "device", "backend", "mode", "input_mode", "heading_source")


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


def test_every_parameter_is_in_the_node_documentation_table():
    """docs/NODE.md's parameter table names every parameter the node declares (a row may name several; grouped
    sub-parameters may be named by their last part)."""
    rows = "\n".join(ln for ln in (REPO / "docs" / "NODE.md").read_text().splitlines() if ln.startswith("|"))
    missing = [p.name for p in PARAMETERS if f"`{p.name}`" not in rows and f"`{p.name.split('.')[-1]}`" not in rows]
    assert not missing, f"parameters missing from docs/NODE.md's table: {missing}"


def test_impossible_parameters_are_refused_with_a_clear_message():
    from unifygeo_ros.errors import UnifyGeoError

    for bad, text in [({"device": "tpu"}, "device"), ({"min_score": 1.5}, "min_score"),
                      ({"input_mode": "cameras", "cameras.yaw_deg": [0.0]}, "4 cameras"),
                      ({"map_frame": " "}, "map_frame"), ({"vertical_variance_m2": 0.0}, "vertical_variance_m2")]:
        with pytest.raises(UnifyGeoError, match=text):
            NodeSettings.from_params(bad)


def test_demo_paths_resolve_or_say_where_they_were_looked_for(tmp_path):
    from unifygeo_ros.errors import UnifyGeoError
    from unifygeo_ros.resources import resolve_model_paths

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


def test_embedded_resources_are_found_without_a_sourced_ros_workspace(monkeypatch):
    """ament_index_python installed (the ROS wheels) but no workspace sourced: the lookup falls through to the
    package's own share directory or source tree instead of failing (unifygeo demo, replay --fuse, the node)."""
    from unifygeo_ros.resources import DEMO_CHECKPOINT_REL, find_resource, share_dirs

    monkeypatch.delenv("AMENT_PREFIX_PATH", raising=False)
    dirs = share_dirs()
    assert dirs and all(isinstance(d, Path) for d in dirs)
    assert find_resource(DEMO_CHECKPOINT_REL) is not None
    assert find_resource("config/robot_localization/ekf.yaml") is not None


# -------------------------------------------------------------------------------------------- launch file


def _module_importable(name: str) -> bool:
    """A real module (the repository's own ``launch/`` folder is an importable namespace package, not one)."""
    try:
        spec = importlib.util.find_spec(name)
    except (ImportError, ValueError):
        return False
    return spec is not None and spec.origin not in (None, "namespace")


def _launch_importable() -> bool:
    return _module_importable("launch") and _module_importable("launch_ros")


APT_HINT = "see docs/ROS_ENV.md, \"Apt route\", for the apt commands"


def _launch_tree() -> ast.Module:
    return ast.parse(LAUNCH_FILE.read_text())


def _launch_function(tree: ast.Module, name: str) -> ast.FunctionDef:
    return next(n for n in tree.body if isinstance(n, ast.FunctionDef) and n.name == name)


def _launch_table() -> dict[str, tuple[object, str]]:
    """The launch file's ARGUMENTS table, evaluated without ``launch``: {name: (default, description)}.

    Runs the file's top level minus its launch imports and generate_launch_description(), so the params_file
    default is what default_params_file() really returns here.
    """
    tree = _launch_tree()
    keep = [n for n in tree.body
            if not (isinstance(n, ast.ImportFrom) and (n.module or "").split(".")[0] in ("launch", "launch_ros"))
            and not (isinstance(n, ast.FunctionDef) and n.name == "generate_launch_description")]
    ns = {"__file__": str(LAUNCH_FILE), "__name__": "localize_launch_static"}
    exec(compile(ast.Module(body=keep, type_ignores=[]), str(LAUNCH_FILE), "exec"), ns)
    table = ns["ARGUMENTS"]
    assert all(len(row) == 3 for row in table), table
    names = [row[0] for row in table]
    assert len(names) == len(set(names)), names  # no argument declared twice
    return {name: (default, desc) for name, default, desc in table}


def _cfg_key(node: ast.AST) -> str | None:
    """'x' for the expression ``cfg["x"]`` (a LaunchConfiguration of the launch file), else None."""
    if (isinstance(node, ast.Subscript) and isinstance(node.value, ast.Name) and node.value.id == "cfg"
            and isinstance(node.slice, ast.Constant)):
        return node.slice.value
    return None


def _node_call() -> ast.Call:
    """The one ``Node(...)`` call: localizer_node(), the OpaqueFunction generate_launch_description() returns."""
    fn = _launch_function(_launch_tree(), "localizer_node")
    calls = [n for n in ast.walk(fn) if isinstance(n, ast.Call) and isinstance(n.func, ast.Name)
             and n.func.id == "Node"]
    assert len(calls) == 1, f"{len(calls)} Node actions in {LAUNCH_FILE.name}"
    return calls[0]


def _node_kwargs() -> dict[str, ast.AST]:
    call = _node_call()
    assert not call.args, "Node takes keyword arguments only"
    return {kw.arg: kw.value for kw in call.keywords}


def test_launch_file_arguments_statically():
    """Without importing ``launch``: the ARGUMENTS table names every argument, the node is ours."""
    tree = _launch_tree()
    table = next(n for n in tree.body if isinstance(n, ast.Assign) and n.targets[0].id == "ARGUMENTS")
    names = {elt.elts[0].value for elt in table.value.elts}
    assert names == LAUNCH_ARGS
    src = LAUNCH_FILE.read_text()
    assert 'executable="localizer_node"' in src and 'PACKAGE = "unifygeo_ros"' in src


def test_launch_argument_defaults_and_descriptions():
    table = _launch_table()
    assert set(table) == LAUNCH_ARGS
    params_file = Path(table["params_file"][0])
    assert params_file.name == "localize.yaml" and params_file.is_file(), params_file
    assert "/**" in yaml.safe_load(params_file.read_text())
    for name in OVERRIDES:  # empty = the parameter file's value: an argument not given changes nothing
        assert table[name][0] == "", name
    assert table["namespace"][0] == ""
    assert table["image_topic"][0] == "image" and table["compressed_topic"][0] == "image/compressed"
    assert table["imu_topic"][0] == "imu" and table["odom_topic"][0] == "odom"
    assert table["log_level"][0] == "info"
    for name, (default, desc) in table.items():
        assert isinstance(default, str), name  # launch arguments are strings
        assert len(desc) > 10, name


def _launch_namespace() -> dict:
    """The launch file's top level without ``launch`` (as :func:`_launch_table`): OVERRIDES, overrides()."""
    tree = _launch_tree()
    keep = [n for n in tree.body
            if not (isinstance(n, ast.ImportFrom) and (n.module or "").split(".")[0] in ("launch", "launch_ros"))]
    ns = {"__file__": str(LAUNCH_FILE), "__name__": "localize_launch_static"}
    exec(compile(ast.Module(body=keep, type_ignores=[]), str(LAUNCH_FILE), "exec"), ns)
    return ns


def test_launch_arguments_override_the_parameter_file_only_when_given():
    """An argument left empty does not reach the node (the parameter file's value holds: a user's own params_file
    with its index, checkpoint or mode is not overridden by the launch file's defaults); one given does."""
    ns = _launch_namespace()
    assert set(ns["OVERRIDES"]) == set(OVERRIDES)
    over = ns["overrides"]
    assert over({name: "" for name in LAUNCH_ARGS}) == {}
    assert over({}) == {}
    given = {**{name: "" for name in LAUNCH_ARGS}, "index": "/data/ix", "mode": "tracking", "image_topic": "/cam"}
    assert over(given) == {"index": "/data/ix", "mode": "tracking"}  # topics are remaps, not parameters


def test_launch_arguments_passed_as_node_parameters_match_the_node_declaration():
    """Arguments given to the node as parameters are declared node parameters; their descriptions name the
    shipped parameter file's value (the node's default) and the node's choices."""
    table = _launch_table()
    kw = _node_kwargs()
    params = kw["parameters"]
    assert isinstance(params, ast.List) and len(params.elts) == 2, ast.dump(params)
    assert _cfg_key(params.elts[0]) == "params_file"  # the parameter file first, the given arguments override it
    override = params.elts[1]
    assert isinstance(override, ast.DictComp), ast.dump(override)
    assert isinstance(override.value, ast.Call) and isinstance(override.value.func, ast.Name)
    assert override.value.func.id == "ParameterValue"  # {name: ParameterValue(value, value_type=str) ...}
    target = override.generators[0].target
    assert isinstance(target, ast.Tuple) and isinstance(override.key, ast.Name)
    assert override.key.id == target.elts[0].id and override.value.args[0].id == target.elts[1].id
    source = override.generators[0].iter  # given.items(), given = overrides({...})
    assert isinstance(source, ast.Call) and source.func.value.id == "given" and source.func.attr == "items"
    value_type = {k.arg: k.value for k in override.value.keywords}["value_type"]
    assert isinstance(value_type, ast.Name) and value_type.id == "str"
    specs = {p.name: p for p in PARAMETERS}
    shipped = _flatten(yaml.safe_load(PARAMS_FILE.read_text())["/**"]["ros__parameters"])
    for name in OVERRIDES:
        assert name in PARAMETER_NAMES and name in table, name
        spec = specs[name]
        assert isinstance(spec.default, str), name  # passed with value_type=str
        desc = table[name][1]
        assert "empty = the parameter file's" in desc, name
        said = re.search(r"shipped: ([^;)]+)", desc).group(1)
        assert said == (spec.default or "empty = the embedded demo " + ("model" if name == "checkpoint" else name))
        assert shipped[name] == spec.default, name
        if spec.choices:  # the argument's description names the same choices: "a | b | c (...)"
            named = tuple(c.strip() for c in desc.split("(")[0].split("|"))
            assert named == tuple(spec.choices), (name, named, spec.choices)
    NodeSettings.from_params({name: specs[name].default for name in OVERRIDES})  # the defaults pass its checks


def test_launch_file_starts_our_node_and_uses_every_argument():
    kw = _node_kwargs()
    tree = _launch_tree()
    package = next(n.value.value for n in tree.body if isinstance(n, ast.Assign) and n.targets[0].id == "PACKAGE")
    assert package == "unifygeo_ros"
    assert isinstance(kw["package"], ast.Name) and kw["package"].id == "PACKAGE"
    assert ast.literal_eval(kw["executable"]) == "localizer_node"
    # what colcon installs as lib/unifygeo_ros/localizer_node: a console script whose function exists
    entry = re.search(r"[\"']localizer_node\s*=\s*([\w.]+):(\w+)[\"']", (REPO / "setup.py").read_text())
    assert entry, "setup.py has no localizer_node console script"
    module_file = importlib.util.find_spec(entry.group(1)).origin  # found without importing it (it imports rclpy)
    assert any(isinstance(n, ast.FunctionDef) and n.name == entry.group(2)
               for n in ast.parse(Path(module_file).read_text()).body), entry.group(0)
    assert ast.literal_eval(kw["name"]) == "unifygeo_localizer"
    assert _cfg_key(kw["namespace"]) == "namespace"
    remaps = {ast.literal_eval(t.elts[0]): _cfg_key(t.elts[1]) for t in kw["remappings"].elts}
    assert remaps == {"image": "image_topic", "image/compressed": "compressed_topic", "imu": "imu_topic",
                      "odom": "odom_topic"}
    args = kw["arguments"].elts
    assert [ast.literal_eval(a) for a in args[:2]] == ["--ros-args", "--log-level"]
    assert _cfg_key(args[2]) == "log_level"
    # every declared argument reaches the node: used as cfg["name"], or one of the parameter overrides
    node_fn = _launch_function(tree, "localizer_node")
    used = {k for n in ast.walk(node_fn) if (k := _cfg_key(n)) and isinstance(k, str)}
    assert used | set(OVERRIDES) == LAUNCH_ARGS, (used | set(OVERRIDES)) ^ LAUNCH_ARGS
    # one DeclareLaunchArgument per ARGUMENTS row, returned with the OpaqueFunction that makes the node
    fn = _launch_function(tree, "generate_launch_description")
    decl = [n for n in ast.walk(fn) if isinstance(n, ast.ListComp) and isinstance(n.elt, ast.Call)
            and isinstance(n.elt.func, ast.Name) and n.elt.func.id == "DeclareLaunchArgument"]
    assert len(decl) == 1 and isinstance(decl[0].generators[0].iter, ast.Name)
    assert decl[0].generators[0].iter.id == "ARGUMENTS"
    ret = next(n for n in ast.walk(fn) if isinstance(n, ast.Return))
    assert isinstance(ret.value, ast.Call) and ret.value.func.id == "LaunchDescription"
    opaque = [n for n in ast.walk(ret) if isinstance(n, ast.Call) and isinstance(n.func, ast.Name)
              and n.func.id == "OpaqueFunction"]
    assert len(opaque) == 1 and {k.arg: k.value.id for k in opaque[0].keywords} == {"function": "localizer_node"}
    # the module docstring documents every argument
    doc = ast.get_docstring(tree)
    for name in LAUNCH_ARGS:
        assert name in doc, name


@pytest.mark.skipif(not _launch_importable(),
                    reason=f"launch / launch_ros are not importable here (the pip route has no launch packages; "
                           f"the static tests above cover the file); {APT_HINT}")
def test_launch_description_declares_the_arguments_and_the_node():
    from launch import LaunchContext
    from launch.actions import DeclareLaunchArgument, OpaqueFunction
    from launch_ros.actions import Node

    spec = importlib.util.spec_from_file_location("localize_launch", LAUNCH_FILE)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    ld = mod.generate_launch_description()
    args = {e.name: e for e in ld.entities if isinstance(e, DeclareLaunchArgument)}
    assert set(args) == LAUNCH_ARGS
    assert Path(args["params_file"].default_value[0].text).name == "localize.yaml"
    for name in OVERRIDES:  # empty = the parameter file's value
        assert args[name].default_value[0].text == ""
    (opaque,) = [e for e in ld.entities if isinstance(e, OpaqueFunction)]
    context = LaunchContext()
    for arg in args.values():
        arg.execute(context)  # the defaults, as `ros2 launch` without arguments
    nodes = [e for e in opaque.execute(context) if isinstance(e, Node)]
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


def _ament_has_package(env: dict, package: str) -> bool:
    return any((Path(p) / "share" / "ament_index" / "resource_index" / "packages" / package).is_file()
               for p in env.get("AMENT_PREFIX_PATH", "").split(os.pathsep) if p)


def _colcon_command(env: dict) -> list[str]:
    """colcon run by this interpreter when it can import colcon (then the console scripts it installs get this
    interpreter, with torch, as their shebang, also on the apt route's venv), else colcon from PATH."""
    if _module_importable("colcon"):
        return [sys.executable, "-m", "colcon"]
    exe = shutil.which("colcon", path=env.get("PATH"))
    return [exe] if exe else []


def _real_launch_prerequisites() -> str:
    """Empty when ROS 2 from its own packages is here (what `ros2 launch` needs), else what is missing and where
    to read how to install it. The pip route never has launch / launch_ros / ros2cli: PyPI has none of them."""
    from ros_helpers import ros_subprocess_env

    env = ros_subprocess_env()
    missing = []
    if not os.environ.get("ROS_DISTRO"):
        missing.append("ROS_DISTRO is not set (no /opt/ros/$ROS_DISTRO/setup.bash sourced)")
    if not shutil.which("ros2", path=env.get("PATH")):
        missing.append("`ros2` is not on PATH")
    elif not _ament_has_package(env, "ros2launch"):
        missing.append("ros2launch is not installed (no `ros2 launch`)")
    if not _launch_importable():
        missing.append("launch / launch_ros are not importable")
    if not _colcon_command(env):
        missing.append("colcon is not installed")
    if missing:
        return ("the real `ros2 launch` test needs ROS 2 installed from its own packages (apt), sourced; missing: "
                + "; ".join(missing) + f" -- {APT_HINT}")
    from ros_helpers import ros_available

    ok, why = ros_available()
    return "" if ok else f"{why} -- {APT_HINT}"


_WHY_NOT = _real_launch_prerequisites()


ROS_PACKAGE = re.compile(r"(rclpy|rcl_interfaces|ament_index_python|cv_bridge|tf2_ros|[a-z0-9_]+_msgs)$")


def test_package_xml_declares_every_ros_package_the_code_imports():
    """rosdep installs what package.xml names: every ROS package imported by the package (top-level or lazily)
    is an exec_depend, cv_bridge (an optional decoder, used by the tests when present) a test_depend; the launch
    files' launch / launch_ros are exec_depends too."""
    import xml.etree.ElementTree as ET

    root = ET.parse(REPO / "package.xml").getroot()
    deps = {tag: {e.text for e in root.iter(tag)} for tag in ("exec_depend", "test_depend")}
    imported = {}
    for path in sorted((REPO / "unifygeo_ros").rglob("*.py")) + [LAUNCH_FILE]:
        for node in ast.walk(ast.parse(path.read_text())):
            names = ([a.name for a in node.names] if isinstance(node, ast.Import)
                     else [node.module] if isinstance(node, ast.ImportFrom) and node.module and not node.level else [])
            for name in names:
                top = name.split(".")[0]
                if ROS_PACKAGE.match(top):
                    imported.setdefault(top, path.relative_to(REPO).as_posix())
    assert {"rclpy", "rcl_interfaces", "geographic_msgs", "ament_index_python"} <= set(imported), imported
    for pkg, where in imported.items():
        kind = "test_depend" if pkg == "cv_bridge" else "exec_depend"
        assert pkg in deps[kind], f"{where} imports {pkg}: not a {kind} in package.xml"
    assert {"launch", "launch_ros"} <= deps["exec_depend"]
    assert "cv_bridge" not in deps["exec_depend"]  # the node decodes images itself (docs/ROS_ENV.md)


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
    r = subprocess.run([*_colcon_command(env), "build", "--base-paths", "src", "--event-handlers", "console_direct-"],
                       cwd=ws, env=env, capture_output=True, text=True, timeout=300)
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


# ---------------------------------------------------------------------------------------- fusion.launch.py
# launch/fusion.launch.py as a launch file: its arguments and its include of localize.launch.py. Its
# robot_localization wiring (node names vs YAML sections, remaps, inputs) is checked in test_robot_localization.py.

FUSION_FILE = REPO / "launch" / "fusion.launch.py"
FUSION_ARGS = {"namespace", "use_navsat", "ekf_params_file", "navsat_params_file", "odom_topic", "imu_topic",
               "camera_frame", "camera_x", "camera_y", "camera_z", "camera_yaw", "start_localizer",
               "localizer_params_file", "checkpoint", "index", "device", "heading_source", "image_topic", "log_level",
               "backend", "mode", "input_mode"}


def _fusion_table() -> dict[str, tuple[str, str]]:
    """fusion.launch.py's ARGUMENTS evaluated without ``launch`` (as _launch_table): {name: (default, desc)}."""
    tree = ast.parse(FUSION_FILE.read_text())
    keep = [n for n in tree.body
            if not (isinstance(n, ast.ImportFrom) and (n.module or "").split(".")[0] in ("launch", "launch_ros"))
            and not (isinstance(n, ast.FunctionDef) and n.name == "generate_launch_description")]
    ns = {"__file__": str(FUSION_FILE), "__name__": "fusion_launch_static"}
    exec(compile(ast.Module(body=keep, type_ignores=[]), str(FUSION_FILE), "exec"), ns)
    names = [row[0] for row in ns["ARGUMENTS"]]
    assert len(names) == len(set(names)), names
    return {name: (default, desc) for name, default, desc in ns["ARGUMENTS"]}


def _fusion_function() -> ast.FunctionDef:
    return next(n for n in ast.parse(FUSION_FILE.read_text()).body
                if isinstance(n, ast.FunctionDef) and n.name == "generate_launch_description")


def test_fusion_launch_arguments_defaults_and_use():
    table = _fusion_table()
    assert set(table) == FUSION_ARGS
    for name, (default, desc) in table.items():
        assert isinstance(default, str), name  # launch arguments are strings
        assert len(desc) > 10, name
    assert Path(table["ekf_params_file"][0]) == RL_DIR / "ekf.yaml"  # the source tree's (no ament here)
    assert Path(table["navsat_params_file"][0]) == RL_DIR / "navsat.yaml"
    assert Path(table["localizer_params_file"][0]) == PARAMS_FILE
    assert table["use_navsat"][0] == "false" and table["start_localizer"][0] == "true"
    assert table["camera_frame"][0] == ""  # no camera transform unless asked for
    for name in ("camera_x", "camera_y", "camera_z", "camera_yaw"):
        float(table[name][0])
    used = {_cfg_key(n) for n in ast.walk(_fusion_function())} - {None}
    assert used == FUSION_ARGS, FUSION_ARGS ^ used  # every argument is used, none is undeclared


def test_fusion_launch_passes_the_localizer_only_arguments_it_declares():
    """The include of localize.launch.py: every key is one of its arguments, with fusion's argument of the same
    name (params_file: localizer_params_file), and the shared defaults agree with localize.launch.py's, except
    imu_topic (one IMU for the EKFs, navsat_transform_node and the localizer: imu/data)."""
    (call,) = [n for n in ast.walk(_fusion_function()) if isinstance(n, ast.Call) and isinstance(n.func, ast.Name)
               and n.func.id == "IncludeLaunchDescription"]
    source = call.args[0]
    assert any(isinstance(c, ast.Constant) and c.value == "localize.launch.py" for c in ast.walk(source))
    kw = {k.arg: k.value for k in call.keywords}
    cond = kw["condition"]
    assert cond.func.id == "IfCondition" and _cfg_key(cond.args[0]) == "start_localizer"
    passed = kw["launch_arguments"].func.value  # {...}.items()
    assert isinstance(passed, ast.Dict)
    mapping = {k.value: _cfg_key(v) for k, v in zip(passed.keys, passed.values)}
    assert set(mapping) <= LAUNCH_ARGS, set(mapping) - LAUNCH_ARGS
    for key, arg in mapping.items():
        assert arg == ("localizer_params_file" if key == "params_file" else key), (key, arg)
    fusion, localize = _fusion_table(), _launch_table()
    for key in set(mapping) - {"params_file", "imu_topic", "odom_topic"}:
        assert fusion[key][0] == localize[key][0], key
    assert fusion["imu_topic"][0] == "imu/data" and fusion["odom_topic"][0] == "wheel/odometry"
    # an included launch file inherits the includer's launch configurations: every fusion argument that
    # localize.launch.py also declares is passed on explicitly, so none reaches it unannounced
    assert (set(fusion) & LAUNCH_ARGS) <= set(mapping), (set(fusion) & LAUNCH_ARGS) - set(mapping)
    for key in OVERRIDES:  # the localizer's parameters: empty = localizer_params_file's, as in localize.launch.py
        assert fusion[key][0] == "" and key in mapping, key


@pytest.mark.skipif(not _launch_importable(), reason=f"launch / launch_ros are not importable (the static tests "
                                                     f"above and test_robot_localization.py cover the file); {APT_HINT}")
def test_fusion_launch_description_declares_the_arguments_and_the_nodes():
    from launch.actions import DeclareLaunchArgument, IncludeLaunchDescription
    from launch_ros.actions import Node

    spec = importlib.util.spec_from_file_location("fusion_launch", FUSION_FILE)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    ld = mod.generate_launch_description()
    args = {e.name for e in ld.entities if isinstance(e, DeclareLaunchArgument)}
    assert args == FUSION_ARGS
    nodes = [e for e in ld.entities if isinstance(e, Node)]
    assert sorted(n.node_executable for n in nodes) == sorted(
        ["ekf_node", "ekf_node", "ekf_node", "navsat_transform_node", "static_transform_publisher"])
    assert len([e for e in ld.entities if isinstance(e, IncludeLaunchDescription)]) == 1
