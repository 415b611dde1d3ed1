"""What every teleop source reads from and writes to the robot, the same way: the arms' measured
joints in, joint targets on the arms' teleop topics out."""
from __future__ import annotations

from builtin_interfaces.msg import Duration
from rclpy.qos import qos_profile_sensor_data
from sensor_msgs.msg import JointState
from trajectory_msgs.msg import JointTrajectory, JointTrajectoryPoint

from diffusion_policy_ros.nodes._robot_params import now_seconds


class MeasuredJoints:
    """The latest joint state of each arm (config joint order) and when it arrived."""

    def __init__(self, node, robot_config):
        self.node = node
        self.positions: dict[str, list[float]] = {}
        self._received: dict[str, float] = {}
        for arm in robot_config.arms:
            node.create_subscription(JointState, arm.joint_states_topic,
                                     lambda m, a=arm: self._on_joints(a, m), qos_profile_sensor_data)

    def _on_joints(self, arm, msg: JointState) -> None:
        by_name = dict(zip(msg.name, msg.position))
        if all(j in by_name for j in arm.joint_names):
            self.positions[arm.name] = [float(by_name[j]) for j in arm.joint_names]
            self._received[arm.name] = now_seconds(self.node)

    def fresh(self, arm: str, now: float, stale_after_s: float) -> bool:
        # A clock that jumped back (sim time restarted) makes the age negative: not fresh either.
        return arm in self._received and 0.0 <= now - self._received[arm] <= stale_after_s


class TeleopOutput:
    def __init__(self, node, robot_config):
        self.node = node
        self.period = 1.0 / robot_config.control_rate_hz
        self.pubs = {a.name: (a, node.create_publisher(JointTrajectory, a.teleop_topic, 10))
                     for a in robot_config.arms}

    def publish(self, arm_name: str, positions) -> None:
        arm, pub = self.pubs[arm_name]
        # Stamp 0 = "start when received" (the joint_trajectory_controller rule): a stamp from this
        # node's clock is already late when the filter reads it on a busy machine, and a point in
        # the past is rejected ("all 1 points are in the past"), so the arm stopped before any
        # input. The recorder stamps such messages with their arrival time.
        msg = JointTrajectory(joint_names=list(arm.joint_names), points=[JointTrajectoryPoint(
            positions=[float(v) for v in positions],
            time_from_start=Duration(sec=0, nanosec=int(self.period * 1e9)))])
        pub.publish(msg)
