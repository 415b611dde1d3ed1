"""leader_follower_teleop_node: a leader arm's joint states drive the follower (ALOHA / GELLO).

Subscribes per arm to `leader.<arm>.topic` (default `/leader/joint_states`, `/left/leader/...`
for namespaced arms) and the follower's joint states; publishes speed-limited targets on each
arm's `teleop_topic` at the control rate. Stale leader data (> stale_after_s) stops the commands;
on the first reading the follower walks to the leader's pose at max_velocity.

Parameters: leader.<arm>.topic, leader.<arm>.joint_names (default: the follower's),
leader.<arm>.scale, leader.<arm>.offset (per joint), leader.gripper_range [closed, open],
max_velocity (rad/s), stale_after_s.
"""
from __future__ import annotations

import rclpy
from rclpy.executors import ExternalShutdownException
from rclpy.node import Node
from sensor_msgs.msg import JointState

from diffusion_policy_ros.node_parameters import LEADER_FOLLOWER_TELEOP_NODE
from diffusion_policy_ros.nodes._parameters import PARAMETER_OPTIONS, declare_node_parameters
from diffusion_policy_ros.nodes._robot_params import now_seconds
from diffusion_policy_ros.nodes._ros_convert import seconds
from diffusion_policy_ros.nodes._teleop_output import TeleopOutput
from diffusion_policy_ros.teleop.leader_follower import LeaderFollowerMap, LeaderMappingError


def follower_limits(robot_config):
    from diffusion_policy_ros.sim.robot_model import RobotModel, load_scene_model
    return RobotModel(load_scene_model(robot_config.robot), robot_config).position_limits()


class LeaderFollowerTeleop(Node):
    def __init__(self, **kwargs):
        super().__init__("leader_follower_teleop_node", **PARAMETER_OPTIONS, **kwargs)
        p = declare_node_parameters(self, LEADER_FOLLOWER_TELEOP_NODE)
        self.config = p.robot
        lower, upper = follower_limits(self.config)
        gripper_range = tuple(p["leader.gripper_range"])
        self.maps, self.leader, self.follower = {}, {}, {}
        k = 0
        for arm in self.config.arms:
            n = len(arm.joint_names)
            prefix = f"leader.{arm.name}"
            default_topic = f"/{arm.namespace}/leader/joint_states" if arm.namespace else "/leader/joint_states"
            self.maps[arm.name] = LeaderFollowerMap(
                follower_joints=arm.joint_names,
                leader_joints=p[f"{prefix}.joint_names"] or list(arm.joint_names),
                lower=lower[k:k + n], upper=upper[k:k + n],
                scale=p[f"{prefix}.scale"] or [1.0] * n,
                offset=p[f"{prefix}.offset"] or [0.0] * n,
                gripper_joints=arm.gripper_joints, leader_gripper_range=gripper_range,
                max_velocity=p["max_velocity"], stale_after_s=p["stale_after_s"])
            k += n
            topic = p[f"{prefix}.topic"] or default_topic
            self.create_subscription(JointState, topic, lambda m, a=arm.name: self.leader.__setitem__(a, m), 10)
            self.create_subscription(JointState, arm.joint_states_topic,
                                     lambda m, a=arm: self._on_follower(a, m), 10)
        self.output = TeleopOutput(self, self.config)
        self.create_timer(self.output.period, self._tick)
        self._errors: set[str] = set()

    def _on_follower(self, arm, msg):
        by_name = dict(zip(msg.name, msg.position))
        if all(j in by_name for j in arm.joint_names):
            self.follower[arm.name] = [by_name[j] for j in arm.joint_names]

    def _tick(self):
        now = now_seconds(self)
        for name, mapping in self.maps.items():
            msg = self.leader.get(name)
            if msg is None:
                continue
            stamp = seconds(msg.header.stamp) or now
            try:
                target = mapping.step(msg.name, msg.position, stamp, now, self.follower.get(name))
            except LeaderMappingError as e:
                if str(e) not in self._errors:
                    self._errors.add(str(e))
                    self.get_logger().error(f"{name}: {e}")
                continue
            if target is not None:
                self.output.publish(name, target)


def main(args=None):
    rclpy.init(args=args)
    node = None
    try:
        node = LeaderFollowerTeleop()
        rclpy.spin(node)
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    finally:
        if node is not None:
            node.destroy_node()
        rclpy.try_shutdown()


if __name__ == "__main__":
    main()
