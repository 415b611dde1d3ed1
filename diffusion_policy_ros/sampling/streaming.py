"""Streaming warm start (Real-Time Iteration): refine the previous chunk instead of sampling anew.

At each control step the last denoised chunk (model space, time-stamped with its observation) is
shifted left by the number of control steps that really elapsed since that observation, its tail is
refilled by repeating the last action, it is optionally re-noised to level k', and a few denoising
steps (e.g. [2, 1, 0]) run on it. A full sample from noise is drawn on the first step of an episode,
after reset(), when time went backwards or when the gap leaves nothing of the old chunk.

Running ahead (`ahead_levels` = a > 0, refining every E >= 2 control steps): the first a levels of
the refinement for the observation expected at t run at an earlier observation s (the control
step before t), conditioned on it and aligned with it: the chunk is shifted by the steps from its
observation to s, re-noised and denoised from k_0 to k_a. At t that partly denoised chunk is
shifted by the steps from s to t (its tail refilled as above) and the remaining levels k_a .. 0
run conditioned on the observation at t. Each level thus sees the observation its chunk is
aligned with, as in Streaming Diffusion Policy, whose levels of one trajectory see successive
observations; the two control steps share the denoiser evaluations, so the worst step costs
fewer. (Denoising the first levels on s's observation but aligned with t lags the plan a step
behind: measured, it cost a quarter of the static task's successes.) When the observation at t
is not the one expected (a different shift), the part run ahead is dropped and the refinement
runs whole; its evaluations are still counted in the next StepReport.
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
    ahead_levels: int = 0               # levels run one control step before the refinement's observation


class WarmStartSampler:
    """Keeps the last chunk and its observation time; decides between refinement and full sample."""

    def __init__(self, schedule: NoiseSchedule, settings: StreamingSettings, control_rate_hz: float):
        schedule.check_timesteps(settings.denoising_steps)
        if settings.renoise_level is not None and settings.renoise_level != settings.denoising_steps[0]:
            raise ValueError(f"renoise_level {settings.renoise_level} must be the first denoising step "
                             f"{settings.denoising_steps[0]}: the re-noised chunk is denoised from that level")
        if settings.discrete_method not in DISCRETE_METHODS:
            raise ValueError(f"discrete_method must be one of {DISCRETE_METHODS}")
        if not 0 <= settings.ahead_levels < len(settings.denoising_steps):
            raise ValueError(f"ahead_levels {settings.ahead_levels} must be in [0, {len(settings.denoising_steps) - 1}]: "
                             "at least the last level runs on the refinement's own observation")
        self.schedule = schedule
        self.settings = settings
        self.control_rate_hz = float(control_rate_hz)
        self.reset()

    def reset(self) -> None:
        self.chunk: torch.Tensor | None = None
        self.obs_time: float | None = None
        self._ahead: tuple[int, int, torch.Tensor] | None = None   # (shift expected, shift done, chunk at k_a)
        self._ahead_nfe = 0                                    # evaluations run ahead, not yet reported

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

    def refine_ahead(self, denoise_fn: DenoiseFn, obs_time: float, next_obs_time: float, *,
                     clip_sample: bool = True, generator: torch.Generator | None = None) -> int:
        """The first `ahead_levels` levels of the refinement for the observation expected at
        `next_obs_time`, run now on the denoise_fn of the observation at `obs_time`, aligned with
        it; step() at the expected shift finishes them. Returns the evaluations run (0: nothing
        to refine, or no running ahead)."""
        s = self.settings
        self._ahead = None
        if not s.ahead_levels or self.chunk is None:
            return 0
        horizon = self.chunk.shape[1]
        now, expected = self.plan_shift(obs_time, horizon), self.plan_shift(next_obs_time, horizon)
        if now is None or expected is None or expected < now:
            return 0
        levels = s.denoising_steps[:s.ahead_levels]
        x = denoise(denoise_fn, self.warm_start(now, generator), levels, self.schedule, s.method, clip_sample,
                    generator, end_level=s.denoising_steps[s.ahead_levels])
        self._ahead = (expected, now, x)
        self._ahead_nfe += len(levels)
        return len(levels)

    def step(self, denoise_fn: DenoiseFn, obs_time: float, full_sample, *, clip_sample: bool = True,
             generator: torch.Generator | None = None) -> tuple[torch.Tensor, StepReport]:
        """One control step. `full_sample()` -> (chunk, StepReport) draws a chunk from noise. The
        report's nfe counts the evaluations run ahead for this chunk (or dropped) too."""
        horizon = None if self.chunk is None else self.chunk.shape[1]
        shift = None if horizon is None else self.plan_shift(obs_time, horizon)
        ahead, self._ahead = self._ahead, None
        ahead_nfe, self._ahead_nfe = self._ahead_nfe, 0
        if shift is None:
            chunk, report = full_sample()
            report = dataclasses.replace(report, nfe=report.nfe + ahead_nfe)
        else:
            s = self.settings
            if ahead is not None and ahead[0] == shift:
                x, levels = shift_chunk(ahead[2], shift - ahead[1]), s.denoising_steps[s.ahead_levels:]
            else:
                x, levels = self.warm_start(shift, generator), s.denoising_steps
            chunk = denoise(denoise_fn, x, levels, self.schedule, s.method, clip_sample, generator)
            report = StepReport(sampler="streaming", nfe=len(levels) + ahead_nfe, warm_started=True,
                                shift_steps=shift, denoising_steps=list(s.denoising_steps))
        self.chunk = chunk.detach()
        self.obs_time = float(obs_time)
        return chunk, report
