"""A real safety_filter_node and a robot that executes whatever it is sent (shared by the node
and hostile-input tests).

The robot stands in for the driver and a position-controlled joint_trajectory_controller: each
trajectory on the controller topic replaces what it executes from the trajectory's stamp on
(`ExecutedPath`), its joint states come from that path, and every trajectory is checked against
the limits as it arrives (`violations`). The filter node spins on its own executor thread, as it
does under `rclpy.spin` in its own process; the robot on another."""
from __future__ import annotations

import contextlib
import threading
import time

import numpy as np
import rclpy
from rclpy.executors import SingleThreadedExecutor
from rclpy.node import Node
from rclpy.parameter import Parameter
from rclpy.qos import qos_profile_sensor_data
from sensor_msgs.msg import JointState
from std_msgs.msg import Bool, Float64MultiArray
from trajectory_msgs.msg import JointTrajectory

from diffusion_policy_ros.graph import policy_forward_topic
from diffusion_policy_ros.msg import SafetyEvent
from diffusion_policy_ros.nodes._ros_convert import seconds, to_time, trajectory_msg
from diffusion_policy_ros.nodes.safety_filter_node import SafetyFilterNode
from diffusion_policy_ros.srv import EStop
from diffusion_policy_ros.safety.executed_path import ExecutedPath, check_limits
from waiting import wait_for

HOME = [0.0, 0.03, 0.81, 0.0, -1.31, 0.0, 0.04]
# Sent plans are rebuilt from stamps (float seconds since 1970 resolve ~0.2 us): rates get a
# relative slack far below any violation worth the name.
RATE_SLACK = 1e-3
# For tests that need commands forwarded and joint states taken on a machine of any load: the
# time bounds max_processing_s and joint_state_timeout_s have tests of their own.
UNHURRIED = {"max_processing_s": 2.0, "joint_state_timeout_s": 2.0}


class TrackingRobot(Node):
    """One arm that follows the filter's outputs exactly, and a policy that sends it commands."""

    def __init__(self, context, node: SafetyFilterNode, arm: str = "arm", joint_state_rate_hz: float = 100.0,
                 joint_states: bool = True):
        super().__init__(f"tracking_robot_{arm}", context=context)
        cfg = next(a for a in node.config.arms if a.name == arm)
        self.arm = arm
        self.names = list(cfg.joint_names)
        self.limits = node.filter.limits[arm]
        self.max_step_rad = node.params.max_step_rad
        self.period = node.filter.period
        self.lock = threading.Lock()
        self.path = ExecutedPath(self.now(), HOME)
        self.outputs: list[tuple[float, JointTrajectory]] = []  # (arrival in the node clock, message)
        self.forwards: list[Float64MultiArray] = []
        self.events: list[SafetyEvent] = []
        self.violations: list[str] = []
        self.publish_joint_states = joint_states
        self.policy = self.create_publisher(JointTrajectory, cfg.policy_topic, 10)
        self.policy_forward = self.create_publisher(Float64MultiArray, policy_forward_topic(cfg), 10)
        self.joints = self.create_publisher(JointState, cfg.joint_states_topic, qos_profile_sensor_data)
        self.estop_topic = self.create_publisher(Bool, "safety/estop", 10)
        self.estop = self.create_client(EStop, "safety/estop")
        self.create_subscription(JointTrajectory, cfg.controller_topic, self._on_output, 50)
        self.create_subscription(Float64MultiArray, cfg.forward_topic, self._on_forward, 50)
        self.create_subscription(SafetyEvent, "safety/events", self._on_event, 100)
        self.create_timer(1.0 / joint_state_rate_hz, self._publish_joint_state)

    def now(self) -> float:
        return self.get_clock().now().nanoseconds * 1e-9

    def position(self, t: float | None = None) -> np.ndarray:
        with self.lock:
            if self.forwards:  # a forward position controller: at the last value sent
                return np.asarray(self.forwards[-1].data, float)
            return self.path.state(self.now() if t is None else t)[0]

    def push(self, offset) -> np.ndarray:
        """Move the arm from outside (a hand, a collision, a sim reset): where it is jumps, with
        no command behind it. -> the new position."""
        with self.lock:
            now = self.now()
            self.path = ExecutedPath(now, self.path.state(now)[0] + np.asarray(offset, float))
            return self.path.q[0].copy()

    def _publish_joint_state(self) -> None:
        if not self.publish_joint_states:
            return
        now = self.now()
        msg = JointState(name=self.names, position=[float(x) for x in self.position(now)])
        msg.header.stamp = to_time(now)
        self.joints.publish(msg)

    def _on_output(self, msg: JointTrajectory) -> None:
        """Each trajectory replaces the path from the time its plan starts from, its stamp (holds
        and stops too), and the path is checked from the knot before that on (the junction
        included): the robot executes the filter's model of the path, which is what the filter
        answers for."""
        arrived = self.now()
        stamp = seconds(msg.header.stamp)
        with self.lock:
            start = stamp
            if not start:
                self.violations.append(f"output {len(self.outputs) + 1} is stamped 0: every plan must carry its start")
            order = [list(msg.joint_names).index(n) for n in self.names]
            times = [start + seconds(p.time_from_start) for p in msg.points]
            positions = [np.asarray(p.positions)[order] for p in msg.points]
            self.path.replace_points(start, times, positions)
            self.outputs.append((arrived, msg))
            try:
                check_limits(self.path.since(start), self.limits, self.max_step_rad, self.period, rel=RATE_SLACK,
                             from_rest=False)
            except AssertionError as e:
                if not self.violations:
                    self.first_violation = (msg, start, list(self.events[-5:]))
                self.violations.append(f"output {len(self.outputs)} (plan from {start:.3f}, stamp {stamp:.3f}): {e}")

    def _on_forward(self, msg: Float64MultiArray) -> None:
        with self.lock:
            self.forwards.append(msg)

    def _on_event(self, event: SafetyEvent) -> None:
        self.events.append(event)

    # ---- what a policy or an attacker sends -----------------------------------------------------
    def send(self, offsets, first=0.1, step=0.1, names=None, stamp_zero=True):
        """Points `offsets` (rows added to where the arm is) `first`, `first + step`, ... ahead,
        -> (absolute times, or None when stamped 0; positions). Stamped 0 by default: "from when
        it arrives" (the JTC's rule), so that slow delivery on a loaded machine does not turn a
        command into a past one."""
        now = self.now()
        q = self.position(now)
        positions = [q + np.asarray(o, float) for o in offsets]
        times = now + first + step * np.arange(len(positions))
        msg = trajectory_msg(names or self.names, now, times, positions)
        if stamp_zero:
            msg.header.stamp.sec, msg.header.stamp.nanosec = 0, 0
        self.policy.publish(msg)
        return (None if stamp_zero else times), positions

    def reasons(self, since: int = 0) -> list[str]:
        return [e.reason for e in self.events[since:]]

    def call_estop(self, engage: bool, reason: str = "test", timeout: float = 10.0):
        """-> (response, seconds the service took to answer)."""
        started = time.monotonic()
        future = self.estop.call_async(EStop.Request(engage=engage, reason=reason))
        assert wait_for(future.done, timeout), "the e-stop service did not answer"
        return future.result(), time.monotonic() - started


