"""Writing the safety filter's plans to a robot's controllers, per arm as the config says.

Arm joints (`ArmConfig.controller_joint_names`): JointTrajectory on `controller_topic` (output
joint_trajectory), a FollowJointTrajectory goal to the same controller (follow_joint_trajectory),
or Float64MultiArray on `forward_topic` at the control rate (float64_multi_array). The gripper, when
it has a controller of its own (`gripper_controller`): a JointTrajectory on `gripper_topic`, a
GripperCommand goal to the action `gripper_topic`, or Float64MultiArray on `gripper_topic` at the
control rate. The split itself is `controllers/split.py`.
"""
from __future__ import annotations

import math

from builtin_interfaces.msg import Duration, Time
from rclpy.qos import QoSProfile
from std_msgs.msg import Float64MultiArray
from trajectory_msgs.msg import JointTrajectory, JointTrajectoryPoint

from diffusion_policy_ros.controllers.split import (ArmControllers, TrajectoryCommand,
                                                    follow_joint_trajectory_action, padded_hold)
from diffusion_policy_ros.robot_config import ConfigError

ARM_OUTPUTS = ("joint_trajectory", "follow_joint_trajectory", "float64_multi_array")


def command_msg(cmd: TrajectoryCommand) -> JointTrajectory:
    msg = JointTrajectory(joint_names=list(cmd.joint_names))
    msg.header.stamp = _time(cmd.stamp)
    for t, q in zip(cmd.times_from_start, cmd.positions):
        sec = int(math.floor(t))
        msg.points.append(JointTrajectoryPoint(
            positions=[float(x) for x in q],
            time_from_start=Duration(sec=sec, nanosec=min(int(round((t - sec) * 1e9)), 999_999_999))))
    return msg


def _time(seconds: float) -> Time:
    sec = int(math.floor(seconds))
    return Time(sec=sec, nanosec=min(int(round((seconds - sec) * 1e9)), 999_999_999))


def control_msgs_action(name: str):
    """control_msgs.action.<name>, or a ConfigError that says how to get it."""
    try:
        import control_msgs.action
    except ImportError:
        raise ConfigError(
            f"this configuration sends control_msgs/{name} goals, but the control_msgs package is not "
            "installed: apt-get install ros-$ROS_DISTRO-control-msgs on a ROS 2 machine, or run `make setup` "
            "with ../shared/vendor/ros2-python-tools present (or choose a topic output)") from None
    return getattr(control_msgs.action, name)


class ControllerOutput:
    def __init__(self, node, robot_config, arm_output: str, gripper_max_effort: float = 0.0):
        if arm_output not in ARM_OUTPUTS:
            raise ConfigError(f"arm output must be one of {ARM_OUTPUTS}, got {arm_output!r}")
        self.node = node
        self.arm_output = arm_output
        self.gripper_max_effort = float(gripper_max_effort)
        self.split = {a.name: ArmControllers(a) for a in robot_config.arms}
        reliable = QoSProfile(depth=10)
        self._arm, self._gripper = {}, {}
        self._action_names = {}
        self._warned: set[str] = set()
        self.rejected_goals = 0
        for arm in robot_config.arms:
            if arm_output == "joint_trajectory":
                self._arm[arm.name] = node.create_publisher(JointTrajectory, arm.controller_topic, reliable)
            elif arm_output == "float64_multi_array":
                self._arm[arm.name] = node.create_publisher(Float64MultiArray, arm.forward_topic, reliable)
            else:
                from rclpy.action import ActionClient
                name = follow_joint_trajectory_action(arm.controller_topic)
                self._arm[arm.name] = ActionClient(node, control_msgs_action("FollowJointTrajectory"), name)
                self._action_names[self._arm[arm.name]] = name
            kind = arm.gripper_controller
            if kind == "joint_trajectory":
                self._gripper[arm.name] = node.create_publisher(JointTrajectory, arm.gripper_topic, reliable)
            elif kind == "forward_position":
                self._gripper[arm.name] = node.create_publisher(Float64MultiArray, arm.gripper_topic, reliable)
            elif kind == "gripper_action":
                from rclpy.action import ActionClient
                self._gripper[arm.name] = ActionClient(node, control_msgs_action("GripperCommand"), arm.gripper_topic)
                self._action_names[self._gripper[arm.name]] = arm.gripper_topic

    @property
    def streams_positions(self) -> bool:
        """Whether some controller takes positions at the control rate (forward controllers)."""
        return self.arm_output == "float64_multi_array" or any(
            s.arm.gripper_controller == "forward_position" for s in self.split.values())

    def describe(self) -> str:
        parts = []
        for name, s in self.split.items():
            gripper = "" if not s.separate_gripper else f", gripper {s.arm.gripper_controller} {s.arm.gripper_topic}"
            parts.append(f"{name}: {self.arm_output} ({len(s.arm_joints)} joints){gripper}")
        return "; ".join(parts)

    def send(self, arm: str, start: float, times, positions, stop: bool = False,
             start_on_receipt: bool = False) -> None:
        """A new plan over all the arm's joints (absolute `times`, `positions` (N, joints)) stamped
        `start`: a forwarded command, or a hold / stop (`stop`: padded to stay valid however late it
        arrives, split.padded_hold). `start_on_receipt`: stamped 0 instead (teleop-style commands)."""
        split = self.split[arm]
        if stop:
            times, positions = padded_hold(start, times, positions)
        commands = split.trajectories(start, times, positions, start_on_receipt)
        if self.arm_output == "joint_trajectory":
            self._arm[arm].publish(command_msg(commands["arm"]))
        elif self.arm_output == "follow_joint_trajectory":
            goal = control_msgs_action("FollowJointTrajectory").Goal(trajectory=command_msg(commands["arm"]))
            self._send_goal(self._arm[arm], goal)
        if "gripper" in commands:
            self._gripper[arm].publish(command_msg(commands["gripper"]))
        target = split.gripper_goal(positions[-1], force=stop or start_on_receipt)
        if target is not None:
            action = control_msgs_action("GripperCommand")
            goal = action.Goal()
            goal.command.position, goal.command.max_effort = target, self.gripper_max_effort
            self._send_goal(self._gripper[arm], goal)

    def send_positions(self, arm: str, q) -> None:
        """Positions now, for the forward controllers (called at the control rate)."""
        arm_values, gripper_values = self.split[arm].split_positions(q)
        if self.arm_output == "float64_multi_array":
            self._arm[arm].publish(Float64MultiArray(data=arm_values))
        if self.split[arm].arm.gripper_controller == "forward_position":
            self._gripper[arm].publish(Float64MultiArray(data=gripper_values))

    def _send_goal(self, client, goal) -> None:
        if not client.server_is_ready():
            self._warn_once(f"no action server {self._action_names[client]} yet: goals are dropped until it is up")
            return
        client.send_goal_async(goal).add_done_callback(self._on_goal_response)

    def _on_goal_response(self, future) -> None:
        handle = future.result()
        if handle is None or not handle.accepted:
            self.rejected_goals += 1
            self.node.get_logger().warn("a controller rejected a goal (see its log)")

    def _warn_once(self, message: str) -> None:
        if message not in self._warned:
            self._warned.add(message)
            self.node.get_logger().warn(message)
