"""Put asynchronous sensor streams on one fixed-rate time grid, by header stamp.

Every recorded stream (a camera, joint states, the teleop action...) arrives at its own rate
and jitter. An episode is sampled at `rate_hz` ticks; for each tick a stream contributes its
latest message stamped at or before the tick ("as of", like a zero-order hold). That keeps
causality: a sample never contains data from after its own timestamp.

Per stream we count what the grid did to the data:
- duplicated: ticks that reuse the message of the previous tick (nothing new arrived: the stream
  is slower than the grid, stalled, or lost a message);
- skipped: messages inside the episode window that no tick used;
- dropped: skips beyond plain downsampling. A 30 Hz camera on a 10 Hz grid must skip 2 of 3
  frames and that is not a loss; two frames landing in one tick interval of a 10 Hz stream
  (jitter) and nothing in the next is: the extra skip counts as dropped.
"""
from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import numpy as np


STAMP_TOLERANCE_S = 1e-6


class ResampleError(ValueError):
    """The streams cannot be put on a common grid (no data, or no overlap)."""


@dataclasses.dataclass(frozen=True)
class StreamStats:
    received: int      # messages of this stream inside the episode window
    duplicated: int
    skipped: int
    dropped: int

    def as_dict(self) -> dict[str, int]:
        return dataclasses.asdict(self)


@dataclasses.dataclass(frozen=True)
class ResampleResult:
    ticks: np.ndarray                 # (T,) float64 seconds, strictly increasing
    indices: dict[str, np.ndarray]    # stream -> (T,) int64 index into that stream's messages
    stats: dict[str, StreamStats]

    @property
    def num_frames(self) -> int:
        return int(self.ticks.shape[0])


def make_grid(start: float, stop: float, rate_hz: float) -> np.ndarray:
    """Ticks start, start + 1/rate, ... up to and including stop (float64, integer-indexed so
    long episodes do not accumulate rounding)."""
    if not rate_hz > 0:
        raise ResampleError(f"rate must be positive, got {rate_hz}")
    if stop < start:
        return np.zeros(0, dtype=np.float64)
    n = int(np.floor((stop - start) * rate_hz + 1e-9)) + 1
    return start + np.arange(n, dtype=np.float64) / rate_hz


def resample(stamps: dict[str, Sequence[float]], rate_hz: float, *,
             start: float | None = None, stop: float | None = None) -> ResampleResult:
    """Sample every stream on one grid at `rate_hz`.

    `stamps[name]` are the header stamps (seconds) of that stream's messages in arrival order;
    they may be unsorted (the returned indices refer to the given order). The grid starts at the
    first instant every stream has data (no earlier than `start`) and ends at `stop` (default: the
    newest stamp of any stream).
    """
    if not stamps:
        raise ResampleError("no streams to resample")
    sorted_stamps: dict[str, np.ndarray] = {}
    orders: dict[str, np.ndarray] = {}
    for name, values in stamps.items():
        arr = np.asarray(values, dtype=np.float64)
        if arr.ndim != 1 or arr.size == 0:
            raise ResampleError(f"stream {name!r} has no messages")
        if not np.all(np.isfinite(arr)):
            raise ResampleError(f"stream {name!r} has non-finite stamps")
        order = np.argsort(arr, kind="stable")
        orders[name] = order
        sorted_stamps[name] = arr[order]

    first_common = max(float(s[0]) for s in sorted_stamps.values())
    grid_start = first_common if start is None else max(float(start), first_common)
    if start is not None and grid_start > start:
        # Stay on the caller's phase: the first tick after all streams have data.
        grid_start = start + np.ceil((grid_start - start) * rate_hz - 1e-9) / rate_hz
    grid_stop = max(float(s[-1]) for s in sorted_stamps.values()) if stop is None else float(stop)
    ticks = make_grid(grid_start, grid_stop, rate_hz)
    if ticks.size == 0:
        raise ResampleError(
            f"no tick in [{grid_start:.3f}, {grid_stop:.3f}] s: the streams do not overlap "
            f"(first stamps {{{', '.join(f'{k}: {v[0]:.3f}' for k, v in sorted_stamps.items())}}})")

    indices, stats = {}, {}
    for name, s in sorted_stamps.items():
        # Latest message at or before each tick; a stamp equal to the tick (up to float rounding
        # of epoch seconds, ~0.2 us) counts as "at".
        pos = np.searchsorted(s, ticks + STAMP_TOLERANCE_S, side="right") - 1
        indices[name] = orders[name][pos].astype(np.int64)
        stats[name] = _count(s, pos, ticks)
    return ResampleResult(ticks=ticks, indices=indices, stats=stats)


def _count(sorted_stamps: np.ndarray, pos: np.ndarray, ticks: np.ndarray) -> StreamStats:
    # The message held at the first tick belongs to the window; later ones up to the last tick.
    first_used = int(pos[0])
    last_in_window = int(np.searchsorted(sorted_stamps, ticks[-1] + STAMP_TOLERANCE_S, side="right") - 1)
    received = last_in_window - first_used + 1
    steps = np.diff(pos)
    duplicated = int(np.count_nonzero(steps == 0))
    skipped = int(np.sum(np.maximum(steps - 1, 0)))
    expected_skips = max(0, received - ticks.size)
    return StreamStats(received=received, duplicated=duplicated, skipped=skipped,
                       dropped=max(0, skipped - expected_skips))
