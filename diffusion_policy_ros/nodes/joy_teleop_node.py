"""joy_teleop_node: Cartesian jog of one arm from sensor_msgs/Joy, solved to joint targets.

Subscribes `joy_topic` (default /joy) and the arms' joint states; publishes on every arm's
teleop_topic at the control rate (the jogged arm from IK, the others hold where they were).
No Joy message for stale_after_s -> zero twist (the arm holds). Parameters: arm, joy_topic,
axes [vx vy vz wx wy wz], signs, deadzone, linear_speed, angular_speed, gripper_open_button,
gripper_close_button, gripper_speed, stale_after_s.
"""
from __future__ import annotations

import rclpy
from rclpy.executors import ExternalShutdownException
from rclpy.node import Node
from sensor_msgs.msg import Joy, JointState

from diffusion_policy_ros.node_parameters import JOY_TELEOP_NODE
from diffusion_policy_ros.nodes._parameters import PARAMETER_OPTIONS, declare_node_parameters
from diffusion_policy_ros.nodes._robot_params import now_seconds
from diffusion_policy_ros.nodes._teleop_output import TeleopOutput
from diffusion_policy_ros.teleop.cartesian_jog import CartesianJog, JogMapping


class JoyTeleop(Node):
    def __init__(self, **kwargs):
        super().__init__("joy_teleop_node", **PARAMETER_OPTIONS, **kwargs)
        from diffusion_policy_ros.sim.robot_model import RobotModel, load_scene_model, scene_path
        p = declare_node_parameters(self, JOY_TELEOP_NODE)
        self.config = p.robot
        self.arm = self.config.arm(p["arm"] or self.config.arms[0].name)
        mapping = JogMapping(
            axes=p["axes"], signs=p["signs"], deadzone=p["deadzone"], linear_speed=p["linear_speed"],
            angular_speed=p["angular_speed"], gripper_open_button=p["gripper_open_button"],
            gripper_close_button=p["gripper_close_button"], gripper_speed=p["gripper_speed"])
        lower, upper = RobotModel(load_scene_model(self.config.robot), self.config).position_limits()
        names = list(self.config.joint_names)
        self.arm_joints = [j for j in self.arm.joint_names if j not in self.arm.gripper_joints]
        gripper = self.arm.gripper_joints[0] if self.arm.gripper_joints else None
        grange = (lower[names.index(gripper)], upper[names.index(gripper)]) if gripper else (0.0, 0.0)
        self.jog = CartesianJog(scene_path(self.config.robot), self.arm_joints, self.arm.end_effector,
                                gripper_joint=gripper, gripper_range=grange, mapping=mapping)
        self.stale_after = p["stale_after_s"]
        self.joy: Joy | None = None
        self.joy_time = -1e9
        self.current: dict[str, list[float]] = {}
        self.hold: dict[str, list[float]] = {}
        self.create_subscription(Joy, p["joy_topic"], self._on_joy, 10)
        for arm in self.config.arms:
            self.create_subscription(JointState, arm.joint_states_topic,
                                     lambda m, a=arm: self._on_joints(a, m), 10)
        self.output = TeleopOutput(self, self.config)
        self.create_timer(self.output.period, self._tick)
        self.get_logger().info(f"jogging arm {self.arm.name!r} (site {self.arm.end_effector}) from Joy")

    def _on_joy(self, msg):
        self.joy, self.joy_time = msg, now_seconds(self)

    def _on_joints(self, arm, msg):
        by_name = dict(zip(msg.name, msg.position))
        if all(j in by_name for j in arm.joint_names):
            self.current[arm.name] = [by_name[j] for j in arm.joint_names]

    def _tick(self):
        if any(a.name not in self.current for a in self.config.arms):
            return
        if not self.hold:   # first tick: start from where the robot is
            self.hold = {k: list(v) for k, v in self.current.items()}
            q = dict(zip(self.arm.joint_names, self.current[self.arm.name]))
            g = q[self.arm.gripper_joints[0]] if self.arm.gripper_joints else 0.0
            self.jog.reset([q[j] for j in self.arm_joints], g)
        fresh = self.joy is not None and now_seconds(self) - self.joy_time <= self.stale_after
        axes = list(self.joy.axes) if fresh else []
        buttons = list(self.joy.buttons) if fresh else []
        arm_q, gripper = self.jog.step(axes, buttons, self.output.period)
        by_name = dict(zip(self.arm_joints, arm_q))
        if self.arm.gripper_joints:
            by_name[self.arm.gripper_joints[0]] = gripper
        self.hold[self.arm.name] = [by_name[j] for j in self.arm.joint_names]
        for arm in self.config.arms:
            self.output.publish(arm.name, self.hold[arm.name])


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
