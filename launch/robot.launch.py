"""Policy + safety filter between a physical robot's sensor topics and its ros2_control controllers.

    ros2 launch diffusion_policy_ros robot.launch.py config:=/path/to/bimanual.yaml policy_checkpoint:=/path/ckpt

Same nodes as `dpros up robot --config ...` (both come from diffusion_policy_ros.graph).
The policy lifecycle node is configured and activated here; send policy/command START to move.
"""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _graph_launch import graph_launch_description  # noqa: E402


def generate_launch_description():
    return graph_launch_description("robot")
