"""Per-joint limits and the safety filter's parameters.

Position limits come from the robot model (the MJCF joint ranges, read through MuJoCo in
`kinematics.py`), so the sim and the filter share one source; velocity and acceleration limits
are parameters because MJCF has no field for them. Grippers are prismatic (metres) and get
their own velocity/acceleration/range parameters.
"""
from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from diffusion_policy_ros.parameters import ConfigError, NodeSchema, parameter, schema_from_dataclass

POSITIVE = {"minimum": 0.0, "exclusive_minimum": True}
NON_NEGATIVE = {"minimum": 0.0}


@dataclasses.dataclass(frozen=True)
class SafetyParams:
    """The `/**/safety_filter_node` section, typed: each field is a node parameter (read-only: the
    limits are fixed while the node runs). Defaults are conservative for a 6-DoF arm."""
    output: str = parameter("joint_trajectory", "what each arm's controller receives: JointTrajectory on its "
                            "controller_topic, a FollowJointTrajectory goal to that controller, or "
                            "Float64MultiArray on its forward_topic (the gripper: <arm>.gripper_controller)",
                            choices=("joint_trajectory", "follow_joint_trajectory", "float64_multi_array"))
    input: str = parameter("policy", "which arm topic is filtered: policy_topic or teleop_topic",
                           choices=("policy", "teleop"))
    robot_model: str = parameter("", "MJCF with the joint ranges; '' = resource/mjcf/<robot>.xml")
    position_margin_rad: float = parameter(0.05, "kept away from each revolute joint limit (rad)", **NON_NEGATIVE)
    gripper_margin_m: float = parameter(0.0, "kept away from the gripper's range ends (m)", **NON_NEGATIVE)
    gripper_range_m: tuple[float, float] = parameter(
        (0.0, 0.08), "gripper opening range [min, max] (m), used when the model has no such joint")
    max_velocity_rad_s: float = parameter(1.5, "joint velocity limit (rad/s, times max_velocity_scale)", **POSITIVE)
    max_acceleration_rad_s2: float = parameter(6.0, "joint acceleration limit (rad/s^2)", **POSITIVE)
    max_velocity_scale: float = parameter(1.0, "scales every velocity limit (e.g. 0.5 for first runs)",
                                          minimum=0.0, exclusive_minimum=True, maximum=1.0)
    gripper_max_velocity_m_s: float = parameter(0.2, "gripper velocity limit (m/s)", **POSITIVE)
    gripper_max_acceleration_m_s2: float = parameter(2.0, "gripper acceleration limit (m/s^2)", **POSITIVE)
    max_jerk_rad_s3: float = parameter(60.0, "jerk limit of stops (holds, braking tails; ruckig) (rad/s^3)",
                                       **POSITIVE)
    gripper_max_jerk_m_s3: float = parameter(20.0, "gripper jerk limit of stops (m/s^3)", **POSITIVE)
    brake_sample_s: float = parameter(0.025, "spacing of the points of a stop (s, <= 1/control_rate)", **POSITIVE)
    max_step_rad: float = parameter(0.25, "largest step per trajectory point (rad; points are <= "
                                    "1/control_rate apart)", **POSITIVE)
    reject_step_rad: float = parameter(1.0, "a first point this far from the robot is rejected (rad)", **POSITIVE)
    max_tracking_error_rad: float = parameter(
        0.3, "measured this far from the plan (the robot was moved, reset or blocked) -> hold where it is (rad)",
        **POSITIVE)
    reject_beyond_limit_rad: float = parameter(0.3, "a target this far outside a hard joint limit is rejected "
                                               "(rad)", **NON_NEGATIVE)
    watchdog_timeout_s: float = parameter(0.08, "hold when no command arrives this long after the last one ran "
                                          "out (s)", **POSITIVE)
    max_horizon_s: float = parameter(0.5, "forwarded commands end this far ahead, plus a stop (s)", **POSITIVE)
    workspace_min: tuple[float, float, float] = parameter(
        (-1.0, -1.0, 0.0), "Cartesian workspace box of the tool centre, lower corner [x, y, z] (m, model frame)")
    workspace_max: tuple[float, float, float] = parameter(
        (1.0, 1.0, 1.5), "Cartesian workspace box, upper corner [x, y, z] (m)")
    workspace_rpy: tuple[float, float, float] = parameter(
        (0.0, 0.0, 0.0), "workspace box orientation in the model frame [roll, pitch, yaw] (rad)")
    min_arm_distance_m: float = parameter(0.08, "closest the two arms' links may come (m)", **NON_NEGATIVE)
    fingers_may_meet: bool = parameter(False, "true: pairs of links with a gripper finger are exempt from "
                                       "min_arm_distance_m, so one gripper can take an object from the other "
                                       "(a handover); every other pair of links still keeps it")
    status_rate_hz: float = parameter(2.0, "/diagnostics messages per second", **POSITIVE)
    gripper_max_effort_n: float = parameter(0.0, "max_effort of the GripperCommand goals (N), for grippers "
                                            "with gripper_controller gripper_action", **NON_NEGATIVE)

    # Bounded work per message: each cap is checked before any per-point work (docs/safety.md).
    max_points: int = parameter(64, "a command with more points is rejected (too_many_points)", minimum=1)
    max_message_bytes: int = parameter(65536, "a larger serialized message is rejected unread (bytes)", minimum=1)
    max_stamp_age_s: float = parameter(2.0, "a command stamped longer ago is rejected (invalid_time) (s)", **POSITIVE)
    max_processing_s: float = parameter(
        0.1, "a command not filtered this soon after it was taken up is dropped and the arm holds (late): a "
        "plan goes out only while the robot is still where it was planned from (s)", **POSITIVE)
    joint_state_timeout_s: float = parameter(0.5, "no valid joint state for this long (by its stamp): hold, "
                                             "reject commands (s; as policy_node's stale_after_s)", **POSITIVE)

    def __post_init__(self):
        positive = ("watchdog_timeout_s", "max_horizon_s", "brake_sample_s", "max_processing_s",
                    "joint_state_timeout_s", "max_stamp_age_s", "max_points", "max_message_bytes")
        bad = [name for name in positive if not getattr(self, name) > 0]
        if bad:
            raise ConfigError(f"safety_filter_node: {', '.join(bad)} must be > 0")
        # A NaN bound compares false with everything: a NaN gripper range would let NaN targets out.
        lists = [f.name for f in dataclasses.fields(self) if isinstance(getattr(self, f.name), tuple)]
        bad = [name for name in lists if not all(math.isfinite(float(v)) for v in getattr(self, name))]
        if bad:
            raise ConfigError(f"safety_filter_node: {', '.join(bad)} must hold finite numbers")

    @classmethod
    def schema(cls) -> NodeSchema:
        return schema_from_dataclass("safety_filter_node", cls)

    @classmethod
    def from_mapping(cls, values: Mapping[str, Any]) -> "SafetyParams":
        """From the node's section: every key must be a field (the closest is named otherwise)."""
        typed = cls.schema().validate(values)
        params = cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in typed.items()})
        if any(lo >= hi for lo, hi in zip(params.workspace_min, params.workspace_max)):
            raise ConfigError("safety_filter_node.workspace_min must be below workspace_max on every axis")
        if params.gripper_range_m[0] >= params.gripper_range_m[1]:
            raise ConfigError("safety_filter_node.gripper_range_m must be [min, max] with min < max")
        return params


