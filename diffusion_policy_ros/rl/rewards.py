"""Rewards for RL in the sim: the task's success plus dense shaping from the task's distances.

pick_place: a bonus when the task's own success test turns true (the episode ends there, as the
evaluation counts "success reached"), plus potential-based shaping (Ng et al. 1999) with
potential  phi = -(|tool - cube| + |cube - target|_xy)  in metres, scaled. Shaping of this form
telescopes over an episode (its sum is phi(end) - phi(start)), so it cannot change which policy is
optimal; it only tells a policy that fails early which way is better: the tool towards the cube,
then the cube towards the target (carried or pushed: both end in success if let go there).
"""
from __future__ import annotations

import numpy as np


class PickPlaceReward:
    def __init__(self, success_bonus: float = 10.0, shaping_scale: float = 10.0):
        self.success_bonus = float(success_bonus)
        self.shaping_scale = float(shaping_scale)
        self._last: float | None = None
        self._succeeded = False

    @staticmethod
    def potential(env) -> float:
        cube, _ = env.object_pose()
        tool = env.data.site_xpos[env.robot.arms[0].tcp_site]
        target = env.target_position()
        return -float(np.linalg.norm(tool - cube) + np.linalg.norm(cube[:2] - target[:2]))

    def reset(self, env) -> None:
        self._last = self.potential(env)
        self._succeeded = False

    def step(self, env) -> tuple[float, bool]:
        """After one control step -> (reward, success); the bonus comes once per episode."""
        now = self.potential(env)
        reward = self.shaping_scale * (now - self._last)
        self._last = now
        success = env.success()
        if success and not self._succeeded:
            reward += self.success_bonus
            self._succeeded = True
        return reward, success


REWARDS = {"pick_place": PickPlaceReward}


def make_reward(task: str, **kwargs):
    if task not in REWARDS:
        raise ValueError(f"no RL reward for task {task!r}; rewards exist for {sorted(REWARDS)}")
    return REWARDS[task](**kwargs)
