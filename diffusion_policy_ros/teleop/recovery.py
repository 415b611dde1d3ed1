"""When a teleop source drops its own target and starts again from the robot's measured joints.

A source that keeps a target of its own (the jog's pose, the leader ramp's last target) must let
go of it whenever the robot did not follow: the safety filter rejected or held a command, the
episode was reset (the sim teleports the arm), or the measured joints are simply far from what
was commanded (a collision, a hand push). Otherwise the next command is measured from a state
the robot is not in, and the filter keeps rejecting it.
"""
from __future__ import annotations

import numpy as np

# SafetyEvent.action values after which the robot did not do what was commanded.
SAFETY_REJECT, SAFETY_HOLD = 2, 3


class Reanchor:
    """Per arm: collects the reasons to re-anchor, and tells the source once per reason."""

    def __init__(self, divergence_rad: float):
        if divergence_rad <= 0:
            raise ValueError("divergence_rad must be > 0")
        self.divergence_rad = float(divergence_rad)
        self._pending: str | None = None
        self._episode = None

    def safety_event(self, action: int, reason: str) -> None:
        """A SafetyEvent for this arm: rejects and holds re-anchor; clamps do not (the robot
        still moves toward the command, only slower or shorter)."""
        if action == SAFETY_REJECT:
            self._pending = f"the safety filter rejected a command ({reason})"
        elif action == SAFETY_HOLD:
            self._pending = f"the safety filter holds the arm ({reason})"

    def episode(self, episode) -> None:
        """The episode counter the sim publishes; a change means the scene was reset."""
        if self._episode is not None and episode != self._episode:
            self._pending = f"a new episode ({episode}) started"
        self._episode = episode

    def request(self, reason: str) -> None:
        self._pending = reason

    def check(self, commanded, measured, is_gripper) -> str | None:
        """The reason to re-anchor now (cleared once returned), or None. A gripper closed on an
        object stays short of its target, so grippers do not count toward the divergence."""
        reason, self._pending = self._pending, None
        if reason is None and commanded is not None and measured is not None:
            error = np.abs(np.asarray(commanded, float) - np.asarray(measured, float))
            error[np.asarray(is_gripper, bool)] = 0.0
            if error.max() > self.divergence_rad:
                reason = (f"the arm is {error.max():.2f} rad from the last command "
                          f"(> {self.divergence_rad:g})")
        return reason
