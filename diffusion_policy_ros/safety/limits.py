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

from diffusion_policy_ros.robot_config import ConfigError


def _is_number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


@dataclasses.dataclass(frozen=True)
class SafetyParams:
    """The `/**/safety_filter_node` section, typed. Defaults are conservative for a 6-DoF arm."""
    output: str = "joint_trajectory"          # joint_trajectory | float64_multi_array
    input: str = "policy"                     # policy | teleop: which arm topic is filtered
    robot_model: str = ""                     # MJCF path; "" = resource/mjcf/<robot>.xml
    position_margin_rad: float = 0.05         # kept away from each revolute joint limit
    gripper_margin_m: float = 0.0
    gripper_range_m: tuple[float, float] = (0.0, 0.08)  # used when the model has no such joint
    max_velocity_rad_s: float = 1.5
    max_acceleration_rad_s2: float = 6.0
    max_velocity_scale: float = 1.0
    gripper_max_velocity_m_s: float = 0.2
    gripper_max_acceleration_m_s2: float = 2.0
    max_jerk_rad_s3: float = 60.0             # stops (holds, braking tails) are jerk-limited (ruckig)
    gripper_max_jerk_m_s3: float = 20.0
    brake_sample_s: float = 0.025             # spacing of the points of a stop (<= 1/control_rate)
    max_step_rad: float = 0.25                # per trajectory point (points are <= 1/control_rate apart)
    reject_step_rad: float = 1.0              # first point this far from the robot -> reject
    max_tracking_error_rad: float = 0.3       # measured this far from the plan (the robot was moved,
                                              # reset, or blocked) -> hold where it is
    reject_beyond_limit_rad: float = 0.3      # target this far outside a hard limit -> reject
    watchdog_timeout_s: float = 0.08
    max_horizon_s: float = 0.5                # forwarded commands end this far ahead (+ a stop)
    workspace_min: tuple[float, float, float] = (-1.0, -1.0, 0.0)
    workspace_max: tuple[float, float, float] = (1.0, 1.0, 1.5)
    workspace_rpy: tuple[float, float, float] = (0.0, 0.0, 0.0)  # box orientation in the model frame
    min_arm_distance_m: float = 0.08
    status_rate_hz: float = 2.0
    # Bounded work per message: each cap is checked before any per-point work (docs/safety.md).
    max_points: int = 64                      # a command with more points is rejected (too_many_points)
    max_message_bytes: int = 65536            # a larger serialized message is rejected unread
    max_stamp_age_s: float = 2.0              # a command stamped longer ago is rejected (invalid_time)
    max_processing_s: float = 0.1             # a command not filtered this soon after it was taken up
                                              # is dropped and the arm holds (late): a plan goes out
                                              # only while the robot is still where it was planned from
    joint_state_timeout_s: float = 0.5        # no valid joint state for this long: hold, reject commands
                                              # (as policy_node's stale_after_s)

    def __post_init__(self):
        positive = ("watchdog_timeout_s", "max_horizon_s", "brake_sample_s", "max_processing_s",
                    "joint_state_timeout_s", "max_stamp_age_s", "max_points", "max_message_bytes")
        bad = [name for name in positive if not getattr(self, name) > 0]
        if bad:
            raise ConfigError(f"safety_filter_node: {', '.join(bad)} must be > 0")

    @classmethod
    def from_mapping(cls, values: Mapping[str, Any]) -> "SafetyParams":
        fields = {f.name: f for f in dataclasses.fields(cls)}
        kwargs = {}
        for key, value in values.items():
            if key not in fields:
                continue  # other nodes' or ROS's own parameters (use_sim_time, ...)
            default = fields[key].default
            if isinstance(default, tuple):
                if not isinstance(value, (list, tuple)) or len(value) != len(default) \
                        or not all(_is_number(v) for v in value):
                    raise ConfigError(f"safety_filter_node.{key} must be a list of {len(default)} numbers")
                kwargs[key] = tuple(float(v) for v in value)
            elif isinstance(default, str):
                kwargs[key] = str(value)
            elif isinstance(default, int):
                if not _is_number(value) or value != int(value) or value < 0:
                    raise ConfigError(f"safety_filter_node.{key} must be a whole number >= 0, got {value!r}")
                kwargs[key] = int(value)
            else:
                if not _is_number(value) or value < 0:
                    raise ConfigError(f"safety_filter_node.{key} must be a number >= 0, got {value!r}")
                kwargs[key] = float(value)
        params = cls(**kwargs)
        if params.output not in ("joint_trajectory", "float64_multi_array"):
            raise ConfigError(f"safety_filter_node.output must be joint_trajectory or "
                              f"float64_multi_array, got {params.output!r}")
        if params.input not in ("policy", "teleop"):
            raise ConfigError(f"safety_filter_node.input must be policy or teleop, got {params.input!r}")
        if any(lo >= hi for lo, hi in zip(params.workspace_min, params.workspace_max)):
            raise ConfigError("safety_filter_node.workspace_min must be below workspace_max on every axis")
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
