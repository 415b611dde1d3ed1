"""The recorder's episode state machine, free of ROS: START -> raw messages -> SAVE | DISCARD.

The node hands every subscribed message here still serialized; while an episode records, each
is appended to the episode's MCAP file (`raw_episode`), costing one write. SAVE works out the
frames from the message stamps alone (counts, drops, safety marks: milliseconds), makes the raw
episode durable and answers; a separate process then converts it into the dataset
(`episode_conversion`). A crash while recording loses only the episode in progress; a saved
episode is converted even if the recorder dies first (on its next start).

Episodes start at START on the recorder's clock, or, where a sim publishes its task status, once
a reset of the sim is observed after the previous episode: no frame of the previous episode
can be recorded into the next.
"""
from __future__ import annotations

import dataclasses
import os
import subprocess
import sys
import threading
from collections.abc import Callable

import numpy as np

from diffusion_policy_ros.data.dataset_path import describe_os_error
from diffusion_policy_ros.data.episode_builder import episode_meta
from diffusion_policy_ros.data.raw_episode import (SPOOL_DIR, RawEpisodeError, RawEpisodeWriter, Topic, episode_folders,
                                                   header_stamp_ns, is_converted, is_saved, new_episode_name,
                                                   remove_unsaved)
from diffusion_policy_ros.data.recorded_frames import (FrameError, describe_flags, safety_flags,
                                                       sensor_frames)

IDLE, RECORDING, SAVING, CONVERTING, ERROR = "idle", "recording", "saving", "converting", "error"
STALLED_AFTER_S = 1.0
CONVERTER_LINGER_S = 10.0     # a stream silent this long no longer holds back the end of the episode


@dataclasses.dataclass
class Outcome:
    success: bool
    message: str
    episode_index: int = -1
    num_frames: int = 0


@dataclasses.dataclass(frozen=True)
class RecordingPlan:
    """What to record. `streams`: sensor streams as dicts (name, key, kind, topic, msgtype,
    dtype, shape, joint_names for joints); `commands`: per arm {arm, joint_names, topics:
    [{topic, msgtype}]}: what the safety filter forwards; `extra`: topics kept in the raw episode
    only (teleop requests, sim status); `safety_topic`, `sim_status_topic`: "" when absent."""
    streams: list[dict]
    commands: list[dict]
    extra: list[Topic]
    safety_topic: str
    sim_status_topic: str

    def topics(self) -> list[Topic]:
        seen: dict[str, Topic] = {}
        for s in self.streams:
            seen.setdefault(s["topic"], Topic(s["topic"], s["msgtype"], True))
        for arm in self.commands:
            for c in arm["topics"]:
                seen.setdefault(c["topic"], Topic(c["topic"], c["msgtype"], "joint_names" not in c))
        if self.safety_topic:
            seen.setdefault(self.safety_topic, Topic(self.safety_topic, "diffusion_policy_ros/msg/SafetyEvent", True))
        if self.sim_status_topic:
            seen.setdefault(self.sim_status_topic, Topic(self.sim_status_topic,
                                                         "diffusion_policy_ros/msg/TaskStatus", True))
        for t in self.extra:
            seen.setdefault(t.name, t)
        return list(seen.values())


class Converter:
    """The conversion process (one at a time per recorder; it converts everything pending)."""

    def __init__(self, spool: str, dataset_path: str, *, keep_raw: bool = False, log_file=None):
        self.spool, self.dataset_path, self.keep_raw = spool, dataset_path, keep_raw
        self._proc: subprocess.Popen | None = None
        self._log_file = log_file

    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def ensure_running(self) -> None:
        if self.running():
            return
        # It stays a while after its last episode: an episode saved just as it would exit (when
        # this process still sees it running) is converted too.
        cmd = [sys.executable, "-m", "diffusion_policy_ros.data.episode_conversion", "--spool", self.spool,
               "--dataset", self.dataset_path, "--linger", str(CONVERTER_LINGER_S),
               *(["--keep-raw"] if self.keep_raw else [])]
        # Its own session: Ctrl-C in the recorder's terminal does not cut a conversion short.
        self._proc = subprocess.Popen(cmd, stdout=self._log_file, stderr=subprocess.STDOUT if self._log_file else None,
                                      start_new_session=True)


