"""ROS 2 environment for tests that start ROS processes (the Python twin of scripts/ros_env.sh).

    env = ros_subprocess_env(domain_id=unique_domain_id())
    subprocess.Popen([sys.executable, "-c", code], env=env)

    ok, reason = ros_available()          # (True, "") or (False, why)
    why = ros_skip_reason()               # -> pytest.mark.skipif(bool(why), reason=why or "ROS 2 available")

Two set-ups are supported:
  * pip route: the venv's ROS 2 wheels plus the overlay that scripts/setup_ros_env.sh builds in
    <repo>/.ros_overlay/install (geographic_msgs, composition_interfaces);
  * apt/colcon route: an environment where /opt/ros/$ROS_DISTRO/setup.bash (and a workspace's
    install/setup.bash) were sourced before pytest started; nothing is added then but what exists.
"""
from __future__ import annotations

import functools
import os
import random
import shutil
import subprocess
import sys
import time
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
_BOOTSTRAP_GUARD = "_ROS_WHEELS_BOOTSTRAP_COMPLETE"


def venv_dir() -> Path:
    """The venv whose ROS wheels are used: $UNIFYGEO_VENV, else the running interpreter's venv, else <repo>/.venv."""
    if os.environ.get("UNIFYGEO_VENV"):
        return Path(os.environ["UNIFYGEO_VENV"]).resolve()
    if sys.prefix != getattr(sys, "base_prefix", sys.prefix):
        return Path(sys.prefix).resolve()
    return REPO_ROOT / ".venv"


def overlay_prefix() -> Path:
    """Install prefix of the generated interface packages ($UNIFYGEO_ROS_OVERLAY/install)."""
    root = os.environ.get("UNIFYGEO_ROS_OVERLAY") or str(REPO_ROOT / ".ros_overlay")
    return Path(root).resolve() / "install"


def _site_packages(prefix: Path) -> Path:
    return prefix / "lib" / f"python{sys.version_info[0]}.{sys.version_info[1]}" / "site-packages"


def _prepend(env: dict, var: str, *dirs: Path) -> None:
    """Put the existing dirs first in the colon list env[var], in the given order, without duplicates."""
    new = [str(d) for d in dirs if d.is_dir()]
    old = [p for p in env.get(var, "").split(os.pathsep) if p and p not in new]
    if new or old:
        env[var] = os.pathsep.join(new + old)


def unique_domain_id(rng: random.Random | None = None) -> int:
    """A ROS_DOMAIN_ID in 1..100 (valid with the default DDS port mapping), random per call."""
    return (rng or random.SystemRandom()).randint(1, 100)


def ros_subprocess_env(domain_id: int | None = None, base: dict | None = None) -> dict:
    """Environment for a child process that uses ROS 2 (rclpy, geographic_msgs, launch, ros2 CLI).

    Adds the overlay and the venv to AMENT_PREFIX_PATH, PYTHONPATH, LD_LIBRARY_PATH and PATH (only the
    directories that exist), sets ROS_AUTOMATIC_DISCOVERY_RANGE=LOCALHOST unless the caller's
    environment sets it, and ROS_DOMAIN_ID only when domain_id is given.
    """
    env = dict(os.environ if base is None else base)
    venv = venv_dir()
    prefix = overlay_prefix()
    _prepend(env, "PATH", venv / "bin")
    _prepend(env, "AMENT_PREFIX_PATH", prefix, venv)
    _prepend(env, "PYTHONPATH", _site_packages(prefix))
    libs = sorted(_site_packages(venv).glob("ros_*.libs"))
    _prepend(env, "LD_LIBRARY_PATH", prefix / "lib", venv / "lib", *libs)
    # The wheels' start-up hook (ros_wheels_bootstrapper) re-executes python once with LD_LIBRARY_PATH
    # completed, unless this guard says it already ran: drop it so the child completes its own path.
    env.pop(_BOOTSTRAP_GUARD, None)
    env.setdefault("ROS_AUTOMATIC_DISCOVERY_RANGE", "LOCALHOST")
    if domain_id is not None:
        env["ROS_DOMAIN_ID"] = str(int(domain_id))
    env.setdefault("PYTHONUNBUFFERED", "1")
    return env


