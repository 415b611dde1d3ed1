"""Align sensor streams by header stamp into the policy's observation history.

Each input keeps its recent samples. An observation is taken at the newest instant every input
has reached (the minimum over inputs of their newest stamp); each input contributes its sample
nearest to that instant, which must lie within `tolerance_s`. An input whose newest sample is
older than `stale_after_s` (or that never arrived) makes the observation unavailable, and is
named, so the node can say which sensor is stale instead of acting on old data.
"""
from __future__ import annotations

import bisect
import collections
import dataclasses
from collections.abc import Mapping, Sequence
from typing import Any


@dataclasses.dataclass(frozen=True)
class AlignedObservation:
    stamp: float                 # the observation time (seconds)
    values: dict[str, Any]       # input name -> sample


@dataclasses.dataclass(frozen=True)
class SyncFailure:
    stale: tuple[str, ...]       # never arrived or too old
    unaligned: tuple[str, ...]   # no sample within the tolerance of the observation time

    @property
    def inputs(self) -> tuple[str, ...]:
        return self.stale + self.unaligned

    def describe(self) -> str:
        parts = []
        if self.stale:
            parts.append(f"stale or missing: {', '.join(self.stale)}")
        if self.unaligned:
            parts.append(f"out of sync: {', '.join(self.unaligned)}")
        return "; ".join(parts)


class ObservationSync:
    def __init__(self, inputs: Sequence[str], tolerance_s: float, stale_after_s: float,
                 keep: int = 32):
        self.inputs = tuple(inputs)
        self.tolerance_s = float(tolerance_s)
        self.stale_after_s = float(stale_after_s)
        self._stamps = {name: collections.deque(maxlen=keep) for name in self.inputs}
        self._values = {name: collections.deque(maxlen=keep) for name in self.inputs}

    def add(self, name: str, stamp: float, value: Any) -> None:
        stamps, values = self._stamps[name], self._values[name]
        if stamps and stamp < stamps[-1]:
            return  # out-of-order sample: keep the stream monotonic
        stamps.append(stamp)
        values.append(value)

    def clear(self) -> None:
        for name in self.inputs:
            self._stamps[name].clear()
            self._values[name].clear()

    def newest_stamp(self, name: str) -> float | None:
        stamps = self._stamps[name]
        return stamps[-1] if stamps else None

    def stale_inputs(self, now: float) -> tuple[str, ...]:
        return tuple(name for name in self.inputs
                     if not self._stamps[name] or now - self._stamps[name][-1] > self.stale_after_s)

    def latest(self, now: float) -> AlignedObservation | SyncFailure:
        stale = self.stale_inputs(now)
        if stale:
            return SyncFailure(stale, ())
        t_obs = min(self._stamps[name][-1] for name in self.inputs)
        values, unaligned = {}, []
        for name in self.inputs:
            stamps = list(self._stamps[name])
            i = bisect.bisect_left(stamps, t_obs)
            best = min((j for j in (i - 1, i) if 0 <= j < len(stamps)), key=lambda j: abs(stamps[j] - t_obs))
            if abs(stamps[best] - t_obs) > self.tolerance_s:
                unaligned.append(name)
            else:
                values[name] = self._values[name][best]
        if unaligned:
            return SyncFailure((), tuple(unaligned))
        return AlignedObservation(t_obs, values)


class ObservationHistory:
    """The last n aligned observations, one per control step, padded with the oldest at the start."""

    def __init__(self, n_steps: int):
        self.n_steps = int(n_steps)
        self._items: collections.deque = collections.deque(maxlen=self.n_steps)

    def clear(self) -> None:
        self._items.clear()

    def push(self, obs: AlignedObservation) -> bool:
        if self._items and obs.stamp <= self._items[-1].stamp:
            return False  # no new data since the last step
        self._items.append(obs)
        return True

    def stacked(self, keys: Mapping[str, Any] | None = None) -> list[AlignedObservation]:
        items = list(self._items)
        return [items[0]] * (self.n_steps - len(items)) + items
