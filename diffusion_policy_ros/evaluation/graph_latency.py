"""Where the time from observation to command goes in a running sim graph, seen from one rclpy node
that stands where the robot's controller would.

The probe records, per policy chunk (keyed by its observation stamp): the stage timings the policy
node puts in its ActionChunk, when the policy's JointTrajectory arrived here, and when the safety
filter's answer to it arrived on the controller topic. Arrival times are on the sim clock: the
newest /clock value plus the wall time since it came (the sim publishes /clock every 10 ms; a
node's own sim clock only moves in those steps). `breakdown()` turns the records into the stages
of docs/latency.md and the rates a controller sees.
"""
from __future__ import annotations

import threading
import time

import numpy as np

from diffusion_policy_ros.evaluation import metrics
from diffusion_policy_ros.sync.rates import CommandRates

# (key, label): ActionChunk timing fields, then what the probe measures itself.
STAGES = (
    ("observation_age", "observation age at inference start (transport in, conversion, wait)"),
    ("conversion_time", "  of which: conversion of the newest sample"),
    ("wait_time", "  of which: observation complete -> inference start"),
    ("sync_time", "sync + history"),
    ("encode_time", "observation encoders"),
    ("denoise_time", "denoiser"),
    ("publish_time", "publish the commands"),
    ("to_controller", "policy -> controller (transport, safety filter, transport)"),
    ("end_to_end", "end to end: observation stamp -> command at the controller"),
    ("at_filter_stamp", "(observation stamp -> the filter's header stamp, as bench graph measured before)"),
)
CHUNK_FIELDS = ("inference_latency",) + tuple(k for k, _ in STAGES[:7])


class LatencyRecords:
    """What the probe saw, on plain data: per observation stamp the policy's stage timings, when its
    command arrived and when the safety filter's answer arrived (sim seconds)."""

    def __init__(self):
        self.chunks: dict[float, dict] = {}               # stamp -> ActionChunk timing fields
        self.policy: dict[float, tuple[float, np.ndarray]] = {}   # stamp -> (arrival, point times)
        self.answered: dict[float, tuple[float, float]] = {}   # stamp -> (arrival, header stamp) of the answer
        self.controller_arrivals: list[float] = []
        self._waiting: float | None = None                # stamp of the policy command not yet answered

    def chunk(self, stamp: float, timing: dict) -> None:
        self.chunks[stamp] = timing

    def policy_command(self, stamp: float, arrival: float, point_times: np.ndarray) -> None:
        self.policy[stamp] = (arrival, point_times)
        self._waiting = stamp

    def controller_command(self, arrival: float, stamp: float) -> None:
        """The filter answers each policy command with one trajectory (stamped with the filter's
        clock when it took the command up); holds come on their own."""
        self.controller_arrivals.append(arrival)
        if self._waiting is not None:
            self.answered[self._waiting] = (arrival, stamp)
            self._waiting = None

    def breakdown(self, start: float, end: float) -> dict:
        """Per stage p50/p99/max in ms over the window's chunks, and the rates (per sim second)."""
        samples = {key: [] for key, _ in STAGES}
        samples["inference_latency"] = []
        window = end - start
        rates = CommandRates(window_s=window)
        for stamp, (arrival, times) in sorted(self.policy.items()):
            timing = self.chunks.get(stamp)
            if timing is not None:
                for key in CHUNK_FIELDS:
                    samples[key].append(timing[key])
            if stamp in self.answered:
                answer, filter_stamp = self.answered[stamp]
                samples["to_controller"].append(answer - arrival)
                samples["end_to_end"].append(answer - stamp)
                samples["at_filter_stamp"].append(filter_stamp - stamp)
                rates.published(answer, times)
        return {
            "stages_ms": {key: metrics.percentiles(np.array(values) * 1000.0) for key, values in samples.items()},
            "chunks": len(self.chunks), "policy_commands": len(self.policy), "answered_commands": len(self.answered),
            "setpoints_per_s": rates.setpoint_rate(end),
            "policy_trajectories_per_s": len(self.answered) / window,
            "controller_messages_per_s": len(self.controller_arrivals) / window,
        }


class GraphLatencyProbe:
    """The rclpy side: subscriptions of `node` (spinning elsewhere) feeding LatencyRecords."""

    def __init__(self, node, arm):
        from rosgraph_msgs.msg import Clock
        from trajectory_msgs.msg import JointTrajectory

        from diffusion_policy_ros.msg import ActionChunk, PolicyStatus
        from diffusion_policy_ros.nodes._ros_convert import seconds

        self._seconds = seconds
        self._lock = threading.Lock()
        self._clock: tuple[float, float] | None = None    # (sim seconds, perf_counter when it came)
        self.records: LatencyRecords | None = None        # while recording
        self.status = None
        node.create_subscription(Clock, "/clock", self._on_clock, 10)
        node.create_subscription(ActionChunk, "policy/action_chunk", self._on_chunk, 10)
        node.create_subscription(PolicyStatus, "policy/status", self._on_status, 10)
        node.create_subscription(JointTrajectory, arm.policy_topic, self._on_policy, 10)
        node.create_subscription(JointTrajectory, arm.controller_topic, self._on_controller, 10)

    def sim_now(self) -> float | None:
        clock = self._clock
        return None if clock is None else clock[0] + (time.perf_counter() - clock[1])

    def start(self) -> float | None:
        """Record from now (what came before, the warm-up, is not kept); returns the sim time."""
        with self._lock:
            self.records = LatencyRecords()
        return self.sim_now()

    def stop(self) -> tuple[LatencyRecords, float | None]:
        with self._lock:
            records, self.records = self.records, None
        return records, self.sim_now()

    # --- subscriptions (executor thread)
    def _on_clock(self, msg):
        self._clock = (self._seconds(msg.clock), time.perf_counter())

    def _on_status(self, msg):
        self.status = msg

    def _on_chunk(self, msg):
        with self._lock:
            if self.records is not None:
                self.records.chunk(self._seconds(msg.header.stamp), {k: getattr(msg, k) for k in CHUNK_FIELDS})

    def _on_policy(self, msg):
        arrival = self.sim_now()
        stamp = self._seconds(msg.header.stamp)
        times = np.array([stamp + self._seconds(p.time_from_start) for p in msg.points])
        with self._lock:
            if self.records is not None and arrival is not None:
                self.records.policy_command(stamp, arrival, times)

    def _on_controller(self, msg):
        arrival = self.sim_now()
        with self._lock:
            if self.records is not None and arrival is not None:
                self.records.controller_command(arrival, self._seconds(msg.header.stamp))
