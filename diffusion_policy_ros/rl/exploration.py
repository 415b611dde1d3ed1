"""Gaussian exploration head on the final action, in normalized action space ([-1, 1] per joint,
the gripper unscaled): one learned log-std per action dim, never below `min_std` so exploration
(and the PPO likelihood) never collapses.

A decision's executed rows (B, n, A) are explored per action dim with covariance
std^2 * C, C = (1 - rho) I + rho 11^T over the n rows: rho = 0 is white noise per row, which the
arm's controller averages out over a chunk (0.05 / sqrt(8) at the chunk's mean row); rho near 1
moves every row of a dim together, so the part PPO credits moves the arm (a coherent offset) and
the likelihood stays a proper density (rho < 1). With the closed forms for this C
(m = 1 - rho + n rho):
  C^-1 = (I - rho / m 11^T) / (1 - rho),   log det C = (n - 1) log(1 - rho) + log m.
"""
from __future__ import annotations

import math

import torch
from torch import nn


class GaussianHead(nn.Module):
    def __init__(self, action_dim: int, init_std: float = 0.1, min_std: float = 0.02,
                 row_correlation: float = 0.0):
        super().__init__()
        if not 0.0 < min_std <= init_std:
            raise ValueError(f"need 0 < min_std <= init_std, got min_std {min_std}, init_std {init_std}")
        if not 0.0 <= row_correlation < 1.0:
            raise ValueError(f"row_correlation must be in [0, 1) (1 makes the likelihood degenerate), "
                             f"got {row_correlation}")
        self.min_std = float(min_std)
        self.row_correlation = float(row_correlation)
        # parametrize the part above the floor, so the floor holds whatever the optimizer does
        self.log_excess = nn.Parameter(torch.full((action_dim,), math.log(init_std - min_std + 1e-8)))

    def std(self) -> torch.Tensor:
        return self.min_std + self.log_excess.exp()

    def sample(self, mean: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        """mean (B, n, A) -> mean + std * e, e ~ N(0, C) per action dim over the n rows."""
        white = torch.randn(mean.shape, generator=generator, device=mean.device, dtype=mean.dtype)
        rho = self.row_correlation
        if rho:
            shared = torch.randn((mean.shape[0], 1, mean.shape[-1]), generator=generator, device=mean.device,
                                 dtype=mean.dtype)
            white = (1.0 - rho) ** 0.5 * white + rho ** 0.5 * shared
        return mean + self.std().to(mean.dtype) * white

    def _mahalanobis(self, diff: torch.Tensor) -> torch.Tensor:
        """(B, n, A) -> (B,): sum over dims of z^T C^-1 z, z = diff / std."""
        z = diff / self.std().to(diff.dtype)
        rho, n = self.row_correlation, diff.shape[1]
        squares = (z ** 2).sum(1)
        if rho:
            squares = (squares - rho / (1.0 - rho + n * rho) * z.sum(1) ** 2) / (1.0 - rho)
        return squares.sum(-1)

    def _log_det(self, mean: torch.Tensor) -> torch.Tensor:
        """log det of a decision's covariance: n log std^2 + log det C, summed over dims."""
        n, rho = mean.shape[1], self.row_correlation
        log_det_c = (n - 1) * math.log(1.0 - rho) + math.log(1.0 - rho + n * rho)
        return (2.0 * n * self.std().log() + log_det_c).sum().to(mean.dtype)

    def log_prob(self, mean: torch.Tensor, action: torch.Tensor) -> torch.Tensor:
        """(B,) log-density of a decision's whole executed chunk (B, n, A)."""
        size = mean.shape[1] * mean.shape[2]
        return -0.5 * (self._mahalanobis(action - mean) + self._log_det(mean) + size * math.log(2 * math.pi))

    def entropy(self, mean: torch.Tensor) -> torch.Tensor:
        """(B,) entropy of a decision's distribution (independent of the mean)."""
        size = mean.shape[1] * mean.shape[2]
        return (0.5 * (size * (1.0 + math.log(2 * math.pi)) + self._log_det(mean))).expand(mean.shape[0])

    def kl_same_std(self, mean: torch.Tensor, other_mean: torch.Tensor) -> torch.Tensor:
        """(B,) KL(N(mean, S) || N(other_mean, S)): the KL-to-base penalty when both policies
        share this head and see the same noise."""
        return 0.5 * self._mahalanobis(mean - other_mean)
