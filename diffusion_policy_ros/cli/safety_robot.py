"""The ROS side of `dpros bench safety`: the commanded path of every controller the safety filter
drives, checked against the limits on each output (`OutputChecker`), and for the attack a robot
that executes that path, publishes its joint states and floods the filter (`FollowingRobot`).

Every trajectory the filter sends (holds and stops too) is stamped with its plan's start and
placed there; one stamped 0 (not the filter's) starts from the last joint state at its arrival.
The checks are `safety.executed_path.check_limits`.
"""
from __future__ import annotations

import dataclasses
import re
import threading
import time

import numpy as np
from rclpy.parameter import Parameter
from rclpy.qos import QoSProfile, qos_profile_sensor_data
from sensor_msgs.msg import JointState
from trajectory_msgs.msg import JointTrajectory

from diffusion_policy_ros.msg import SafetyEvent
from diffusion_policy_ros.controllers.jtc_audit import is_hold
from diffusion_policy_ros.nodes._ros_convert import jtc_message, seconds, to_time, trajectory_msg
from diffusion_policy_ros.safety.executed_path import ExecutedPath, check_limits
from diffusion_policy_ros.srv import EStop

RATE_SLACK = 0.05     # stamps resolve ~0.2 us (float seconds since 1970): loosen rates by 5 %
KEEP_HISTORY_S = 2.0  # of each path, enough for any later plan's junction
SKIPPED = "skipped"   # a watchdog trial that found the arm already holding for another reason
STALE_MESSAGE = re.compile(r"no new command ([0-9.]+) s after")  # safety/filter.py's stale_command event


class ControllerPath:
    """What one trajectory controller has been commanded, and the limit checks on it."""

    def __init__(self, topic: str, names, columns, limits, max_step_rad: float, period: float):
        self.topic, self.names, self.columns = topic, list(names), list(columns)
        self.limits = dataclasses.replace(
            limits, names=tuple(self.names), **{f: getattr(limits, f)[self.columns] for f in (
                "lower", "upper", "margin", "max_velocity", "max_acceleration", "is_gripper")})
        self.max_step_rad, self.period = max_step_rad, period
        self.path: ExecutedPath | None = None

    def apply(self, msg: JointTrajectory, arrival: float, measured: np.ndarray) -> str | None:
        """Place the trajectory on the path; -> a description of the limit it breaks, or None.
        One stamped 0 restarts the path from `measured` at its arrival."""
        stamp = seconds(msg.header.stamp)
        start = stamp or arrival
        here = np.asarray(measured, float)[self.columns]
        if self.path is None or not stamp:
            self.path = ExecutedPath(start, here)
        order = [list(msg.joint_names).index(n) for n in self.names]
        times = [start + seconds(p.time_from_start) for p in msg.points]
        self.path.replace_points(start, times, [np.asarray(p.positions)[order] for p in msg.points])
        try:
            check_limits(self.path.since(start), self.limits, self.max_step_rad, self.period, rel=RATE_SLACK,
                         from_rest=False)
            return None
        except AssertionError as e:
            return f"{self.topic} at {start:.3f}: {e}"
        finally:
            self.path.forget_before(arrival - KEEP_HISTORY_S)

    def position(self, t: float) -> np.ndarray | None:
        return None if self.path is None else self.path.state(t)[0]


def controller_paths(arm, limits, params, period: float) -> list[ControllerPath]:
    """The arm's trajectory controllers: controller_topic, and gripper_topic for a gripper JTC."""
    names = list(arm.controller_joint_names)
    out = [ControllerPath(arm.controller_topic, names, [arm.joint_names.index(n) for n in names], limits,
                          params.max_step_rad, period)]
    if arm.gripper_controller == "joint_trajectory":
        out.append(ControllerPath(arm.gripper_topic, arm.gripper_joints,
                                  [arm.joint_names.index(n) for n in arm.gripper_joints], limits,
                                  params.max_step_rad, period))
    return out


class OutputChecker:
    """Subscribes to every trajectory controller topic and the joint states; counts outputs and
    keeps a line per output that breaks a limit. Under the sim graph it runs on sim time."""

    def __init__(self, node, robot_config, safety_filter, params, sim_time: bool = True):
        if sim_time:
            node.set_parameters([Parameter("use_sim_time", value=True)])
        self.node = node
        self.lock = threading.Lock()
        self.outputs = 0
        self.unchecked = 0   # outputs before this checker's first joint state of their arm
        self.violations: list[str] = []
        self.measured: dict[str, np.ndarray] = {}
        for arm in robot_config.arms:
            node.create_subscription(JointState, arm.joint_states_topic,
                                     lambda m, a=arm: self._on_joint_state(a, m), qos_profile_sensor_data)
            for path in controller_paths(arm, safety_filter.limits[arm.name], params, safety_filter.period):
                node.create_subscription(JointTrajectory, path.topic,
                                         lambda m, a=arm.name, p=path: self._on_output(a, p, m), 50)

    def now(self) -> float:
        return self.node.get_clock().now().nanoseconds * 1e-9

    def _on_joint_state(self, arm, msg: JointState) -> None:
        index = {n: i for i, n in enumerate(msg.name)}
        if all(n in index for n in arm.joint_names) and len(msg.position) == len(msg.name):
            self.measured[arm.name] = np.array([msg.position[index[n]] for n in arm.joint_names])

    def _on_output(self, arm: str, path: ControllerPath, msg: JointTrajectory) -> None:
        arrival = self.now()
        with self.lock:
            self.outputs += 1
            if arm not in self.measured:  # joined the graph after it started: nothing to anchor the path to
                self.unchecked += 1
                return
            problem = path.apply(msg, arrival, self.measured[arm])
            if problem:
                self.violations.append(problem)


