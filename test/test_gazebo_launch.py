"""`ros2 launch diffusion_policy_ros gazebo.launch.py --show-args` under the real launch engine
(ros2/launch, launch_ros, ros2launch): it loads, and its description and world arguments default
to the package's files for every shipped config. (Gazebo itself is not on this machine: the launch
is not run further; diffusion_policy_ros.gazebo.launch_plan, which it calls, is tested in
test_gazebo_description.py.)"""
from __future__ import annotations

import importlib.util
import os
import re
import shutil
import subprocess

import pytest

from diffusion_policy_ros.gazebo import shipped
from diffusion_policy_ros.gazebo.model_source import ModelSource
from diffusion_policy_ros.robot_config import load_robot_config

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture(scope="module")
def shown_arguments(ros_env) -> dict[str, str]:
    if shutil.which("ros2") is None or importlib.util.find_spec("ros2launch") is None:
        pytest.skip("the ROS 2 command line and launch engine (ros2cli, ros2launch, launch_ros) are not installed")
    result = subprocess.run(["ros2", "launch", "diffusion_policy_ros", "gazebo.launch.py", "--show-args"],
                            capture_output=True, text=True, timeout=120, env=ros_env)
    assert result.returncode == 0, result.stdout + result.stderr
    return dict(re.findall(r"'(\w+)':\n(?:\s+[^\n]*\n)*?\s+\(default: '([^']*)'\)", result.stdout))


def test_show_args_lists_the_shipped_description_and_world_as_defaults(shown_arguments):
    assert shown_arguments["description"].endswith(shipped.DESCRIPTION_PATTERN)
    assert shown_arguments["world"].endswith(shipped.WORLD_PATTERN)
    assert shown_arguments["bridge"].endswith(shipped.BRIDGE_PATTERN)
    assert shown_arguments["config"].endswith(os.path.join("config", "single_arm.yaml"))
    assert shown_arguments["policy_checkpoint"] == ""
    for name in shipped.SHIPPED_CONFIGS:  # each default names an installed file for every shipped config
        source = ModelSource(load_robot_config(os.path.join(ROOT, "config", f"{name}.yaml")))
        names = {"config": source.name, "task": source.task.name}
        for arm in source.config.arms:
            assert os.path.isfile(shown_arguments["description"].format(arm=arm.name, **names))
        assert os.path.isfile(shown_arguments["world"].format(**names))
        assert os.path.isfile(shown_arguments["bridge"].format(**names))
