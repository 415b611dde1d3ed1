"""Rewards for RL in the sim: the task's success plus dense shaping from the task's distances.

pick_place: a bonus when the task's own success test has been true without a break for
`success_hold_s` sim seconds (the episode ends there; the evaluation's "held" criterion), plus
potential-based shaping (Ng et al. 1999) with
potential  phi = -(|tool - cube| + |cube - target|_xy)  in metres, scaled. Shaping of this form
telescopes over an episode (its sum is phi(end) - phi(start)), so it cannot change which policy is
optimal; it only tells a policy that fails early which way is better: the tool towards the cube,
then the cube towards the target (carried or pushed: both end in success if let go there).

Why a hold: the success test is true for a control step whenever the cube is low over the target
and the fingers happen to lose contact, which a cube still being carried does now and then. A
bonus for the first true step paid fine-tuned policies for brushing the cube past the target
(docs/rl_finetuning.md, "Paying for held success"). A hold of 0 is that earlier reward.
"""
from __future__ import annotations

import numpy as np

_EPS = 1e-9  # sim times are sums of physics steps
# What a run saved before a reward setting existed used (for --resume's comparison).
REWARD_SETTINGS_OF_OLDER_RUNS = {"success_hold_s": 0.0}


class PickPlaceReward:
    def __init__(self, success_bonus: float = 10.0, shaping_scale: float = 10.0, success_hold_s: float = 1.0):
        if not success_hold_s >= 0:
            raise ValueError(f"success_hold_s must be >= 0 sim seconds, got {success_hold_s}")
        self.success_bonus = float(success_bonus)
        self.shaping_scale = float(shaping_scale)
        self.success_hold_s = float(success_hold_s)
        self._last: float | None = None
        self._streak_since: float | None = None
        self._succeeded = False

    @staticmethod
    def potential(env) -> float:
        cube, _ = env.object_pose()
        tool = env.data.site_xpos[env.robot.arms[0].tcp_site]
        target = env.target_position()
        return -float(np.linalg.norm(tool - cube) + np.linalg.norm(cube[:2] - target[:2]))

    def reset(self, env) -> None:
        self._last = self.potential(env)
        self._streak_since = None
        self._succeeded = False

    def step(self, env) -> tuple[float, bool]:
        """After one control step -> (reward, success held); the bonus comes once per episode."""
        now = self.potential(env)
        reward = self.shaping_scale * (now - self._last)
        self._last = now
        if env.success():
            self._streak_since = env.time if self._streak_since is None else self._streak_since
            held = env.time - self._streak_since >= self.success_hold_s - _EPS
        else:
            self._streak_since, held = None, False
        if held and not self._succeeded:
            reward += self.success_bonus
            self._succeeded = True
        return reward, held


REWARDS = {"pick_place": PickPlaceReward}


def make_reward(task: str, **kwargs):
    if task not in REWARDS:
        raise ValueError(f"no RL reward for task {task!r}; rewards exist for {sorted(REWARDS)}")
    return REWARDS[task](**kwargs)
