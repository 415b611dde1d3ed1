"""joy_teleop_node: Cartesian jog of one arm from a gamepad (sensor_msgs/Joy), solved to joint targets.

    ros2 run joy joy_node      # or game_controller_node, with joy_layout: sdl_gamepad
    python -m diffusion_policy_ros.nodes.joy_teleop_node --ros-args --params-file config/single_arm.yaml

Subscribes `joy_topic` (default /joy), the arms' joint states, the safety filter's
`safety/events` and `/sim/task_status`; publishes on every arm's `teleop_topic` at the control
rate (the jogged arm from IK, the others hold). Targets stay inside what the safety filter
accepts (its limits are read from the running `safety_filter_node`), and the jog starts again
from the measured joints whenever the filter rejects or holds, a new episode starts, or the arm
is far from the command. No Joy message for stale_after_s -> zero twist (the arm holds); no
joint states for stale_after_s -> no commands.

Parameters: arm, joy_topic, joy_layout (xbox | ps4 | sdl_gamepad, see teleop/cartesian_jog.py),
and to override the layout axes [vx vy vz wx wy wz], signs, twist_buttons (+/- pairs),
gripper_open_button, gripper_close_button; deadzone, linear_speed (m/s), angular_speed (rad/s),
gripper_speed (m/s), stale_after_s, safety_filter_node.
"""
from __future__ import annotations

import numpy as np
import rclpy
from rclpy.executors import ExternalShutdownException
from rclpy.node import Node
from sensor_msgs.msg import Joy

from diffusion_policy_ros.node_parameters import JOY_TELEOP_NODE
from diffusion_policy_ros.nodes._parameters import PARAMETER_OPTIONS, declare_node_parameters
from diffusion_policy_ros.nodes._robot_params import now_seconds
from diffusion_policy_ros.nodes._teleop_output import MeasuredJoints, TeleopOutput
from diffusion_policy_ros.nodes._teleop_safety import FilterFeedback, OnceLog
from diffusion_policy_ros.teleop.cartesian_jog import CartesianJog, JogMapping


class JoyTeleop(Node):
    def __init__(self, **kwargs):
        super().__init__("joy_teleop_node", **PARAMETER_OPTIONS, **kwargs)
        p = declare_node_parameters(self, JOY_TELEOP_NODE)
        self.config = p.robot
        self.arm = self.config.arm(p["arm"] or self.config.arms[0].name)
        self.mapping = self._mapping(p)
        self.arm_joints = [j for j in self.arm.joint_names if j not in self.arm.gripper_joints]
        self.gripper = self.arm.gripper_joints[0] if self.arm.gripper_joints else None
        self.stale_after = p["stale_after_s"]
        self.joy_topic = p["joy_topic"]
        self.joy: Joy | None = None
        self.joy_time = -1e9
        self.jog: CartesianJog | None = None
        self.commanded: dict[str, np.ndarray] = {}
        self.log = OnceLog(self.get_logger())
        self.measured = MeasuredJoints(self, self.config)
        self.feedback = FilterFeedback(self, self.config, self.log)
        self.create_subscription(Joy, self.joy_topic, self._on_joy, 10)
        self.output = TeleopOutput(self, self.config)
        self.create_timer(self.output.period, self._tick)
        self.get_logger().info(f"jogging arm {self.arm.name!r} (site {self.arm.end_effector}) from Joy on "
                               f"{self.joy_topic}, layout {self.layout}: axes {list(self.mapping.axes)}, "
                               f"gripper open/close buttons {self.mapping.gripper_open_button}/"
                               f"{self.mapping.gripper_close_button}")

    def _mapping(self, p) -> JogMapping:
        """The layout's mapping; an empty list or a -1 button keeps the layout's value."""
        self.layout = p["joy_layout"]
        preset = JogMapping.for_layout(self.layout)
        return JogMapping(
            axes=p["axes"] or list(preset.axes), signs=p["signs"],
            twist_buttons=p["twist_buttons"] or list(preset.twist_buttons), deadzone=p["deadzone"],
            linear_speed=p["linear_speed"], angular_speed=p["angular_speed"],
            gripper_open_button=preset.gripper_open_button if p["gripper_open_button"] < 0 else p["gripper_open_button"],
            gripper_close_button=preset.gripper_close_button if p["gripper_close_button"] < 0
            else p["gripper_close_button"],
            gripper_speed=p["gripper_speed"])

    def _make_jog(self) -> CartesianJog:
        from diffusion_policy_ros.sim.robot_model import scene_path
        bounds = self.feedback.bounds[self.arm.name].reorder(self.arm_joints + ([self.gripper] if self.gripper else []))
        gripper_range = (float(bounds.lower[-1]), float(bounds.upper[-1])) if self.gripper else (0.0, 0.0)
        return CartesianJog(scene_path(self.config.robot), self.arm_joints, self.arm.end_effector,
                            gripper_range=gripper_range, mapping=self.mapping, bounds=bounds)

    def _on_joy(self, msg: Joy):
        if self.joy is None:
            self.log.arrived("joy", f"Joy arrived on {self.joy_topic}: {len(msg.axes)} axes, {len(msg.buttons)} buttons")
        self.joy, self.joy_time = msg, now_seconds(self)

    def _tick(self):
        now = now_seconds(self)
        if not self.feedback.ready():
            return
        stale = [a for a in self.config.arms if not self.measured.fresh(a.name, now, self.stale_after)]
        if stale:
            self.log.waiting("joints", f"joint states on {[a.joint_states_topic for a in stale]}; not commanding")
            return
        self.log.arrived("joints", "joint states arrived; commanding")
        if self.jog is None:
            self.jog = self._make_jog()
        for arm in self.config.arms:
            reason = "start" if arm.name not in self.commanded else self.feedback.reanchor[arm.name].check(
                self.commanded[arm.name], self.measured.positions[arm.name], self.feedback.bounds[arm.name].is_gripper)
            if reason is not None:
                self._anchor(arm, reason)
        fresh = self.joy is not None and now - self.joy_time <= self.stale_after
        if self.joy is None:
            self.log.waiting("joy", f"Joy on {self.joy_topic} (the arm holds)")
        axes = list(self.joy.axes) if fresh else []
        buttons = list(self.joy.buttons) if fresh else []
        measured = dict(zip(self.arm.joint_names, self.measured.positions[self.arm.name]))
        arm_q, gripper = self.jog.step(axes, buttons, self.output.period,
                                       measured=[measured[j] for j in self.arm_joints])
        by_name = dict(zip(self.arm_joints, arm_q))
        if self.gripper:
            by_name[self.gripper] = gripper
        self.commanded[self.arm.name] = np.array([by_name[j] for j in self.arm.joint_names])
        for arm in self.config.arms:
            self.output.publish(arm.name, self.commanded[arm.name])

    def _anchor(self, arm, reason: str) -> None:
        """Start again from where the arm is: the others hold there, the jogged one jogs from there."""
        q = np.array(self.measured.positions[arm.name])
        self.commanded[arm.name] = q
        if arm.name == self.arm.name:
            by_name = dict(zip(arm.joint_names, q))
            self.jog.anchor([by_name[j] for j in self.arm_joints], by_name[self.gripper] if self.gripper else 0.0)
        if reason != "start":
            self.get_logger().info(f"{arm.name}: re-anchored on the measured joints: {reason}")


def main(args=None):
    rclpy.init(args=args)
    node = None
    try:
        node = JoyTeleop()
        rclpy.spin(node)
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    finally:
        if node is not None:
            node.destroy_node()
        rclpy.try_shutdown()


if __name__ == "__main__":
    main()
