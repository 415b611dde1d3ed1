"""Helpers shared by the nodes: the robot config and parameters with defaults from ROS
parameters, the node clock in seconds."""
from __future__ import annotations

import sys

from rcl_interfaces.msg import ParameterDescriptor, ParameterType
from rclpy.node import Node

from diffusion_policy_ros.robot_config import RobotConfig


def node_kwargs() -> dict:
    # The config file is passed with --params-file; every key in it becomes a parameter.
    return {"allow_undeclared_parameters": True,
            "automatically_declare_parameters_from_overrides": True}


def robot_config_from_node(node: Node) -> RobotConfig:
    params = {name: p.value for name, p in node.get_parameters_by_prefix("").items()}
    params = {k: (list(v) if isinstance(v, (list, tuple)) or hasattr(v, "tolist") else v)
              for k, v in params.items()}
    return RobotConfig.from_parameters(params)


def param(node: Node, name: str, default):
    """A node parameter with a default (declared if the params file did not set it)."""
    if not node.has_parameter(name):
        if isinstance(default, list) and not default:
            # An empty list has no type for rclpy to infer: say it is a string list.
            node.declare_parameter(name, default, ParameterDescriptor(type=ParameterType.PARAMETER_STRING_ARRAY))
        else:
            node.declare_parameter(name, default)
    value = node.get_parameter(name).value
    if value is None:
        return default
    if hasattr(value, "tolist"):
        value = value.tolist()
    return list(value) if isinstance(value, tuple) else value


def now_seconds(node: Node) -> float:
    return node.get_clock().now().nanoseconds * 1e-9


# The sim's physics thread gives up the GIL in every C call (mj_step, render) and must win it
# back from the executor threads; with Python's default 5 ms switch interval a busy executor
# throttled it far below real time.
GIL_SWITCH_INTERVAL_S = 0.0005


def responsive_threads() -> None:
    """Let a thread returning from C code get the GIL back within 0.5 ms."""
    sys.setswitchinterval(min(sys.getswitchinterval(), GIL_SWITCH_INTERVAL_S))
