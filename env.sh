#!/usr/bin/env bash
# Run a command inside the project's environment: the venv (or a sourced system ROS 2) plus the
# colcon-built package in install/. Usage: ./env.sh dpros --help ; ./env.sh bash
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
if [ -z "${ROS_DISTRO:-}" ] || [ -x "$here/.venv/bin/python" ]; then
  if [ ! -x "$here/.venv/bin/python" ]; then
    echo "env.sh: no environment yet: run 'make setup' first" >&2
    exit 1
  fi
  # shellcheck disable=SC1091
  . "$here/.venv/bin/activate"
fi
if [ -f "$here/.venv/opt/ros2_tools/local_setup.bash" ]; then
  # control_msgs and composition_interfaces, built by scripts/setup_ros2_tools.sh; the venv itself
  # is the prefix of the ROS 2 wheels and the ros2 CLI packages (their ament index entries)
  # shellcheck disable=SC1091
  . "$here/.venv/opt/ros2_tools/local_setup.bash"
  export AMENT_PREFIX_PATH="${AMENT_PREFIX_PATH:+$AMENT_PREFIX_PATH:}$here/.venv"
fi
if [ -f "$here/install/local_setup.bash" ]; then
  # shellcheck disable=SC1091
  . "$here/install/local_setup.bash"
fi
# The source tree first, so edits need no rebuild; generated messages still come from install/
# (diffusion_policy_ros/__init__.py extends the package path).
export PYTHONPATH="$here${PYTHONPATH:+:$PYTHONPATH}"
export MUJOCO_GL="${MUJOCO_GL:-egl}"
export PYOPENGL_PLATFORM="${PYOPENGL_PLATFORM:-egl}"
# Keep test and demo graphs off other machines' DDS traffic.
export ROS_AUTOMATIC_DISCOVERY_RANGE="${ROS_AUTOMATIC_DISCOVERY_RANGE:-LOCALHOST}"
exec "$@"
