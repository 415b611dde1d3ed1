"""Publishing joint targets on the arms' teleop topics, the same way for every teleop source."""
from __future__ import annotations

from builtin_interfaces.msg import Duration
from trajectory_msgs.msg import JointTrajectory, JointTrajectoryPoint


class TeleopOutput:
    def __init__(self, node, robot_config):
        self.node = node
        self.period = 1.0 / robot_config.control_rate_hz
        self.pubs = {a.name: (a, node.create_publisher(JointTrajectory, a.teleop_topic, 10))
                     for a in robot_config.arms}

    def publish(self, arm_name: str, positions) -> None:
        arm, pub = self.pubs[arm_name]
        msg = JointTrajectory(joint_names=list(arm.joint_names), points=[JointTrajectoryPoint(
            positions=[float(v) for v in positions],
            time_from_start=Duration(sec=0, nanosec=int(self.period * 1e9)))])
        # Stamped now: the recorder samples the action by this stamp.
        msg.header.stamp = self.node.get_clock().now().to_msg()
        pub.publish(msg)
