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
)
CHUNK_FIELDS = ("inference_latency",) + tuple(k for k, _ in STAGES[:7])


class GraphLatencyProbe:
    def __init__(self, node, arm):
        from rosgraph_msgs.msg import Clock
        from trajectory_msgs.msg import JointTrajectory

        from diffusion_policy_ros.msg import ActionChunk, PolicyStatus
        from diffusion_policy_ros.nodes._ros_convert import seconds

        self._seconds = seconds
        self._lock = threading.Lock()
        self._clock: tuple[float, float] | None = None    # (sim seconds, perf_counter when it came)
        self.recording = False
        self.chunks: dict[float, dict] = {}               # stamp -> ActionChunk timing fields
        self.policy: dict[float, tuple[float, np.ndarray]] = {}   # stamp -> (arrival, point times)
        self.answered: dict[float, float] = {}            # stamp -> arrival of the filter's answer
        self.controller_arrivals: list[float] = []
        self.status = None
        self._waiting: float | None = None                # stamp of the policy command not yet answered
        node.create_subscription(Clock, "/clock", self._on_clock, 10)
        node.create_subscription(ActionChunk, "policy/action_chunk", self._on_chunk, 10)
        node.create_subscription(PolicyStatus, "policy/status", self._on_status, 10)
        node.create_subscription(JointTrajectory, arm.policy_topic, self._on_policy, 10)
        node.create_subscription(JointTrajectory, arm.controller_topic, self._on_controller, 10)

    def sim_now(self) -> float | None:
        clock = self._clock
        return None if clock is None else clock[0] + (time.perf_counter() - clock[1])

    def start(self) -> float | None:
        """Forget everything so far (warm-up) and record from now; returns the sim time."""
        with self._lock:
            self.chunks.clear()
            self.policy.clear()
            self.answered.clear()
            self.controller_arrivals.clear()
            self._waiting = None
            self.recording = True
        return self.sim_now()

    def stop(self) -> float | None:
        with self._lock:
            self.recording = False
        return self.sim_now()

    # --- subscriptions (executor thread)
    def _on_clock(self, msg):
        self._clock = (self._seconds(msg.clock), time.perf_counter())

    def _on_status(self, msg):
        self.status = msg

    def _on_chunk(self, msg):
        with self._lock:
            if self.recording:
                self.chunks[self._seconds(msg.header.stamp)] = {k: getattr(msg, k) for k in CHUNK_FIELDS}

    def _on_policy(self, msg):
        arrival = self.sim_now()
        stamp = self._seconds(msg.header.stamp)
        times = np.array([stamp + self._seconds(p.time_from_start) for p in msg.points])
        with self._lock:
            if self.recording and arrival is not None:
                self.policy[stamp] = (arrival, times)
                self._waiting = stamp

    def _on_controller(self, msg):
        arrival = self.sim_now()
        with self._lock:
            if not self.recording or arrival is None:
                return
            self.controller_arrivals.append(arrival)
            if self._waiting is not None:   # the filter's answer to the newest policy command
                self.answered[self._waiting] = arrival
                self._waiting = None

    # --- results
    def breakdown(self, start: float, end: float) -> dict:
        """Per stage p50/p99/max in ms over the chunks of the window, and the rates (per sim second)."""
        with self._lock:
            chunks, policy, answered = dict(self.chunks), dict(self.policy), dict(self.answered)
            controller = list(self.controller_arrivals)
        samples = {key: [] for key, _ in STAGES}
        samples["inference_latency"] = []
        rates = CommandRates(window_s=end - start)
        for stamp, (arrival, times) in sorted(policy.items()):
            timing = chunks.get(stamp)
            if timing is not None:
                for key in CHUNK_FIELDS:
                    samples[key].append(timing[key])
            if stamp in answered:
                samples["to_controller"].append(answered[stamp] - arrival)
                samples["end_to_end"].append(answered[stamp] - stamp)
                rates.published(answered[stamp], times)
        window = end - start
        return {
            "stages_ms": {key: metrics.percentiles(np.array(values) * 1000.0) for key, values in samples.items()},
            "chunks": len(chunks), "policy_commands": len(policy), "answered_commands": len(answered),
            "setpoints_per_s": rates.setpoint_rate(end),
            "policy_trajectories_per_s": len(answered) / window,
            "controller_messages_per_s": len(controller) / window,
        }
