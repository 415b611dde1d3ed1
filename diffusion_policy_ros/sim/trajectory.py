"""A joint trajectory follower that behaves like ros2_control's joint_trajectory_controller.

Times are seconds on the sim's clock. A trajectory = start time (0 = "now"), joint names, and
points with time_from_start, positions and optional velocities:
  * points whose absolute time is already past are dropped; if all are past, it is rejected;
  * from the commanded state at acceptance it interpolates to the first remaining point, then
    between points (linear with positions only, cubic Hermite when velocities are given);
  * after the last point it holds the last position;
  * a new trajectory replaces the active one; a direct command (forward position controller
    style) replaces any trajectory and holds;
  * joints the message does not name keep their current command.
"""
from __future__ import annotations

import dataclasses

import numpy as np


class TrajectoryRejected(ValueError):
    """The trajectory cannot be executed; the controller keeps its previous command."""


@dataclasses.dataclass
class _Segment:
    times: np.ndarray        # absolute, (K,)
    positions: np.ndarray    # (K, J) over all joints
    velocities: np.ndarray | None


class TrajectoryFollower:
    def __init__(self, joint_names, initial_positions, lower=None, upper=None):
        self.joint_names = list(joint_names)
        self._index = {n: i for i, n in enumerate(self.joint_names)}
        self._hold = np.asarray(initial_positions, float).copy()
        self._lower = None if lower is None else np.asarray(lower, float)
        self._upper = None if upper is None else np.asarray(upper, float)
        self._active: _Segment | None = None

    @property
    def active(self) -> bool:
        return self._active is not None

    def hold(self, positions) -> None:
        """Forget any trajectory and hold these positions (reset, forward command)."""
        positions = np.asarray(positions, float)
        if positions.shape != self._hold.shape or not np.all(np.isfinite(positions)):
            raise TrajectoryRejected(f"expected {len(self._hold)} finite positions "
                                     f"({', '.join(self.joint_names)}), got {positions.size}")
        self._hold = self._clip(positions)
        self._active = None

    def set_trajectory(self, now: float, start_time: float, joint_names, times_from_start,
                       positions, velocities=None) -> int:
        """Accept a trajectory; returns how many points were kept. Raises TrajectoryRejected."""
        joint_names = list(joint_names)
        unknown = [n for n in joint_names if n not in self._index]
        if unknown or not joint_names:
            raise TrajectoryRejected(f"unknown joints {unknown}; this controller has {self.joint_names}"
                                     if unknown else "trajectory names no joints")
        if len(set(joint_names)) != len(joint_names):
            raise TrajectoryRejected("trajectory names a joint twice")
        t_rel = np.asarray(times_from_start, float).reshape(-1)
        pos = np.asarray(positions, float)
        if t_rel.size == 0:
            raise TrajectoryRejected("trajectory has no points")
        if pos.shape != (t_rel.size, len(joint_names)):
            raise TrajectoryRejected(f"each point needs {len(joint_names)} positions")
        vel = None
        if velocities is not None and np.asarray(velocities).size:
            vel = np.asarray(velocities, float)
            if vel.shape != pos.shape:
                raise TrajectoryRejected("velocities must be empty or match positions")
        if not (np.all(np.isfinite(pos)) and np.all(np.isfinite(t_rel))
                and (vel is None or np.all(np.isfinite(vel)))):
            raise TrajectoryRejected("trajectory contains NaN or infinity")
        if np.any(np.diff(t_rel) <= 0):
            raise TrajectoryRejected("time_from_start must increase strictly from point to point")
        start = now if start_time <= 0 else start_time
        t_abs = start + t_rel
        keep = t_abs > now
        if not keep.any():
            raise TrajectoryRejected(
                f"all {t_rel.size} points are in the past (last at {t_abs[-1]:.3f} s, now {now:.3f} s)")
        # Joints not named keep what they are commanded now (current value of the old plan).
        current_pos, current_vel = self.sample(now)
        cols = [self._index[n] for n in joint_names]
        full_pos = np.repeat(current_pos[None], keep.sum() + 1, axis=0)
        full_pos[1:, cols] = self._clip_cols(pos[keep], cols)
        full_vel = None
        if vel is not None:
            full_vel = np.zeros_like(full_pos)
            full_vel[0] = current_vel
            full_vel[1:, cols] = vel[keep]
        self._active = _Segment(np.concatenate([[now], t_abs[keep]]), full_pos, full_vel)
        return int(keep.sum())

    def sample(self, t: float) -> tuple[np.ndarray, np.ndarray]:
        """Commanded (positions, velocities) at time t; holds after the end."""
        seg = self._active
        if seg is None:
            return self._hold.copy(), np.zeros_like(self._hold)
        if t >= seg.times[-1]:
            self._hold = seg.positions[-1].copy()
            self._active = None
            return self._hold.copy(), np.zeros_like(self._hold)
        k = int(np.searchsorted(seg.times, t, side="right")) - 1
        k = max(k, 0)
        t0, t1 = seg.times[k], seg.times[k + 1]
        p0, p1 = seg.positions[k], seg.positions[k + 1]
        h = t1 - t0
        s = np.clip((t - t0) / h, 0.0, 1.0)
        if seg.velocities is None:
            return p0 + s * (p1 - p0), (p1 - p0) / h
        v0, v1 = seg.velocities[k] * h, seg.velocities[k + 1] * h
        h00, h10, h01, h11 = 2 * s**3 - 3 * s**2 + 1, s**3 - 2 * s**2 + s, -2 * s**3 + 3 * s**2, s**3 - s**2
        d00, d10, d01, d11 = 6 * s**2 - 6 * s, 3 * s**2 - 4 * s + 1, -6 * s**2 + 6 * s, 3 * s**2 - 2 * s
        pos = h00 * p0 + h10 * v0 + h01 * p1 + h11 * v1
        vel = (d00 * p0 + d10 * v0 + d01 * p1 + d11 * v1) / h
        return pos, vel

    def _clip(self, q):
        if self._lower is None:
            return q
        return np.clip(q, self._lower, self._upper)

    def _clip_cols(self, q, cols):
        if self._lower is None:
            return q
        return np.clip(q, self._lower[cols], self._upper[cols])
