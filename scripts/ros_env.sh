# shellcheck shell=bash
# Source me:  source scripts/ros_env.sh [VENV_DIR] [--unique-domain]
#
# Puts the pip-route ROS 2 environment made by scripts/setup_ros_env.sh on the current shell:
#   AMENT_PREFIX_PATH, PYTHONPATH, LD_LIBRARY_PATH  <- <repo>/.ros_overlay/install (generated geographic_msgs,
#                                                       composition_interfaces) and the venv's ROS wheels
#   PATH                                            <- the venv's bin/ (python, colcon)
#   ROS_AUTOMATIC_DISCOVERY_RANGE                   <- LOCALHOST unless already set
#   ROS_DOMAIN_ID                                   <- only with --unique-domain (or UNIFYGEO_UNIQUE_DOMAIN=1):
#                                                      a per-shell id in 1..100, so parallel runs on one
#                                                      machine do not discover each other
# Safe to source more than once (no duplicate path entries). It does not activate the venv beyond PATH.
# On a machine with an apt ROS 2 install, source /opt/ros/$ROS_DISTRO/setup.bash instead (docs/ROS_ENV.md).
#
# VENV_DIR (or UNIFYGEO_VENV) picks the venv, default <repo>/.venv; an argument counts as VENV_DIR only if it
# is a directory with bin/python (bash passes the caller's own arguments to a file sourced without any).
# UNIFYGEO_ROS_OVERLAY picks the overlay (default <repo>/.ros_overlay).

if [ -n "${BASH_SOURCE:-}" ]; then
  _ug_self="${BASH_SOURCE[0]}"
elif [ -n "${ZSH_VERSION:-}" ]; then
  # shellcheck disable=SC2296
  _ug_self="${(%):-%x}"
else
  _ug_self="$0"
fi
_ug_root="$(cd "$(dirname "$_ug_self")/.." 2>/dev/null && pwd)"
# Plain POSIX sh cannot tell a sourced file its own path: fall back to $UNIFYGEO_ROOT, then to $PWD.
if [ -n "${UNIFYGEO_ROOT:-}" ]; then
  _ug_root="$UNIFYGEO_ROOT"
elif [ ! -f "$_ug_root/scripts/ros_env.sh" ] && [ -f "$PWD/scripts/ros_env.sh" ]; then
  _ug_root="$PWD"
fi
_ug_venv="${UNIFYGEO_VENV:-$_ug_root/.venv}"
_ug_unique=0
for _ug_arg in "$@"; do
  if [ "$_ug_arg" = "--unique-domain" ]; then
    _ug_unique=1
  elif [ -x "$_ug_arg/bin/python" ]; then
    _ug_venv="$(cd "$_ug_arg" && pwd)"
  fi
done
_ug_prefix="${UNIFYGEO_ROS_OVERLAY:-$_ug_root/.ros_overlay}/install"

# _ug_prepend VAR DIR: put DIR first in the colon list VAR, dropping an existing copy of it.
_ug_prepend() {
  # shellcheck disable=SC3044
  [ -n "${ZSH_VERSION:-}" ] && setopt local_options sh_word_split
  _ug_cur="$(eval "printf '%s' \"\${$1:-}\"")"
  _ug_new="$2"
  _ug_old_ifs="$IFS"; IFS=:
  for _ug_p in $_ug_cur; do
    [ -n "$_ug_p" ] && [ "$_ug_p" != "$2" ] && _ug_new="$_ug_new:$_ug_p"
  done
  IFS="$_ug_old_ifs"
  export "$1=$_ug_new"
}

if [ ! -x "$_ug_venv/bin/python" ]; then
  echo "ros_env.sh: no venv at $_ug_venv (set UNIFYGEO_VENV)" >&2
else
  _ug_pyver="$("$_ug_venv/bin/python" -c 'import sys; print("%d.%d" % sys.version_info[:2])' 2>/dev/null)"
  [ -d "$_ug_prefix" ] || echo "ros_env.sh: $_ug_prefix missing; run scripts/setup_ros_env.sh first" >&2

  _ug_prepend PATH "$_ug_venv/bin"
  # The venv's own ROS packages (rclpy, std_msgs, ...) are found by their ament index in <venv>/share.
  _ug_prepend AMENT_PREFIX_PATH "$_ug_venv"
  _ug_prepend AMENT_PREFIX_PATH "$_ug_prefix"
  _ug_prepend PYTHONPATH "$_ug_prefix/lib/python$_ug_pyver/site-packages"
  # rosidl_typesupport_c looks its per-middleware libraries up in LD_LIBRARY_PATH at run time.
  for _ug_libs in "$_ug_venv"/lib/python"$_ug_pyver"/site-packages/ros_*.libs; do
    [ -d "$_ug_libs" ] && _ug_prepend LD_LIBRARY_PATH "$_ug_libs"
  done
  _ug_prepend LD_LIBRARY_PATH "$_ug_venv/lib"
  _ug_prepend LD_LIBRARY_PATH "$_ug_prefix/lib"
fi

export ROS_AUTOMATIC_DISCOVERY_RANGE="${ROS_AUTOMATIC_DISCOVERY_RANGE:-LOCALHOST}"
if [ "$_ug_unique" = 1 ] || [ "${UNIFYGEO_UNIQUE_DOMAIN:-0}" = 1 ]; then
  export ROS_DOMAIN_ID="$(( ($$ % 100) + 1 ))"
fi

unset _ug_self _ug_root _ug_venv _ug_unique _ug_arg _ug_prefix _ug_pyver _ug_libs _ug_cur _ug_new _ug_old_ifs _ug_p
unset -f _ug_prepend
