"""DDPM and DDIM reverse steps for an epsilon-predicting denoiser, over any decreasing step list.

A sampler is a list of noise levels [t_0 > t_1 > ... > t_n]; level t_i is denoised to t_{i+1}
(t_{n+1} = -1 means clean). Full DDPM is range(99, -1, -1), DDIM-16 is [90, 84, ..., 0], the
streaming refinement is e.g. [2, 1, 0] started from the shifted previous chunk. Step coefficients
are Python floats from the float64 schedule, so sampling never reads back from the device.
"""
from __future__ import annotations

from collections.abc import Callable, Sequence

import torch

from diffusion_policy_ros.sampling.schedule import NoiseSchedule

# eps = denoise_fn(x_t, t): x_t (B, H, A), t an int level
DenoiseFn = Callable[[torch.Tensor, int], torch.Tensor]
METHODS = ("ddpm", "ddim")


def predict_x0(schedule: NoiseSchedule, x_t: torch.Tensor, eps: torch.Tensor, t: int,
               clip_sample: bool) -> torch.Tensor:
    ab_t = schedule.alpha_bar(t)
    x0 = (x_t - (1.0 - ab_t) ** 0.5 * eps) / ab_t ** 0.5
    return x0.clamp(-1.0, 1.0) if clip_sample else x0


def ddpm_step(schedule: NoiseSchedule, x_t: torch.Tensor, eps: torch.Tensor, t: int, t_prev: int,
              clip_sample: bool = True, noise: torch.Tensor | None = None) -> torch.Tensor:
    """Sample x_{t_prev} ~ q(x_{t_prev} | x_t, x0_hat) (posterior with 'fixed small' variance)."""
    ab_t, ab_p = schedule.alpha_bar(t), schedule.alpha_bar(t_prev)
    alpha = ab_t / ab_p
    beta = 1.0 - alpha
    x0 = predict_x0(schedule, x_t, eps, t, clip_sample)
    mean = (ab_p ** 0.5 * beta / (1.0 - ab_t)) * x0 + (alpha ** 0.5 * (1.0 - ab_p) / (1.0 - ab_t)) * x_t
    if t_prev < 0:
        return mean
    variance = max((1.0 - ab_p) / (1.0 - ab_t) * beta, 1e-20)
    if noise is None:
        noise = torch.randn_like(x_t)
    return mean + variance ** 0.5 * noise


def ddim_step(schedule: NoiseSchedule, x_t: torch.Tensor, eps: torch.Tensor, t: int, t_prev: int,
              clip_sample: bool = True, eta: float = 0.0, noise: torch.Tensor | None = None) -> torch.Tensor:
    """DDIM step; eps is re-derived from the clipped x0 so both agree. eta = 0 is deterministic;
    eta > 0 adds `noise` scaled by sigma = eta * (DDPM posterior std), eta = 1 is DDPM over the
    same levels (the stochastic sampler NCDPO fine-tunes, with its noise drawn up front)."""
    ab_t, ab_p = schedule.alpha_bar(t), schedule.alpha_bar(t_prev)
    x0 = predict_x0(schedule, x_t, eps, t, clip_sample)
    if t_prev < 0:
        return x0
    if clip_sample:
        eps = (x_t - ab_t ** 0.5 * x0) / (1.0 - ab_t) ** 0.5
    if eta == 0.0:
        return ab_p ** 0.5 * x0 + (1.0 - ab_p) ** 0.5 * eps
    sigma = ddim_sigma(schedule, t, t_prev, eta)
    if noise is None:
        noise = torch.randn_like(x_t)
    return ab_p ** 0.5 * x0 + max(1.0 - ab_p - sigma ** 2, 0.0) ** 0.5 * eps + sigma * noise


def ddim_sigma(schedule: NoiseSchedule, t: int, t_prev: int, eta: float) -> float:
    """Standard deviation of the noise a DDIM step from t to t_prev adds (0 into clean data)."""
    if t_prev < 0:
        return 0.0
    ab_t, ab_p = schedule.alpha_bar(t), schedule.alpha_bar(t_prev)
    return eta * ((1.0 - ab_p) / (1.0 - ab_t) * (1.0 - ab_t / ab_p)) ** 0.5


def denoise(denoise_fn: DenoiseFn, x: torch.Tensor, timesteps: Sequence[int], schedule: NoiseSchedule,
            method: str = "ddpm", clip_sample: bool = True,
            generator: torch.Generator | None = None, eta: float = 0.0,
            step_noise: Sequence[torch.Tensor] | None = None, noise_scale: float = 1.0,
            end_level: int = -1) -> torch.Tensor:
    """Run the reverse process from x at level timesteps[0] to clean data (or, given `end_level`
    >= 0, to that level: the rest of the levels runs later); len(timesteps) NFE.

    The noise a DDPM step (or a DDIM step with eta > 0) adds comes from `generator`, times
    `noise_scale` (a temperature below 1 samples closer to the model's modes), or, given
    `step_noise` (one tensor like x per step but the last), from there as it is: then the whole
    sampler is a deterministic, differentiable function of x and step_noise (NCDPO,
    diffusion_policy_ros.rl).
    """
    if method not in METHODS:
        raise ValueError(f"unknown sampling method {method!r}; expected one of {METHODS}")
    steps = schedule.check_timesteps(timesteps)
    if end_level >= 0:
        schedule.check_timesteps([*steps, end_level])
    noisy_steps = len(steps) - (1 if end_level < 0 else 0)
    if step_noise is not None and len(step_noise) != noisy_steps:
        raise ValueError(f"{len(steps)} denoising steps take {noisy_steps} noise tensors, got {len(step_noise)}")
    stochastic = method == "ddpm" or eta > 0.0
    for i, t in enumerate(steps):
        t_prev = steps[i + 1] if i + 1 < len(steps) else end_level
        eps = denoise_fn(x, t).to(x.dtype)
        noise = None
        if stochastic and t_prev >= 0:
            if step_noise is not None:
                noise = step_noise[i]
            else:
                noise = torch.randn(x.shape, generator=generator, device=x.device, dtype=x.dtype)
                if noise_scale != 1.0:   # no extra tensor op on the streaming refinement's path
                    noise = noise * noise_scale
        if method == "ddim":
            x = ddim_step(schedule, x, eps, t, t_prev, clip_sample, eta, noise)
        else:
            x = ddpm_step(schedule, x, eps, t, t_prev, clip_sample, noise)
    return x


def full_timesteps(schedule: NoiseSchedule, method: str, num_inference_steps: int) -> list[int]:
    """Step list of a sample from pure noise: all levels for DDPM, evenly spaced ones for DDIM."""
    if method == "ddpm" and num_inference_steps == schedule.num_steps:
        return list(range(schedule.num_steps - 1, -1, -1))
    return schedule.ddim_timesteps(num_inference_steps)
