"""expert_teleop_node: the sim's scripted expert as a teleoperation device.

    python -m diffusion_policy_ros.nodes.expert_teleop_node --ros-args --params-file config/single_arm.yaml

Like a human's teleop device it streams joint targets, one JointTrajectory per arm per control
tick (one point, `time_from_start` = one control period, stamp 0 = "start now"), on each arm's
`teleop_topic` (or, with `output: controller`, straight to the arm's controllers, skipping the
safety filter). The expert needs the sim's ground truth, which sim_node publishes:
`/sim/task_status` (episode number and episode time; each message is one control tick),
`/sim/object_pose` and `/sim/target_pose` (PoseStamped, world frame), and the arms' joint states.
On every new episode it plans from the first poses and joint states it sees, then follows the
plan on the sim's episode clock, so it keeps step with any real-time factor.
"""
from __future__ import annotations

import numpy as np
import rclpy
from builtin_interfaces.msg import Duration
from geometry_msgs.msg import PoseStamped
from rclpy.executors import ExternalShutdownException
from rclpy.node import Node
from sensor_msgs.msg import JointState
from trajectory_msgs.msg import JointTrajectory, JointTrajectoryPoint

from diffusion_policy_ros.msg import TaskStatus
from diffusion_policy_ros.node_parameters import EXPERT_TELEOP_NODE
from diffusion_policy_ros.nodes._controller_output import ControllerOutput
from diffusion_policy_ros.nodes._parameters import PARAMETER_OPTIONS, declare_node_parameters
from diffusion_policy_ros.nodes._ros_convert import seconds
from diffusion_policy_ros.sim.expert import make_expert
from diffusion_policy_ros.sim.robot_model import RobotModel, load_scene_model


class ExpertTeleopNode(Node):
    def __init__(self, **kwargs):
        super().__init__("expert_teleop_node", **PARAMETER_OPTIONS, **kwargs)
        declared = declare_node_parameters(self, EXPERT_TELEOP_NODE)
        self.config = declared.robot
        output = declared["output"]
        self.model = load_scene_model(self.config.robot)
        self.robot = RobotModel(self.model, self.config)
        self.expert = make_expert(self.config.task, self.robot)
        self.period = 1.0 / self.config.control_rate_hz
        self.joints: dict[str, JointState] = {}
        self.object_pose: PoseStamped | None = None
        self.target_pose: PoseStamped | None = None
        self.planned_episode = None
        self.controllers = ControllerOutput(self, self.config, "joint_trajectory") if output == "controller" else None
        self.pubs = {a.name: self.create_publisher(JointTrajectory, a.teleop_topic, 10) for a in self.config.arms}
        for arm in self.config.arms:
            self.create_subscription(JointState, arm.joint_states_topic,
                                     lambda m, a=arm.name: self.joints.__setitem__(a, m), 10)
        self.create_subscription(PoseStamped, "/sim/object_pose", self._on_object, 10)
        self.create_subscription(PoseStamped, "/sim/target_pose", self._on_target, 10)
        self.create_subscription(TaskStatus, "/sim/task_status", self._on_status, 10)
        self.get_logger().info(f"scripted {self.config.task} expert publishing to " + (
            self.controllers.describe() if self.controllers else str([p.topic_name for p in self.pubs.values()])))

    def _on_object(self, msg):
        self.object_pose = msg

    def _on_target(self, msg):
        self.target_pose = msg

    def _joint_vector(self):
        q = []
        for arm in self.config.arms:
            msg = self.joints.get(arm.name)
            if msg is None:
                return None
            by_name = dict(zip(msg.name, msg.position))
            q.extend(by_name[j] for j in arm.joint_names)
        return np.array(q)

    def _current(self, msg, status: TaskStatus) -> bool:
        """Whether a pose or joint state is from this status's tick or later: the messages of one
        tick can be handled in any order, and a plan from the previous episode's poses fails."""
        return msg is not None and seconds(msg.header.stamp) >= seconds(status.header.stamp)

    def _on_status(self, status: TaskStatus):
        if status.episode != self.planned_episode:
            latest = [self.object_pose, self.target_pose] + [self.joints.get(a.name) for a in self.config.arms]
            if not all(self._current(msg, status) for msg in latest):
                return  # plan on a later tick, once every input is from the new episode
            q = self._joint_vector()
            p, o = self.object_pose.pose.position, self.object_pose.pose.orientation
            t = self.target_pose.pose.position
            qpos = self.model.qpos0.copy()
            self.expert.reset(q, qpos, [p.x, p.y, p.z], [o.w, o.x, o.y, o.z], [t.x, t.y, t.z])
            self.planned_episode = status.episode
            # The plan starts at the episode time it was made.
            self.plan_start = status.episode_time
            self.get_logger().info(f"episode {status.episode} (seed {status.seed}): planned")
        action = self.expert.action(status.episode_time - self.plan_start + self.period)
        for arm, cols in self.config.arm_slices():
            if self.controllers is not None:
                self.controllers.send(arm.name, 0.0, [self.period], [action[cols]], start_on_receipt=True)
                if self.controllers.streams_positions:
                    self.controllers.send_positions(arm.name, action[cols])
                continue
            point = JointTrajectoryPoint(positions=action[cols].tolist(),
                                         time_from_start=Duration(sec=0, nanosec=int(self.period * 1e9)))
            self.pubs[arm.name].publish(JointTrajectory(joint_names=list(arm.joint_names), points=[point]))


def main(args=None):
    rclpy.init(args=args)
    node = None
    try:
        node = ExpertTeleopNode()
        rclpy.spin(node)
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    finally:
        if node is not None:
            node.destroy_node()
        rclpy.try_shutdown()


if __name__ == "__main__":
    main()
