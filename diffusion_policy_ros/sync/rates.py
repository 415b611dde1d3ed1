"""Command rates as a controller sees them, on plain data (no ROS).

A JointTrajectory carries several setpoints, one per control period, and the next chunk replaces
the points of the last one from its own first point on; a forward controller gets one setpoint per
message. So "commands per second" can mean two things: `setpoint_rate` counts the control periods
the controller had a target for, `message_rate` the messages that carried them.
"""
from __future__ import annotations

import bisect
import collections
from collections.abc import Sequence

_SAME_INSTANT_S = 1e-6   # stamps are float seconds: closer than this is the same setpoint


class CommandRates:
    def __init__(self, window_s: float = 2.0):
        if window_s <= 0:
            raise ValueError(f"window must be positive, got {window_s}")
        self.window_s = window_s
        self._setpoints: list[float] = []              # absolute times, increasing
        self._messages: collections.deque[float] = collections.deque()

    def published(self, now: float, setpoint_times: Sequence[float]) -> None:
        """A message published at `now` with targets for `setpoint_times` (absolute, increasing);
        it replaces the targets of earlier messages from its first one on."""
        if len(setpoint_times):
            first = float(setpoint_times[0]) - _SAME_INSTANT_S
            del self._setpoints[bisect.bisect_left(self._setpoints, first):]
            self._setpoints.extend(float(t) for t in setpoint_times)
        self._messages.append(now)
        self._forget(now)

    def setpoint_rate(self, now: float) -> float:
        """Setpoints whose time came in the last window, per second."""
        self._forget(now)
        due = bisect.bisect_right(self._setpoints, now)
        return due / self.window_s

    def message_rate(self, now: float) -> float:
        self._forget(now)
        return sum(1 for t in self._messages if t <= now) / self.window_s

    def clear(self) -> None:
        self._setpoints.clear()
        self._messages.clear()

    def _forget(self, now: float) -> None:
        start = now - self.window_s
        del self._setpoints[:bisect.bisect_right(self._setpoints, start)]
        while self._messages and self._messages[0] <= start:
            self._messages.popleft()
