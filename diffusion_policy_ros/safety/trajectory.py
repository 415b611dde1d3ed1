"""A piecewise-linear joint trajectory in absolute time: what a position-only JTC executes.

Knot 0 is the anchor (where the robot is when the trajectory starts); between knots the
controller interpolates linearly, so a segment's slope is the commanded velocity.
"""
from __future__ import annotations

import dataclasses

import numpy as np


@dataclasses.dataclass(frozen=True)
class Trajectory:
    start: float                 # absolute time of the anchor, seconds
    anchor: np.ndarray           # (J,) positions at `start`
    anchor_velocity: np.ndarray  # (J,) velocity the robot had at `start`
    times: np.ndarray            # (N,) absolute times, strictly after `start`, increasing
    positions: np.ndarray        # (N, J)

    @classmethod
    def hold(cls, start: float, position) -> "Trajectory":
        q = np.asarray(position, dtype=float)
        return cls(start, q.copy(), np.zeros_like(q), np.zeros(0), np.zeros((0, q.size)))

    @property
    def end_time(self) -> float:
        return float(self.times[-1]) if len(self.times) else self.start

    @property
    def final_position(self) -> np.ndarray:
        return self.positions[-1] if len(self.times) else self.anchor

    def knots(self) -> tuple[np.ndarray, np.ndarray]:
        return (np.concatenate([[self.start], self.times]),
                np.vstack([self.anchor[None], self.positions]))

    def state_at(self, t: float) -> tuple[np.ndarray, np.ndarray]:
        """Position and velocity the controller commands at time t (velocity 0 once finished). At
        a knot, the velocity of the segment that ends there: the next one has not begun, and a
        plan that replaces this one from t changes velocity from the one the arm has."""
        if t <= self.start:
            return self.anchor.copy(), self.anchor_velocity.copy()
        if t >= self.end_time:
            return self.final_position.copy(), np.zeros_like(self.anchor)
        knot_t, knot_q = self.knots()
        i = int(np.searchsorted(knot_t, t, side="left")) - 1
        dt = knot_t[i + 1] - knot_t[i]
        velocity = (knot_q[i + 1] - knot_q[i]) / dt
        return knot_q[i] + velocity * (t - knot_t[i]), velocity

    def acceleration_at(self, t: float) -> np.ndarray:
        """The velocity change into the segment running at t, over that segment's duration: the
        acceleration a linear-interpolating controller spreads over it (0 once finished, and for
        a hold, which has no segment: a clock that stepped back can ask one before its start)."""
        if t >= self.end_time or not len(self.times):
            return np.zeros_like(self.anchor)
        knot_t, knot_q = self.knots()
        i = max(int(np.searchsorted(knot_t, t, side="left")) - 1, 0)  # at a knot: the segment ending there
        dt = knot_t[i + 1] - knot_t[i]
        velocity = (knot_q[i + 1] - knot_q[i]) / dt
        before = self.anchor_velocity if i == 0 else (knot_q[i] - knot_q[i - 1]) / (knot_t[i] - knot_t[i - 1])
        return (velocity - before) / dt