_PROBE = """
import rclpy
from geographic_msgs.msg import GeoPoseStamped, GeoPoseWithCovarianceStamped
for cls in (GeoPoseStamped, GeoPoseWithCovarianceStamped):
    cls.__class__.__import_type_support__()
    assert cls._TYPE_SUPPORT is not None, cls
rclpy.init()
rclpy.shutdown()
print("ROS_OK")
"""


@functools.lru_cache(maxsize=None)
def ros_available() -> tuple[bool, str]:
    """(True, "") when a child python can run rclpy and load geographic_msgs' type support; else (False, why).

    Checked once per session in a subprocess with ros_subprocess_env(), i.e. exactly as the tests start
    their ROS processes.
    """
    try:
        proc = subprocess.run([sys.executable, "-c", _PROBE], env=ros_subprocess_env(), capture_output=True,
                              text=True, timeout=60)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return False, f"ROS 2 probe did not run: {exc}"
    if proc.returncode == 0 and "ROS_OK" in proc.stdout:
        return True, ""
    lines = [ln for ln in (proc.stderr or proc.stdout).strip().splitlines() if ln.strip()]
    last = lines[-1] if lines else f"exit code {proc.returncode}"
    hint = ("run scripts/setup_ros_env.sh (pip route) or source /opt/ros/$ROS_DISTRO/setup.bash with "
            "ros-$ROS_DISTRO-geographic-msgs installed (apt route)")
    return False, f"ROS 2 with geographic_msgs is not available ({last}); {hint}"


def ros_required() -> bool:
    """CI sets UNIFYGEO_REQUIRE_ROS=1: a broken ROS 2 set-up must fail the ROS tests, not skip them."""
    return os.environ.get("UNIFYGEO_REQUIRE_ROS", "0") == "1"


def ros_skip_reason() -> str:
    """Why the tests that start ROS processes skip here; "" when they run (ROS 2 usable, or required)."""
    if ros_required():
        return ""
    ok, why = ros_available()
    return "" if ok else why


def node_command(env: dict) -> list[str]:
    """The console script on PATH (what a pip install provides), else the module."""
    exe = shutil.which("localizer_node", path=env.get("PATH"))
    return [exe] if exe else [sys.executable, "-m", "unifygeo_ros.ros.node"]


class NodeProcess:
    """One localizer_node process in namespace ``ns``, ``params`` over config/localize.yaml, its log in a file."""

    PARAMS = REPO_ROOT / "config" / "localize.yaml"

    def __init__(self, env: dict, ns: str, params: dict, log: Path):
        self.ns, self.log = ns, log
        args = ["--ros-args", "-r", f"__ns:={ns}", "--params-file", str(self.PARAMS)]
        for k, v in params.items():
            args += ["-p", f"{k}:={v}"]
        self.fh = open(log, "w")
        self.proc = subprocess.Popen(node_command(env) + args, env=env, stdout=self.fh, stderr=subprocess.STDOUT,
                                     stdin=subprocess.DEVNULL)

    def text(self) -> str:
        return self.log.read_text(errors="replace")

    def wait_ready(self, timeout_s: float = 120.0) -> None:
        """Until the node logs "ready"; AssertionError with its log when it exits or takes longer."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if "ready" in self.text():
                return
            if self.proc.poll() is not None:
                raise AssertionError(f"node {self.ns} exited {self.proc.returncode}:\n{self.text()}")
            time.sleep(0.2)
        raise AssertionError(f"node {self.ns} not ready within {timeout_s:g} s:\n{self.text()}")

    def stop(self) -> int:
        """SIGINT (what ros2 launch / Ctrl-C send), then kill after 15 s; the exit code."""
        if self.proc.poll() is None:
            self.proc.send_signal(2)
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.fh.close()
        return self.proc.returncode
