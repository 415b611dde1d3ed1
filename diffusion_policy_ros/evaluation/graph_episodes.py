"""Episodes of a running sim graph, driven and watched from one rclpy node.

For each seed: stop the policy, reset the sim, wait for the sim's episode counter to move past the
reset, reset and start the policy, and watch `/sim/task_status` until success or the time-out (sim
seconds). Meanwhile it measures inference latency (from ActionChunk), end-to-end latency (the
observation stamp of a policy command -> the safety filter publishing it) and the command rate,
and counts the safety filter's interventions (`safety/events`) per episode, by action and reason:
an arm-clearance clamp shortened a command to keep the arms apart; a reject dropped a command and
the arm held.
"""
from __future__ import annotations

import threading
import time

import numpy as np

from diffusion_policy_ros.evaluation import metrics
from diffusion_policy_ros.runtime.supervisor import call_service

SAFETY_ACTIONS = {1: "clamp", 2: "reject", 3: "hold"}   # SafetyEvent.ACTION_*
CLEARANCE = "arm_clearance"


class GraphEpisodeClient:
    """Resets, starts and watches episodes of the graph `node` (spinning elsewhere) belongs to."""

    def __init__(self, node, robot, record_frames: bool, ready_timeout_s: float = 120.0):
        from sensor_msgs.msg import Image
        from trajectory_msgs.msg import JointTrajectory

        from diffusion_policy_ros.msg import ActionChunk, PolicyStatus, SafetyEvent, TaskStatus
        from diffusion_policy_ros.nodes._ros_convert import seconds
        from diffusion_policy_ros.srv import PolicyCommand, ResetEpisode

        self._seconds = seconds
        self._lock = threading.Lock()
        self.node = node
        self.reset_client = node.create_client(ResetEpisode, "/sim/reset")
        self.command_client = node.create_client(PolicyCommand, "policy/command")
        self.PolicyCommand, self.ResetEpisode = PolicyCommand, ResetEpisode
        self.status: TaskStatus | None = None
        self.policy_status: PolicyStatus | None = None
        self.outcomes: list[dict] = []
        self.inference_latency: list[float] = []
        self.end_to_end: list[float] = []
        self.command_times: list[float] = []
        self._pending_obs: list[float] = []
        self._commanding = False
        self._safety_events: dict[str, int] = {}   # "<action> <reason>" -> count, this episode
        self.frames: list[tuple[float, np.ndarray]] = []   # (sim seconds into the episode, RGB)
        node.create_subscription(TaskStatus, "/sim/task_status", self._on_status, 10)
        node.create_subscription(PolicyStatus, "policy/status", self._on_policy_status, 10)
        node.create_subscription(ActionChunk, "policy/action_chunk", self._on_chunk, 10)
        node.create_subscription(SafetyEvent, "safety/events", self._on_safety_event, 100)
        arm = robot.arms[0]
        node.create_subscription(JointTrajectory, arm.policy_topic, self._on_policy_command, 10)
        node.create_subscription(JointTrajectory, arm.controller_topic, self._on_controller_command, 10)
        if record_frames and robot.cameras:
            node.create_subscription(Image, robot.cameras[0].rgb_topic, self._on_image, 2)
        self._last_frame_time = -1.0
        self._episode_started: float | None = None   # stamp of the first frame of the episode
        for client in (self.reset_client, self.command_client):
            if not client.wait_for_service(timeout_sec=ready_timeout_s):
                raise TimeoutError(f"{client.srv_name} is not available")
        deadline = time.monotonic() + ready_timeout_s
        while self._latest() is None:  # the episode counter is read before each reset
            if time.monotonic() > deadline:
                raise TimeoutError("the sim publishes no /sim/task_status")
            time.sleep(0.05)

    # --- subscriptions (executor thread)
    def _on_status(self, msg):
        with self._lock:
            self.status = msg

    def _on_policy_status(self, msg):
        with self._lock:
            self.policy_status = msg

    def _on_chunk(self, msg):
        with self._lock:
            if self._commanding:
                self.inference_latency.append(msg.inference_latency)

    def _on_safety_event(self, msg):
        key = f"{SAFETY_ACTIONS.get(msg.action, msg.action)} {msg.reason}"
        with self._lock:
            if self._commanding:
                self._safety_events[key] = self._safety_events.get(key, 0) + 1

    def _on_policy_command(self, msg):
        with self._lock:
            if self._commanding:
                self._pending_obs.append(self._seconds(msg.header.stamp))

    def _on_controller_command(self, msg):
        published = self._seconds(msg.header.stamp)
        with self._lock:
            if self._commanding and self._pending_obs:
                self.end_to_end.append(published - self._pending_obs[-1])
                self.command_times.append(published)
                self._pending_obs.clear()  # holds and repeats are not new policy commands

    def _on_image(self, msg):
        stamp = self._seconds(msg.header.stamp)
        with self._lock:
            if not self._commanding or len(self.outcomes) > 0 or stamp - self._last_frame_time < 1.0:
                return
            self._last_frame_time = stamp
            if self._episode_started is None:
                self._episode_started = stamp
            started = self._episode_started
        frame = np.frombuffer(bytes(msg.data), np.uint8).reshape(msg.height, msg.width, 3)
        self.frames.append((stamp - started, frame.copy()))

    # --- episode control (caller's thread)
    def _command(self, command):
        result = call_service(self.command_client, self.PolicyCommand.Request(command=command))
        if not result.success:
            raise RuntimeError(f"policy command {command} failed: {result.message}")

    def _latest(self):
        with self._lock:
            return self.status

    def episode(self, seed: int, timeout_s: float) -> None:
        self._command(self.PolicyCommand.Request.STOP)
        previous = self._latest()
        reset = call_service(self.reset_client, self.ResetEpisode.Request(seed=seed))
        if not reset.success:
            raise RuntimeError(f"sim reset failed: {reset.message}")
        episode = self._wait_for_episode_after(previous.episode if previous else -1)
        self._command(self.PolicyCommand.Request.RESET)
        with self._lock:
            self._commanding = True
            self._pending_obs.clear()
            self._safety_events = {}
        self._command(self.PolicyCommand.Request.START)
        success, elapsed = False, 0.0
        while True:
            time.sleep(0.02)
            status = self._latest()
            if status is None or status.episode != episode:
                continue
            elapsed = status.episode_time
            if status.success or elapsed >= timeout_s:
                success = bool(status.success)
                break
        with self._lock:
            self._commanding = False
            events = dict(sorted(self._safety_events.items()))
        self._command(self.PolicyCommand.Request.STOP)
        self.outcomes.append({"seed": seed, "success": success, "sim_seconds": round(elapsed, 2),
                              "safety_events": events})

    def _wait_for_episode_after(self, previous: int, timeout_s: float = 30.0) -> int:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            status = self._latest()
            if status is not None and status.episode > previous:
                return status.episode
            time.sleep(0.01)
        raise TimeoutError("the sim published no status for the episode just reset")

    def success_rate(self) -> float:
        return metrics.rate(self.outcomes)

    def summary(self) -> dict:
        with self._lock:
            inference = np.array(self.inference_latency or [np.nan]) * 1000.0
            e2e = np.array(self.end_to_end or [np.nan]) * 1000.0
            status = self.policy_status
            command_times = list(self.command_times)
        return {"success_rate": self.success_rate(), "episodes": len(self.outcomes),
                "successes": metrics.count(self.outcomes),
                "nfe_per_action": float(status.nfe_per_action) if status else None,
                "inference_latency_ms": metrics.percentiles(inference),
                "end_to_end_latency_ms": metrics.percentiles(e2e),
                # commands reaching the controller; a sampler that replans every n_action_steps
                # sends one trajectory per n_action_steps control steps
                "command_rate_hz": metrics.rate_hz(command_times),
                "control_rate_hz": float(status.control_rate) if status else None,
                "latency_samples_ms": [round(float(x), 2) for x in inference if np.isfinite(x)],
                "safety": safety_summary(self.outcomes),
                "outcomes": self.outcomes}


def safety_summary(outcomes: list[dict]) -> dict:
    """The safety filter's interventions over the episodes: counts by action and reason, the
    arm-clearance clamps and rejects, and the failed episodes in which a clearance reject came
    (a reject holds the arm: the one kind of clearance event that can stop an episode)."""
    totals: dict[str, int] = {}
    for outcome in outcomes:
        for key, n in outcome.get("safety_events", {}).items():
            totals[key] = totals.get(key, 0) + n
    rejected = [o for o in outcomes if o.get("safety_events", {}).get(f"reject {CLEARANCE}")]
    return {"events": dict(sorted(totals.items())),
            "clearance_clamps": totals.get(f"clamp {CLEARANCE}", 0),
            "clearance_rejects": totals.get(f"reject {CLEARANCE}", 0),
            "episodes_with_clearance_reject": [o["seed"] for o in rejected],
            "failed_episodes_with_clearance_reject": [o["seed"] for o in rejected if not o["success"]]}
