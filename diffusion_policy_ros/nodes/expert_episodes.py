"""Records scripted-expert demonstrations unattended: for each seed, reset the sim, start an
episode on the recorder, let the expert work, save on success (discard on time-out).

The operator's role in `dpros up record --teleop expert --episodes N`; a human does the same with
the keyboard node.
"""
from __future__ import annotations

import dataclasses
import json
import threading
import time

from rclpy.node import Node
from std_msgs.msg import String

from diffusion_policy_ros.msg import TaskStatus
from diffusion_policy_ros.sim.tasks import TASK_INSTRUCTIONS
from diffusion_policy_ros.srv import EpisodeControl, ResetEpisode



@dataclasses.dataclass
class EpisodeOutcome:
    seed: int
    saved: bool
    frames: int
    message: str
    episode_index: int = -1


class ExpertEpisodeDriver:
    """Drives the sim's reset service and the recorder's episode service from one rclpy node."""

    def __init__(self, node: Node, recorder: str = "demo_recorder_node", *,
                 settle_after_success_s: float = 0.8, max_episode_s: float = 12.0):
        self._node = node
        self._reset = node.create_client(ResetEpisode, "/sim/reset")
        self._episode = node.create_client(EpisodeControl, f"/{recorder}/episode")
        self._status: TaskStatus | None = None
        self._status_lock = threading.Lock()
        node.create_subscription(TaskStatus, "/sim/task_status", self._on_status, 10)
        self._recorder_status: dict | None = None
        node.create_subscription(String, f"/{recorder}/status", self._on_recorder_status, 10)
        self.settle_after_success_s = settle_after_success_s
        self.max_episode_s = max_episode_s

    def _on_status(self, msg: TaskStatus) -> None:
        with self._status_lock:
            self._status = msg

    def _on_recorder_status(self, msg: String) -> None:
        self._recorder_status = json.loads(msg.data)

    def wait_for_conversions(self, timeout_s: float) -> dict:
        """Until the recorder has converted every saved episode into the dataset; its status."""
        deadline = time.monotonic() + timeout_s
        while True:
            status = self._recorder_status
            if status is not None and status["state"] in ("idle", "error") and not status["pending_conversions"]:
                return status
            if time.monotonic() > deadline:
                raise TimeoutError(f"episodes still converting after {timeout_s:.0f} s: {status}")
            time.sleep(0.1)

    def _latest_status(self) -> TaskStatus | None:
        with self._status_lock:
            return self._status

    def wait_until_ready(self, timeout_s: float) -> None:
        for client, what in ((self._reset, "sim /sim/reset"), (self._episode, "recorder episode service")):
            if not client.wait_for_service(timeout_sec=timeout_s):
                raise TimeoutError(f"{what} did not come up within {timeout_s:.0f} s")
        deadline = time.monotonic() + timeout_s
        while self._latest_status() is None:  # the episode counter is read before each reset
            if time.monotonic() > deadline:
                raise TimeoutError("the sim publishes no /sim/task_status")
            time.sleep(0.05)

    def _call(self, client, request, timeout_s: float = 60.0):
        future = client.call_async(request)
        deadline = time.monotonic() + timeout_s
        while not future.done():
            if time.monotonic() > deadline:
                raise TimeoutError(f"no answer from {client.srv_name} within {timeout_s:.0f} s")
            time.sleep(0.005)
        return future.result()

    def _episode_call(self, command: int, task: str = "") -> EpisodeControl.Response:
        return self._call(self._episode, EpisodeControl.Request(command=command, task=task))

    def record(self, seed: int, task: str) -> EpisodeOutcome:
        previous = self._latest_status()
        reset = self._call(self._reset, ResetEpisode.Request(seed=seed))
        if not reset.success:
            return EpisodeOutcome(seed, False, 0, f"sim reset failed: {reset.message}")
        episode_index = self._wait_for_episode_after(previous.episode if previous else -1)
        started = self._episode_call(EpisodeControl.Request.START, TASK_INSTRUCTIONS.get(task, task))
        if not started.success:
            raise RuntimeError(f"recorder refused to start an episode: {started.message}")
        success_since = None
        while True:
            time.sleep(0.02)
            status = self._latest_status()
            if status is None or status.episode != episode_index:
                continue
            if status.success:
                success_since = status.episode_time if success_since is None else success_since
                if status.episode_time - success_since >= self.settle_after_success_s:
                    saved = self._episode_call(EpisodeControl.Request.SAVE)
                    if not saved.success:
                        raise RuntimeError(f"recorder could not save the episode: {saved.message}")
                    return EpisodeOutcome(seed, True, saved.num_frames, saved.message, saved.episode_index)
            else:
                success_since = None
            if status.episode_time >= self.max_episode_s:
                self._episode_call(EpisodeControl.Request.DISCARD)
                return EpisodeOutcome(seed, False, 0, "expert did not succeed in time: discarded")

    def _wait_for_episode_after(self, previous: int, timeout_s: float = 30.0) -> int:
        """The sim numbers its episodes; wait for the first status of the one just reset (its seed
        alone is no proof: the sim may have started with the same seed)."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            status = self._latest_status()
            if status is not None and status.episode > previous:
                return status.episode
            time.sleep(0.01)
        raise TimeoutError("the sim published no status for the episode just reset")
