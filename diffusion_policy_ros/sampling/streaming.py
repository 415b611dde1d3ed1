"""Streaming warm start (Real-Time Iteration): refine the previous chunk instead of sampling anew.

At each control step the last denoised chunk (model space, time-stamped with its observation) is
shifted left by the number of control steps that really elapsed since that observation, its tail is
refilled by repeating the last action, it is optionally re-noised to level k', and a few denoising
steps (e.g. [2, 1, 0]) run on it. A full sample from noise is drawn on the first step of an episode,
after reset(), when time went backwards or when the gap leaves nothing of the old chunk.
"""
from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import torch

from diffusion_policy_ros.sampling.samplers import DenoiseFn, denoise
from diffusion_policy_ros.sampling.schedule import NoiseSchedule

DISCRETE_METHODS = ("none", "scale", "clip")


def elapsed_control_steps(prev_time: float, now: float, control_rate_hz: float) -> int:
    """Control periods between two observation times, rounded to the nearest step."""
    return int(round((now - prev_time) * control_rate_hz))


def shift_chunk(chunk: torch.Tensor, shift: int) -> torch.Tensor:
    """Drop the first `shift` actions of a (B, H, A) chunk and repeat the last one to refill the tail."""
    horizon = chunk.shape[1]
    if not 0 <= shift < horizon:
        raise ValueError(f"shift {shift} must be in [0, {horizon - 1}]")
    if shift == 0:
        return chunk.clone()
    tail = chunk[:, -1:].expand(-1, shift, -1)
    return torch.cat([chunk[:, shift:], tail], dim=1)


def clip_discrete(chunk: torch.Tensor, dims: Sequence[int], factor: float) -> torch.Tensor:
    """'clip' method: discrete dims of the warm start become sign / factor (weak, flippable prior)."""
    if not dims:
        return chunk
    out = chunk.clone()
    idx = list(dims)
    out[..., idx] = torch.where(out[..., idx] >= 0, 1.0, -1.0).to(out.dtype) / factor
    return out


def binarize_discrete(chunk: torch.Tensor, dims: Sequence[int]) -> torch.Tensor:
    """Output of a discrete dim is its sign (+-1 in normalized space = the two gripper states)."""
    if not dims:
        return chunk
    out = chunk.clone()
    idx = list(dims)
    out[..., idx] = torch.where(out[..., idx] >= 0, 1.0, -1.0).to(out.dtype)
    return out


@dataclasses.dataclass
class StepReport:
    """What one call of the sampler did (published by the node in ActionChunk)."""
    sampler: str
    nfe: int
    warm_started: bool
    shift_steps: int
    denoising_steps: list[int]


@dataclasses.dataclass
class StreamingSettings:
    denoising_steps: list[int]          # levels run on the warm start, e.g. [2, 1, 0]
    renoise_level: int | None = None    # None: the shifted chunk is taken as x_{steps[0]} as is
    method: str = "ddpm"                # reverse step used for the refinement
    discrete_dims: tuple[int, ...] = ()
    discrete_method: str = "none"
    discrete_factor: float = 10.0


class WarmStartSampler:
    """Keeps the last chunk and its observation time; decides between refinement and full sample."""

    def __init__(self, schedule: NoiseSchedule, settings: StreamingSettings, control_rate_hz: float):
        schedule.check_timesteps(settings.denoising_steps)
        if settings.renoise_level is not None and settings.renoise_level != settings.denoising_steps[0]:
            raise ValueError(f"renoise_level {settings.renoise_level} must be the first denoising step "
                             f"{settings.denoising_steps[0]}: the re-noised chunk is denoised from that level")
        if settings.discrete_method not in DISCRETE_METHODS:
            raise ValueError(f"discrete_method must be one of {DISCRETE_METHODS}")
        self.schedule = schedule
        self.settings = settings
        self.control_rate_hz = float(control_rate_hz)
        self.reset()

    def reset(self) -> None:
        self.chunk: torch.Tensor | None = None
        self.obs_time: float | None = None

    def plan_shift(self, obs_time: float, horizon: int) -> int | None:
        """Steps to shift the stored chunk by, or None when a full sample is needed."""
        if self.chunk is None or self.obs_time is None:
            return None
        shift = elapsed_control_steps(self.obs_time, obs_time, self.control_rate_hz)
        if shift < 0 or shift >= horizon:
            return None
        return shift

    def warm_start(self, shift: int, generator: torch.Generator | None = None) -> torch.Tensor:
        s = self.settings
        x = shift_chunk(self.chunk, shift)
        if s.discrete_method == "clip":
            x = clip_discrete(x, s.discrete_dims, s.discrete_factor)
        if s.renoise_level is not None:
            noise = torch.randn(x.shape, generator=generator, device=x.device, dtype=x.dtype)
            x = self.schedule.add_noise(x, noise, s.renoise_level)
        return x

    def step(self, denoise_fn: DenoiseFn, obs_time: float, full_sample, *, clip_sample: bool = True,
             generator: torch.Generator | None = None) -> tuple[torch.Tensor, StepReport]:
        """One control step. `full_sample()` -> (chunk, StepReport) draws a chunk from noise."""
        horizon = None if self.chunk is None else self.chunk.shape[1]
        shift = None if horizon is None else self.plan_shift(obs_time, horizon)
        if shift is None:
            chunk, report = full_sample()
        else:
            s = self.settings
            x = self.warm_start(shift, generator)
            chunk = denoise(denoise_fn, x, s.denoising_steps, self.schedule, s.method, clip_sample, generator)
            report = StepReport(sampler="streaming", nfe=len(s.denoising_steps), warm_started=True,
                                shift_steps=shift, denoising_steps=list(s.denoising_steps))
        self.chunk = chunk.detach()
        self.obs_time = float(obs_time)
        return chunk, report
