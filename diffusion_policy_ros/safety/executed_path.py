"""What a joint_trajectory_controller executes from the safety filter's outputs, and the limit
checks on that path: the safety filter's property, node and hostile-input tests and `dpros bench
safety` (its robot and its soak) judge every output with these."""
from __future__ import annotations

import math

import numpy as np


class ExecutedPath:
    """Each new trajectory replaces the old one from its start time on (positions only, linear
    in between: the filter's model of a position-controlled JTC).

    Each knot remembers how long the segment after it was planned to last: a velocity change at
    a knot is spread over that segment, so |dv| <= a_max * planned duration is the acceleration
    bound (a later replacement may cut the segment short, which only ends the motion sooner)."""

    def __init__(self, t0, q0):
        self.t = [float(t0)]
        self.q = [np.asarray(q0, float)]
        self.planned = [math.inf]

    def replace(self, plan):
        self.replace_points(plan.start, plan.times, plan.positions)

    def replace_points(self, start, times, positions):
        keep = [i for i, t in enumerate(self.t) if t < start - 1e-12]
        q_now, _ = self.state(start)
        knots = np.concatenate([[start], np.asarray(times, float)])
        self.t = [self.t[i] for i in keep] + list(knots)
        self.q = [self.q[i] for i in keep] + [q_now] + [np.asarray(p, float) for p in positions]
        self.planned = [self.planned[i] for i in keep] + list(np.diff(knots)) + [math.inf]

    def forget_before(self, t) -> None:
        """Drop the knots before the last one at or before t: a robot that runs for minutes keeps
        what it can still be asked about, not its whole history."""
        first = max(int(np.searchsorted(self.t, t, side="right")) - 1, 0)
        if first:
            self.t, self.q, self.planned = self.t[first:], self.q[first:], self.planned[first:]

    def since(self, t) -> "ExecutedPath":
        """The part from the last knot before t on (for checking what a replacement changed)."""
        first = max(int(np.searchsorted(self.t, t, side="left")) - 1, 0)
        part = ExecutedPath(self.t[first], self.q[first])
        part.t, part.q, part.planned = self.t[first:], self.q[first:], self.planned[first:]
        return part

    def state(self, t):
        if t >= self.t[-1]:
            return self.q[-1].copy(), None
        if t <= self.t[0]:
            return self.q[0].copy(), None
        i = int(np.searchsorted(self.t, t, side="right")) - 1
        frac = (t - self.t[i]) / (self.t[i + 1] - self.t[i])
        return self.q[i] + frac * (self.q[i + 1] - self.q[i]), None


def check_limits(path: ExecutedPath, lim, max_step_rad: float, period: float, tol: float = 1e-6,
                 rel: float = 0.0, from_rest: bool = True) -> None:
    """Positions inside the limits minus margin, velocities, per-point steps and velocity changes
    within their bounds, along the whole path (at rest after its last knot, and before its first
    unless `from_rest` is false: a part cut out of a longer path). `rel` loosens the rate bounds
    relatively, for paths rebuilt from message stamps (a float of seconds since 1970 resolves
    about 0.2 us)."""
    t, q = np.array(path.t), np.array(path.q)
    assert np.all(q >= lim.safe_lower - tol) and np.all(q <= lim.safe_upper + tol), "position limit"
    dt = np.diff(t)
    keep = dt > 1e-9
    v = np.diff(q, axis=0)[keep] / dt[keep, None]
    planned = np.array(path.planned[:-1])[keep]
    rest = np.zeros((1, q.shape[1]))
    v = np.vstack([rest, v, rest] if from_rest else [v, rest])
    planned = np.append(planned, period) if from_rest else np.append(planned[1:], period)
    over = np.abs(v) - (lim.max_velocity * (1 + rel) + tol)
    if np.any(over > 0):
        k, j = np.unravel_index(int(np.argmax(over)), over.shape)
        raise AssertionError(f"velocity limit: joint {j} at {v[k, j]:.4f} on segment {k} (limit "
                             f"{lim.max_velocity[j]}); knot times {np.round(t - t[0], 4).tolist()}, "
                             f"positions {np.round(q[:, j], 5).tolist()}")
    step = np.abs(np.diff(q, axis=0))[:, ~lim.is_gripper]
    assert np.all(step <= max_step_rad + tol), "max step"
    dv = np.abs(np.diff(v, axis=0))
    bound = lim.max_acceleration * planned[:, None] * (1 + rel) + max(tol, 1e-6)
    if np.any(dv > bound):
        k, j = np.unravel_index(int(np.argmax(dv - bound)), dv.shape)
        raise AssertionError(f"acceleration limit: joint {j} changes velocity by {dv[k, j]:.6f} rad/s at knot "
                             f"{k + (0 if from_rest else 1)} (bound {bound[k, j]:.6f} over a planned "
                             f"{planned[k]:.4f} s); knot times {np.round(t - t[0], 4).tolist()}")
