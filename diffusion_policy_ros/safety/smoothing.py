"""Jerk-limited stops (ruckig): how the safety filter brings an arm to rest.

A stop starts from the arm's commanded position, velocity and acceleration and reaches zero
velocity and acceleration with |jerk| <= max_jerk and |acceleration| <= max_acceleration, each
joint as fast as it can (no time synchronisation: a stop is no place to wait for other joints).
The profile is sampled every `dt` seconds; those samples become trajectory points, so the
path a linear-interpolating controller executes follows the smooth stop.
"""
from __future__ import annotations

import numpy as np
from ruckig import ControlInterface, InputParameter, Result, Ruckig, Synchronization, Trajectory

_DONE = 1e-9  # velocity below this counts as at rest


def jerk_limited_stop(q, v, a, max_velocity, max_acceleration, max_jerk, dt: float):
    """Sample times (offsets > 0, `dt` apart, the last one where every joint is at rest) and
    positions (N, J) of the fastest jerk-limited stop from (q, v, a). Empty when already at rest."""
    q, v, a = (np.asarray(x, dtype=float) for x in (q, v, a))
    amax = np.asarray(max_acceleration, dtype=float)
    a = np.clip(a, -amax, amax)  # a discrete plan's acceleration can sit a rounding error outside
    # Speeding up still, a joint keeps gaining a^2 / (2 jerk) before the stop bites: cap that
    # acceleration so the stop never exceeds the velocity limit (an acceleration step instead).
    vmax, jmax = np.asarray(max_velocity, dtype=float), np.asarray(max_jerk, dtype=float)
    room = np.sqrt(2.0 * jmax * np.maximum(vmax - np.abs(v), 0.0))
    a = np.where(a * v > 0, np.sign(a) * np.minimum(np.abs(a), room), a)
    if not np.any(np.abs(v) > _DONE) and not np.any(np.abs(a) > _DONE):
        return [], []
    n = q.size
    inp = InputParameter(n)
    inp.control_interface = ControlInterface.Velocity
    inp.synchronization = Synchronization.No
    inp.current_position, inp.current_velocity, inp.current_acceleration = q, v, a
    inp.target_velocity = np.zeros(n)
    inp.target_acceleration = np.zeros(n)
    # the velocity bound only matters if the start exceeds it; never let it block a stop
    inp.max_velocity = np.maximum(np.asarray(max_velocity, dtype=float), np.abs(v) + 1e-6)
    inp.max_acceleration = amax
    inp.max_jerk = np.asarray(max_jerk, dtype=float)
    profile = Trajectory(n)
    result = Ruckig(n).calculate(inp, profile)
    if result not in (Result.Working, Result.Finished):
        raise RuntimeError(f"ruckig could not plan a stop from v={v}, a={a}: {result}")
    steps = max(1, int(np.ceil(profile.duration / dt - 1e-9)))
    offsets = [dt * k for k in range(1, steps + 1)]
    points = [np.asarray(profile.at_time(min(t, profile.duration))[0], dtype=float) for t in offsets]
    return offsets, points
