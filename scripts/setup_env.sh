#!/usr/bin/env bash
# Project-owned set-up: .venv with torch, real ROS 2 from PyPI, then `colcon build` of this package.
#
# Idempotent: each step leaves a stamp holding the hash of what it installed, so a second run
# downloads nothing and only lets colcon do its (incremental) build.
#
# Environment knobs:
#   PYTHON=python3.11      interpreter for the venv (ROS 2 wheels on PyPI are CPython 3.11 only)
#   INERF_TORCH_SPEC=...   pip requirement for torch (default: torch==2.13.0; CPU wheel here,
#                          the CUDA build on a machine where `nvidia-smi` answers)
#   INERF_USE_SYSTEM_ROS=1 use an apt-installed ROS 2 that is already sourced instead of PyPI wheels
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)
# The venv must live outside the CMake source tree (the repository root is the package): CMake
# refuses to export rosidl targets whose include paths (numpy's) are "prefixed in the source
# directory". `.venv` is a symlink to it, one venv per clone (keyed by the clone's path).
VENV=${INERF_VENV:-${XDG_CACHE_HOME:-$HOME/.cache}/inerf_ros/venv-$(printf '%s' "$ROOT" | sha256sum | cut -c1-12)}
STAMPS="$VENV/.inerf_stamps"
PYTHON=${PYTHON:-python3}
say() { printf '\033[1m[setup]\033[0m %s\n' "$*"; }

hash_of() { cat "$@" | sha256sum | cut -c1-16; }

if [ "${INERF_USE_SYSTEM_ROS:-0}" != 1 ] && ! "$PYTHON" -c 'import sys; sys.exit(sys.version_info[:2] != (3, 11))'; then
  echo "ROS 2's PyPI wheels need CPython 3.11; $PYTHON is $("$PYTHON" --version 2>&1). Set PYTHON=python3.11." >&2
  exit 1
fi
if [ ! -x "$VENV/bin/python" ]; then
  say "creating $VENV with $($PYTHON --version 2>&1)"
  mkdir -p "$(dirname "$VENV")"
  "$PYTHON" -m venv "$VENV"
fi
ln -sfn "$VENV" "$ROOT/.venv"
mkdir -p "$STAMPS"
mkdir -p build
PIP_LOG="$ROOT/build/pip.log"
# pip's output goes to build/pip.log (shown on failure): on some machines its configured indexes
# print a warning per package that would bury what matters.
pip_install() {
  "$VENV/bin/python" -m pip install --disable-pip-version-check "$@" >"$PIP_LOG" 2>&1 \
    || { grep -v "^WARNING: Location" "$PIP_LOG" | tail -30; echo "pip install failed (log: $PIP_LOG)" >&2; exit 1; }
}

# 1. torch: pinned so that this machine takes its local CPU wheel; a CUDA machine gets CUDA.
TORCH_SPEC=${INERF_TORCH_SPEC:-torch==2.13.0}
if [ "$(cat "$STAMPS/torch" 2>/dev/null)" != "$TORCH_SPEC" ]; then
  # On this project's machines pip's configured find-links holds the CPU wheel of this version;
  # on a user's Linux machine PyPI's torch==2.13.0 is the CUDA build.
  say "installing $TORCH_SPEC"
  pip_install "$TORCH_SPEC"
  echo "$TORCH_SPEC" > "$STAMPS/torch"
fi

# 2. ROS 2 from PyPI (skipped when a system ROS 2 is sourced) and the Python dependencies.
bash scripts/install_system_deps.sh  # apt packages (libosmesa6 for headless rendering)
REQS=(requirements/core.txt requirements/test.txt)
[ "${INERF_USE_SYSTEM_ROS:-0}" = 1 ] || REQS+=(requirements/ros.txt)
REQ_HASH=$(hash_of "${REQS[@]}")
if [ "$(cat "$STAMPS/requirements" 2>/dev/null)" != "$REQ_HASH" ]; then
  say "installing Python dependencies (${REQS[*]})"
  args=(); for r in "${REQS[@]}"; do args+=(-r "$r"); done
  pip_install "${args[@]}" "$TORCH_SPEC"
  rm -f "$STAMPS/cmake-paths"
  echo "$REQ_HASH" > "$STAMPS/requirements"
fi

# 3. The ROS wheels' exported CMake files name their build machine's Python paths; point them at
#    this interpreter (see README, "Environment"). Done once per install.
if [ "${INERF_USE_SYSTEM_ROS:-0}" != 1 ] && [ ! -f "$STAMPS/cmake-paths" ]; then
  say "rewriting Python paths in the ROS wheels' CMake files"
  "$VENV/bin/python" scripts/fix_wheel_cmake_paths.py "$VENV"
  touch "$STAMPS/cmake-paths"
fi

# 4. colcon build: this package, plus tf2_msgs from vendor/ when the environment lacks it.
export AMENT_PREFIX_PATH="$VENV${AMENT_PREFIX_PATH:+:$AMENT_PREFIX_PATH}"
export CMAKE_PREFIX_PATH="$VENV${CMAKE_PREFIX_PATH:+:$CMAKE_PREFIX_PATH}"
PATHS=(.)
if ! "$VENV/bin/python" -c "import tf2_msgs.msg" 2>/dev/null && \
   ! ls "$ROOT"/install/tf2_msgs >/dev/null 2>&1; then
  say "tf2_msgs is not installed: building it from vendor/tf2_msgs"
fi
"$VENV/bin/python" -c "import tf2_msgs.msg" 2>/dev/null || PATHS+=(vendor/tf2_msgs)
say "colcon build (${PATHS[*]})"
(
  source "$VENV/bin/activate"
  colcon --log-base build/log build --symlink-install --paths "${PATHS[@]}" \
    --build-base build --install-base install \
    --event-handlers console_cohesion- summary- \
    --cmake-args -DBUILD_TESTING=OFF -DPython3_EXECUTABLE="$VENV/bin/python" \
      -DPYTHON_EXECUTABLE="$VENV/bin/python" > build/colcon.log 2>&1 \
  || { cat build/colcon.log; echo "colcon build failed (log above: build/colcon.log)"; exit 1; }
)
say "ready: source scripts/env.sh to use the package (make test / make demo do it for you)"
