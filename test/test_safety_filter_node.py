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
from waiting import wait_for

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

    def send(self, offsets, names=NAMES, first=0.3, step=0.05):
        # A 0.3 s lead: in-process delivery on a busy machine has been seen to take over 0.1 s.
        now = self.now()
        positions = [np.add(HOME, o) for o in offsets]
        times = now + first + step * np.arange(len(positions))
        self.policy.publish(trajectory_msg(names, now, times, positions))
        return times, positions



@pytest.fixture(scope="module")
def graph(ros_domain_id):
    context = rclpy.Context()
    # The gripper in the arm's JTC (all seven joints on one topic); the split: test_controller_outputs.py
    rclpy.init(context=context, domain_id=ros_domain_id,
               args=["--ros-args", "--params-file", "config/single_arm.yaml", "-p", "arm.gripper_controller:=none"])
    node = SafetyFilterNode(context=context)
    robot = Robot(context)
    executor = MultiThreadedExecutor(context=context)
    executor.add_node(node)
    executor.add_node(robot)
    thread = threading.Thread(target=executor.spin, daemon=True)
    thread.start()
    assert wait_for(lambda: node.filter.ready("arm") and robot.policy.get_subscription_count() > 0)
    # Both directions discovered before the first test sends: commands and events reach the robot.
    assert wait_for(lambda: node.count_subscribers("/arm_controller/joint_trajectory") > 0
                    and node.count_subscribers("/safety/events") > 0)
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
    times, positions = robot.send([[0.01 * k, 0, 0, 0, 0, 0, 0] for k in range(1, 4)])
    # Ours is the forwarded trajectory that reaches the last sent point (holds may go out too).
    ours = lambda: [m for _, m in robot.commands  # noqa: E731
                    if any(np.allclose(p.positions, positions[-1], atol=1e-6) for p in m.points)]
    assert wait_for(lambda: ours())
    first = ours()[0]
    assert list(first.joint_names) == NAMES
    # The path passes untouched: the forwarded trajectory (the filter resamples it on its own
    # grid, from the first point still ahead when it arrived) goes through every sent point.
    start = seconds(first.header.stamp)
    forwarded_t = np.array([start + seconds(p.time_from_start) for p in first.points])
    forwarded_q = np.array([p.positions for p in first.points])
    covered = [(t, q) for t, q in zip(times, positions) if forwarded_t[0] - 1e-6 <= t <= forwarded_t[-1] + 1e-6]
    assert covered, "no sent point lies on the forwarded trajectory"
    for t, q in covered:
        on_path = [np.interp(t, forwarded_t, forwarded_q[:, j]) for j in range(len(NAMES))]
        np.testing.assert_allclose(on_path, q, atol=1e-6)
    interventions = [e for e in robot.events[events_before:]
                     if e.action in (SafetyEvent.ACTION_CLAMP, SafetyEvent.ACTION_REJECT)]
    assert not interventions, "a valid, gentle command must pass without a clamp or reject"
    # no more commands: the last point is 0.4 s after sending; a hold follows within the timeout
    stale = lambda: [e for e in robot.events[events_before:] if e.reason == "stale_command"]  # noqa: E731
    assert wait_for(lambda: stale(), 10.0)
    # the hold: a stop that starts when the controller receives it (stamp 0)
    assert wait_for(lambda: seconds(robot.commands[-1][1].header.stamp) == 0.0)
    hold = robot.commands[-1][1]
    # In the filter's clock: the hold starts within the timeout after the command's last point.
    last = first.points[-1].time_from_start
    command_end = seconds(first.header.stamp) + last.sec + last.nanosec * 1e-9
    assert seconds(stale()[0].header.stamp) - command_end <= node.params.watchdog_timeout_s + 0.05
    # the arm stops just past the last point: a jerk-limited stop from v = 0.01 rad per 0.05 s
    # carries it on by v * t_stop / 2 = v * sqrt(v / max_jerk) (about 12 mrad at 60 rad/s^3)
    v = 0.01 / 0.05
    stop = v * math.sqrt(v / node.params.max_jerk_rad_s3)
    end = np.array(hold.points[-1].positions)
    np.testing.assert_allclose(end[1:], HOME[1:], atol=1e-6)
    assert 0.03 - 1e-6 <= end[0] - HOME[0] <= 0.03 + stop + 1e-3


def test_nan_is_rejected_with_an_event_and_a_hold(graph):
    node, robot = graph
    n_cmd = len(robot.commands)
    robot.send([[0.01, 0, 0, 0, 0, 0, 0]] * 2)
    assert wait_for(lambda: len(robot.commands) > n_cmd)  # a valid plan to hold from
    n_ev, n_cmd = len(robot.events), len(robot.commands)
    robot.send([[0.02, math.nan, 0, 0, 0, 0, 0]])
    # Events and commands are two topics: an earlier command's clamp event may still arrive after
    # this point, so find the event by its reason and the hold by its stamp (0: start on receipt).
    rejects = lambda: [e for e in robot.events[n_ev:] if e.reason == "non_finite"]  # noqa: E731
    assert wait_for(lambda: rejects())
    event = rejects()[0]
    assert event.action == SafetyEvent.ACTION_REJECT
    holds = lambda: [m for _, m in robot.commands[n_cmd:] if seconds(m.header.stamp) == 0.0]  # noqa: E731
    assert wait_for(lambda: holds()), "no hold went out with the reject"
    hold = holds()[0]
    assert hold.points and all(math.isfinite(x) for p in hold.points for x in p.positions)


def test_wrong_joint_names_and_clamps_produce_events(graph):
    node, robot = graph
    n_ev = len(robot.events)
    robot.send([[0.0] * 7], names=NAMES[:-1] + ["wrist_of_another_robot"])
    assert wait_for(lambda: any(e.reason == "unknown_joint" for e in robot.events[n_ev:]))
    n_ev = len(robot.events)
    robot.send([[0.2, 0, 0, 0, 0, 0, 0.5]])  # a fast step and a gripper past its range
    assert wait_for(lambda: {"gripper_limit"} <= {e.reason for e in robot.events[n_ev:]}), \
        [(e.reason, e.action, e.message) for e in robot.events[n_ev:]]
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
