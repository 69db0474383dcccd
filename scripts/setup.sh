#!/usr/bin/env bash
# Create (or update) the project's virtual environment: Python deps, the project (editable), and the
# ROS 2 interfaces that are not on PyPI. Idempotent and non-interactive; skips work that is up to date.
# Usage: scripts/setup.sh [VENV_DIR]   (default .venv)
set -euo pipefail
cd "$(dirname "$0")/.."
VENV="${1:-.venv}"
PY="${PYTHON:-python3}"

if [ ! -x "$VENV/bin/python" ]; then
  echo "[setup] creating virtual environment $VENV"
  "$PY" -m venv "$VENV"
  "$VENV/bin/pip" install -q --upgrade pip wheel setuptools
fi

stamp="$VENV/.unifygeo-requirements.sha256"
want="$(cat requirements.txt setup.py | sha256sum | cut -d' ' -f1)"
if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$want" ]; then
  # torch's CUDA build and its libraries take ~6.5 GB in the venv: say so in one line rather than fail in pip.
  need_kb=$((7 * 1024 * 1024))
  free_kb="$(df -Pk "$VENV" | awk 'NR==2 {print $4}')"
  if ! compgen -G "$VENV/lib/python*/site-packages/torch" > /dev/null && [ -n "$free_kb" ] \
      && [ "$free_kb" -lt "$need_kb" ]; then
    echo "[setup] error: the venv needs about 7 GB free, $((free_kb / 1024)) MB free on $(df -P "$VENV" | awk 'NR==2 {print $6}')" >&2
    exit 1
  fi
  echo "[setup] installing Python requirements (torch, timm, faiss, rclpy, ...; a few minutes the first time)"
  "$VENV/bin/pip" install -q -r requirements.txt
  "$VENV/bin/pip" install -q -e . --no-deps
  echo "$want" > "$stamp"
else
  echo "[setup] Python requirements up to date"
fi

scripts/setup_ros_env.sh "$VENV"
echo "[setup] done: source scripts/ros_env.sh to use ROS 2 from this environment"
