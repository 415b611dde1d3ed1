"""From a recording's message stamps to dataset frames: the grid, the commanded action, the
safety marks. Plain numpy, shared by the recorder (SAVE reports frame counts at once) and the
conversion to the dataset (which then reads only the messages the frames use).

- Frames are ticks of the recorder's clock at the dataset rate, from the episode start (START,
  or the sim reset observed after it) until SAVE, the first tick being the first at which every
  sensor stream has a message stamped at or after the episode start: nothing from before the
  episode (a frame of the previous one) can appear in it.
- The action of frame k is the setpoint the controller was commanded for the next tick,
  t_k + 1/rate: the latest command the safety filter forwarded (stamped at or before that
  time), evaluated there as a joint_trajectory_controller would (linear between points, from the
  setpoint in force when the command arrived to its first point, holding the last point). Where
  no command was forwarded since the episode started, the robot held still: the measured joint
  position.
- A frame is marked with the kind of every safety event in its interval (t_k, t_k + 1/rate], and
  with those of the command its action comes from (clamped, or a hold after a reject or stop).
"""
from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence

import numpy as np

from diffusion_policy_ros.data.resample import STAMP_TOLERANCE_S, ResampleError, ResampleResult, resample

# Bits of the `action_safety` key: SafetyEvent.action 1 (clamp), 2 (reject), 3 (hold).
SAFETY_BITS = {1: 1, 2: 2, 3: 4}
SAFETY_NAMES = {1: "clamp", 2: "reject", 4: "hold"}


class FrameError(ValueError):
    """No frame can be made (a stream without messages in the episode, no overlap)."""


def sensor_frames(stamps: Mapping[str, np.ndarray], rate_hz: float, *, start: float | None,
                  stop: float | None) -> ResampleResult:
    """Resample sensor streams (stamps in seconds, arrival order) from `start` on; samples
    stamped before `start` are left out. The indices refer to the full stamp arrays."""
    kept, positions = {}, {}
    for name, values in stamps.items():
        values = np.asarray(values, dtype=np.float64)
        keep = np.arange(values.size) if start is None else np.flatnonzero(values >= start - STAMP_TOLERANCE_S)
        if keep.size == 0:
            raise FrameError(f"no messages on stream {name!r} since the episode started")
        kept[name], positions[name] = values[keep], keep
    try:
        result = resample(kept, rate_hz, start=start, stop=stop)
    except ResampleError as e:
        raise FrameError(str(e)) from e
    indices = {n: positions[n][result.indices[n]] for n in result.indices}
    return ResampleResult(ticks=result.ticks, indices=indices, stats=result.stats)


@dataclasses.dataclass(frozen=True)
class Command:
    """One forwarded command: absolute point times (s) and positions (points, joints) in the
    arm's joint order, NaN for joints it does not command."""
    stamp: float
    times: np.ndarray
    positions: np.ndarray


def _evaluate(cmd: Command, t: float, before: np.ndarray) -> np.ndarray:
    times, positions = cmd.times, cmd.positions
    if t >= times[-1]:
        value = positions[-1]
    elif t <= times[0]:
        span = times[0] - cmd.stamp
        if span > 0:
            w = min(1.0, max(0.0, (t - cmd.stamp) / span))
            value = before + (positions[0] - before) * w
        else:
            value = positions[0]
    else:
        i = int(np.searchsorted(times, t, side="right"))
        w = (t - times[i - 1]) / (times[i] - times[i - 1])
        value = positions[i - 1] + (positions[i] - positions[i - 1]) * w
    return np.where(np.isnan(value), before, value)


def commanded_setpoints(commands: Sequence[Command], at: np.ndarray, measured: np.ndarray) -> np.ndarray:
    """Setpoints (len(at), J) at times `at`; `measured` (len(at), J): where the robot was there
    (used before the first command and for joints a command leaves out)."""
    commands = sorted(commands, key=lambda c: c.stamp)
    stamps = np.array([c.stamp for c in commands])
    out = np.array(measured, dtype=np.float64, copy=True)
    if not commands:
        return out
    # Where each command takes over: the previous command's setpoint at its stamp (the first
    # command starts from where the robot is measured).
    first = int(np.searchsorted(at, stamps[0], side="left"))
    starts = [np.asarray(measured[min(first, len(at) - 1)], dtype=np.float64)]
    for prev, cmd in zip(commands, commands[1:]):
        starts.append(_evaluate(prev, cmd.stamp, starts[-1]))
    for k, t in enumerate(at):
        i = int(np.searchsorted(stamps, t + STAMP_TOLERANCE_S, side="right")) - 1
        if i >= 0:
            out[k] = np.where(np.isnan(value := _evaluate(commands[i], t, starts[i])), measured[k], value)
    return out


def safety_flags(ticks: np.ndarray, rate_hz: float, event_stamps: Sequence[float],
                 event_actions: Sequence[int], command_stamps: Sequence[float] = ()) -> np.ndarray:
    """uint8 per frame (bit 1 clamp, 2 reject, 4 hold): the events in (t_k, t_k + 1/rate], and
    those of the command the frame's action comes from (the latest forwarded at t_k + 1/rate: a
    clamped command, or the hold the filter published with a reject or a stop), so that a whole
    rejected or held stretch is marked, not only the frames a rejected command arrived in."""
    flags = np.zeros(len(ticks), dtype=np.uint8)
    if not len(ticks):
        return flags
    period = 1.0 / rate_hz
    event_stamps = np.asarray(event_stamps, dtype=np.float64)
    bits = np.array([SAFETY_BITS.get(int(a), 0) for a in event_actions], dtype=np.uint8)
    for stamp, bit in zip(event_stamps, bits):
        k = int(np.ceil((stamp - ticks[0]) * rate_hz - 1e-9)) - 1
        if 0 <= k < len(ticks) and ticks[k] < stamp <= ticks[k] + period + STAMP_TOLERANCE_S:
            flags[k] |= bit
    commands = np.sort(np.asarray(command_stamps, dtype=np.float64))
    if commands.size and event_stamps.size:
        # The filter stamps a command it clamped, or the hold it sends, with its event's stamp.
        order = np.argsort(event_stamps)
        sorted_events, sorted_bits = event_stamps[order], bits[order]
        at = np.searchsorted(commands, ticks + period + STAMP_TOLERANCE_S, side="right") - 1
        for k, i in enumerate(at):
            if i < 0:
                continue
            lo, hi = np.searchsorted(sorted_events, [commands[i] - STAMP_TOLERANCE_S,
                                                     commands[i] + STAMP_TOLERANCE_S])
            for bit in sorted_bits[lo:hi]:
                flags[k] |= bit
    return flags


def describe_flags(flags: np.ndarray) -> dict[str, int]:
    """Frames per kind of safety intervention."""
    return {name: int(np.count_nonzero(flags & bit)) for bit, name in SAFETY_NAMES.items()}
