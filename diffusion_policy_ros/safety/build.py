"""Build a `SafetyFilter` for a robot config: limits from the robot model plus parameters."""
from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from diffusion_policy_ros.robot_config import RobotConfig
from diffusion_policy_ros.safety.filter import SafetyFilter
from diffusion_policy_ros.safety.kinematics import RobotKinematics
from diffusion_policy_ros.safety.limits import JointLimits, SafetyParams


def build_safety_filter(config: RobotConfig, node_params: Mapping[str, Any] | None = None,
                        with_kinematics: bool = True) -> SafetyFilter:
    params = SafetyParams.from_mapping(node_params if node_params is not None
                                       else config.node_params("safety_filter_node"))
    kinematics = RobotKinematics(config, params.robot_model)
    ranges = kinematics.joint_ranges()
    limits = {arm.name: JointLimits.build(arm.joint_names, arm.gripper_joints, ranges, params)
              for arm in config.arms}
    return SafetyFilter(limits, params, 1.0 / config.control_rate_hz,
                        kinematics if with_kinematics else None, params.max_horizon_s)
