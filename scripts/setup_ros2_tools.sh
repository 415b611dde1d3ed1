#!/usr/bin/env bash
# The ROS 2 command line (`ros2`), the launch engine and control_msgs for a venv without a system
# ROS 2, built from the upstream Jazzy sources in ros2-python-tools/ (see its README). Called by
# setup.sh: setup_ros2_tools.sh VENV TOOLS_DIR. Pure-Python packages are pip-installed into the
# venv; the interface packages (control_msgs, composition_interfaces) are colcon-built into
# VENV/opt/ros2_tools, which env.sh sources. Skipped while the archives are unchanged.
set -euo pipefail

venv="$1"
tools="$2"
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
stamp="$venv/.dpros-setup/ros2-tools"
prefix="$venv/opt/ros2_tools"
say() { printf '[setup] %s\n' "$*"; }
fail() { printf '[setup] ERROR: %s\n' "$*" >&2; exit 1; }

archives=(launch-jazzy launch_ros-jazzy ros2cli-jazzy rosidl_runtime_py-jazzy control_msgs-jazzy
          composition_interfaces-jazzy)
for a in "${archives[@]}"; do
  [ -f "$tools/$a.tar.gz" ] || fail "$tools has no $a.tar.gz (see its README for the expected archives)"
done
digest="$( (cd "$tools" && sha256sum "${archives[@]/%/.tar.gz}"; cat "$root/requirements/ros2-tools.txt" \
  "${BASH_SOURCE[0]}") | sha256sum | cut -d' ' -f1)"
if [ "$(cat "$stamp" 2>/dev/null)" = "$digest" ] && [ -f "$prefix/local_setup.bash" ] \
    && [ -x "$venv/bin/ros2" ]; then
  exit 0
fi

say "installing the ROS 2 command line, launch and control_msgs from $tools"
src="$root/build/ros2-tools/src"
rm -rf "$src"
mkdir -p "$src"
for a in "${archives[@]}"; do
  mkdir -p "$src/$a"
  tar -xzf "$tools/$a.tar.gz" -C "$src/$a"
done

pip=("$venv/bin/python" -m pip --disable-pip-version-check --no-input)
"${pip[@]}" install -q -r "$root/requirements/ros2-tools.txt" || fail "pip could not install requirements/ros2-tools.txt"
python_packages=(
  launch-jazzy/launch launch-jazzy/launch_xml launch-jazzy/launch_yaml
  launch_ros-jazzy/launch_ros launch_ros-jazzy/ros2launch rosidl_runtime_py-jazzy
  ros2cli-jazzy/ros2cli ros2cli-jazzy/ros2pkg ros2cli-jazzy/ros2run ros2cli-jazzy/ros2topic
  ros2cli-jazzy/ros2node ros2cli-jazzy/ros2service ros2cli-jazzy/ros2lifecycle ros2cli-jazzy/ros2param
  ros2cli-jazzy/ros2interface)
"${pip[@]}" install -q --no-deps --no-build-isolation "${python_packages[@]/#/$src/}" \
  > "$root/build/ros2-tools/pip.log" 2>&1 \
  || { tail -30 "$root/build/ros2-tools/pip.log" >&2; fail "pip could not install the ROS 2 tools (build/ros2-tools/pip.log)"; }

# Interface packages: built against the wheels like the project's own messages (setup.sh).
numpy_include="$("$venv/bin/python" "$root/scripts/fix_ros_wheel_cmake_paths.py" --numpy-include)"
[ -f "$venv/local_setup.sh" ] || echo "# ROS 2 wheels prefix: paths are set by their .pth bootstrapper" > "$venv/local_setup.sh"
(
  export CMAKE_PREFIX_PATH="$venv${CMAKE_PREFIX_PATH:+:$CMAKE_PREFIX_PATH}"
  export AMENT_PREFIX_PATH="$venv${AMENT_PREFIX_PATH:+:$AMENT_PREFIX_PATH}"
  "$venv/bin/colcon" --log-base "$root/build/ros2-tools/log" build --merge-install \
    --base-paths "$src/control_msgs-jazzy" "$src/composition_interfaces-jazzy" \
    --build-base "$root/build/ros2-tools/build" --install-base "$prefix" \
    --cmake-args -DPython3_EXECUTABLE="$venv/bin/python" -DBUILD_TESTING=OFF \
      -DPython3_NumPy_INCLUDE_DIR="$numpy_include" \
    > "$root/build/ros2-tools/colcon.log" 2>&1
) || { tail -40 "$root/build/ros2-tools/colcon.log" >&2; fail "colcon could not build control_msgs / composition_interfaces (build/ros2-tools/colcon.log)"; }

(
  # shellcheck disable=SC1091
  . "$prefix/local_setup.bash"
  "$venv/bin/python" -c 'import launch_ros, control_msgs.action, composition_interfaces.srv, ros2cli'
) || fail "the ROS 2 tools installed but do not import"
echo "$digest" > "$stamp"
say "ros2 command line ready: ./env.sh ros2 launch diffusion_policy_ros sim.launch.py"
