"""Generalized advantage estimation over a (T, N) rollout of N environments.

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
