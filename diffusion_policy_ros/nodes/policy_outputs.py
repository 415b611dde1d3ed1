"""The policy node's outputs, one writer per controller type, and the ActionChunk it publishes.

`joint_trajectory` (joint_trajectory_controller): each chunk goes out at once as one JointTrajectory
per arm, stamped with its observation time, point i at (i + 1) control periods after it.
`float64_multi_array` (forward_command_controller): the chunk's action due next, one
Float64MultiArray per arm per control period of the node's clock, from the writer's own thread.
Both publish through lifecycle publishers (silent while the node is inactive) and count what they
send in `CommandRates`.
"""
from __future__ import annotations

import threading

import numpy as np
from rclpy.duration import Duration
from rclpy.qos import QoSProfile
from rclpy.clock import JumpThreshold
from std_msgs.msg import Float64MultiArray
from trajectory_msgs.msg import JointTrajectory

from diffusion_policy_ros.graph import policy_forward_topic
from diffusion_policy_ros.msg import ActionChunk
from diffusion_policy_ros.nodes._ros_convert import to_duration, to_time, trajectory_msg
from diffusion_policy_ros.sync.rates import CommandRates
from diffusion_policy_ros.sync.ticker import Ticker

OUTPUTS = ("joint_trajectory", "float64_multi_array")
SIM_CLOCK_WAIT_S = 0.05   # longest wall-clock wait for a /clock update before looking again


def check_output(kind: str) -> None:
    if kind not in OUTPUTS:
        raise ValueError(f"output must be one of {', '.join(OUTPUTS)}, got {kind!r}")


def make_output(kind: str, node, config, rates: CommandRates):
    check_output(kind)
    return TrajectoryOutput(node, config, rates) if kind == "joint_trajectory" else ForwardOutput(node, config, rates)


class TrajectoryOutput:
    def __init__(self, node, config, rates: CommandRates):
        self._node, self._rates = node, rates
        self._arms = config.arm_slices()
        self._pubs = {arm.name: node.create_lifecycle_publisher(JointTrajectory, arm.policy_topic, QoSProfile(depth=10))
                      for arm, _ in self._arms}

    def write(self, obs_time: float, times: np.ndarray, rows: np.ndarray) -> None:
        """The chunk's actions still to come: absolute `times`, one row of joint targets each."""
        for arm, cols in self._arms:
            self._pubs[arm.name].publish(trajectory_msg(arm.joint_names, obs_time, times, rows[:, cols]))
        self._rates.published(self._node.now(), times)

    def clear(self) -> None:
        """Nothing stands to be re-sent: the safety filter holds when the last chunk runs out."""

    def start(self) -> None:
        pass

    def stop(self) -> None:
        pass

    def destroy(self) -> None:
        for pub in self._pubs.values():
            self._node.destroy_lifecycle_publisher(pub)
        self._pubs = {}


class ForwardOutput:
    def __init__(self, node, config, rates: CommandRates):
        self._node, self._rates = node, rates
        self._arms = config.arm_slices()
        self._period = 1.0 / config.control_rate_hz
        self._pubs = {arm.name: node.create_lifecycle_publisher(Float64MultiArray, policy_forward_topic(arm),
                                                                QoSProfile(depth=10)) for arm, _ in self._arms}
        self._chunk: tuple[np.ndarray, np.ndarray] | None = None
        self._stop = threading.Event()
        self._clock_moved = threading.Condition()
        self._thread: threading.Thread | None = None
        self._jump_handle = None

    def write(self, obs_time: float, times: np.ndarray, rows: np.ndarray) -> None:
        self._chunk = (times, rows)

    def clear(self) -> None:
        self._chunk = None

    def start(self) -> None:
        clock = self._node.get_clock()
        # Simulated time moves with /clock messages: wake on each instead of polling it.
        self._jump_handle = clock.create_jump_callback(
            JumpThreshold(min_forward=Duration(nanoseconds=1), min_backward=Duration(nanoseconds=-1),
                          on_clock_change=True), post_callback=self._on_clock_moved)
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name="policy_forward_output", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        with self._clock_moved:
            self._clock_moved.notify_all()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(timeout=5.0)
        self._thread = None
        if self._jump_handle is not None:
            self._jump_handle.unregister()
            self._jump_handle = None
        self._chunk = None

    def destroy(self) -> None:
        self.stop()
        for pub in self._pubs.values():
            self._node.destroy_lifecycle_publisher(pub)
        self._pubs = {}

    def _on_clock_moved(self, _jump) -> None:
        with self._clock_moved:
            self._clock_moved.notify_all()

    def _run(self) -> None:
        ticker = Ticker(self._node.now, self._period)
        while not self._stop.is_set():
            if ticker.poll():
                self._tick()
                continue
            if self._node.get_clock().ros_time_is_active:
                with self._clock_moved:
                    self._clock_moved.wait(SIM_CLOCK_WAIT_S)
            else:
                self._stop.wait(ticker.remaining())

    def _tick(self) -> None:
        chunk, now = self._chunk, self._node.now()
        if chunk is None:
            return
        times, rows = chunk
        i = int(np.searchsorted(times, now))
        if i >= len(times):
            return
        for arm, cols in self._arms:
            self._pubs[arm.name].publish(Float64MultiArray(data=rows[i, cols].tolist()))
        self._rates.published(now, [now])


def action_chunk_msg(joint_names, period: float, obs_time: float, rows: np.ndarray, report, stages: dict) -> ActionChunk:
    """The computed chunk (all its rows, past ones too) with what the sampler did and the time each
    stage took (`stages`: the ActionChunk timing fields by name)."""
    msg = ActionChunk(joint_names=list(joint_names), positions=rows.ravel().tolist(), num_steps=len(rows),
                      step_period=to_duration(period), sampler=report.sampler,
                      denoising_steps=[int(s) for s in report.denoising_steps], warm_started=bool(report.warm_started),
                      shift_steps=int(report.shift_steps), **stages)
    msg.header.stamp = to_time(obs_time)
    return msg
