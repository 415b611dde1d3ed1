"""Gaussian exploration head on the final action: N(chunk rows, diag(std^2)) in normalized action
space ([-1, 1] per joint, the gripper unscaled), one learned log-std per action dim, never below
`min_std` so exploration (and the PPO likelihood) never collapses."""
from __future__ import annotations

import math

import torch
from torch import nn


class GaussianHead(nn.Module):
    def __init__(self, action_dim: int, init_std: float = 0.1, min_std: float = 0.02):
        super().__init__()
        if not 0.0 < min_std <= init_std:
            raise ValueError(f"need 0 < min_std <= init_std, got min_std {min_std}, init_std {init_std}")
        self.min_std = float(min_std)
        # parametrize the part above the floor, so the floor holds whatever the optimizer does
        self.log_excess = nn.Parameter(torch.full((action_dim,), math.log(init_std - min_std + 1e-8)))

    def std(self) -> torch.Tensor:
        return self.min_std + self.log_excess.exp()

    def sample(self, mean: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        noise = torch.randn(mean.shape, generator=generator, device=mean.device, dtype=mean.dtype)
        return mean + self.std().to(mean.dtype) * noise

    def log_prob(self, mean: torch.Tensor, action: torch.Tensor) -> torch.Tensor:
        """Summed over every dim but the first (a decision's whole executed chunk): (B,)."""
        std = self.std().to(mean.dtype)
        z = (action - mean) / std
        per_dim = -0.5 * z ** 2 - std.log() - 0.5 * math.log(2 * math.pi)
        return per_dim.flatten(1).sum(1)

    def entropy(self, mean: torch.Tensor) -> torch.Tensor:
        """(B,) entropy of a decision's distribution (independent of the mean)."""
        per_dim = (0.5 + 0.5 * math.log(2 * math.pi) + self.std().log()).to(mean.dtype)
        return per_dim.expand(mean.shape).flatten(1).sum(1)

    def kl_same_std(self, mean: torch.Tensor, other_mean: torch.Tensor) -> torch.Tensor:
        """(B,) KL(N(mean, std) || N(other_mean, std)): the KL-to-base penalty when both
        policies share this head and see the same noise."""
        std = self.std().to(mean.dtype)
        return (0.5 * ((mean - other_mean) / std) ** 2).flatten(1).sum(1)
