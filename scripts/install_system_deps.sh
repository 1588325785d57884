#!/usr/bin/env bash
# System (Debian/Ubuntu) packages the project needs beyond Python wheels. Idempotent: installs only
# what is missing, and only when run as root; otherwise prints the command a user must run.
#
#   libosmesa6   Mesa's off-screen software OpenGL (MUJOCO_GL=osmesa): headless CPU rendering of the
#                demo world by `inerf-ros make-scene` (MuJoCo from PyPI draws through it).
#   libegl1      EGL loader (MUJOCO_GL=egl, the alternative headless back end; Mesa's llvmpipe on a CPU).
set -euo pipefail
PACKAGES=(libosmesa6 libegl1)
missing=()
for pkg in "${PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
done
if [ ${#missing[@]} -eq 0 ]; then
  exit 0
fi
if ! command -v apt-get >/dev/null 2>&1; then
  echo "[system-deps] missing ${missing[*]}; no apt-get here: install the equivalent packages of your system" >&2
  exit 0
fi
if [ "$(id -u)" -ne 0 ]; then
  echo "[system-deps] missing ${missing[*]}; run: sudo apt-get install -y ${missing[*]}" >&2
  exit 0
fi
echo "[system-deps] installing ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
apt-get install -y --no-install-recommends "${missing[@]}" >/dev/null 2>&1 \
  || { apt-get update -qq >/dev/null && apt-get install -y --no-install-recommends "${missing[@]}"; }
