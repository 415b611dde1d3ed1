"""The controllers of one simulated arm, as ros2_control would run them for the arm's config.

`ArmConfig.gripper_controller` none: one joint_trajectory_controller over all the arm's joints;
otherwise the arm JTC over `controller_joint_names` and the gripper on its own: a second JTC
(joint_trajectory), a forward position controller (forward_position) or a GripperActionController
(gripper_action: goals move the fingers at GRIPPER_ACTION_SPEED_M_S). Each controller has its own
`TrajectoryFollower`, so a gripper command never freezes the arm's trajectory and vice versa.
Trajectories pass the joint_trajectory_controller's own checks first (controllers/jtc_rules.py):
what a real JTC would reject, the sim rejects with the same message.
"""
from __future__ import annotations

import numpy as np

from diffusion_policy_ros.controllers.jtc_rules import JtcMessage, JtcSettings, rejection
from diffusion_policy_ros.controllers.split import ArmControllers
from diffusion_policy_ros.robot_config import ArmConfig
from diffusion_policy_ros.sim.trajectory import TrajectoryFollower, TrajectoryRejected

# How fast the simulated gripper hardware closes or opens for a GripperCommand goal (m/s).
GRIPPER_ACTION_SPEED_M_S = 0.1


class SimArmControllers:
    def __init__(self, arm: ArmConfig, lower, upper):
        self.arm = arm
        self.split = ArmControllers(arm)
        lower, upper = np.asarray(lower, float), np.asarray(upper, float)
        self._columns = {"arm": [arm.joint_names.index(j) for j in self.split.arm_joints],
                         "gripper": [arm.joint_names.index(j) for j in self.split.gripper_joints]}
        joints = {"arm": self.split.arm_joints, "gripper": self.split.gripper_joints}
        names = ["arm", "gripper"] if self.split.separate_gripper else ["arm"]
        self._limits = {name: (lower[self._columns[name]], upper[self._columns[name]]) for name in names}
        self.followers = {name: TrajectoryFollower(joints[name], np.zeros(len(joints[name])), *self._limits[name])
                          for name in names}
        self.jtc = {name: JtcSettings(tuple(joints[name])) for name in names}
        self.rejected = 0

    def trajectory(self, controller: str, now: float, msg: JtcMessage, velocities=None) -> int:
        """A JointTrajectory for the arm JTC ('arm') or the gripper JTC ('gripper'); returns how
        many points were kept. Raises TrajectoryRejected with the controller's reason."""
        if controller not in self.jtc:
            raise TrajectoryRejected(f"this arm has no {controller} joint_trajectory_controller")
        reason = rejection(self.jtc[controller], msg, int(round(now * 1e9)))
        if reason is not None:
            self.rejected += 1
            raise TrajectoryRejected(reason)
        times = [p.time_from_start_ns * 1e-9 for p in msg.points]
        positions = [list(p.positions) for p in msg.points]
        return self.followers[controller].set_trajectory(now, msg.stamp_ns * 1e-9, msg.joint_names, times,
                                                         positions, velocities)

    def forward(self, controller: str, values) -> None:
        """A forward position command (the arm's forward_topic, or a forward gripper controller)."""
        if controller not in self.followers:
            raise TrajectoryRejected(f"this arm has no {controller} controller")
        self.followers[controller].hold(values)

    def gripper_goal(self, now: float, target: float) -> float:
        """A GripperCommand goal: the fingers move to `target` (clamped to their range) at the
        gripper's speed; returns the clamped target."""
        follower = self.followers["gripper"]
        current = follower.sample(now)[0]
        goal = np.clip([target], *self._limits["gripper"])
        duration = max(float(np.abs(goal - current).max()) / GRIPPER_ACTION_SPEED_M_S, 1e-3)
        follower.set_trajectory(now, now, self.split.gripper_joints, [duration], [goal])
        return float(goal[0])

    def sample(self, now: float) -> tuple[np.ndarray, np.ndarray]:
        """Commanded positions and velocities of all the arm's joints, in config order."""
        q = np.zeros(len(self.arm.joint_names))
        qd = np.zeros_like(q)
        for name, follower in self.followers.items():
            q[self._columns[name]], qd[self._columns[name]] = follower.sample(now)
        return q, qd

    def hold(self, q) -> None:
        """Every controller holds these positions (all of the arm's joints, config order)."""
        q = np.asarray(q, dtype=float)
        for name, follower in self.followers.items():
            follower.hold(q[self._columns[name]])
