"""The MuJoCo sim (sim_node) with the same policy + safety filter graph as robot.launch.py.

    ros2 launch diffusion_policy_ros sim.launch.py config:=single_arm.yaml policy_checkpoint:=/path/ckpt

Same nodes as `dpros up sim --config ...`; policy and safety filter run on the sim's /clock.
"""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _graph_launch import graph_launch_description  # noqa: E402


def generate_launch_description():
    return graph_launch_description("sim")
