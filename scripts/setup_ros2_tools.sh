#!/usr/bin/env bash
# The ROS 2 command line (`ros2`), the launch engine and control_msgs for a venv without a system
# ROS 2, built from the upstream Jazzy sources in ros2-python-tools/ (see its README). Called by
# setup.sh: setup_ros2_tools.sh VENV TOOLS_DIR. Pure-Python packages are pip-installed into the
# venv; the interface packages (control_msgs, composition_interfaces) are colcon-built into
# VENV/opt/ros2_tools, which env.sh sources. Each step is skipped while its archives are unchanged.
set -euo pipefail

venv="$1"
tools="$2"
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
stamps="$venv/.dpros-setup"
prefix="$venv/opt/ros2_tools"
work="$root/build/ros2-tools"
say() { printf '[setup] %s\n' "$*"; }
fail() { printf '[setup] ERROR: %s\n' "$*" >&2; exit 1; }

python_archives=(launch-jazzy launch_ros-jazzy ros2cli-jazzy rosidl_runtime_py-jazzy)
interface_archives=(control_msgs-jazzy composition_interfaces-jazzy)
for a in "${python_archives[@]}" "${interface_archives[@]}"; do
  [ -f "$tools/$a.tar.gz" ] || fail "$tools has no $a.tar.gz (see its README for the expected archives)"
done
digest() { (cd "$tools" && sha256sum "${@/%/.tar.gz}") | cat - "$root/requirements/ros2-tools.txt" | sha256sum | cut -d' ' -f1; }
up_to_date() { [ "$(cat "$stamps/$1" 2>/dev/null)" = "$2" ]; }

extract() {   # the archive's files keep their times: an unchanged source rebuilds nothing
  local a="$1"
  mkdir -p "$work/src"
  rm -rf "$work/src/$a"
  mkdir -p "$work/src/$a"
  tar -xzf "$tools/$a.tar.gz" -C "$work/src/$a"
}

mkdir -p "$stamps" "$work"
python_digest="$(digest "${python_archives[@]}")"
if ! up_to_date ros2-tools-python "$python_digest" || [ ! -x "$venv/bin/ros2" ]; then
  say "installing the ROS 2 command line and launch from $tools"
  for a in "${python_archives[@]}"; do extract "$a"; done
  pip=("$venv/bin/python" -m pip --disable-pip-version-check --no-input)
  "${pip[@]}" install -q -r "$root/requirements/ros2-tools.txt" || fail "pip could not install requirements/ros2-tools.txt"
  packages=(
    launch-jazzy/launch launch-jazzy/launch_xml launch-jazzy/launch_yaml
    launch_ros-jazzy/launch_ros launch_ros-jazzy/ros2launch rosidl_runtime_py-jazzy
    ros2cli-jazzy/ros2cli ros2cli-jazzy/ros2pkg ros2cli-jazzy/ros2run ros2cli-jazzy/ros2topic
    ros2cli-jazzy/ros2node ros2cli-jazzy/ros2service ros2cli-jazzy/ros2lifecycle ros2cli-jazzy/ros2param
    ros2cli-jazzy/ros2interface)
  "${pip[@]}" install -q --no-deps --no-build-isolation "${packages[@]/#/$work/src/}" > "$work/pip.log" 2>&1 \
    || { tail -30 "$work/pip.log" >&2; fail "pip could not install the ROS 2 tools (build/ros2-tools/pip.log)"; }
  echo "$python_digest" > "$stamps/ros2-tools-python"
fi

interface_digest="$(digest "${interface_archives[@]}")"
if ! up_to_date ros2-tools-interfaces "$interface_digest" || [ ! -f "$prefix/local_setup.bash" ]; then
  # Built against the wheels like the project's own messages (setup.sh); control_msgs has ~40
  # interfaces: minutes on two cores, once.
  say "building control_msgs and composition_interfaces (colcon, a few minutes the first time)"
  for a in "${interface_archives[@]}"; do extract "$a"; done
  numpy_include="$("$venv/bin/python" "$root/scripts/fix_ros_wheel_cmake_paths.py" --numpy-include)"
  [ -f "$venv/local_setup.sh" ] || echo "# ROS 2 wheels prefix: paths are set by their .pth bootstrapper" > "$venv/local_setup.sh"
  (
    export CMAKE_PREFIX_PATH="$venv${CMAKE_PREFIX_PATH:+:$CMAKE_PREFIX_PATH}"
    export AMENT_PREFIX_PATH="$venv${AMENT_PREFIX_PATH:+:$AMENT_PREFIX_PATH}"
    "$venv/bin/colcon" --log-base "$work/log" build --merge-install \
      --base-paths "${interface_archives[@]/#/$work/src/}" \
      --build-base "$work/build" --install-base "$prefix" \
      --cmake-args -DPython3_EXECUTABLE="$venv/bin/python" -DBUILD_TESTING=OFF \
        -DPython3_NumPy_INCLUDE_DIR="$numpy_include" \
      > "$work/colcon.log" 2>&1
  ) || { tail -40 "$work/colcon.log" >&2; fail "colcon could not build control_msgs / composition_interfaces (build/ros2-tools/colcon.log)"; }
  echo "$interface_digest" > "$stamps/ros2-tools-interfaces"
fi

(
  set +u   # colcon's setup scripts read unset variables
  # shellcheck disable=SC1091
  . "$prefix/local_setup.bash"
  "$venv/bin/python" -c 'import launch_ros, control_msgs.action, composition_interfaces.srv, ros2cli'
) || fail "the ROS 2 tools are installed but do not import (remove $stamps/ros2-tools-* to reinstall)"
