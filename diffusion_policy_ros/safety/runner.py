"""The safety filter's threads: commands never delay the e-stop or the watchdog.

A node hands every incoming message to `FilterRunner` as it arrives (serialized bytes or a
message; storing it is all the receiving thread does). A worker thread filters the newest
command and joint state of each arm; a command that a newer one replaced before the worker got
to it is dropped unread (counted as superseded). A watchdog thread sleeps until the filter's
next deadline. The e-stop (called from any thread) and the watchdog take the filter from the
worker between two points of a command (`UrgentLock`): the worker abandons that command, lets
them act, then filters it again from the new state if nothing newer came. A command the worker
cannot finish within `max_processing_s` is dropped and the arm holds (reason `late`), so no plan
ever goes out stamped long before it was sent, and every hold starts from a plan that the
robot was really given.

Nothing here imports ROS: the node passes its clock, a decoder for its messages and a publish
function (called with the filter's lock held, so outputs leave in the order they were decided).
"""
from __future__ import annotations

import contextlib
import dataclasses
import threading
from collections.abc import Callable

from diffusion_policy_ros.safety.filter import FilterResult, Interrupted, SafetyFilter
from diffusion_policy_ros.safety.messages import InputRejected

TRAJECTORY, TARGETS, JOINT_STATE = "trajectory", "targets", "joint_state"
SIM_TIME_POLL_S = 0.005  # under simulated time a deadline is watched by polling the clock
IDLE_WAIT_S = 1.0


class UrgentLock:
    """A lock whose ordinary holder lets urgent users in between two steps of its work.

    Urgent users announce themselves (`wanted()` turns true), then wait for the lock; the
    ordinary holder polls `wanted()` and lets go. Ordinary acquisition waits while anyone urgent
    is waiting, so a releasing worker cannot snatch the lock back ahead of them."""

    def __init__(self):
        self._lock = threading.Lock()
        self._state = threading.Condition()
        self._urgent = 0

    def wanted(self) -> bool:
        return self._urgent > 0

    @contextlib.contextmanager
    def urgent(self):
        with self._state:
            self._urgent += 1
        try:
            with self._lock:
                yield
        finally:
            with self._state:
                self._urgent -= 1
                self._state.notify_all()

    @contextlib.contextmanager
    def ordinary(self):
        with self._state:
            self._state.wait_for(lambda: self._urgent == 0)
        with self._lock:
            yield


@dataclasses.dataclass
class RunnerStats:
    received: int = 0       # commands handed in
    superseded: int = 0     # replaced by a newer command of the same arm before being filtered
    filtered: int = 0       # commands the filter decided on (passed, clamped or rejected)
    interrupted: int = 0    # times a command was set aside for the e-stop or the watchdog
    late: int = 0           # commands dropped for taking longer than max_processing_s
    joint_states: int = 0   # joint states handed in
    plans: int = 0          # trajectories published (forwarded commands and holds)
    events: int = 0         # safety events published
    errors: int = 0         # decisions that raised (a bug): refused with a hold instead

    @property
    def settled(self) -> int:
        """Commands handed in that the worker is done with."""
        return self.superseded + self.filtered


@dataclasses.dataclass
class _Pending:
    kind: str
    payload: object
    size: int
    received: float  # the node's clock when it arrived


