"""When the policy acts, on any clock (wall time on a robot, /clock in a simulation), without ROS.

`ChunkSchedule` decides when a new synchronized observation should start an inference: once the
standing chunk has run for its control steps, counted in observation time. Inference then starts
the moment such an observation is complete, not at a timer tick that picks up a frame that is
already up to a period old.

`Ticker` paces what must happen once per control period (a forward controller's setpoints): it
ticks every period of a clock read through `now()`, which may stall or jump (simulated time), and
never bursts to catch up after it fell behind.
"""
from __future__ import annotations

import math
from collections.abc import Callable

# Stamps are floats of seconds since the epoch: compare them with this slack.
_STAMP_SLACK_S = 1e-6
DUE_EARLY_PERIODS = 0.25


class ChunkSchedule:
    """Which observations start an inference.

    A chunk computed from the observation at t is executed from t + 1 period on. The next one is
    due from the observation `steps` control periods after t, where `steps` is the configured
    steps per inference, shortened by the recent inference latency so that the next chunk is
    ready before this one's `n_action_steps` run out.
    """

    def __init__(self, control_rate_hz: float, steps_per_inference: int, n_action_steps: int):
        if control_rate_hz <= 0 or steps_per_inference < 1 or n_action_steps < 1:
            raise ValueError("control rate, steps per inference and action steps must be positive")
        self.period = 1.0 / control_rate_hz
        self.steps_per_inference = steps_per_inference
        self.n_action_steps = n_action_steps
        self.reset()

    def reset(self) -> None:
        """No chunk stands: the next observation is due."""
        self.last_stamp: float | None = None
        self.steps = self.steps_per_inference

    def due(self, stamp: float) -> bool:
        """Whether the observation at `stamp` starts the next inference (never one that is not
        newer than the standing chunk's)."""
        if self.last_stamp is None:
            return True
        if stamp <= self.last_stamp + _STAMP_SLACK_S:
            return False
        # A quarter period early still counts (stamp jitter of a camera at the control rate), but
        # not half: a 30 Hz camera would then start one-step chunks every 2nd frame, 15 per second.
        return stamp - self.last_stamp >= (self.steps - DUE_EARLY_PERIODS) * self.period

    def periods_until_due(self, stamp: float) -> float | None:
        """Control periods from the observation at `stamp` to the first one that is due (None
        when any newer observation is due)."""
        if self.last_stamp is None:
            return None
        return (self.last_stamp - stamp) / self.period + self.steps - DUE_EARLY_PERIODS

    def due_stamp(self) -> float | None:
        """When the next due observation is expected: the standing chunk's steps after its own
        (None when nothing stands)."""
        if self.last_stamp is None:
            return None
        return self.last_stamp + self.steps * self.period

    def primed(self, stamp: float) -> None:
        """A warm start was sampled from the observation at `stamp` and not executed: the next
        newer observation is due."""
        self.last_stamp = stamp
        self.steps = 0

    def chunk_computed(self, stamp: float, latency_s: float) -> int:
        """Record the chunk of the observation at `stamp`, ready `latency_s` after it; returns the
        control steps it runs for before the next is due."""
        lead = math.ceil(max(latency_s, 0.0) / self.period - 1e-6)
        self.steps = max(1, min(self.steps_per_inference, self.n_action_steps - lead))
        self.last_stamp = stamp
        return self.steps


class Ticker:
    """Ticks every `period_s` of the clock `now()` (seconds)."""

    def __init__(self, now: Callable[[], float], period_s: float):
        if period_s <= 0:
            raise ValueError(f"period must be positive, got {period_s}")
        self.now = now
        self.period = period_s
        self.next_tick = now() + period_s

    def poll(self) -> bool:
        """True once per period: when the clock has reached the next tick. A clock that fell more
        than a period behind, or jumped back, restarts the ticks from now (no burst of ticks)."""
        now = self.now()
        if now < self.next_tick - self.period - _STAMP_SLACK_S:
            self.next_tick = now + self.period      # jumped back (a new simulation)
            return False
        if now < self.next_tick - _STAMP_SLACK_S:
            return False
        self.next_tick += self.period
        if self.next_tick <= now:
            self.next_tick = now + self.period      # fell behind: the next tick is a period away
        return True

    def remaining(self) -> float:
        """Clock seconds until the next tick (0 when due)."""
        return max(0.0, self.next_tick - self.now())
