"""Several chunk envs stepped as one batch through gymnasium's vector API.

'sync' steps them one after another in this process; 'async' runs each in a worker process
(gymnasium AsyncVectorEnv), which pays off only when a step costs more than the pipes that carry
its observations and there are idle cores to run them (scripts/bench_vector_env.py measures it).
Workers are forked, not spawned: spawn re-runs the main script, and the generated `dpros` script
has no __main__ guard; SimChunkEnv builds its sim (and GL context) only in the worker.
Autoreset in the same step: the observation after an episode's last decision is already the next
episode's first, which is what the rollout stores for the next decision.
"""
from __future__ import annotations

import functools

import gymnasium as gym

MODES = ("sync", "async")


def make_vector_env(env_fn, num_envs: int, mode: str = "sync"):
    """env_fn: a picklable callable building one env (a functools.partial of its class)."""
    if mode not in MODES:
        raise ValueError(f"unknown vector mode {mode!r}; expected one of {MODES}")
    if num_envs < 1:
        raise ValueError(f"need at least one env, got {num_envs}")
    fns = [env_fn] * num_envs
    reset = gym.vector.AutoresetMode.SAME_STEP
    if mode == "sync":
        return gym.vector.SyncVectorEnv(fns, autoreset_mode=reset)
    return gym.vector.AsyncVectorEnv(fns, autoreset_mode=reset, context="fork")


def sim_chunk_env_fn(robot_config, task: str, policy_config, episode_seconds=None, reward_kwargs=None):
    """The callable make_vector_env needs for SimChunkEnvs matching a policy's observations."""
    from diffusion_policy_ros.rl.chunk_env import SimChunkEnv
    return functools.partial(SimChunkEnv, robot_config, task, dict(policy_config.obs_shapes),
                             policy_config.n_obs_steps, policy_config.n_action_steps, episode_seconds,
                             reward_kwargs)
