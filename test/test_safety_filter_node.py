"""The safety filter as a real rclpy node on real topics: commands in, filtered trajectories out,
events, NaN reject-and-hold, the stale-command watchdog and the latched e-stop."""
from __future__ import annotations

import math
import threading
import time

import numpy as np
import pytest
import rclpy
from rclpy.executors import MultiThreadedExecutor
from rclpy.node import Node
from rclpy.qos import qos_profile_sensor_data
from sensor_msgs.msg import JointState
from std_msgs.msg import Bool
from trajectory_msgs.msg import JointTrajectory

from diffusion_policy_ros.msg import SafetyEvent
from diffusion_policy_ros.nodes._ros_convert import seconds, trajectory_msg
from diffusion_policy_ros.nodes.safety_filter_node import SafetyFilterNode
from diffusion_policy_ros.srv import EStop

HOME = [0.0, 0.03, 0.81, 0.0, -1.31, 0.0, 0.04]
NAMES = ["joint_1", "joint_2", "joint_3", "joint_4", "joint_5", "joint_6", "gripper"]


class Robot(Node):
    """Stands in for the robot driver and the policy: joint states out, controller commands in."""

    def __init__(self, context):
        super().__init__("fake_robot", context=context)
        self.commands: list[tuple[float, JointTrajectory]] = []
        self.events: list[SafetyEvent] = []
        self.policy = self.create_publisher(JointTrajectory, "/policy/joint_trajectory", 10)
        self.estop_topic = self.create_publisher(Bool, "safety/estop", 10)
        self.estop = self.create_client(EStop, "safety/estop")
        self.joints = self.create_publisher(JointState, "/joint_states", qos_profile_sensor_data)
        self.create_subscription(JointTrajectory, "/arm_controller/joint_trajectory",
                                 lambda m: self.commands.append((time.monotonic(), m)), 10)
        self.create_subscription(SafetyEvent, "safety/events", self.events.append, 10)
        self.create_timer(0.02, self._publish_state)

    def _publish_state(self):
        msg = JointState(name=NAMES, position=HOME)
        msg.header.stamp = self.get_clock().now().to_msg()
        self.joints.publish(msg)

    def now(self):
        return self.get_clock().now().nanoseconds * 1e-9

    def send(self, offsets, names=NAMES, first=0.1, step=0.1):
        now = self.now()
        positions = [np.add(HOME, o) for o in offsets]
        self.policy.publish(trajectory_msg(names, now, now + first + step * np.arange(len(positions)), positions))


def wait_for(predicate, timeout=5.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.005)
    return False


@pytest.fixture(scope="module")
def graph(ros_domain_id):
    context = rclpy.Context()
    rclpy.init(context=context, domain_id=ros_domain_id,
               args=["--ros-args", "--params-file", "config/single_arm.yaml"])
    node = SafetyFilterNode(context=context)
    robot = Robot(context)
    executor = MultiThreadedExecutor(context=context)
    executor.add_node(node)
    executor.add_node(robot)
    thread = threading.Thread(target=executor.spin, daemon=True)
    thread.start()
    assert wait_for(lambda: node.filter.ready("arm") and robot.policy.get_subscription_count() > 0)
    assert wait_for(lambda: robot.estop.service_is_ready())
    yield node, robot
    executor.shutdown()
    node.destroy_node()
    robot.destroy_node()
    context.try_shutdown()
    thread.join(timeout=5)