class Attack:
    """Publishes one prebuilt message at a fixed rate on its own thread, until paused or stopped."""

    def __init__(self, publisher, msg, rate_hz: float):
        self.publisher, self.msg, self.period = publisher, msg, 1.0 / rate_hz
        self.sent, self.active_s, self.last_sent = 0, 0.0, None   # last_sent: time.time() of the last publish
        self.streaming, self.stopped = threading.Event(), threading.Event()
        self.streaming.set()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        next_at, previous = time.perf_counter(), None
        while not self.stopped.is_set():
            if not self.streaming.wait(0.05):
                next_at, previous = time.perf_counter(), None
                continue
            self.publisher.publish(self.msg)
            self.last_sent = time.time()
            self.sent += 1
            sent_at = time.perf_counter()
            if previous is not None:  # time spent streaming, pauses left out
                self.active_s += sent_at - previous
            previous = sent_at
            next_at += self.period
            delay = next_at - time.perf_counter()
            if delay > 0:
                time.sleep(delay)
            else:
                next_at = time.perf_counter()  # behind: do not burst to catch up

    def pause(self) -> None:
        self.streaming.clear()

    def resume(self) -> None:
        self.streaming.set()

    def stop(self) -> tuple[int, float]:
        self.stopped.set()
        self.streaming.set()
        self.thread.join(timeout=5.0)
        return self.sent, self.active_s


