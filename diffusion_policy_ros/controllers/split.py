"""One arm's joint plan split over the controllers a ros2_control robot has for it.

The safety filter plans over all of an arm's joints (the gripper too); a robot runs a
joint_trajectory_controller over the arm joints and, per `ArmConfig.gripper_controller`, either
the gripper in that same controller (`none`) or a controller of its own: a second JTC, a
GripperActionController (control_msgs/GripperCommand goals) or a forward position controller.
`ArmControllers` gives each of them its part of a plan, in that controller's joint order.

Stamps: every plan the safety filter sends, holds and stops included, is stamped with the time it
was planned from, so a JTC that receives it late joins it where it is by now, as the filter
planned: a stop stamped 0 ("start when received") would instead begin from wherever the old
command had taken the arm meanwhile, and change velocity abruptly by (speed x delay / first
segment). So that no delivery delay gets a hold rejected for "ending in the past", a hold ends
in a point that repeats its rest position HOLD_ACCEPTED_FOR_S after its stamp (`padded_hold`).
Teleop-style one-step commands may still be stamped 0 (`start_on_receipt`).
"""
from __future__ import annotations

import dataclasses

import numpy as np

from diffusion_policy_ros.robot_config import ArmConfig

# A GripperCommand goal is sent when the gripper target moves by more than this (m): goals at the
# control rate for an unchanged target would only restart the controller's motion each time.
GRIPPER_GOAL_RESOLUTION_M = 5e-4
# A JTC rejects a stamped trajectory whose last point is past when it arrives; a hold stays valid
# this long. Later than that the arm has stopped anyway: every forwarded plan ends in a stop
# within max_horizon_s plus its braking tail.
HOLD_ACCEPTED_FOR_S = 10.0


@dataclasses.dataclass(frozen=True)
class TrajectoryCommand:
    stamp: float                 # absolute seconds; 0.0: start when received
    joint_names: tuple[str, ...]
    times_from_start: np.ndarray  # (N,) seconds, increasing, > 0
    positions: np.ndarray        # (N, J) in joint_names order


class ArmControllers:
    """Which columns of the arm's plan go to which controller."""

    def __init__(self, arm: ArmConfig):
        self.arm = arm
        self.arm_joints = arm.controller_joint_names
        self._arm_columns = [arm.joint_names.index(j) for j in self.arm_joints]
        self.gripper_joints = arm.gripper_joints if arm.gripper_controller != "none" else ()
        self._gripper_columns = [arm.joint_names.index(j) for j in self.gripper_joints]
        self._last_goal: float | None = None

    @property
    def separate_gripper(self) -> bool:
        return bool(self.gripper_joints)

    def trajectories(self, start: float, times, positions, start_on_receipt: bool) -> dict[str, TrajectoryCommand]:
        """JointTrajectory commands for the arm JTC ('arm') and, with gripper_controller
        joint_trajectory, the gripper JTC ('gripper'). `times` absolute, `positions` (N, arm joints);
        `start_on_receipt` (teleop-style commands): stamped 0, times relative to `start`."""
        times = np.asarray(times, dtype=float)
        positions = np.asarray(positions, dtype=float).reshape(len(times), len(self.arm.joint_names))
        relative = times - start
        stamp = 0.0 if start_on_receipt else start
        out = {"arm": TrajectoryCommand(stamp, self.arm_joints, relative, positions[:, self._arm_columns])}
        if self.arm.gripper_controller == "joint_trajectory":
            out["gripper"] = TrajectoryCommand(stamp, self.gripper_joints, relative,
                                               positions[:, self._gripper_columns])
        return out

    def split_positions(self, q) -> tuple[list[float], list[float]]:
        """One arm configuration as (arm controller values, gripper controller values)."""
        q = np.asarray(q, dtype=float)
        return [float(v) for v in q[self._arm_columns]], [float(v) for v in q[self._gripper_columns]]

    def gripper_goal(self, final_position, force: bool = False) -> float | None:
        """The GripperCommand target for a plan ending at `final_position` (all arm joints), or None
        while it is within GRIPPER_GOAL_RESOLUTION_M of the last goal sent (unless `force`)."""
        if self.arm.gripper_controller != "gripper_action":
            return None
        target = float(np.asarray(final_position, dtype=float)[self._gripper_columns[0]])
        if not force and self._last_goal is not None and abs(target - self._last_goal) <= GRIPPER_GOAL_RESOLUTION_M:
            return None
        self._last_goal = target
        return target


def padded_hold(start: float, times, positions) -> tuple[np.ndarray, np.ndarray]:
    """A hold or stop plan (absolute `times`, `positions` (N, J)) with a last point repeating its
    rest position HOLD_ACCEPTED_FOR_S after `start` (unless it already ends that late)."""
    times = np.asarray(times, dtype=float)
    positions = np.asarray(positions, dtype=float).reshape(len(times), -1)
    if len(times) and times[-1] >= start + HOLD_ACCEPTED_FOR_S:
        return times, positions
    return np.append(times, start + HOLD_ACCEPTED_FOR_S), np.vstack([positions, positions[-1:]])


def is_padded_hold(stamp_ns: int, last_time_from_start_ns: int) -> bool:
    """Whether a stamped JointTrajectory is a hold or stop of the safety filter (`padded_hold`):
    forwarded commands end within max_horizon_s plus a braking tail, far sooner."""
    return stamp_ns != 0 and last_time_from_start_ns >= int(HOLD_ACCEPTED_FOR_S * 1e9)


def follow_joint_trajectory_action(controller_topic: str) -> str:
    """The JTC's action name beside its topic: /arm_controller/joint_trajectory ->
    /arm_controller/follow_joint_trajectory."""
    return f"{controller_topic.rsplit('/', 1)[0]}/follow_joint_trajectory"
