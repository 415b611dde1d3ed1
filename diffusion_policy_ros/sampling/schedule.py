"""Noise schedule of the diffusion process: betas, cumulative alphas and the closed forms on them.

Squared-cosine schedule (Nichol & Dhariwal): alpha_bar(t) = cos^2(((t / T) + s) / (1 + s) * pi / 2),
beta_i = min(1 - alpha_bar(i + 1) / alpha_bar(i), max_beta). Computed in float64, kept as float32
tensors on the model's device so no host round trip happens during sampling.
"""
from __future__ import annotations

import math

import torch

COSINE_OFFSET = 0.008
MAX_BETA = 0.999


def squared_cosine_alpha_bar(t: float, num_steps: int) -> float:
    """Continuous alpha_bar at (possibly fractional) step t of num_steps."""
    return math.cos((t / num_steps + COSINE_OFFSET) / (1 + COSINE_OFFSET) * math.pi / 2) ** 2


def squared_cosine_betas(num_steps: int, max_beta: float = MAX_BETA) -> torch.Tensor:
    betas = [min(1.0 - squared_cosine_alpha_bar(i + 1, num_steps) / squared_cosine_alpha_bar(i, num_steps),
                 max_beta) for i in range(num_steps)]
    return torch.tensor(betas, dtype=torch.float64)


def linear_betas(num_steps: int, beta_start: float = 1e-4, beta_end: float = 2e-2) -> torch.Tensor:
    return torch.linspace(beta_start, beta_end, num_steps, dtype=torch.float64)


class NoiseSchedule:
    """Discrete DDPM schedule with `num_steps` levels, t = 0 (least noise) .. num_steps - 1."""

    def __init__(self, num_steps: int = 100, kind: str = "squaredcos_cap_v2"):
        if num_steps < 2:
            raise ValueError(f"num_train_timesteps must be >= 2, got {num_steps}")
        if kind == "squaredcos_cap_v2":
            betas = squared_cosine_betas(num_steps)
        elif kind == "linear":
            betas = linear_betas(num_steps)
        else:
            raise ValueError(f"unknown beta schedule {kind!r} (squaredcos_cap_v2 | linear)")
        self.num_steps = num_steps
        self.kind = kind
        self.betas64 = betas
        self.alphas_cumprod64 = torch.cumprod(1.0 - betas, dim=0)
        self.to(torch.device("cpu"))

    def to(self, device: torch.device | str) -> "NoiseSchedule":
        self.device = torch.device(device)
        self.betas = self.betas64.to(self.device, torch.float32)
        self.alphas_cumprod = self.alphas_cumprod64.to(self.device, torch.float32)
        return self

    def alpha_bar(self, t: int) -> float:
        """alpha_bar at integer level t; t = -1 means clean data (1.0)."""
        return 1.0 if t < 0 else float(self.alphas_cumprod64[t])

    def check_timesteps(self, timesteps) -> list[int]:
        steps = [int(t) for t in timesteps]
        if not steps:
            raise ValueError("denoising step list is empty")
        if any(t < 0 or t >= self.num_steps for t in steps):
            raise ValueError(f"denoising steps {steps} must lie in [0, {self.num_steps - 1}]")
        if any(a <= b for a, b in zip(steps, steps[1:])):
            raise ValueError(f"denoising steps {steps} must be strictly decreasing")
        return steps

    def add_noise(self, x0: torch.Tensor, noise: torch.Tensor, t: torch.Tensor | int) -> torch.Tensor:
        """q(x_t | x_0): sqrt(ab_t) x0 + sqrt(1 - ab_t) noise; t is an int or a (B,) long tensor."""
        ab = self._gather(t, x0)
        return ab.sqrt() * x0 + (1.0 - ab).sqrt() * noise

    def _gather(self, t, like: torch.Tensor) -> torch.Tensor:
        if isinstance(t, int):
            return torch.full((like.shape[0],) + (1,) * (like.dim() - 1), float(self.alphas_cumprod64[t]),
                              device=like.device, dtype=like.dtype)
        ab = self.alphas_cumprod.to(like.device)[t].to(like.dtype)
        return ab.reshape((-1,) + (1,) * (like.dim() - 1))

    def ddim_timesteps(self, num_inference_steps: int) -> list[int]:
        """Evenly spaced levels, leading spacing as in DDIM: e.g. 100/16 -> [90, 84, ..., 6, 0]."""
        if not 1 <= num_inference_steps <= self.num_steps:
            raise ValueError(f"inference steps must be in [1, {self.num_steps}], got {num_inference_steps}")
        ratio = self.num_steps // num_inference_steps
        return [i * ratio for i in range(num_inference_steps - 1, -1, -1)]
