"""The checks a joint_trajectory_controller applies to every incoming JointTrajectory (topic or
FollowJointTrajectory goal) before it executes it; a message that fails one is dropped with an
error and the controller keeps its old trajectory.

Written from reading ros2_controllers (branch jazzy),
joint_trajectory_controller/src/joint_trajectory_controller.cpp,
`JointTrajectoryController::validate_trajectory_msg` and `validate_trajectory_point_field`; the
messages below are the controller's own, so a rejection here reads like the controller's log.
Times are integer nanoseconds as the controller compares them (rclcpp::Time / Duration).
"""
from __future__ import annotations

import dataclasses
from collections.abc import Sequence

FLOAT_EPSILON = 1.1920928955078125e-07   # std::numeric_limits<float>::epsilon()


@dataclasses.dataclass(frozen=True)
class JtcSettings:
    """The controller parameters the checks depend on (defaults: the controller's)."""
    joints: tuple[str, ...]
    allow_partial_joints_goal: bool = False
    allow_nonzero_velocity_at_trajectory_end: bool = False
    allow_integration_in_goal_trajectories: bool = False
    effort_command_interface: bool = False


@dataclasses.dataclass(frozen=True)
class JtcPoint:
    time_from_start_ns: int
    positions: Sequence[float] = ()
    velocities: Sequence[float] = ()
    accelerations: Sequence[float] = ()
    effort: Sequence[float] = ()


@dataclasses.dataclass(frozen=True)
class JtcMessage:
    stamp_ns: int                  # header.stamp; 0: start when received
    joint_names: Sequence[str]
    points: Sequence[JtcPoint]


def rejection(settings: JtcSettings, msg: JtcMessage, now_ns: int) -> str | None:
    """The controller's error for `msg` received at `now_ns`, or None if it accepts it."""
    names = list(msg.joint_names)
    if not settings.allow_partial_joints_goal and len(names) != len(settings.joints):
        return "Joints on incoming trajectory don't match the controller joints."
    if not names:
        return "Empty joint names on incoming trajectory."
    if not msg.points:
        return "Empty trajectory received."
    for name in names:
        if name not in settings.joints:
            return f"Incoming joint {name} doesn't match the controller's joints."
    if not settings.allow_nonzero_velocity_at_trajectory_end:
        for name, v in zip(names, msg.points[-1].velocities):
            if abs(v) > FLOAT_EPSILON:
                return f"Velocity of last trajectory point of joint {name} is not zero: {v:.15f}"
    if msg.stamp_ns != 0:
        end_ns = msg.stamp_ns + msg.points[-1].time_from_start_ns
        if end_ns < now_ns:
            return (f"Received trajectory with non-zero start time ({msg.stamp_ns * 1e-9:f}) that ends in the "
                    f"past ({end_ns * 1e-9:f})")
    previous_ns = 0
    for i, point in enumerate(msg.points):
        if i > 0 and point.time_from_start_ns <= previous_ns:
            return (f"Time between points {i - 1} and {i} is not strictly increasing, it is "
                    f"{previous_ns * 1e-9:f} and {point.time_from_start_ns * 1e-9:f} respectively")
        previous_ns = point.time_from_start_ns
        fields = (("positions", point.positions), ("velocities", point.velocities),
                  ("accelerations", point.accelerations))
        if settings.allow_integration_in_goal_trajectories:
            if not any(len(values) for _, values in fields):
                return "The given trajectory has no position, velocity, or acceleration points."
            for field, values in fields:
                if len(values) and len(values) != len(names):
                    return _mismatch(names, field, values, i)
        else:
            for field, values in fields:
                allow_empty = field != "positions"
                if not (allow_empty and not len(values)) and len(values) != len(names):
                    return _mismatch(names, field, values, i)
        if not settings.effort_command_interface and len(point.effort):
            return ("Trajectories with effort fields are only supported for controllers using the 'effort' "
                    "command interface.")
    return None


def _mismatch(names, field, values, i) -> str:
    return f"Mismatch between joint_names size ({len(names)}) and {field} ({len(values)}) at point #{i}."