@contextlib.contextmanager
def filter_graph(domain_id: int, config: str = "config/single_arm.yaml", joint_states: bool = True, **overrides):
    """A safety_filter_node (parameters from `config`, then `overrides`) and a TrackingRobot for
    its first arm: yields (node, robot). joint_states=False: the robot publishes none until told."""
    with robots_graph(domain_id, config, joint_states, **overrides) as (node, robots):
        yield node, next(iter(robots.values()))


@contextlib.contextmanager
def robots_graph(domain_id: int, config: str, joint_states: bool = True, **overrides):
    """A safety_filter_node and a TrackingRobot per arm: yields (node, {arm name: robot})."""
    context = rclpy.Context()
    # Each arm's gripper in its arm's JTC (all its joints on controller_topic): the split over a
    # gripper controller is the output side's, tested in test_controller_outputs.py.
    arms = ["arm"] if "single_arm" in config else ["left", "right"]
    split = [a for arm in arms for a in ("-p", f"{arm}.gripper_controller:=none")]
    rclpy.init(context=context, domain_id=domain_id, args=["--ros-args", "--params-file", config, *split])
    node = SafetyFilterNode(context=context,
                            parameter_overrides=[Parameter(k, value=v) for k, v in overrides.items()])
    robots = {arm.name: TrackingRobot(context, node, arm.name, joint_states=joint_states) for arm in node.config.arms}
    executors, threads, stop = [], [], threading.Event()

    def spin(executor):  # until told, then the executor is shut down with no spin left inside it
        while not stop.is_set():
            executor.spin_once(timeout_sec=0.05)

    for n in (node, *robots.values()):
        executor = SingleThreadedExecutor(context=context)
        executor.add_node(n)
        executors.append(executor)
        threads.append(threading.Thread(target=spin, args=(executor,), daemon=True))
        threads[-1].start()
    try:
        for arm in node.config.arms:
            robot = robots[arm.name]
            output = arm.controller_topic if node.params.output == "joint_trajectory" else arm.forward_topic
            assert wait_for(lambda: (node.filter.ready(arm.name) or not joint_states)
                            and robot.policy.get_subscription_count() > 0 and robot.count_publishers(output) > 0
                            and node.count_subscribers("/safety/events") >= len(robots)
                            and robot.estop.service_is_ready())
        yield node, robots
    finally:
        stop.set()
        for thread in threads:
            thread.join(timeout=5)
        for executor in executors:
            executor.shutdown()
        node.destroy_node()
        for robot in robots.values():
            robot.destroy_node()
        context.try_shutdown()


def settled(node, robot, sent: int) -> bool:
    """Every command sent has arrived and been decided, and every decision reached the robot."""
    stats = node.runner.stats
    return stats.received >= sent and stats.settled == stats.received \
        and len(robot.outputs) >= stats.plans and len(robot.events) >= stats.events