class FilterRunner:
    def __init__(self, filt: SafetyFilter, clock: Callable[[], float], publish: Callable[[FilterResult], None],
                 decode: Callable[[str, object], object], sim_time: Callable[[], bool] = lambda: False):
        self.filter = filt
        self.params = filt.params
        self._clock = clock
        self._send = publish
        self._decode = decode
        self._sim_time = sim_time
        self.lock = UrgentLock()
        self.stats = RunnerStats()
        self._commands: dict[str, _Pending] = {}
        self._joint_states: dict[str, _Pending] = {}
        self._inbox = threading.Condition()
        self._watchdog_wake = threading.Event()
        self._running = False
        self._threads: list[threading.Thread] = []

    # ---- called by the node's receiving threads (only store, never wait for the filter) --------
    def submit_command(self, arm: str, kind: str, payload, size: int | None = None) -> None:
        with self._inbox:
            self.stats.received += 1
            if arm in self._commands:
                self.stats.superseded += 1
            self._commands[arm] = _Pending(kind, payload, _size(payload, size), self._clock())
            self._inbox.notify()

    def submit_joint_state(self, arm: str, payload, size: int | None = None) -> None:
        with self._inbox:
            self.stats.joint_states += 1
            self._joint_states[arm] = _Pending(JOINT_STATE, payload, _size(payload, size), self._clock())
            self._inbox.notify()

    def engage_estop(self, reason: str) -> None:
        with self.lock.urgent():
            if not self.filter.estop_engaged:
                for result in self.filter.engage_estop(self._clock(), reason):
                    self._publish(result)

    def release_estop(self) -> None:
        with self.lock.urgent():
            self.filter.release_estop()

    # ---- threads ---------------------------------------------------------------------------------
    def start(self) -> None:
        self._running = True
        self._threads = [threading.Thread(target=self._work, name="safety-filter-worker", daemon=True),
                         threading.Thread(target=self._watch, name="safety-filter-watchdog", daemon=True)]
        for thread in self._threads:
            thread.start()

    def is_alive(self) -> bool:
        return bool(self._threads) and all(thread.is_alive() for thread in self._threads)

    def stop(self) -> None:
        self._running = False
        with self._inbox:
            self._inbox.notify_all()
        self._watchdog_wake.set()
        for thread in self._threads:
            thread.join(timeout=5.0)
        self._threads = []

    def _work(self) -> None:
        while self._running:
            with self._inbox:
                self._inbox.wait_for(lambda: self._commands or self._joint_states or not self._running)
                joint_states, self._joint_states = self._joint_states, {}
                commands, self._commands = self._commands, {}
            with self.lock.ordinary():
                self._use_joint_states(joint_states)
            for arm, pending in commands.items():
                self._filter(arm, pending)
            self._watchdog_wake.set()  # a command may have set a new deadline

    def _take_joint_states(self) -> dict[str, _Pending]:
        with self._inbox:
            joint_states, self._joint_states = self._joint_states, {}
        return joint_states

    def _use_joint_states(self, joint_states: dict[str, _Pending]) -> None:
        """With the filter's lock held. An unstamped one counts as measured when it arrived, however
        long it waited here."""
        for arm, pending in joint_states.items():
            problem, msg = self._read(pending)
            now = self._clock()
            if problem is not None:
                result = self.filter.joint_state_rejected(arm, problem, now)
            else:
                result = self.filter.joint_state(arm, msg, now, pending.received)
            if result is not None:
                self._publish(result)

    def _filter(self, arm: str, pending: _Pending) -> None:
        problem, msg = self._read(pending)
        while True:
            with self.lock.ordinary():
                self._use_joint_states(self._take_joint_states())  # decide on the freshest measurement
                now = self._clock()
                try:
                    result = self._decide(arm, pending.kind, problem, msg, now)
                except Interrupted as e:
                    if e.reason != "late":
                        result = None
                    else:
                        self.stats.late += 1
                        result = self.filter.reject(arm, self._clock(), "late", (
                            f"not filtered within max_processing_s {self.params.max_processing_s} "
                            "(an overloaded machine?); holding"))
                except Exception as e:  # noqa: BLE001 - a bug must not stop the filter: refuse and hold
                    self.stats.errors += 1
                    result = self.filter.reject(arm, self._clock(), "internal_error",
                                                f"filtering raised {type(e).__name__}: {e}; holding")
                if result is not None:
                    self.stats.filtered += 1
                    self._publish(result)
                    return
            self.stats.interrupted += 1
            with self._inbox:
                if arm in self._commands:  # a newer command arrived meanwhile: that one counts
                    self.stats.superseded += 1
                    return

    def _decide(self, arm, kind, problem, msg, now) -> FilterResult:
        if problem is not None:
            return self.filter.reject(arm, now, problem.reason, str(problem))
        started = self._clock()

        def interrupt():
            if self.lock.wanted():
                return "urgent"
            if self._clock() - started > self.params.max_processing_s:
                return "late"
            return None

        if kind == TRAJECTORY:
            return self.filter.filter_trajectory(arm, msg, now, interrupt)
        return self.filter.filter_targets(arm, msg.data, now, interrupt)

    def _read(self, pending: _Pending):
        """-> (InputRejected or None, message). Messages over the size cap are not decoded."""
        if pending.size > self.params.max_message_bytes:
            return InputRejected("message_too_large", f"{pending.size} bytes; at most max_message_bytes "
                                                      f"{self.params.max_message_bytes} are read"), None
        try:
            return None, self._decode(pending.kind, pending.payload)
        except Exception as e:  # noqa: BLE001 - whatever a decoder raises, the message is unusable
            reason = "invalid_joint_state" if pending.kind == JOINT_STATE else "invalid_trajectory"
            return InputRejected(reason, f"cannot decode the message: {e}"), None

    def _publish(self, result: FilterResult) -> None:
        self.stats.events += len(result.events)
        self.stats.plans += result.trajectory is not None
        self._send(result)

    def _watch(self) -> None:
        while self._running:
            self._watchdog_wake.clear()
            deadline = self.filter.next_deadline()
            now = self._clock()
            if deadline is not None and now >= deadline:
                try:
                    with self.lock.urgent():
                        # Joint states waiting behind a busy worker are not missing: use them first.
                        self._use_joint_states(self._take_joint_states())
                        for result in self.filter.tick(self._clock()):
                            self._publish(result)
                except Exception:  # noqa: BLE001 - the watchdog must outlive a bug: try again shortly
                    self.stats.errors += 1
                    self._watchdog_wake.wait(SIM_TIME_POLL_S)
                continue
            wait = IDLE_WAIT_S if deadline is None else deadline - now
            if self._sim_time():
                wait = min(wait, SIM_TIME_POLL_S)
            self._watchdog_wake.wait(wait)


def _size(payload, size: int | None) -> int:
    if size is not None:
        return size
    return len(payload) if isinstance(payload, (bytes, bytearray)) else 0
