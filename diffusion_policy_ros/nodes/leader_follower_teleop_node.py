"""leader_follower_teleop_node: a leader arm's joint states drive the follower (ALOHA / GELLO).

    python -m diffusion_policy_ros.nodes.leader_follower_teleop_node --ros-args --params-file config/single_arm.yaml

Subscribes per arm to `leader.<arm>.topic` (default `/leader/joint_states`, `/left/leader/...`
for namespaced arms), the follower's joint states, the safety filter's `safety/events` and
`/sim/task_status`; publishes speed-limited targets on each arm's `teleop_topic` at the control
rate. Stale leader data (> stale_after_s) stops the commands; on the first reading the follower
walks to the leader's pose at max_velocity. Targets stay inside what the safety filter accepts
(joint limits minus margin, step, workspace box; its limits are read from the running
`safety_filter_node`), and the walk starts again from the measured joints whenever the filter
rejects or holds, a new episode starts, or the follower is far from the command.

Parameters: leader.<arm>.topic, leader.<arm>.joint_names (default: the follower's),
leader.<arm>.scale, leader.<arm>.offset (per joint), leader.gripper_range [closed, open],
max_velocity (rad/s), stale_after_s, safety_filter_node.
"""
from __future__ import annotations

import numpy as np
import rclpy
from rclpy.executors import ExternalShutdownException
from rclpy.node import Node
from sensor_msgs.msg import JointState

from diffusion_policy_ros.node_parameters import LEADER_FOLLOWER_TELEOP_NODE
from diffusion_policy_ros.nodes._parameters import PARAMETER_OPTIONS, declare_node_parameters
from diffusion_policy_ros.nodes._robot_params import now_seconds
from diffusion_policy_ros.nodes._ros_convert import seconds
from diffusion_policy_ros.nodes._teleop_output import MeasuredJoints, TeleopOutput
from diffusion_policy_ros.nodes._teleop_safety import FilterFeedback, OnceLog
from diffusion_policy_ros.teleop.leader_follower import LeaderFollowerMap, LeaderMappingError


class LeaderFollowerTeleop(Node):
    def __init__(self, **kwargs):
        super().__init__("leader_follower_teleop_node", **PARAMETER_OPTIONS, **kwargs)
        self.parameters = declare_node_parameters(self, LEADER_FOLLOWER_TELEOP_NODE)
        self.config = self.parameters.robot
        self.gripper_range = tuple(self.parameters["leader.gripper_range"])
        self.max_velocity = self.parameters["max_velocity"]
        self.stale_after = self.parameters["stale_after_s"]
        self.maps: dict[str, LeaderFollowerMap] = {}
        self.leader: dict[str, JointState] = {}
        self.topics: dict[str, str] = {}
        self.log = OnceLog(self.get_logger())
        self.measured = MeasuredJoints(self, self.config)
        self.feedback = FilterFeedback(self, self.config, self.log)
        self.kinematics = None
        for arm in self.config.arms:
            default_topic = f"/{arm.namespace}/leader/joint_states" if arm.namespace else "/leader/joint_states"
            self.topics[arm.name] = self.parameters[f"leader.{arm.name}.topic"] or default_topic
            self.create_subscription(JointState, self.topics[arm.name],
                                     lambda m, a=arm.name: self._on_leader(a, m), 10)
        self.output = TeleopOutput(self, self.config)
        self.create_timer(self.output.period, self._tick)
        self._errors: set[str] = set()
        self.get_logger().info(f"following leader arms on {self.topics}")

    def _make_map(self, arm) -> LeaderFollowerMap:
        bounds = self.feedback.bounds[arm.name]
        n = len(arm.joint_names)
        prefix = f"leader.{arm.name}"
        return LeaderFollowerMap(
            follower_joints=arm.joint_names,
            leader_joints=self.parameters[f"{prefix}.joint_names"] or list(arm.joint_names),
            lower=bounds.lower, upper=bounds.upper,
            scale=self.parameters[f"{prefix}.scale"] or [1.0] * n,
            offset=self.parameters[f"{prefix}.offset"] or [0.0] * n,
            gripper_joints=arm.gripper_joints, leader_gripper_range=self.gripper_range,
            max_velocity=min(self.max_velocity, bounds.max_step / self.output.period),
            stale_after_s=self.stale_after)

    def _on_leader(self, arm: str, msg: JointState) -> None:
        if arm not in self.leader:
            self.log.arrived(f"leader/{arm}", f"{arm}: leader joint states arrived on {self.topics[arm]}")
        self.leader[arm] = msg

    def _tool_position(self, arm: str):
        def position(q):
            self.kinematics.update({arm: np.asarray(q, float)})
            return self.kinematics.end_effector(arm)
        return position

    def _tick(self):
        now = now_seconds(self)
        if not self.feedback.ready():
            return
        if not self.maps:
            from diffusion_policy_ros.safety.kinematics import RobotKinematics
            self.maps = {arm.name: self._make_map(arm) for arm in self.config.arms}
            self.kinematics = RobotKinematics(self.config)
        for arm in self.config.arms:
            msg = self.leader.get(arm.name)
            if msg is None:
                self.log.waiting(f"leader/{arm.name}", f"{arm.name}: leader joint states on {self.topics[arm.name]}")
                continue
            if not self.measured.fresh(arm.name, now, self.stale_after):
                self.log.waiting(f"joints/{arm.name}", f"{arm.name}: follower joint states on {arm.joint_states_topic}; "
                                                       "not commanding")
                continue
            self.log.arrived(f"joints/{arm.name}", f"{arm.name}: follower joint states arrived; commanding")
            self._command(arm, msg, now)

    def _command(self, arm, msg: JointState, now: float) -> None:
        mapping = self.maps[arm.name]
        follower = self.measured.positions[arm.name]
        reason = self.feedback.reanchor[arm.name].check(mapping.last_target, follower,
                                                        self.feedback.bounds[arm.name].is_gripper)
        if reason is not None:
            mapping.reanchor()
            self.get_logger().info(f"{arm.name}: re-anchored on the measured joints: {reason}")
        stamp = seconds(msg.header.stamp) or now
        bounds = self.feedback.bounds[arm.name]
        try:
            target = mapping.step(msg.name, msg.position, stamp, now, follower,
                                  limit=lambda start, q: bounds.limit(start, q, self._tool_position(arm.name)))
        except LeaderMappingError as e:
            if str(e) not in self._errors:
                self._errors.add(str(e))
                self.get_logger().error(f"{arm.name}: {e}")
            return
        if target is not None:
            self.output.publish(arm.name, target)


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
