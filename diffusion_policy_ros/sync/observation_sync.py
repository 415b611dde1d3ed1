"""Align sensor streams by header stamp into the policy's observation history.

Each input keeps its recent samples. An observation is taken at the newest instant every input
has reached (the minimum over inputs of their newest stamp); each input contributes its sample
nearest to that instant, which must lie within `tolerance_s`. An input whose newest sample is
older than `stale_after_s` (or that never arrived) makes the observation unavailable, and is
named, so the node can say which sensor is stale instead of acting on old data.

The history a policy sees is n observations one control period apart, as in its training data,
however often it infers: they are looked up by time in the kept samples.
"""
from __future__ import annotations

import bisect
import collections
import dataclasses
from collections.abc import Sequence
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

    def add(self, name: str, stamp: float, value: Any) -> bool:
        """Keep a sample; False (and nothing kept) for one older than the input's newest, so each
        stream stays ordered by stamp."""
        stamps, values = self._stamps[name], self._values[name]
        if stamps and stamp < stamps[-1]:
            return False
        stamps.append(stamp)
        values.append(value)
        return True

    def clear(self) -> None:
        for name in self.inputs:
            self._stamps[name].clear()
            self._values[name].clear()

    def newest_stamp(self, name: str) -> float | None:
        stamps = self._stamps[name]
        return stamps[-1] if stamps else None

    def complete_stamp(self) -> float | None:
        """The newest instant every input has reached (where `latest` looks), None until each
        input has a sample."""
        newest = [stamps[-1] if stamps else None for stamps in self._stamps.values()]
        return None if None in newest or not newest else min(newest)

    def stale_inputs(self, now: float) -> tuple[str, ...]:
        return tuple(name for name in self.inputs
                     if not self._stamps[name] or now - self._stamps[name][-1] > self.stale_after_s)

    def latest(self, now: float) -> AlignedObservation | SyncFailure:
        stale = self.stale_inputs(now)
        if stale:
            return SyncFailure(stale, ())
        aligned = self._aligned_at(self.complete_stamp())
        if isinstance(aligned, tuple):
            return SyncFailure((), aligned)
        return aligned

    def history(self, latest: AlignedObservation, n_steps: int, period_s: float) -> list[AlignedObservation]:
        """`n_steps` observations `period_s` apart ending with `latest`, oldest first. A step no
        sample lies near (before the streams began, or across a gap) repeats the newer step after
        it, like the padding at the start of a training episode."""
        steps = [latest]
        while len(steps) < n_steps:
            earlier = self._aligned_at(latest.stamp - len(steps) * period_s)
            if isinstance(earlier, tuple):
                steps.extend([steps[-1]] * (n_steps - len(steps)))
                break
            steps.append(earlier)
        return steps[::-1]

    def _aligned_at(self, t: float) -> AlignedObservation | tuple[str, ...]:
        """Every input's sample nearest to t, or the inputs with none within the tolerance."""
        values, unaligned = {}, []
        for name in self.inputs:
            stamps = self._stamps[name]
            i = bisect.bisect_left(stamps, t)
            best = min((j for j in (i - 1, i) if 0 <= j < len(stamps)), key=lambda j: abs(stamps[j] - t),
                       default=None)
            if best is None or abs(stamps[best] - t) > self.tolerance_s:
                unaligned.append(name)
            else:
                values[name] = self._values[name][best]
        return tuple(unaligned) if unaligned else AlignedObservation(t, values)