class FollowingRobot:
    """Every arm of the config executes the filter's outputs and publishes its joint states; the
    first arm is attacked. Records each output of that arm's controller_topic as (arrival, whether
    it is a hold) and each event, for the e-stop and watchdog trials."""

    def __init__(self, node, robot_config, safety_filter, params, home, joint_state_rate_hz: float):
        self.node, self.params, self.config = node, params, robot_config
        self.lock = threading.Lock()
        self.arms = {}
        self.violations: list[str] = []
        self.records: list[tuple[float, bool]] = []   # (arrival, a hold or stop)
        self.events_full: list[tuple[float, str, int, str]] = []   # (stamp, reason, action, message)
        self.events: list[tuple[float, str, int]] = []   # (stamp, reason, action)
        self.windows: list[tuple[float, float]] = []     # trials: holds inside them are explained
        reliable = QoSProfile(depth=10)
        for arm, columns in robot_config.arm_slices():
            paths = controller_paths(arm, safety_filter.limits[arm.name], params, safety_filter.period)
            state = {"home": np.asarray(home, float)[columns], "paths": paths,
                     "joints": node.create_publisher(JointState, arm.joint_states_topic, qos_profile_sensor_data),
                     "policy": node.create_publisher(JointTrajectory, arm.policy_topic, reliable),
                     "published": np.asarray(home, float)[columns]}
            self.arms[arm.name] = state
            for path in paths:
                path.path = ExecutedPath(self.now(), state["home"][path.columns])
                node.create_subscription(JointTrajectory, path.topic,
                                         lambda m, a=arm, p=path: self._on_output(a, p, m), 50)
        self.attacked = robot_config.arms[0]
        node.create_subscription(SafetyEvent, "/safety/events", self._on_event, 100)
        self.estop = node.create_client(EStop, "/safety/estop")
        node.create_timer(1.0 / joint_state_rate_hz, self._publish_joint_states)

    def now(self) -> float:
        return self.node.get_clock().now().nanoseconds * 1e-9

    def _publish_joint_states(self) -> None:
        now = self.now()
        for arm in self.config.arms:
            state = self.arms[arm.name]
            q = state["home"].copy()
            with self.lock:
                for path in state["paths"]:
                    q[path.columns] = path.position(now)
                state["published"] = q
            msg = JointState(name=list(arm.joint_names), position=[float(x) for x in q])
            msg.header.stamp = to_time(now)
            state["joints"].publish(msg)

    def _on_output(self, arm, path: ControllerPath, msg: JointTrajectory) -> None:
        arrival = self.now()
        with self.lock:
            problem = path.apply(msg, arrival, self.arms[arm.name]["published"])
            if problem:
                self.violations.append(problem)
            if arm.name == self.attacked.name and path.topic == self.attacked.controller_topic:
                self.records.append((arrival, is_hold(jtc_message(msg))))

    def _on_event(self, event: SafetyEvent) -> None:
        with self.lock:
            self.events.append((seconds(event.header.stamp), event.reason, event.action))
            if event.reason == "stale_command":
                self.events_full.append((seconds(event.header.stamp), event.reason, event.action, event.message))

    def wait_ready(self, procs, timeout: float = 60.0) -> bool:
        """The filter's process is up, subscribed and serving its e-stop."""
        topic = self.attacked.controller_topic
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if any(p.poll() is not None for p in procs):
                return False
            if (self.estop.service_is_ready() and self.arms[self.attacked.name]["policy"].get_subscription_count()
                    and self.node.count_publishers(topic)):
                time.sleep(1.0)  # joint states reach it
                return True
            time.sleep(0.05)
        return False

    def attack(self, rate_hz: float) -> Attack:
        """The largest command the filter accepts (max_points points over the horizon, stamped 0:
        from when it arrives), a small wave around home, sent at rate_hz."""
        arm, state = self.attacked, self.arms[self.attacked.name]
        n, horizon = self.params.max_points, self.params.max_horizon_s
        times = np.linspace(0.02, horizon - 0.05, n)
        wave = 0.005 * np.sin(2 * np.pi * np.arange(n) / max(n - 1, 1))
        moving = np.array([j not in arm.gripper_joints for j in arm.joint_names], float)
        positions = state["home"][None, :] + wave[:, None] * moving[None, :]
        return Attack(state["policy"], trajectory_msg(list(arm.joint_names), 0.0, times, positions), rate_hz)

    def _first_hold(self, since: float, reason: str, timeout: float) -> float | None:
        """Arrival of the first hold received at or after `since`, once an event
        `reason` decided at or after `since` confirms it."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self.lock:
                confirmed = any(s >= since and r == reason for s, r, _ in self.events)
                hold = next((a for a, holds in self.records if holds and a >= since), None)
            if confirmed and hold is not None:
                return hold
            time.sleep(0.001)
        return None

    def _call(self, engage: bool) -> float:
        started = time.monotonic()
        future = self.estop.call_async(EStop.Request(engage=engage, reason="dpros bench safety"))
        while not future.done():
            if time.monotonic() - started > 10.0:
                raise TimeoutError("the e-stop service did not answer within 10 s")
            time.sleep(0.0005)
        return time.monotonic() - started

    def estop_trial(self, timeout: float = 5.0) -> tuple[float | None, float]:
        """-> (seconds from the service call to the hold's arrival, seconds the service took)."""
        asked = self.now()
        answered = self._call(True)
        hold = self._first_hold(asked, "estop", timeout)
        self._call(False)
        self.windows.append((asked, self.now()))
        return (None if hold is None else hold - asked), answered

    def watchdog_trial(self, attack: Attack, timeout: float = 5.0) -> float | None:
        """Stop the stream; -> seconds from the end of the last command the filter accepted to
        the watchdog's hold arriving here, minus watchdog_timeout_s. The filter's hold event says
        how long after that end it decided ("no new command X s after the last one ran out"):
        under a flood, the last commands sent may have been refused (late), so the end is the
        filter's to tell."""
        attack.pause()
        paused = self.now()
        hold = self._first_hold(paused, "stale_command", timeout + self.params.max_horizon_s)
        attack.resume()
        self.windows.append((paused, self.now() + 0.05))
        with self.lock:
            decided = next(((stamp, message) for stamp, reason, _, message in self.events_full
                            if reason == "stale_command" and stamp >= paused), None)
        if hold is None or decided is None:
            with self.lock:  # already holding for another reason (a late command): no watchdog to time
                other = any(stamp >= paused - 0.2 and reason != "stale_command" and action != SafetyEvent.ACTION_CLAMP
                            for stamp, reason, action in self.events)
            return SKIPPED if other else None
        # the hold that decision sent (an earlier one, e.g. after a late command, may have come first)
        hold = self._first_hold(decided[0], "stale_command", timeout)
        match = STALE_MESSAGE.search(decided[1])
        if hold is None or match is None:
            return None
        return float(match.group(1)) + (hold - decided[0]) - self.params.watchdog_timeout_s

    def summary(self) -> tuple[int, list[str], dict[str, int]]:
        """-> (outputs received, limit violations, {reason: events} of holds and rejects outside
        any trial)."""
        def in_trial(t):
            return any(a <= t <= b for a, b in self.windows)
        with self.lock:
            outside = {}
            for stamp, reason, action in self.events:
                if action != SafetyEvent.ACTION_CLAMP and not in_trial(stamp):
                    outside[reason] = outside.get(reason, 0) + 1
            return len(self.records), list(self.violations), outside
