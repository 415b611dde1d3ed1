"""The K-step sampler of a DiffusionPolicy as one differentiable map (observation, noise) -> chunk.

All the noise a K-step stochastic DDIM sampler uses is one tensor (B, K, horizon, A): index 0 is
the initial x_K, index k = 1..K-1 the noise step k adds (the last step, into clean data, adds
none). Drawn once per decision, stored with the rollout and given back unchanged at update time, it makes the sampler
deterministic, so the PPO ratio compares two evaluations of the same map. Nothing here runs under
torch.no_grad: whether gradients flow is the caller's choice.
"""
from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import torch

from diffusion_policy_ros.sampling.samplers import denoise


def draw_sampler_noise(batch: int, num_steps: int, horizon: int, action_dim: int,
                       generator: torch.Generator | None = None, device="cpu") -> torch.Tensor:
    """(batch, num_steps, horizon, action_dim) standard normal: x_K and each step's noise."""
    return torch.randn((batch, num_steps, horizon, action_dim), generator=generator, device=device)


class NoiseConditionedSampler:
    """Wraps a DiffusionPolicy: its encoder and U-Net carry the gradient, the noise is an input."""

    def __init__(self, policy, num_steps: int, eta: float):
        if not 0.0 <= eta <= 1.0:
            raise ValueError(f"eta must be in [0, 1] (0: deterministic DDIM, 1: DDPM over the same levels), got {eta}")
        self.policy = policy
        self.eta = float(eta)
        self.timesteps = policy.schedule.ddim_timesteps(num_steps)
        cfg = policy.config
        self.first_row = cfg.n_obs_steps - 1
        self.rows = cfg.n_action_steps
        # the 'scale' gripper method shrinks the gripper dims in model space; exploration and the
        # likelihood live in normalized action space, where every dim spans [-1, 1]
        self.unscale = torch.ones(cfg.action_dim)
        if cfg.discrete_method == "scale" and policy.discrete_dims:
            self.unscale[list(policy.discrete_dims)] = cfg.discrete_factor

    @property
    def num_steps(self) -> int:
        return len(self.timesteps)

    def noise_shape(self, batch: int) -> tuple[int, int, int, int]:
        cfg = self.policy.config
        return (batch, self.num_steps, cfg.horizon, cfg.action_dim)

    def draw_noise(self, batch: int, generator: torch.Generator | None = None) -> torch.Tensor:
        """Standard normal times the policy's sample_noise_scale, as its own sampler draws it."""
        _, steps, horizon, action_dim = self.noise_shape(batch)
        noise = draw_sampler_noise(batch, steps, horizon, action_dim, generator, self.policy.device)
        return noise * self.policy.config.sample_noise_scale

    def encode(self, obs: Mapping[str, torch.Tensor]) -> torch.Tensor:
        """obs: policy keys, (B, n_obs_steps, ...) raw values -> conditioning (B, D)."""
        self.policy.eval()   # centre crops: the same observation always gives the same features
        return self.policy.encode(obs)

    def chunk(self, cond: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
        """Model-space chunk (B, horizon, A) after K denoising steps from the given noise."""
        if tuple(noise.shape) != self.noise_shape(cond.shape[0]):
            raise ValueError(f"noise must have shape {self.noise_shape(cond.shape[0])}, got {tuple(noise.shape)}")
        step_noise = [noise[:, k] for k in range(1, self.num_steps)]
        return denoise(self.policy.denoiser(cond), noise[:, 0], self.timesteps, self.policy.schedule, "ddim",
                       self.policy.config.clip_sample, eta=self.eta, step_noise=step_noise)

    def executed_rows(self, chunk: torch.Tensor) -> torch.Tensor:
        """The rows the robot executes, in normalized action space: (B, n_action_steps, A)."""
        rows = chunk[:, self.first_row:self.first_row + self.rows]
        return rows * self.unscale.to(rows.device, rows.dtype)

    def mean_action(self, obs: Mapping[str, torch.Tensor], noise: torch.Tensor) -> torch.Tensor:
        return self.executed_rows(self.chunk(self.encode(obs), noise))

    def joint_targets(self, action: torch.Tensor) -> np.ndarray:
        """Normalized actions (B, rows, A) -> joint targets; gripper dims snap to open / closed."""
        with torch.no_grad():
            return self.policy.model_to_action(action).cpu().numpy()
