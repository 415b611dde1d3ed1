"""Incoming commands and joint states as they arrive: size caps and range checks, before any
per-point work, so that the filter's work per message is bounded whatever the message holds.

The functions read the fields of trajectory_msgs/JointTrajectory, std_msgs/Float64MultiArray and
sensor_msgs/JointState by attribute only (nothing here imports ROS), so they are tested on plain
objects as well as on real messages. A message that fails a check raises `InputRejected` with the
SafetyEvent reason to report.
"""
from __future__ import annotations

import collections
import math
from collections.abc import Sequence

import numpy as np

from diffusion_policy_ros.safety.limits import SafetyParams

NANOSECONDS_PER_SECOND = 1_000_000_000


class InputRejected(ValueError):
    """A message the filter does not act on; `reason` is the SafetyEvent reason."""

    def __init__(self, reason: str, message: str):
        super().__init__(message)
        self.reason = reason


def seconds_of(stamp, field: str) -> float:
    """builtin_interfaces Time or Duration -> seconds, refusing a nanosec field of a second or more."""
    if not 0 <= stamp.nanosec < NANOSECONDS_PER_SECOND:
        raise InputRejected("invalid_time", f"{field}.nanosec is {stamp.nanosec} (must be below 1e9)")
    return stamp.sec + stamp.nanosec * 1e-9


def names_problem(names: Sequence[str], expected: Sequence[str]) -> str | None:
    """Why `names` is not exactly the arm's joints (in any order), or None."""
    names = list(names)
    if len(names) == len(expected) and len(set(names)) == len(names) and set(names) == set(expected):
        return None
    unexpected = sorted(set(names) - set(expected))
    missing = sorted(set(expected) - set(names))
    duplicated = sorted(n for n, count in collections.Counter(names).items() if count > 1)[:8]
    return (f"joint names must be exactly {list(expected)}; unexpected {unexpected[:8]}, missing {missing}"
            + (f", duplicated {duplicated}" if duplicated else ""))


def read_trajectory(msg, now: float, params: SafetyParams, expected_names: Sequence[str],
                    horizon: float | None = None):
    """A JointTrajectory -> (joint names, absolute point times (N,), positions (N, J)).

    Stamp 0 means "now" (the joint_trajectory_controller's rule). Rejected, in this order and
    before anything is done per point: more than `max_points` points, joint names that are not
    the arm's, a stamp older than `max_stamp_age_s` or a first point beyond `max_horizon_s`;
    then per point: a time_from_start that is negative or has nanosec >= 1e9, and a positions
    array of the wrong length."""
    count = len(msg.points)
    if count > params.max_points:
        raise InputRejected("too_many_points", f"{count} points; at most max_points {params.max_points} "
                                                "are accepted (nothing of this command was used)")
    if count == 0:
        raise InputRejected("invalid_trajectory", "the command has no points")
    problem = names_problem(msg.joint_names, expected_names)
    if problem:
        raise InputRejected("unknown_joint", problem)
    start = seconds_of(msg.header.stamp, "header.stamp") or now
    if start < now - params.max_stamp_age_s:
        raise InputRejected("invalid_time", f"header.stamp is {now - start:.3f} s old "
                                            f"(more than max_stamp_age_s {params.max_stamp_age_s})")
    horizon = params.max_horizon_s if horizon is None else horizon
    width = len(expected_names)
    times = np.empty(count)
    positions = np.empty((count, width))
    for k, point in enumerate(msg.points):
        offset = point.time_from_start
        if offset.sec < 0:
            raise InputRejected("invalid_time", f"point {k}: time_from_start is negative ({offset.sec} s)")
        times[k] = start + seconds_of(offset, f"point {k}: time_from_start")
        if k == 0 and times[0] > now + horizon:
            raise InputRejected("beyond_horizon", f"the first point is {times[0] - now:.3f} s ahead; commands "
                                                  f"start within max_horizon_s {horizon}")
        if len(point.positions) != width:
            raise InputRejected("invalid_trajectory", f"point {k} has {len(point.positions)} positions "
                                                      f"for {width} joints")
        positions[k] = point.positions
    return list(msg.joint_names), times, positions


def read_targets(data: Sequence[float], names: Sequence[str]) -> np.ndarray:
    """Float64MultiArray data: one target per joint in the arm's order."""
    if len(data) != len(names):
        raise InputRejected("invalid_trajectory", f"{len(data)} values for the {len(names)} joints {list(names)}")
    return np.asarray(data, dtype=float)


def read_joint_state(msg, now: float, params: SafetyParams, expected_names: Sequence[str]):
    """A JointState -> (positions, stamp): see `joint_positions`."""
    stamp = seconds_of(msg.header.stamp, "header.stamp")
    return joint_positions(msg.name, msg.position, stamp, now, params, expected_names)


def joint_positions(names: Sequence[str], positions: Sequence[float], stamp: float, now: float,
                    params: SafetyParams, expected_names: Sequence[str]) -> tuple[np.ndarray, float]:
    """-> (the arm's joint positions in `expected_names` order, the stamp). Other joints may be
    present; every one of the arm's must be, once, with a finite position. A stamp (0 =
    unstamped) must lie within `joint_state_timeout_s` of now: an older one is stale, a later one
    comes from a clock that is not the filter's."""
    if len(names) != len(positions):
        raise InputRejected("invalid_joint_state", f"{len(names)} names but {len(positions)} positions")
    if stamp and abs(stamp - now) > params.joint_state_timeout_s:
        reason = "stale_joint_state" if stamp < now else "invalid_joint_state"
        raise InputRejected(reason, f"header.stamp is {stamp - now:+.3f} s from now (more than "
                                    f"joint_state_timeout_s {params.joint_state_timeout_s} either way)")
    index = {}
    for i, name in enumerate(names):
        if name in index:
            raise InputRejected("invalid_joint_state", f"joint {name!r} appears twice")
        index[name] = i
    missing = [n for n in expected_names if n not in index]
    if missing:
        raise InputRejected("invalid_joint_state", f"no position for {missing}")
    q = np.array([positions[index[n]] for n in expected_names], dtype=float)
    if not np.all(np.isfinite(q)):
        bad = [n for n, x in zip(expected_names, q) if not math.isfinite(x)]
        raise InputRejected("invalid_joint_state", f"NaN or Inf position for {bad}")
    return q, stamp
