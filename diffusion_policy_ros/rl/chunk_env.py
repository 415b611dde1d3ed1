"""A SimEnv as a gymnasium env whose action is one executed chunk (one PPO decision).

step(chunk): the (n_action_steps, A) joint targets are held one control period each, as
`select_action` would; the reward is summed over them; the episode terminates when the reward
says success (for pick_place: the task's success test held for a while, rl/rewards.py) after any
of them and is truncated at
`episode_seconds`. The observation holds the policy's keys over its last n_obs_steps control
steps (the first decision sees the reset observation repeated, like the runtime's queue) and
'critic': a state vector for the value network only (joints, cube position, target, tool,
elapsed fraction of the episode). Task seeds come from the env's seeded generator, at or above
TRAIN_SEED_LOW, far from the seeds the evaluations hold out (10000-11999).
"""
from __future__ import annotations

import collections

import gymnasium as gym
import numpy as np

from diffusion_policy_ros import obs_keys
from diffusion_policy_ros.rl.rewards import make_reward

TRAIN_SEED_LOW = 1_000_000
CRITIC_KEY = "critic"


def _box_for(key: str, shape, n_obs_steps: int) -> gym.spaces.Box:
    full = (n_obs_steps, *shape)
    if obs_keys.parse(key).modality == "rgb":
        return gym.spaces.Box(0, 255, full, np.uint8)
    return gym.spaces.Box(-np.inf, np.inf, full, np.float32)


class SimChunkEnv(gym.Env):
    metadata = {"render_modes": []}

    def __init__(self, robot_config, task: str, obs_shapes: dict, n_obs_steps: int, n_action_steps: int,
                 episode_seconds: float | None = None, reward_kwargs: dict | None = None):
        from diffusion_policy_ros.policy.configuration import robot_obs_shapes
        from diffusion_policy_ros.sim.tasks import TASKS
        provided = robot_obs_shapes(robot_config)
        wrong = [k for k, shape in obs_shapes.items() if list(provided.get(k, [])) != list(shape)]
        if wrong:
            raise ValueError(f"the sim cannot provide the policy's observations {wrong} with the policy's shapes "
                             f"(it has {provided})")
        self.robot_config, self.task_name = robot_config, task
        self._env = None
        self.keys = sorted(obs_shapes)
        self.n_obs_steps, self.n_action_steps = n_obs_steps, n_action_steps
        self.action_dim = robot_config.action_dim
        if task not in TASKS:
            raise ValueError(f"unknown sim task {task!r}; known: {sorted(TASKS)}")
        self.max_steps = int(round((episode_seconds or TASKS[task].episode_seconds) * robot_config.control_rate_hz))
        self.reward = make_reward(task, **(reward_kwargs or {}))
        critic_dim = self.action_dim + 3 + 3 + 3 + 1
        spaces = {k: _box_for(k, obs_shapes[k], n_obs_steps) for k in self.keys}
        spaces[CRITIC_KEY] = gym.spaces.Box(-np.inf, np.inf, (critic_dim,), np.float32)
        self.observation_space = gym.spaces.Dict(spaces)
        self.action_space = gym.spaces.Box(-np.inf, np.inf, (n_action_steps, self.action_dim), np.float32)
        self._history: collections.deque = collections.deque(maxlen=n_obs_steps)
        self.steps = 0
        self.task_seed = None

    @property
    def max_decisions(self) -> int:
        """Decisions (executed chunks) in an episode that times out."""
        return -(-self.max_steps // self.n_action_steps)

    @property
    def env(self):
        """The SimEnv, built on first use: AsyncVectorEnv builds one env in the main process to
        read its spaces before forking the workers, and a GL context must not be forked."""
        if self._env is None:
            from diffusion_policy_ros.sim.env import SimEnv   # MuJoCo only where an env runs
            cameras = sorted({obs_keys.parse(k).name for k in self.keys if obs_keys.is_image(k)})
            self._env = SimEnv(self.robot_config, task=self.task_name, cameras=cameras, render=bool(cameras),
                               variant="static")
        return self._env

    def _observe(self) -> dict:
        obs = {k: np.stack([h[k] for h in self._history]) for k in self.keys}
        env = self.env
        cube, _ = env.object_pose()
        tool = env.data.site_xpos[env.robot.arms[0].tcp_site]
        obs[CRITIC_KEY] = np.concatenate([env.joint_positions(), cube, env.target_position(), tool,
                                          [self.steps / self.max_steps]]).astype(np.float32)
        return obs

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self.task_seed = int(self.np_random.integers(TRAIN_SEED_LOW, 2 ** 31 - 1))
        first = self.env.reset(self.task_seed)
        self._history.clear()
        self._history.extend([{k: first[k] for k in self.keys}] * self.n_obs_steps)
        self.steps = 0
        self.reward.reset(self.env)
        return self._observe(), {"task_seed": self.task_seed}

    def step(self, action):
        chunk = np.asarray(action, dtype=float)
        if chunk.shape != (self.n_action_steps, self.action_dim):
            raise ValueError(f"action must be a chunk of shape {(self.n_action_steps, self.action_dim)}, "
                             f"got {chunk.shape}")
        total, success = 0.0, False
        for row in chunk:
            obs = self.env.step(row)
            self._history.append({k: obs[k] for k in self.keys})
            self.steps += 1
            reward, reached = self.reward.step(self.env)
            total += reward
            success = success or reached
        truncated = not success and self.steps >= self.max_steps
        return self._observe(), total, success, truncated, {"task_seed": self.task_seed}

    def close(self):
        if self._env is not None:
            self._env.close()
