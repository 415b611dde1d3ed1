"""Collecting NCDPO decisions from a gymnasium vector env (autoreset in the same step).

Per decision and env: the policy's observation, the sampler's noise (drawn here, up front), the
Gaussian's sample in normalized action space, its log-likelihood, the critic's value, the summed
reward and whether the episode ended; optionally the base policy's mean for the same observation
and noise (KL regularisation). Episodes that end are reported with their return and success.

With a group size G > 1, envs [g*G, (g+1)*G) share the sampler's noise at every decision, and
`collect_episodes` replays one task seed per group: the group's first episodes then differ only by
the exploration noise (common random numbers; rl/advantages.py compares them). With
`explore_at`, each env explores only at one decision of its episode and executes the Gaussian's
mean at all others: a group that explores at one decision replays one trajectory up to it, so its
returns then differ only by what that one draw did (docs/rl_finetuning.md, "One exploring
decision per episode").
"""
from __future__ import annotations

import dataclasses

import numpy as np
import torch

from diffusion_policy_ros.rl.chunk_env import CRITIC_KEY


@dataclasses.dataclass
class Rollout:
    """(T decisions, N envs, ...) tensors of one collection."""
    obs: dict[str, torch.Tensor]
    critic_state: torch.Tensor
    noise: torch.Tensor
    actions: torch.Tensor
    log_prob: torch.Tensor
    values: torch.Tensor
    rewards: torch.Tensor
    dones: torch.Tensor
    last_values: torch.Tensor
    base_mean: torch.Tensor | None = None
    explored: torch.Tensor | None = None   # (T, N) 1 where the action was drawn, 0 where it was the mean

    def flat(self, advantages: torch.Tensor, returns: torch.Tensor, mask: torch.Tensor | None = None) -> dict:
        """The batch PPOUpdater.update takes: every decision of every env, (T * N, ...), or only
        those where the (T, N) mask is non-zero."""
        keep = None if mask is None else mask.reshape(-1) > 0

        def flat(x):
            x = x.reshape(-1, *x.shape[2:])
            return x if keep is None else x[keep]
        batch = {"obs": {k: flat(v) for k, v in self.obs.items()}, "critic_state": flat(self.critic_state),
                 "noise": flat(self.noise), "actions": flat(self.actions), "log_prob": flat(self.log_prob),
                 "advantages": flat(advantages), "returns": flat(returns)}
        if self.base_mean is not None:
            batch["base_mean"] = flat(self.base_mean)
        return batch


