"""DAgger episodes: the policy drives the sim, the continuous expert labels every state it visits.

A policy trained on the expert's own runs drifts into states those runs never visit (hovering
beside a cube that was moved during the grasp) and has no demonstration of what to do there.
Here the policy's action is executed, and the expert's action for the same state is recorded as
the label (Ross et al., DAgger). The expert is a feedback law, so it can label any state, provided
its own commanded state follows what was really commanded (`ContinuousPickPlaceExpert.adopt`).
Failed episodes are kept: their labels are the corrections the policy lacks.
"""
from __future__ import annotations

import numpy as np

from diffusion_policy_ros.obs_keys import is_obs

_EPS = 1e-9


def labelled_episode(env, seed: int, keys: dict[str, dict], *, timeout_s: float, after_success: int,
                     drive=None, perturb=None) -> tuple[dict[str, np.ndarray], int | None]:
    """One episode in `env` from `seed` whose `action` rows are the scripted expert's: -> (dataset rows
    for `keys`: observations, `action`, `timestamp`; the tick of the first success or None). It ends
    `after_success` ticks after the first success, or at `timeout_s`. `drive(obs, t)`: the action
    executed instead of the expert's (the expert then adopts it); None: the expert drives.
    `perturb(label)`: the expert drives, executing this instead of its label (sim/expert_noise.py)."""
    obs_keys = [k for k in keys if is_obs(k)]
    rate = env.config.control_rate_hz
    rows: dict[str, list] = {k: [] for k in keys}
    obs = env.reset(seed)
    success_step, tick = None, 0
    while True:
        label = env.expert_action()
        for key in obs_keys:
            rows[key].append(obs[key])
        rows["action"].append(label)
        rows["timestamp"].append(tick / rate)   # the recorder's grid: start + index / rate
        executed = label if perturb is None else perturb(label)
        if drive is not None:
            executed = np.asarray(drive(obs, env.time))
            env.expert.adopt(executed, env.time + env.control_period)
        env.step(executed, observe=False)
        tick += 1
        if success_step is None and env.success():
            success_step = tick
        if env.time >= timeout_s - _EPS or (success_step is not None and tick >= success_step + after_success):
            break
        obs = env.observation()   # rendered only when another tick follows
    data = {k: np.asarray(np.stack(v), dtype=keys[k]["dtype"]) for k, v in rows.items()}
    return data, success_step


def dagger_episode(env, policy, seed: int, keys: dict[str, dict], *, timeout_s: float,
                   after_success: int, expert_drives: bool = False) -> tuple[dict[str, np.ndarray], int | None]:
    """One episode of `policy` in `env` (a SimEnv with the continuous expert), labelled by the
    expert (see `labelled_episode`). `expert_drives`: execute the labels instead (the mixture's
    expert episodes)."""
    if not hasattr(env.expert, "adopt"):
        raise ValueError(f"DAgger needs an expert that can label any state (continuous), not {env.expert_mode!r}")
    policy_keys = list(policy.config.obs_shapes)
    missing = sorted(set(policy_keys) - {k for k in keys if is_obs(k)})
    if missing:
        raise ValueError(f"the policy observes {missing}, which this recording does not have")
    policy.reset(seed)

    def drive(obs, t):
        return policy.select_action({k: obs[k] for k in policy_keys}, t)
    return labelled_episode(env, seed, keys, timeout_s=timeout_s, after_success=after_success,
                            drive=None if expert_drives else drive)
