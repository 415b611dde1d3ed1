"""Record teleoperated demonstrations into a dataset.

    ros2 launch diffusion_policy_ros record.launch.py config:=<path>/single_arm.yaml teleop:=expert \
        record_dataset_name:=pick_demos keyboard:=true

Same nodes as `dpros up record --config ...`: sim_node (unless sim:=false), the teleop source,
the safety filter reading the teleop topic, and demo_recorder_node.
"""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _graph_launch import graph_launch_description  # noqa: E402


def generate_launch_description():
    return graph_launch_description("record")