@dataclasses.dataclass(frozen=True)
class JointLimits:
    """Limits of one arm's joints, in the arm's configured joint order."""
    names: tuple[str, ...]
    lower: np.ndarray           # hard position limits
    upper: np.ndarray
    margin: np.ndarray          # kept away from the hard limits
    max_velocity: np.ndarray
    max_acceleration: np.ndarray
    is_gripper: np.ndarray      # bool per joint
    max_jerk: np.ndarray | None = None  # stops only; None: no jerk limit given (build() sets it)

    @property
    def safe_lower(self) -> np.ndarray:
        return self.lower + self.margin

    @property
    def safe_upper(self) -> np.ndarray:
        return self.upper - self.margin

    @classmethod
    def build(cls, names: Sequence[str], gripper_joints: Sequence[str],
              model_ranges: Mapping[str, tuple[float, float]], params: SafetyParams) -> "JointLimits":
        """Combine the model's joint ranges with the parameterised rates."""
        lower, upper, margin, vmax, amax, jmax, grip = [], [], [], [], [], [], []
        for name in names:
            gripper = name in gripper_joints
            if name in model_ranges:
                lo, hi = model_ranges[name]
            elif gripper:
                lo, hi = params.gripper_range_m
            else:
                raise ConfigError(f"joint {name!r} has no limited range in the robot model; "
                                  "the safety filter needs position limits for every arm joint")
            m = params.gripper_margin_m if gripper else params.position_margin_rad
            if hi - lo <= 2 * m:
                raise ConfigError(f"joint {name!r}: range [{lo}, {hi}] leaves nothing inside margin {m}")
            lower.append(lo), upper.append(hi), margin.append(m), grip.append(gripper)
            if gripper:
                vmax.append(params.gripper_max_velocity_m_s * params.max_velocity_scale)
                amax.append(params.gripper_max_acceleration_m_s2)
                jmax.append(params.gripper_max_jerk_m_s3)
            else:
                vmax.append(params.max_velocity_rad_s * params.max_velocity_scale)
                amax.append(params.max_acceleration_rad_s2)
                jmax.append(params.max_jerk_rad_s3)
        if min(vmax) <= 0 or min(amax) <= 0 or min(jmax) <= 0:
            raise ConfigError("safety filter velocity, acceleration and jerk limits must be positive")
        arr = lambda v: np.asarray(v, dtype=float)  # noqa: E731
        return cls(tuple(names), arr(lower), arr(upper), arr(margin), arr(vmax), arr(amax),
                   np.asarray(grip, dtype=bool), arr(jmax))
