"""A tiny chunk env with a known optimum, for tests of the NCDPO loop in CI time.

Each episode draws a goal g in [-0.6, 0.6]^A; the policy observes it as `obs/joint_pos` and is
paid -|a - g|^2 (mean over the executed rows) per decision, for `decisions` decisions: the best
return is 0, reached by the chunk that repeats g. Same observation layout as SimChunkEnv.
"""
from __future__ import annotations

import gymnasium as gym
import numpy as np

from diffusion_policy_ros import obs_keys
from diffusion_policy_ros.rl.chunk_env import CRITIC_KEY


class GoalReachEnv(gym.Env):
    metadata = {"render_modes": []}

    def __init__(self, action_dim: int = 2, n_obs_steps: int = 1, n_action_steps: int = 4, decisions: int = 2):
        self.action_dim, self.n_obs_steps, self.n_action_steps = action_dim, n_obs_steps, n_action_steps
        self.decisions = decisions
        self.observation_space = gym.spaces.Dict({
            obs_keys.JOINT_POS: gym.spaces.Box(-1, 1, (n_obs_steps, action_dim), np.float32),
            CRITIC_KEY: gym.spaces.Box(-1, 1, (action_dim + 1,), np.float32)})
        self.action_space = gym.spaces.Box(-np.inf, np.inf, (n_action_steps, action_dim), np.float32)
        self.goal = np.zeros(action_dim, np.float32)
        self.made = 0

    @property
    def max_decisions(self) -> int:
        return self.decisions

    def _observe(self):
        return {obs_keys.JOINT_POS: np.repeat(self.goal[None], self.n_obs_steps, 0),
                CRITIC_KEY: np.append(self.goal, self.made / self.decisions).astype(np.float32)}

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self.goal = self.np_random.uniform(-0.6, 0.6, self.action_dim).astype(np.float32)
        self.made = 0
        return self._observe(), {}

    def step(self, action):
        chunk = np.asarray(action, dtype=np.float32).reshape(self.n_action_steps, self.action_dim)
        reward = -float(((chunk - self.goal) ** 2).sum(-1).mean())
        self.made += 1
        return self._observe(), reward, False, self.made >= self.decisions, {}