class RolloutCollector:
    def __init__(self, envs, sampler, head, value, generator: torch.Generator, base_sampler=None,
                 group_size: int = 1):
        if group_size < 1 or envs.num_envs % group_size:
            raise ValueError(f"the group size must divide the {envs.num_envs} envs, got {group_size}")
        self.envs, self.sampler, self.head, self.value = envs, sampler, head, value
        self.generator, self.base_sampler = generator, base_sampler
        self.group_size = group_size
        self.keys = sorted(sampler.policy.config.obs_shapes)
        self.num_envs = envs.num_envs
        self.control_steps_per_decision = sampler.policy.config.n_action_steps
        self.current = None
        self.episode_return = np.zeros(self.num_envs)
        self.episode_decisions = np.zeros(self.num_envs, int)

    def reset(self, seed: int | list[int]) -> None:
        self.current, _ = self.envs.reset(seed=seed)
        self.episode_return[:] = 0.0
        self.episode_decisions[:] = 0

    def _policy_obs(self, obs) -> dict[str, torch.Tensor]:
        return {k: torch.from_numpy(np.ascontiguousarray(obs[k])).to(self.sampler.policy.device) for k in self.keys}

    def _critic(self, obs) -> torch.Tensor:
        return torch.from_numpy(np.asarray(obs[CRITIC_KEY], np.float32))

    def _draw_noise(self) -> torch.Tensor:
        noise = self.sampler.draw_noise(self.num_envs // self.group_size, self.generator)
        return noise.repeat_interleave(self.group_size, 0) if self.group_size > 1 else noise

    def collect_episodes(self, group_seeds: list[int],
                         explore_at: list[int] | None = None) -> tuple[Rollout, list[dict]]:
        """Reset every group's envs with its seed (the same task) and step until every env has ended
        its first episode. Decisions after an env's first episode belong to the autoreset's next
        one: advantages.first_episode_mask leaves them out, and only first episodes are reported.
        explore_at: per group, the one decision index at which its envs explore (None: all)."""
        if len(group_seeds) * self.group_size != self.num_envs:
            raise ValueError(f"need {self.num_envs // self.group_size} group seeds, got {len(group_seeds)}")
        if explore_at is not None and len(explore_at) != len(group_seeds):
            raise ValueError(f"need one exploring decision per group ({len(group_seeds)}), got {len(explore_at)}")
        self.reset([seed for seed in group_seeds for _ in range(self.group_size)])
        return self.collect(None, None if explore_at is None else np.repeat(explore_at, self.group_size))

    @torch.no_grad()
    def collect(self, decisions: int | None, explore_at: np.ndarray | None = None) -> tuple[Rollout, list[dict]]:
        """`decisions` per env, or (None) until every env has ended an episode since the reset.
        explore_at (N,): the decision index (counted from this call) at which each env draws its
        action; at every other decision it executes the mean. None: every decision draws."""
        if self.current is None:
            raise RuntimeError("call reset(seed) before collect()")
        ended = np.zeros(self.num_envs, bool)
        steps = {name: [] for name in ("obs", "critic", "noise", "actions", "log_prob", "values", "rewards",
                                       "dones", "base_mean", "explored")}
        finished = []

        def more() -> bool:
            return not ended.all() if decisions is None else len(steps["obs"]) < decisions
        while more():
            obs = self._policy_obs(self.current)
            critic = self._critic(self.current)
            noise = self._draw_noise()
            mean = self.sampler.mean_action(obs, noise)
            action = self.head.sample(mean, self.generator)
            if explore_at is not None:
                explored = torch.from_numpy(explore_at == len(steps["obs"]))
                action = torch.where(explored[:, None, None].to(action.device), action, mean)
                steps["explored"].append(explored.to(torch.float32))
            steps["obs"].append({k: v.cpu() for k, v in obs.items()})
            steps["critic"].append(critic)
            steps["noise"].append(noise.cpu())
            steps["actions"].append(action.cpu())
            steps["log_prob"].append(self.head.log_prob(mean, action).cpu())
            steps["values"].append(self.value(critic))
            if self.base_sampler is not None:
                steps["base_mean"].append(self.base_sampler.mean_action(obs, noise).cpu())
            self.current, reward, terminated, truncated, _ = self.envs.step(self.sampler.joint_targets(action))
            done = np.logical_or(terminated, truncated)
            steps["rewards"].append(torch.as_tensor(reward, dtype=torch.float32))
            steps["dones"].append(torch.as_tensor(done, dtype=torch.float32))
            self.episode_return += reward
            self.episode_decisions += 1
            for i in np.flatnonzero(done):
                if decisions is None and ended[i]:
                    continue
                ended[i] = True
                finished.append({"return": float(self.episode_return[i]), "success": bool(terminated[i]),
                                 "decisions": int(self.episode_decisions[i])})
                self.episode_return[i] = 0.0
                self.episode_decisions[i] = 0
        last_values = self.value(self._critic(self.current))
        rollout = Rollout(
            obs={k: torch.stack([o[k] for o in steps["obs"]]) for k in self.keys},
            critic_state=torch.stack(steps["critic"]), noise=torch.stack(steps["noise"]),
            actions=torch.stack(steps["actions"]), log_prob=torch.stack(steps["log_prob"]),
            values=torch.stack(steps["values"]), rewards=torch.stack(steps["rewards"]),
            dones=torch.stack(steps["dones"]), last_values=last_values,
            base_mean=torch.stack(steps["base_mean"]) if steps["base_mean"] else None,
            explored=torch.stack(steps["explored"]) if steps["explored"] else None)
        return rollout, finished

