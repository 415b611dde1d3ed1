"""Gaussian exploration head on the final action, in normalized action space ([-1, 1] per joint,
the gripper unscaled): one learned log-std per action dim, never below `min_std` so exploration
(and the PPO likelihood) never collapses.

A decision's executed rows (B, n, A) are explored per action dim with covariance
std^2 * C, C = (1 - rho) I + rho 11^T over the n rows: rho = 0 is white noise per row, which the
arm's controller averages out over a chunk (0.05 / sqrt(8) at the chunk's mean row); rho near 1
moves every row of a dim together, so the part PPO credits moves the arm (a coherent offset).
With the closed forms for this C (m = 1 - rho + n rho):
  C^-1 = (I - rho / m 11^T) / (1 - rho),   log det C = (n - 1) log(1 - rho) + log m.

rho < 1 has a cost the density hides: the within-chunk directions have std std * sqrt(1 - rho)
(0.3 std at rho 0.9), so the score C^-1 (a - mean) / std^2 and the KL weigh a change of a chunk's
shape ten times more than an offset, though the controller averages shape out. The policy
gradient is then mostly the noise of those directions.

rho = 1 (chunk offset): one draw per action dim moves the whole chunk, and the likelihood is the
density of that offset, the mean over rows of (action - mean): A dims per decision instead of
n A. The chunk's shape (rows minus their mean) is not explored, so no likelihood covers it;
`shape_drift` measures how far an update moved it from the rollout's (in the same std units as the
KL), and PPO adds it to its loss and to its approximate KL, a trust region for the part no ratio
sees.

`unexplored_dims` (the gripper, whose executed value is the sign of the action): these dims are
executed at the mean and left out of the density, entropy and KL. A draw of std 0.02 around a
gripper mean near +-1 never changes its sign, so it changes nothing the robot does; in the
likelihood it would still add a score (a - mean) / std^2 with no effect on the return behind it,
and with the 'scale' gripper method the gripper's mean moves ten times as far per weight as a
joint's: that noise was as large as the joints' whole gradient (docs/rl_finetuning.md, "The
gripper's exploration"). No ratio sees these dims and no drift term holds them: their executed value
changes only where the mean changes sign.
"""
from __future__ import annotations

import math

import torch
from torch import nn