class RecorderSession:
    def __init__(self, robot_config, plan: RecordingPlan, *, rate_hz: float, dataset_path: str,
                 open_dataset: Callable, max_episode_s: float = 900.0, source: str = "demo_recorder_node",
                 keep_raw: bool = False, start_converter: bool = True, warn: Callable[[str, str], None] | None = None):
        """`open_dataset()` creates or opens the dataset (ReplayBuffer), raising with a clear message."""
        self.robot_config = robot_config
        self.plan = plan
        self.rate_hz = float(rate_hz)
        self.dataset_path = dataset_path
        self.spool = os.path.join(dataset_path, SPOOL_DIR)
        self.max_episode_s = max_episode_s
        self.source = source
        self._open_dataset = open_dataset
        self._warn = warn or (lambda key, text: None)
        self._lock = threading.Lock()
        self._topics = plan.topics()
        self._stamped = {t.name: t.stamped for t in self._topics}
        self._streams_by_topic: dict[str, list[dict]] = {}
        for s in plan.streams:
            self._streams_by_topic.setdefault(s["topic"], []).append(s)
        self.state = IDLE
        self.writer: RawEpisodeWriter | None = None
        self.task = ""
        self._latest_stamp: dict[str, float] = {}
        self._validated: set[str] = set()
        self._received: dict[str, int] = {}
        self._last_receive: dict[str, float] = {}
        self._invalid: dict[str, str] = {}
        self._episode_start: float | None = None
        self._start_now: float | None = None
        self._clock_ok = False
        self._clock_pending = False
        self._first_stamp_since_start: float | None = None
        self._events: list[tuple[float, int]] = []
        self.last_safety_event = ""
        self._sim_episode: int | None = None
        self._sim_reset_stamp: float | None = None
        self._used_sim_episode: int | None = None
        self._waiting_for_reset = False
        self.saved = 0
        self.last_index = -1
        self.last_message = ""
        self.error = ""
        self.converter = Converter(self.spool, dataset_path, keep_raw=keep_raw) if start_converter else None
        self._decoders: dict[str, Callable] = {}
        self._store = None

    @property
    def topics(self) -> list[Topic]:
        return list(self._topics)

    # -- start-up ------------------------------------------------------------------------------
    def recover(self) -> str:
        """On start: drop episodes that were recording when the recorder stopped, convert the saved
        ones still waiting (an interrupted conversion). Returns what was done."""
        from diffusion_policy_ros.data.episode_conversion import clear_failures, pending
        removed = remove_unsaved(self.spool)
        clear_failures(self.spool)
        waiting = pending(self.spool)
        if waiting and self.converter is not None:
            self.converter.ensure_running()
        parts = []
        if removed:
            parts.append(f"dropped {len(removed)} unsaved episode(s) of a previous run: {', '.join(removed)}")
        if waiting:
            parts.append(f"converting {len(waiting)} saved episode(s) left unconverted")
        return "; ".join(parts)

    def dataset(self):
        return self._open_dataset()

    # -- messages ------------------------------------------------------------------------------
    def receive(self, topic: str, data: bytes, log_time_ns: int) -> None:
        """A serialized message as it arrived (any thread); `log_time_ns`: the receive time on
        the recorder's clock, the stamp of messages without a header stamp."""
        stamp = (header_stamp_ns(data) if self._stamped[topic] else 0) or log_time_ns
        if stamp <= 0:
            # Under use_sim_time the clock reads 0 until the first /clock: such a message cannot
            # be placed in time.
            return self._warn(f"clock/{topic}", f"{topic}: dropping unstamped messages until the clock runs")
        streams = self._streams_by_topic.get(topic)
        if streams and streams[0]["kind"] == "joints" and not self._joints_ok(streams, data):
            return
        self._latest_stamp[topic] = stamp * 1e-9
        self._last_receive[topic] = log_time_ns * 1e-9
        if self._clock_pending:
            self._place_start(stamp * 1e-9, log_time_ns * 1e-9)
        writer = self.writer
        if writer is None or self.state != RECORDING:
            return
        self._received[topic] = self._received.get(topic, 0) + 1   # one thread per topic
        try:
            writer.write(topic, data, log_time_ns, stamp)
        except OSError as e:
            with self._lock:
                if self.writer is writer and self.state == RECORDING:
                    self.state = ERROR
                    self.error = (f"episode could not be written: {describe_os_error(e)}; "
                                  "DISCARD it (the dataset and earlier episodes are intact)")
                    self.last_message = self.error
            return
        except RawEpisodeError:
            return                       # closed by SAVE or DISCARD meanwhile
        if streams and topic not in self._validated:
            self._validate(topic, streams, data)

    def _joints_ok(self, streams, data) -> bool:
        for s in streams:
            try:
                self._decoder(s)(data)
            except (KeyError, ValueError, IndexError) as e:
                self._warn(s["name"], f"ignoring {s['topic']} messages: {e}")
                return False
        return True

    def _validate(self, topic: str, streams, data: bytes) -> None:
        self._validated.add(topic)
        for s in streams:
            try:
                value = np.asarray(self._decoder(s)(data))
                if list(value.shape) != list(s["shape"]):
                    raise ValueError(f"shape {value.shape}, expected {tuple(s['shape'])} from the config")
            except Exception as e:  # noqa: BLE001 - any decode failure: name it at SAVE
                self._invalid[s["name"]] = f"{s['name']} on {topic}: {e}"
                self._warn(s["name"], f"{s['name']}: cannot record {topic}: {e}")

    def _decoder(self, stream: dict):
        decode = self._decoders.get(stream["name"])
        if decode is None:
            from diffusion_policy_ros.data.episode_conversion import message_typestore, stream_decoder
            if self._store is None:
                self._store = message_typestore()
            decode = self._decoders[stream["name"]] = stream_decoder(stream, self._store)
        return decode

    def safety_event(self, stamp: float, action: int, text: str) -> None:
        self._events.append((stamp, action))
        self.last_safety_event = text

    def sim_status(self, episode: int, reset_stamp: float) -> None:
        """The sim's task status: its episode number and when that episode was reset."""
        with self._lock:
            if episode != self._sim_episode:
                self._sim_episode, self._sim_reset_stamp = episode, reset_stamp
                if self._waiting_for_reset and self.state == RECORDING and episode != self._used_sim_episode:
                    self._begin_after_reset()

    def _place_start(self, stamp: float, now: float) -> None:
        """A message after a START that found no clock or no messages to place it by: once the
        clock runs, the episode starts at the earliest stamp received since START."""
        with self._lock:
            if not self._clock_pending:
                return
            if self.state == RECORDING:
                # Messages written before the clock ran belong to the episode too.
                first = self._first_stamp_since_start
                self._first_stamp_since_start = stamp if first is None else min(first, stamp)
            if now <= 0:
                return
            self._clock_pending = False
            if self.state != RECORDING:
                return
            self._clock_ok = abs(now - stamp) < 5.0
            first = self._first_stamp_since_start
            self._start_now = min(now, first if now - first < 5.0 else stamp) if self._clock_ok else None
            if not self._waiting_for_reset:
                self._episode_start = self._start_now
                self._events = [e for e in self._events
                                if self._episode_start is None or e[0] >= self._episode_start]

    def _begin_after_reset(self) -> None:
        self._waiting_for_reset = False
        self._used_sim_episode = self._sim_episode
        if self._clock_ok:
            self._episode_start = max(self._start_now, self._sim_reset_stamp)
        self._events = [e for e in self._events if self._episode_start is None or e[0] >= self._episode_start]
        self.last_message = f"recording episode {self._next_index()} ({self.task!r}): sim reset seen"

    # -- commands ------------------------------------------------------------------------------
    def start(self, task: str, now: float | None) -> Outcome:
        task = (task or "").strip()
        with self._lock:
            if self.state == RECORDING:
                return self._fail("already recording an episode: SAVE or DISCARD it first")
            if self.state == ERROR and self.writer is not None:
                return self._fail(f"{self.error} before starting a new one")
            if not task:
                return self._fail("START needs the task text (what the demonstration shows)")
            try:
                self.dataset()
                os.makedirs(self.spool, exist_ok=True)
                self.writer = RawEpisodeWriter(os.path.join(self.spool, new_episode_name()), self._topics)
            except Exception as e:  # noqa: BLE001 - the message goes back to the operator
                self.writer = None
                why = describe_os_error(e) if isinstance(e, OSError) else str(e)
                return self._fail(f"cannot record: {why}")
            stamps = list(self._latest_stamp.values())
            # Nothing received yet, or a sim clock that has not ticked yet (a recorder started
            # with the robot): the episode starts with the first message, placed when it comes.
            self._clock_pending = not stamps or not now
            self._first_stamp_since_start = None
            # Stamps from another clock (sim time vs. wall time): grid from the stamps alone.
            self._clock_ok = not self._clock_pending and abs(now - max(stamps)) < 5.0
            self._start_now = now if self._clock_ok else None
            self._episode_start = self._start_now
            self.task, self.error = task, ""
            self._validated.clear()
            self._invalid.clear()
            self._events = []
            self._received = {}
            self.last_safety_event = ""
            self.state = RECORDING
            self._waiting_for_reset = self._sim_episode is not None and self._sim_episode == self._used_sim_episode
            if self._sim_episode is not None and not self._waiting_for_reset:
                self._used_sim_episode = self._sim_episode
            if self._waiting_for_reset:
                return self._ok(f"recording episode {self._next_index()} ({task!r}) at {self.rate_hz:g} Hz "
                                "from the next sim reset (/sim/reset)")
            return self._ok(f"recording episode {self._next_index()} ({task!r}) at {self.rate_hz:g} Hz")

    def save(self, now: float | None) -> Outcome:
        with self._lock:
            if self.state == ERROR and self.writer is not None:
                return self._fail(self.error)
            if self.state != RECORDING:
                return self._fail("not recording: START an episode first")
            if self._waiting_for_reset:
                return self._fail("episode not saved, still recording: no sim reset seen since START; "
                                  "reset the sim (/sim/reset) or DISCARD")
            if self._invalid:
                return self._fail("episode not saved, still recording (" + "; ".join(self._invalid.values())
                                  + "); DISCARD to drop it")
            writer = self.writer
            try:
                stamps = self._stream_stamps()
                frames = self._frames(now, stamps)
            except FrameError as e:
                return self._fail(f"episode not saved, still recording ({e}); DISCARD to drop it")
            shortened = self._shortened(stamps, frames.ticks, now)
            self.state = SAVING
            flags = safety_flags(frames.ticks, self.rate_hz, *self._event_columns())
            stats = {name: s.as_dict() for name, s in frames.stats.items()}
            index = self._next_index()
            meta = episode_meta(self.robot_config, task=self.task, rate_hz=self.rate_hz, stats=stats,
                                source=self.source,
                                extra={"cameras": [s["name"].split("/", 1)[1] for s in self.plan.streams
                                                   if s["kind"].startswith("rgb")],
                                       "stream_messages": {s["name"]: {"received": self._received.get(s["topic"], 0),
                                                                       "written": writer.count(s["topic"])}
                                                      for s in self.plan.streams},
                                       "episode_start": self._episode_start})
            doc = {"format": "diffusion_policy_ros/raw_episode", "version": 1, "rate_hz": self.rate_hz,
                   "start": self._episode_start,
                   # half a period past the last tick: the conversion's grid ends on the same tick
                   "stop": float(frames.ticks[-1]) + 0.5 / self.rate_hz, "streams": self.plan.streams,
                   "commands": self.plan.commands, "safety_topic": self.plan.safety_topic, "meta": meta}
            try:
                writer.finish(doc)
            except OSError as e:
                self.state = ERROR
                self.error = (f"episode could not be written: {describe_os_error(e)}; DISCARD it "
                              "(the dataset and earlier episodes are intact)")
                return self._fail(self.error)
            self.writer, self.state = None, IDLE
            self.saved += 1
            self.last_index = index
            if self.converter is not None:
                self.converter.ensure_running()
            n, affected = frames.num_frames, int(np.count_nonzero(flags))
            kinds = ", ".join(f"{v} {k}" for k, v in describe_flags(flags).items() if v)
            lossy = ", ".join(f"{name} {s['dropped']}/{s['duplicated']}" for name, s in stats.items()
                              if s["dropped"] or s["duplicated"])
            return self._ok(f"saved episode {index}: {n} frames, {meta['dropped_frames']} dropped, "
                            f"{meta['duplicated_frames']} duplicated{' (' + lossy + ')' if lossy else ''}, "
                            f"{affected} with safety events{' (' + kinds + ')' if kinds else ''}"
                            f"{shortened}; converting to the dataset in the background",
                            episode_index=index, num_frames=n)

    def _shortened(self, stamps: dict[str, np.ndarray], ticks: np.ndarray, now: float | None) -> str:
        """Why the frames begin later than the episode or end before SAVE, by more than a period
        (a stream that delivered nothing for a while): said at SAVE, not found out in training."""
        period = 1.0 / self.rate_hz
        parts = []
        start = self._episode_start
        if start is not None and ticks[0] - start > 1.5 * period:
            late = [name for name, st in stamps.items() if not np.any((st >= start) & (st <= start + period))]
            parts.append(f"frames begin {ticks[0] - start:.2f} s after the episode start (nothing on "
                         f"{', '.join(late)} until then)")
        if now is not None and self._clock_ok and now - ticks[-1] > 1.5 * period:
            behind = [name for name, st in stamps.items() if not st.size or st.max() < now - period]
            why = (f"nothing newer on {', '.join(behind)}" if behind else
                   f"episodes are capped at max_episode_s = {self.max_episode_s:g} s")
            parts.append(f"frames end {now - ticks[-1]:.2f} s before SAVE ({why})")
        return "".join(f"; {p}" for p in parts)

    def caught_up(self, stop: float | None) -> bool:
        """Whether every stream of the episode has delivered its messages up to `stop` (SAVE
        waits a little for this: a busy recorder may still have messages of the end queued)."""
        writer = self.writer
        if writer is None or stop is None or not self._clock_ok or self.state != RECORDING:
            return True
        for s in self.plan.streams:
            stamps = writer.stamps(s["topic"])
            if stamps.size and stamps[-1] * 1e-9 < stop - 1e-6:
                return False
        return True

    def discard(self) -> Outcome:
        with self._lock:
            writer = self.writer
            if writer is None:
                return self._fail("nothing to discard")
            frames = sum(writer.count(t.name) for t in self._topics)
            self.writer, self.state, self.error = None, IDLE, ""
            self._waiting_for_reset = False
            writer.abort()
            return self._ok(f"discarded the episode ({frames} messages)")

    # -- frames --------------------------------------------------------------------------------
    def _stream_stamps(self) -> dict[str, np.ndarray]:
        """Each sensor stream's message stamps in the episode so far (s, arrival order)."""
        return {s["name"]: self.writer.stamps(s["topic"]) * 1e-9 for s in self.plan.streams}

    def _frames(self, now: float | None, stamps: dict[str, np.ndarray] | None = None):
        stamps = self._stream_stamps() if stamps is None else stamps
        return sensor_frames(stamps, self.rate_hz, start=self._episode_start, stop=self._stop_time(stamps, now))

    def _stop_time(self, stamps: dict[str, np.ndarray], now: float | None) -> float | None:
        """End of the grid: now, but not past the newest message of each stream still delivering
        (a busy recorder may still have messages stamped before `now` queued); a stream that
        delivered nothing for STALLED_AFTER_S (by the receive time) no longer holds it back."""
        now = now if self._clock_ok else None
        last = {name: float(s.max()) for name, s in stamps.items() if s.size}
        if not last:
            return now
        if now is not None:
            topics = {s["name"]: s["topic"] for s in self.plan.streams}
            alive = [t for name, t in last.items()
                     if self._last_receive.get(topics[name], -np.inf) >= now - STALLED_AFTER_S]
        else:
            newest = max(last.values())
            alive = [t for t in last.values() if t >= newest - STALLED_AFTER_S]
        stop = min(alive) if alive else max(last.values())
        if now is not None:
            stop = min(stop, now)
            if self._episode_start is not None:
                stop = min(stop, self._episode_start + self.max_episode_s)
        return stop

    def _event_columns(self) -> tuple[list[float], list[int], np.ndarray, np.ndarray]:
        """safety_flags' inputs: event stamps and kinds, the forwarded commands' stamps and whether
        each carried a header stamp (an unstamped one is indexed by its receive time)."""
        events = list(self._events)
        topics = [c["topic"] for arm in self.plan.commands for c in arm["topics"]]
        stamps = [self.writer.stamps(t) for t in topics]
        logs = [self.writer.log_times(t) for t in topics]
        stamps_ns = np.concatenate(stamps) if stamps else np.zeros(0, np.int64)
        logs_ns = np.concatenate(logs) if logs else np.zeros(0, np.int64)
        return [e[0] for e in events], [e[1] for e in events], stamps_ns * 1e-9, stamps_ns != logs_ns

    def _next_index(self) -> int:
        """The dataset index the next saved episode gets: committed + saved and waiting."""
        try:
            dataset = self.dataset()
            committed = {dataset.episode_meta(i).get("raw_episode") for i in range(dataset.n_episodes)}
            count = dataset.n_episodes
        except Exception:  # noqa: BLE001
            committed, count = set(), 0
        waiting = [f for f in episode_folders(self.spool)
                   if is_saved(f) and not is_converted(f) and os.path.basename(f) not in committed]
        return count + len(waiting)

    def pending_conversions(self) -> int:
        from diffusion_policy_ros.data.episode_conversion import pending
        return len(pending(self.spool))

    def conversion_failures(self) -> list[str]:
        from diffusion_policy_ros.data.episode_conversion import failed
        return [f"{os.path.basename(f)}: {failed(f)}" for f in episode_folders(self.spool) if failed(f)]

    # -- status --------------------------------------------------------------------------------
    def status(self, now: float | None) -> dict:
        """The status contract of `~/status` (the operator console reads it)."""
        with self._lock:
            state, writer = self.state, self.writer
            frames = dropped = duplicated = affected = 0
            elapsed = 0.0
            if writer is not None and state == RECORDING and not self._waiting_for_reset:
                try:
                    result = self._frames(now)
                    frames = result.num_frames
                    dropped = sum(s.dropped for s in result.stats.values())
                    duplicated = sum(s.duplicated for s in result.stats.values())
                    affected = int(np.count_nonzero(safety_flags(result.ticks, self.rate_hz, *self._event_columns())))
                except FrameError:
                    pass
                if now is not None and self._episode_start is not None:
                    elapsed = max(0.0, now - self._episode_start)
            pending = self.pending_conversions()
            failures = self.conversion_failures()
            if state == IDLE and failures:
                state, message = ERROR, "conversion failed (raw episode kept): " + "; ".join(failures)
            elif state == IDLE and pending:
                state, message = CONVERTING, f"converting {pending} episode(s) to the dataset"
                if self.converter is not None:
                    self.converter.ensure_running()
            else:
                message = self.last_message
            return {"state": state, "elapsed_s": round(elapsed, 3), "frames": frames, "dropped": dropped,
                    "duplicated": duplicated, "safety_affected_frames": affected,
                    "last_safety_event": self.last_safety_event,
                    "episode_index": self.last_index if writer is None else self._next_index(),
                    "message": message, "waiting_for_reset": self._waiting_for_reset,
                    "pending_conversions": pending, "saved_episodes": self.saved,
                    "episode_messages": 0 if writer is None else sum(writer.count(t.name) for t in self._topics),
                    "episode_bytes": 0 if writer is None else writer.bytes_written,
                    "rate_hz": self.rate_hz, "dataset": self.dataset_path}

    def _ok(self, message: str, **kw) -> Outcome:
        self.last_message = message
        return Outcome(True, message, **kw)

    def _fail(self, message: str) -> Outcome:
        self.last_message = message
        return Outcome(False, message)
