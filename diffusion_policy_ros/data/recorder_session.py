"""The recorder's episode state machine, free of ROS: START -> samples -> SAVE | DISCARD.

The node feeds samples and forwards service calls here; this class decides what is allowed,
assembles the episode and writes it. Saving is all-or-nothing: the episode is built in memory
and handed to the dataset's `add_episode` (durable on return), so a crash while recording loses
only the episode in progress. When writing fails (disk full, permissions) the built episode
stays in memory, the error says why, and SAVE can be retried once the cause is fixed.
"""
from __future__ import annotations

import dataclasses
import threading
from collections.abc import Sequence
from typing import Any

import numpy as np

from diffusion_policy_ros.data.dataset_path import check_free_space, describe_os_error
from diffusion_policy_ros.data.episode_builder import (EpisodeError, EpisodeRecording, StreamSpec,
                                                       episode_meta)

IDLE, RECORDING, SAVE_FAILED = "idle", "recording", "save_failed"


@dataclasses.dataclass
class Outcome:
    success: bool
    message: str
    episode_index: int = -1
    num_frames: int = 0


class RecorderSession:
    def __init__(self, robot_config, specs: Sequence[StreamSpec], *, rate_hz: float,
                 open_dataset, dataset_path: str, max_episode_s: float = 900.0,
                 source: str = "demo_recorder_node"):
        """`open_dataset()` returns the dataset (ReplayBuffer), or raises with a clear message."""
        self.robot_config = robot_config
        self.specs = list(specs)
        self.rate_hz = float(rate_hz)
        self.dataset_path = dataset_path
        self.max_episode_s = max_episode_s
        self.source = source
        self._open_dataset = open_dataset
        self._dataset = None
        self._lock = threading.Lock()
        self.state = IDLE
        self.episode: EpisodeRecording | None = None
        self._pending: tuple[dict, dict] | None = None   # built episode whose write failed
        self._latest: dict[str, tuple[float, Any]] = {}
        self._start_time: float | None = None
        self._clock_ok = False
        self.saved = 0
        self.last_message = ""

    # -- samples -------------------------------------------------------------------------------
    def add(self, stream: str, stamp: float, value: Any) -> None:
        self._latest[stream] = (stamp, value)
        episode = self.episode
        if episode is not None and self.state == RECORDING:
            episode.add(stream, stamp, value)

    def latest_stamp(self, stream: str) -> float | None:
        item = self._latest.get(stream)
        return None if item is None else item[0]

    # -- commands ------------------------------------------------------------------------------
    def start(self, task: str, now: float | None) -> Outcome:
        task = (task or "").strip()
        with self._lock:
            if self.state == RECORDING:
                return self._fail("already recording an episode: SAVE or DISCARD it first")
            if self.state == SAVE_FAILED:
                return self._fail("the last episode could not be written: SAVE again to retry or "
                                  "DISCARD it before starting a new one")
            if not task:
                return self._fail("START needs the task text (what the demonstration shows)")
            try:
                self.dataset()
            except Exception as e:  # noqa: BLE001 - the message goes back to the operator
                return self._fail(f"cannot record: {e}")
            stamps = [stamp for stamp, _ in self._latest.values()]
            # Stamps from another clock (sim time vs. wall time): grid from the stamps alone.
            self._clock_ok = now is not None and bool(stamps) and abs(now - max(stamps)) < 5.0
            now = now if self._clock_ok else None
            episode = EpisodeRecording(self.specs, task)
            # Seed with the newest sample before START so slow streams have a value at tick 0.
            for name, (stamp, value) in list(self._latest.items()):
                if name in episode.specs:
                    episode.add(name, stamp, value)
            self.episode, self._start_time = episode, now
            self.state = RECORDING
            return self._ok(f"recording episode {self.saved} ({task!r}) at {self.rate_hz:g} Hz")

    def save(self, now: float | None) -> Outcome:
        with self._lock:
            if self.state == IDLE:
                return self._fail("not recording: START an episode first")
            if self.state == RECORDING:
                episode = self.episode
                now = now if self._clock_ok else None
                try:
                    data, stats = episode.build(self.rate_hz, start=self._start_time,
                                                stop=self._stop_time(now))
                except EpisodeError as e:
                    return self._fail(f"episode not saved, still recording ({e}); DISCARD to drop it")
                meta = episode_meta(self.robot_config, task=episode.task, rate_hz=self.rate_hz,
                                    stats=stats, source=self.source,
                                    extra={"cameras": sorted({s.name.split('/', 1)[1] for s in self.specs
                                                              if s.name.startswith("rgb/")})})
                self.episode, self.state = None, SAVE_FAILED
                self._pending = (data, meta)
            data, meta = self._pending
            try:
                check_free_space(self.dataset_path, sum(a.nbytes for a in data.values()))
                index = self._write(data, meta)
            except Exception as e:  # noqa: BLE001 - disk full, permissions, zarr errors: report all
                why = describe_os_error(e) if isinstance(e, OSError) else str(e)
                return self._fail(f"episode kept in memory, not written to {self.dataset_path}: {why}")
            self._pending, self.state = None, IDLE
            self.saved += 1
            n = int(data["timestamp"].shape[0])
            return self._ok(f"saved episode {index}: {n} frames, {meta['dropped_frames']} dropped, "
                            f"{meta['duplicated_frames']} duplicated", episode_index=index, num_frames=n)

    def discard(self) -> Outcome:
        with self._lock:
            if self.state == IDLE:
                return self._fail("nothing to discard")
            frames = 0 if self.episode is None else max(self.episode.count(s.name) for s in self.specs)
            self.episode, self._pending, self.state = None, None, IDLE
            return self._ok(f"discarded the episode ({frames} messages)")

    # -- dataset -------------------------------------------------------------------------------
    def dataset(self):
        if self._dataset is None:
            self._dataset = self._open_dataset()
        return self._dataset

    def _write(self, data: dict[str, np.ndarray], meta: dict) -> int:
        dataset = self.dataset()
        result = dataset.add_episode(data, meta)
        return int(result) if isinstance(result, (int, np.integer)) else int(dataset.n_episodes) - 1

    def _stop_time(self, now: float | None) -> float | None:
        """End of the grid: now, but not past the newest data of the streams still publishing
        (messages stamped before `now` may be in flight); a stalled stream does not cut the episode."""
        last = [t for t in (self.episode.last_stamp(s.name) for s in self.specs) if t is not None]
        if not last:
            return now
        newest = max(last)
        alive = [t for t in last if t >= newest - 1.0]
        stop = min(alive)
        if now is not None:
            stop = min(stop, now)
        if self._start_time is not None and now is not None:
            stop = min(stop, self._start_time + self.max_episode_s)
        return stop

    def status(self) -> dict:
        frames = 0
        if self.episode is not None and self.specs:
            frames = self.episode.count(self.specs[0].name)
        return {"state": self.state, "saved_episodes": self.saved, "dataset": self.dataset_path,
                "episode_messages": frames, "rate_hz": self.rate_hz, "message": self.last_message}

    def _ok(self, message: str, **kw) -> Outcome:
        self.last_message = message
        return Outcome(True, message, **kw)

    def _fail(self, message: str) -> Outcome:
        self.last_message = message
        return Outcome(False, message)