class GaussianHead(nn.Module):
    def __init__(self, action_dim: int, init_std: float = 0.1, min_std: float = 0.02,
                 row_correlation: float = 0.0, unexplored_dims: tuple[int, ...] = ()):
        super().__init__()
        dims = set(unexplored_dims)
        if any(not 0 <= d < action_dim for d in dims) or len(dims) != len(unexplored_dims) \
                or len(dims) >= action_dim:
            raise ValueError(f"unexplored_dims must be distinct dims of the {action_dim} and leave one explored, "
                             f"got {unexplored_dims}")
        if not 0.0 < min_std <= init_std:
            raise ValueError(f"need 0 < min_std <= init_std, got min_std {min_std}, init_std {init_std}")
        if not 0.0 <= row_correlation <= 1.0:
            raise ValueError(f"row_correlation must be in [0, 1] (1: one offset per chunk), got {row_correlation}")
        self.min_std = float(min_std)
        self.row_correlation = float(row_correlation)
        # parametrize the part above the floor, so the floor holds whatever the optimizer does
        self.log_excess = nn.Parameter(torch.full((action_dim,), math.log(init_std - min_std + 1e-8)))
        explored = torch.ones(action_dim, dtype=torch.bool)
        explored[list(unexplored_dims)] = False
        self.register_buffer("explored", explored, persistent=False)

    def std(self) -> torch.Tensor:
        return self.min_std + self.log_excess.exp()

    @property
    def chunk_offset(self) -> bool:
        return self.row_correlation == 1.0

    def _explored_std(self, dtype) -> torch.Tensor:
        """(A,) the std of the explored dims, 0 for the others."""
        return (self.std() * self.explored).to(dtype)

    def sample(self, mean: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        """mean (B, n, A) -> mean + std * e, e ~ N(0, C) per explored action dim over the n rows."""
        shared_shape = (mean.shape[0], 1, mean.shape[-1])
        if self.chunk_offset:
            shared = torch.randn(shared_shape, generator=generator, device=mean.device, dtype=mean.dtype)
            return mean + self._explored_std(mean.dtype) * shared
        white = torch.randn(mean.shape, generator=generator, device=mean.device, dtype=mean.dtype)
        rho = self.row_correlation
        if rho:
            shared = torch.randn(shared_shape, generator=generator, device=mean.device, dtype=mean.dtype)
            white = (1.0 - rho) ** 0.5 * white + rho ** 0.5 * shared
        return mean + self._explored_std(mean.dtype) * white

    def _mahalanobis(self, diff: torch.Tensor) -> torch.Tensor:
        """(B, n, A) -> (B,): sum over dims of z^T C^-1 z, z = diff / std; for a chunk offset, of the
        offset's (z's mean over rows) square."""
        z = (diff / self.std().to(diff.dtype))[..., self.explored]
        if self.chunk_offset:
            return (z.mean(1) ** 2).sum(-1)
        rho, n = self.row_correlation, diff.shape[1]
        squares = (z ** 2).sum(1)
        if rho:
            squares = (squares - rho / (1.0 - rho + n * rho) * z.sum(1) ** 2) / (1.0 - rho)
        return squares.sum(-1)

    def _log_det(self, mean: torch.Tensor) -> torch.Tensor:
        """log det of a decision's covariance: n log std^2 + log det C, summed over dims (a chunk
        offset: log std^2)."""
        log_std = self.std().log()[self.explored]
        if self.chunk_offset:
            return (2.0 * log_std).sum().to(mean.dtype)
        n, rho = mean.shape[1], self.row_correlation
        log_det_c = (n - 1) * math.log(1.0 - rho) + math.log(1.0 - rho + n * rho)
        return (2.0 * n * log_std + log_det_c).sum().to(mean.dtype)

    def log_prob(self, mean: torch.Tensor, action: torch.Tensor) -> torch.Tensor:
        """(B,) log-density of a decision's whole executed chunk (B, n, A) (a chunk offset: of the
        offset)."""
        size = self._dims(mean)
        return -0.5 * (self._mahalanobis(action - mean) + self._log_det(mean) + size * math.log(2 * math.pi))

    def entropy(self, mean: torch.Tensor) -> torch.Tensor:
        """(B,) entropy of a decision's distribution (independent of the mean)."""
        size = self._dims(mean)
        return (0.5 * (size * (1.0 + math.log(2 * math.pi)) + self._log_det(mean))).expand(mean.shape[0])

    def kl_same_std(self, mean: torch.Tensor, other_mean: torch.Tensor) -> torch.Tensor:
        """(B,) KL(N(mean, S) || N(other_mean, S)): the KL-to-base penalty when both policies
        share this head and see the same noise; for a chunk offset, plus the shape term."""
        return 0.5 * self._mahalanobis(mean - other_mean) + self.shape_drift(mean, other_mean)

    def shape_drift(self, mean: torch.Tensor, action: torch.Tensor) -> torch.Tensor:
        """(B,) for a chunk offset: 1/2 |shape(mean) - shape(action)|^2 / std^2, shape = the rows
        minus their mean, i.e. how far `mean` moved from the mean that drew `action`, in the part of
        the chunk that is not explored. 0 for rho < 1, whose density covers every direction."""
        if not self.chunk_offset:
            return torch.zeros(mean.shape[0], dtype=mean.dtype, device=mean.device)
        diff = ((mean - action) / self.std().to(mean.dtype))[..., self.explored]
        return 0.5 * ((diff - diff.mean(1, keepdim=True)) ** 2).sum((1, 2))

    def _dims(self, mean: torch.Tensor) -> int:
        explored = int(self.explored.sum())
        return explored if self.chunk_offset else mean.shape[1] * explored
