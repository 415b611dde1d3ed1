"""Leader arm -> follower joint targets (the ALOHA / GELLO setup), as plain math.

A leader device reports joint angles; the follower gets, per joint, `sign * scale * leader +
offset` (calibration), the gripper mapped linearly from the leader's range to the follower's
opening in metres, everything clipped to the follower's limits. Two guards borrowed from real
setups: a speed limit on the targets (so the first message cannot yank the follower across
the workspace: it walks there), and a staleness check (no fresh leader data -> no commands).
The ramp starts again from the follower's measured joints after `reanchor()` (the safety filter
refused a command, or the scene was reset), and each step can be cut down further by the
caller's `limit` (the filter's workspace box: `CommandBounds.limit`).
"""
from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence

import numpy as np


class LeaderMappingError(ValueError):
    pass


@dataclasses.dataclass
class LeaderFollowerMap:
    follower_joints: Sequence[str]
    leader_joints: Sequence[str]
    lower: Sequence[float]                     # follower limits (rad, or m for the gripper)
    upper: Sequence[float]
    scale: Sequence[float] | None = None       # per joint; negative flips direction
    offset: Sequence[float] | None = None
    gripper_joints: Sequence[str] = ()
    leader_gripper_range: tuple[float, float] = (0.0, 1.0)     # leader closed, open
    max_velocity: float = 1.0                  # rad/s (m/s for grippers: scaled by range)
    stale_after_s: float = 0.5

    def __post_init__(self):
        n = len(self.follower_joints)
        if len(self.leader_joints) != n:
            raise LeaderMappingError(f"{len(self.leader_joints)} leader joints for {n} follower joints")
        self.lower = np.asarray(self.lower, float)
        self.upper = np.asarray(self.upper, float)
        self.scale = np.ones(n) if self.scale is None or len(self.scale) == 0 else np.asarray(self.scale, float)
        self.offset = np.zeros(n) if self.offset is None or len(self.offset) == 0 else np.asarray(self.offset, float)
        for name, arr in (("lower", self.lower), ("upper", self.upper), ("scale", self.scale),
                          ("offset", self.offset)):
            if arr.shape != (n,):
                raise LeaderMappingError(f"{name} needs {n} values, got {arr.shape[0]}")
        if np.any(self.lower > self.upper):
            raise LeaderMappingError("lower limits above upper limits")
        self.is_gripper = np.array([j in self.gripper_joints for j in self.follower_joints])
        lo, hi = self.leader_gripper_range
        if hi == lo:
            raise LeaderMappingError("leader_gripper_range must span a non-zero interval")
        self._last_target: np.ndarray | None = None
        self._last_time: float | None = None

    def map(self, leader_names: Sequence[str], leader_positions: Sequence[float]) -> np.ndarray:
        """Leader reading -> unconstrained-speed follower targets (clipped to limits)."""
        index = {n: i for i, n in enumerate(leader_names)}
        missing = [j for j in self.leader_joints if j not in index]
        if missing:
            raise LeaderMappingError(f"leader message lacks joints {missing}")
        raw = np.array([leader_positions[index[j]] for j in self.leader_joints], float)
        if not np.all(np.isfinite(raw)):
            raise LeaderMappingError("leader positions are not finite")
        target = self.scale * raw + self.offset
        lo, hi = self.leader_gripper_range
        fraction = np.clip((raw - lo) / (hi - lo), 0.0, 1.0)
        target = np.where(self.is_gripper, self.lower + fraction * (self.upper - self.lower), target)
        return np.clip(target, self.lower, self.upper)

    def reanchor(self) -> None:
        """Forget the ramp: the next step starts from the follower's measured joints."""
        self._last_target, self._last_time = None, None

    @property
    def last_target(self) -> np.ndarray | None:
        return None if self._last_target is None else self._last_target.copy()

    def step(self, leader_names, leader_positions, leader_stamp: float, now: float,
             follower_positions: Sequence[float] | None,
             limit: Callable[[np.ndarray, np.ndarray], np.ndarray] | None = None) -> np.ndarray | None:
        """Speed-limited target for this tick, or None when the leader is stale / unknown.
        `limit(start, target)` may shorten the step further."""
        if now - leader_stamp > self.stale_after_s:
            self._last_target, self._last_time = None, None   # resume with a fresh ramp
            return None
        desired = self.map(leader_names, leader_positions)
        start = self._last_target
        if start is None:
            if follower_positions is None:
                return None            # never jump: wait until we know where the follower is
            start = np.clip(np.asarray(follower_positions, float), self.lower, self.upper)
            dt = 0.0
        else:
            dt = max(0.0, now - self._last_time)
        span = np.where(self.is_gripper, self.upper - self.lower, 1.0)
        max_step = self.max_velocity * span * dt
        target = start + np.clip(desired - start, -max_step, max_step)
        if limit is not None:
            target = np.asarray(limit(start, target), float)
        self._last_target, self._last_time = target, now
        return target
