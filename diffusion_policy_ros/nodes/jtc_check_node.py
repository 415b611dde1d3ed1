"""jtc_check_node: would the robot's joint_trajectory_controllers accept every command sent to them?

    python -m diffusion_policy_ros.nodes.jtc_check_node --ros-args --params-file config/single_arm.yaml \\
        -p report:=build/jtc_check.json -p use_sim_time:=true

Subscribes to every JointTrajectory controller topic of the config (each arm's `controller_topic`
over `controller_joint_names`, and `gripper_topic` for gripper_controller joint_trajectory) and
checks each message with the JTC's own acceptance rules (controllers/jtc_rules.py) at its arrival
and as if it had arrived `delays_s` later. Logs a summary every `summary_period_s`; on Ctrl-C it
writes the JSON `report` and exits 1 if anything would have been rejected. Run it beside
`dpros eval sim` / `dpros up` (same ROS_DOMAIN_ID) to audit a whole run.
"""
from __future__ import annotations

import json
import os
import sys

import rclpy
from rclpy.executors import ExternalShutdownException
from rclpy.node import Node
from rclpy.qos import QoSProfile
from trajectory_msgs.msg import JointTrajectory

from diffusion_policy_ros.controllers.jtc_audit import JtcAudit
from diffusion_policy_ros.controllers.jtc_rules import JtcSettings
from diffusion_policy_ros.node_parameters import JTC_CHECK_NODE
from diffusion_policy_ros.nodes._parameters import PARAMETER_OPTIONS, declare_node_parameters
from diffusion_policy_ros.nodes._ros_convert import jtc_message


def jtc_topics(robot_config) -> dict[str, JtcSettings]:
    """Topic -> the JTC behind it, for every JointTrajectory controller the config commands."""
    topics = {}
    for arm in robot_config.arms:
        topics[arm.controller_topic] = JtcSettings(arm.controller_joint_names)
        if arm.gripper_controller == "joint_trajectory":
            topics[arm.gripper_topic] = JtcSettings(arm.gripper_joints)
    return topics


class JtcCheckNode(Node):
    def __init__(self, **kwargs):
        super().__init__("jtc_check_node", **PARAMETER_OPTIONS, **kwargs)
        p = declare_node_parameters(self, JTC_CHECK_NODE)
        self.report_path = p["report"]
        self.audit = JtcAudit(jtc_topics(p.robot), p["delays_s"])
        for topic in self.audit.controllers:
            self.create_subscription(JointTrajectory, topic, lambda m, t=topic: self._on_message(t, m),
                                     QoSProfile(depth=50))
        self.create_timer(p["summary_period_s"], lambda: self.get_logger().info(self.audit.summary()))
        self.get_logger().info(f"checking {', '.join(self.audit.controllers)} with the JTC's rules, delays "
                               f"{list(self.audit.delays_s)} s")

    def _on_message(self, topic: str, msg: JointTrajectory) -> None:
        for delay, reason in self.audit.check(topic, jtc_message(msg), self.get_clock().now().nanoseconds):
            self.get_logger().error(f"{topic} would reject this message if it arrived {delay:g} s later: {reason}")

    def write_report(self) -> None:
        if self.report_path:
            os.makedirs(os.path.dirname(os.path.abspath(self.report_path)), exist_ok=True)
            with open(self.report_path, "w", encoding="utf-8") as f:
                json.dump(self.audit.report(), f, indent=1)
        print(f"jtc_check_node: {self.audit.total_messages} messages, {self.audit.total_rejected} would be "
              f"rejected; {self.audit.summary()}", flush=True)


def main(args=None):
    rclpy.init(args=args)
    node = None
    try:
        node = JtcCheckNode()
        rclpy.spin(node)
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    finally:
        if node is not None:
            node.write_report()
            node.destroy_node()
        rclpy.try_shutdown()
    sys.exit(1 if node is not None and node.audit.total_rejected else 0)


if __name__ == "__main__":
    main()
