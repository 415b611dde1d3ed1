"""Advantages over a (T, N) rollout of N environments: generalized advantage estimation with a
critic, or (group_relative_advantages) the comparison of envs that replay one task.

`dones[t]` says the episode ended with decision t (success or time-out): the value after it is not
bootstrapped. A time-out is final here because the critic sees the elapsed fraction of the episode
(a finite-horizon problem), so no bootstrapping across it is needed."""
from __future__ import annotations

import torch


def generalized_advantages(rewards: torch.Tensor, values: torch.Tensor, dones: torch.Tensor,
                           last_values: torch.Tensor, gamma: float, lam: float) -> tuple[torch.Tensor, torch.Tensor]:
    """-> (advantages, returns), both (T, N); returns = advantages + values (the critic's target)."""
    if not (rewards.shape == values.shape == dones.shape and last_values.shape == rewards.shape[1:]):
        raise ValueError(f"shapes disagree: rewards {tuple(rewards.shape)}, values {tuple(values.shape)}, "
                         f"dones {tuple(dones.shape)}, last_values {tuple(last_values.shape)}")
    advantages = torch.zeros_like(rewards)
    running = torch.zeros_like(last_values)
    next_value = last_values
    for t in range(rewards.shape[0] - 1, -1, -1):
        alive = 1.0 - dones[t].to(rewards.dtype)
        delta = rewards[t] + gamma * next_value * alive - values[t]
        running = delta + gamma * lam * alive * running
        advantages[t] = running
        next_value = values[t]
    return advantages, advantages + values


def first_episode_mask(dones: torch.Tensor) -> torch.Tensor:
    """(T, N) -> (T, N) float: 1 for the decisions of each env's first episode, up to and including
    the one that ended it; 0 after it (the autoreset's next episode)."""
    ended_before = torch.cumsum(dones.to(torch.float32), 0) - dones.to(torch.float32)
    return (ended_before == 0).to(torch.float32)


def group_relative_advantages(rewards: torch.Tensor, dones: torch.Tensor, group_size: int,
                              gamma: float) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Advantages without a critic for groups of envs that replay one task seed with one sampler noise.

    Envs [g*G, (g+1)*G) form group g; their first episodes differ only by the exploration noise. A
    decision's advantage is its discounted reward-to-go within the first episode minus the mean
    reward-to-go, at the same decision index, of the group's other envs whose episodes are still
    running then (all others when none is). The others' trajectories do not depend on this env's
    actions, so the baseline adds no bias (leave-one-out, as RLOO), and it removes what the task seed
    and the sampler noise make of the return, which a critic fitted on few episodes cannot.
    -> (advantages, reward_to_go, mask), (T, N) each; mask as first_episode_mask, advantages 0 outside.
    """
    if rewards.shape != dones.shape or rewards.dim() != 2:
        raise ValueError(f"rewards and dones must be the same (T, N), got {tuple(rewards.shape)}, {tuple(dones.shape)}")
    steps, envs = rewards.shape
    if group_size < 2 or envs % group_size:
        raise ValueError(f"need a group size >= 2 that divides the {envs} envs, got {group_size}")
    mask = first_episode_mask(dones)
    to_go = torch.zeros_like(rewards)
    running = torch.zeros(envs, dtype=rewards.dtype)
    for t in range(steps - 1, -1, -1):
        running = mask[t] * (rewards[t] + gamma * (1.0 - dones[t].to(rewards.dtype)) * running)
        to_go[t] = running
    grouped_to_go = to_go.reshape(steps, -1, group_size)
    grouped_alive = mask.reshape(steps, -1, group_size)
    others_alive = grouped_alive.sum(-1, keepdim=True) - grouped_alive
    alive_mean = ((grouped_to_go * grouped_alive).sum(-1, keepdim=True) - grouped_to_go * grouped_alive) \
        / others_alive.clamp(min=1.0)
    all_mean = (grouped_to_go.sum(-1, keepdim=True) - grouped_to_go) / (group_size - 1)
    baseline = torch.where(others_alive > 0, alive_mean, all_mean).reshape(steps, envs)
    return (to_go - baseline) * mask, to_go, mask
