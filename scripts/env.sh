# Source this to use the built package: the venv, then colcon's install space.
# (`. scripts/env.sh` from the repository root; make targets do it for you.)
_inerf_root="$(cd "$(dirname "${BASH_SOURCE[0]:-$0}")/.." && pwd)"
# shellcheck disable=SC1091
. "$_inerf_root/.venv/bin/activate"
# colcon's setup scripts read unset variables; relax nounset while sourcing them.
case $- in *u*) _inerf_u=1; set +u ;; *) _inerf_u=0 ;; esac
# shellcheck disable=SC1091
. "$_inerf_root/install/setup.sh"
# The source checkout first: edits take effect without a rebuild; inerf_ros/__init__.py extends the
# package path to the install space for the generated messages (inerf_ros.msg).
export PYTHONPATH="$_inerf_root${PYTHONPATH:+:$PYTHONPATH}"
# `inerf-ros` and the node executables (installed by colcon into lib/inerf_ros, as `ros2 run` expects).
export PATH="$_inerf_root/install/inerf_ros/lib/inerf_ros:$PATH"
[ "$_inerf_u" = 1 ] && set -u
export ROS_DOMAIN_ID="${ROS_DOMAIN_ID:-42}"
unset _inerf_root _inerf_u