def test_valid_command_passes_and_stale_holds(graph):
    node, robot = graph
    robot.commands.clear()
    events_before = len(robot.events)
    robot.send([[0.01 * k, 0, 0, 0, 0, 0, 0] for k in range(1, 4)])
    assert wait_for(lambda: len(robot.commands) >= 1)
    sent_at, first = robot.commands[0]
    assert list(first.joint_names) == NAMES
    np.testing.assert_allclose(first.points[0].positions, np.add(HOME, [0.01, 0, 0, 0, 0, 0, 0]), atol=1e-6)
    assert len(robot.events) == events_before  # a valid, gentle command passes untouched
    # no more commands: the last point is 0.3 s after sending; a hold follows within the timeout
    assert wait_for(lambda: any(e.reason == "stale_command" for e in robot.events[events_before:]), 2.0)
    hold_at = robot.commands[-1][0]
    command_end = sent_at + 0.3
    assert hold_at - command_end <= node.params.watchdog_timeout_s + 0.05
    hold = robot.commands[-1][1]
    # the arm stops just past the last point: a jerk-limited stop from 0.1 rad/s carries it on by
    # v * t_stop / 2 = 0.1 * 2 * sqrt(0.1 / max_jerk) / 2 (about 4 mrad at 60 rad/s^3)
    stop = 0.1 * math.sqrt(0.1 / node.params.max_jerk_rad_s3)
    end = np.array(hold.points[-1].positions)
    np.testing.assert_allclose(end[1:], HOME[1:], atol=1e-6)
    assert 0.03 - 1e-6 <= end[0] - HOME[0] <= 0.03 + stop + 1e-3


def test_nan_is_rejected_with_an_event_and_a_hold(graph):
    node, robot = graph
    robot.send([[0.01, 0, 0, 0, 0, 0, 0]] * 2)
    assert wait_for(lambda: len(robot.commands) >= 1)
    n_cmd, n_ev = len(robot.commands), len(robot.events)
    robot.send([[0.02, math.nan, 0, 0, 0, 0, 0]])
    assert wait_for(lambda: len(robot.events) > n_ev and len(robot.commands) > n_cmd)
    event = robot.events[n_ev]
    assert event.action == SafetyEvent.ACTION_REJECT and event.reason == "non_finite"
    hold = robot.commands[-1][1]
    assert all(math.isfinite(x) for p in hold.points for x in p.positions)


def test_wrong_joint_names_and_clamps_produce_events(graph):
    node, robot = graph
    n_ev = len(robot.events)
    robot.send([[0.0] * 7], names=NAMES[:-1] + ["wrist_of_another_robot"])
    assert wait_for(lambda: any(e.reason == "unknown_joint" for e in robot.events[n_ev:]))
    n_ev = len(robot.events)
    robot.send([[0.2, 0, 0, 0, 0, 0, 0.5]])  # a fast step and a gripper past its range
    assert wait_for(lambda: {"gripper_limit"} <= {e.reason for e in robot.events[n_ev:]})
    clamp = [e for e in robot.events[n_ev:] if e.action == SafetyEvent.ACTION_CLAMP]
    assert clamp and all(len(e.joint_names) == len(e.requested) == len(e.applied) for e in clamp)
    out = robot.commands[-1][1]
    assert max(p.positions[6] for p in out.points) <= 0.08 + 1e-9


def test_estop_is_latched_until_released_by_the_service(graph):
    node, robot = graph
    n_ev = len(robot.events)
    robot.estop_topic.publish(Bool(data=True))
    assert wait_for(lambda: any(e.reason == "estop" for e in robot.events[n_ev:]))
    assert node.filter.estop_engaged
    robot.estop_topic.publish(Bool(data=False))  # false on the topic does not release
    n_cmd = len(robot.commands)
    robot.send([[0.01, 0, 0, 0, 0, 0, 0]])
    assert wait_for(lambda: sum(e.reason == "estop" and e.action == SafetyEvent.ACTION_REJECT
                                for e in robot.events[n_ev:]) >= 1)
    assert node.filter.estop_engaged
    assert all(len(m.points) and seconds(m.points[-1].time_from_start) < 1.0 for _, m in robot.commands[n_cmd:])
    future = robot.estop.call_async(EStop.Request(engage=False, reason="test done"))
    assert wait_for(future.done)
    assert future.result().success and not future.result().engaged
    time.sleep(0.3)  # let the hold finish: the next command starts from rest
    n_ev = len(robot.events)
    robot.send([[0.01, 0, 0, 0, 0, 0, 0]])
    assert wait_for(lambda: len(robot.commands) > n_cmd + 1)
    time.sleep(0.05)
    assert not any(e.reason == "estop" for e in robot.events[n_ev:])
