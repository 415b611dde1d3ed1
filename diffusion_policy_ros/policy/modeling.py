"""DiffusionPolicy: observation encoders + conditional 1-D U-Net + samplers behind a narrow API.

Runtime API (what the ROS node and the evaluators call):
  reset(seed=None)                               new episode: forget warm start and queues
  predict_action_chunk(obs_history, obs_time)    -> (n_action_steps, action_dim) joint targets,
                                                  row 0 for obs_time + 1 / control_rate_hz
  select_action(obs_step, obs_time)              -> (action_dim,) for simple synchronous loops
  last_report                                    StepReport of the last chunk computation
  last_timing                                    InferenceTiming: its encoder and denoiser seconds
  can_refine(obs_time)                           whether that chunk would be a streaming refinement
  refine_ahead(obs_history, obs_time, next_obs_time)  run the next refinement's first levels now
                                                  (stream_ahead_levels > 0)
  sample_from_noise(obs_history, noise, ...)     deterministic chunk from a given initial noise

Actions live in "model space" inside: min-max normalized to [-1, 1]; with the 'scale' discrete
method the gripper dims are further divided by discrete_factor. Discrete dims come out as sign().
"""
from __future__ import annotations

import collections
import contextlib
import dataclasses
import time
from collections.abc import Mapping

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from diffusion_policy_ros import obs_keys
from diffusion_policy_ros.policy.configuration import PolicyConfig, PolicyConfigError
from diffusion_policy_ros.policy.encoders import ObservationEncoder
from diffusion_policy_ros.policy.normalizer import MinMaxNormalizer
from diffusion_policy_ros.policy.step_features import StepFeatureCache
from diffusion_policy_ros.policy.unet import ConditionalUnet1D
from diffusion_policy_ros.sampling.samplers import denoise, full_timesteps
from diffusion_policy_ros.sampling.schedule import NoiseSchedule
from diffusion_policy_ros.sampling.streaming import (StepReport, StreamingSettings, WarmStartSampler,
                                                     binarize_discrete)

ACTION_KEY = "action"


@dataclasses.dataclass(frozen=True)
class InferenceTiming:
    """Where the last predict_action_chunk spent its time (seconds; device work included)."""
    encode_s: float
    denoise_s: float


def resolve_device(name: str = "auto") -> torch.device:
    if name in ("auto", "", None):
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(name)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise PolicyConfigError(f"device {name!r} requested but CUDA is not available")
    return device


class DiffusionPolicy(nn.Module):
    def __init__(self, config: PolicyConfig, normalizer: MinMaxNormalizer):
        super().__init__()
        self.config = config.validate()
        needed = [ACTION_KEY] + [k for k in config.obs_shapes if not obs_keys.is_image(k)]
        missing = [k for k in needed if k not in normalizer]
        if missing:
            raise PolicyConfigError(f"normalizer has no stats for {missing}")
        self.normalizer = normalizer
        self.obs_encoder = ObservationEncoder(config)
        self.unet = ConditionalUnet1D(config.action_dim, self.obs_encoder.output_dim, config.down_dims,
                                      config.kernel_size, config.n_groups, config.step_embed_dim)
        self.schedule = NoiseSchedule(config.num_train_timesteps, config.beta_schedule)
        self.discrete_dims = tuple(config.gripper_dims) if config.discrete_method != "none" else ()
        self._generator: torch.Generator | None = None
        self._seed = 0
        self.last_report: StepReport | None = None
        self.last_timing: InferenceTiming | None = None
        self._compiled: dict[str, torch.jit.ScriptModule] = {}  # not a submodule: not in the state dict
        self._step_features = StepFeatureCache(lambda: list(self.obs_encoder.parameters()),
                                               capacity=config.n_obs_steps + 1)
        self.reset_stats()
        self.reset()

    # ------------------------------------------------------------------ device and precision
    @property
    def device(self) -> torch.device:
        return next(self.parameters()).device

    def to_device(self, name: str | None = None) -> "DiffusionPolicy":
        """Move to `name` (or config.device; 'auto' = CUDA when available) and reset the runtime."""
        device = resolve_device(name or self.config.device)
        self._compiled.clear()   # traced on the old device
        self._step_features.clear()
        self.to(device)
        self.schedule.to(device)
        self.reset(self._seed)
        return self

    def _autocast(self):
        kind = self.config.autocast
        if kind == "none":
            return contextlib.nullcontext()
        dtype = torch.bfloat16 if kind == "bf16" else torch.float16
        return torch.autocast(device_type=self.device.type, dtype=dtype)

    # ------------------------------------------------------------------ action space
    def action_to_model(self, action: torch.Tensor) -> torch.Tensor:
        x = self.normalizer.normalize(ACTION_KEY, action.float())
        if self.config.discrete_method == "scale" and self.discrete_dims:
            scale = torch.ones(x.shape[-1], device=x.device, dtype=x.dtype)
            scale[list(self.discrete_dims)] = 1.0 / self.config.discrete_factor
            x = x * scale
        return x

    def model_to_action(self, x: torch.Tensor) -> torch.Tensor:
        """Model-space chunk -> joint targets; discrete dims snap to their min or max."""
        x = binarize_discrete(x.float(), self.discrete_dims)
        return self.normalizer.unnormalize(ACTION_KEY, x)

    # ------------------------------------------------------------------ training
    def encode(self, obs: Mapping[str, torch.Tensor]) -> torch.Tensor:
        with self._autocast():
            return self.obs_encoder(obs, self.normalizer).float()

    def denoiser(self, cond: torch.Tensor):
        compiled = self._compiled.get("unet") if self.config.autocast == "none" else None

        def eps_fn(x: torch.Tensor, t: int) -> torch.Tensor:
            steps = torch.full((x.shape[0],), t, device=x.device, dtype=torch.long)
            if compiled is not None and x.shape[0] == 1 and not torch.is_grad_enabled():
                return compiled(x, steps, cond).float()
            with self._autocast():
                return self.unet(x, steps, cond).float()
        return eps_fn

    def compile_for_inference(self) -> bool:
        """On CPU, trace the U-Net for one chunk at a time (TorchScript, frozen, optimized for
        inference: convolutions fused with their biases, no Python between layers). Measured on
        the shipped checkpoint, one thread: 5.3 -> 2.0 ms per evaluation (docs/latency.md). The
        weights are copied: call it once training is over. Training, gradients (NCDPO) and batches
        keep the module. -> whether it was compiled (not on CUDA, where eager is already fast,
        nor with autocast)."""
        if self.device.type != "cpu" or self.config.autocast != "none":
            return False
        was_training = self.training
        self.eval()
        with torch.inference_mode(False), torch.no_grad():
            x = torch.zeros(1, self.config.horizon, self.config.action_dim)
            steps = torch.zeros(1, dtype=torch.long)
            cond = torch.zeros(1, self.obs_encoder.output_dim)
            traced = torch.jit.trace(self.unet, (x, steps, cond), check_trace=False)
            self._compiled["unet"] = torch.jit.optimize_for_inference(torch.jit.freeze(traced))
        self.train(was_training)
        return True

    def compute_loss(self, batch: Mapping[str, torch.Tensor], generator: torch.Generator | None = None
                     ) -> torch.Tensor:
        """Epsilon-prediction MSE. batch: obs keys (B, n_obs_steps, ...) raw, 'action' (B, horizon, A)."""
        x0 = self.action_to_model(batch[ACTION_KEY])
        cond = self.encode({k: batch[k][:, :self.config.n_obs_steps] for k in self.config.obs_shapes})
        noise = torch.randn(x0.shape, device=x0.device, generator=generator)
        t = torch.randint(0, self.schedule.num_steps, (x0.shape[0],), device=x0.device, generator=generator)
        x_t = self.schedule.add_noise(x0, noise, t)
        with self._autocast():
            eps = self.unet(x_t, t, cond).float()
        return F.mse_loss(eps, noise)

    # ------------------------------------------------------------------ sampling core
    def sample_chunk(self, cond: torch.Tensor, method: str, num_steps: int,
                     initial_noise: torch.Tensor | None = None,
                     generator: torch.Generator | None = None) -> torch.Tensor:
        """Model-space chunk (B, horizon, A) from noise with `num_steps` DDPM or DDIM steps; the
        noise it draws has std config.sample_noise_scale (a given initial noise is used as it is)."""
        shape = (cond.shape[0], self.config.horizon, self.config.action_dim)
        scale = self.config.sample_noise_scale
        if initial_noise is None:
            x = torch.randn(shape, device=cond.device, generator=generator)
            if scale != 1.0:
                x = x * scale
        else:
            if tuple(initial_noise.shape) != shape:
                raise ValueError(f"initial noise must have shape {shape}, got {tuple(initial_noise.shape)}")
            x = initial_noise.to(cond.device, torch.float32)
        steps = full_timesteps(self.schedule, method, num_steps)
        eta = self.config.ddim_eta if method == "ddim" else 0.0
        return denoise(self.denoiser(cond), x, steps, self.schedule, method, self.config.clip_sample, generator,
                       eta=eta, noise_scale=scale)

    @torch.no_grad()
    def sample_from_noise(self, obs_history: Mapping, noise, method: str = "ddim",
                          num_steps: int | None = None, seed: int = 0) -> np.ndarray:
        """Full chunk (horizon, A) of joint targets from a given initial noise (horizon, A).

        Deterministic: DDIM with ddim_eta 0 is a function of the noise alone; DDPM and DDIM with
        ddim_eta > 0 draw their intermediate noise from a generator seeded with `seed`. Meant for steering / fine-tuning in noise space.
        """
        self._to_eval_mode()
        cond = self.encode(self._batch_obs(obs_history))
        noise = torch.as_tensor(np.asarray(noise, dtype=np.float32), device=self.device).reshape(
            1, self.config.horizon, self.config.action_dim)
        generator = torch.Generator(self.device).manual_seed(seed)
        steps = num_steps or (self.config.ddim_steps if method == "ddim" else self.config.num_train_timesteps)
        x = self.sample_chunk(cond, method, steps, initial_noise=noise, generator=generator)
        return self.model_to_action(x)[0].cpu().numpy()

    # ------------------------------------------------------------------ runtime
    def reset(self, seed: int | None = None) -> None:
        """Start of an episode: forget the warm start, the observation queue and queued actions."""
        if seed is not None:
            self._seed = int(seed)
        device = next(self.parameters()).device
        self._generator = torch.Generator(device).manual_seed(self._seed)
        cfg = self.config
        settings = StreamingSettings(
            denoising_steps=list(cfg.stream_denoising_steps), renoise_level=cfg.stream_renoise_level,
            method=cfg.stream_method, discrete_dims=self.discrete_dims, discrete_method=cfg.discrete_method,
            discrete_factor=cfg.discrete_factor, ahead_levels=cfg.stream_ahead_levels)
        self.streaming = WarmStartSampler(self.schedule, settings, cfg.control_rate_hz)
        self._obs_queue: collections.deque = collections.deque(maxlen=cfg.n_obs_steps)
        self._rows: np.ndarray | None = None
        self._rows_time: float | None = None
        self.last_report = None
        self.last_timing = None

    def reset_stats(self) -> None:
        """Zero the NFE / selected-action counters (they survive reset(), i.e. span episodes)."""
        self.total_nfe = 0
        self.actions_selected = 0

    def set_sampler(self, sampler: str, **overrides) -> None:
        """Switch sampler (ddpm | ddim | streaming) and optionally any sampling field of the config."""
        import dataclasses
        self.config = dataclasses.replace(self.config, sampler=sampler, **overrides).validate()
        self.discrete_dims = tuple(self.config.gripper_dims) if self.config.discrete_method != "none" else ()
        self.reset_stats()
        self.reset()

    def _batch_obs(self, obs_history: Mapping) -> dict[str, torch.Tensor]:
        self._check_history(obs_history)
        out = {}
        for key in self.config.obs_shapes:
            value = obs_history[key]
            tensor = value if isinstance(value, torch.Tensor) else torch.from_numpy(np.ascontiguousarray(value))
            out[key] = tensor.to(self.device, non_blocking=True).unsqueeze(0)
        return out

    def _check_history(self, obs_history: Mapping) -> None:
        n = self.config.n_obs_steps
        for key, shape in self.config.obs_shapes.items():
            if key not in obs_history:
                raise PolicyConfigError(f"observation {key!r} missing; got {sorted(obs_history)}")
            got = tuple(np.shape(obs_history[key]))
            if got != (n, *shape):
                raise PolicyConfigError(f"observation {key!r} has shape {got}, expected "
                                        f"{(n, *shape)} (n_obs_steps x per-step shape)")

    def _encode_history(self, obs_history: Mapping) -> torch.Tensor:
        """(1, cond_dim) conditioning of one history; the steps seen at the last call are not
        encoded again (policy/step_features.py)."""
        self._check_history(obs_history)
        return self._step_features.features(_as_arrays(obs_history, self.config.obs_shapes),
                                            self._encode_steps).reshape(1, -1)

    def _encode_steps(self, steps: dict[str, np.ndarray]) -> torch.Tensor:
        batch = {k: torch.from_numpy(np.ascontiguousarray(v)).to(self.device).unsqueeze(0) for k, v in steps.items()}
        with self._autocast():
            return self.obs_encoder.encode_steps(batch, self.normalizer).float()[0]

    def can_refine(self, obs_time: float) -> bool:
        """Whether the chunk for `obs_time` would refine the last one (streaming, and that one's
        observation lies 0 to horizon - 1 control steps earlier) rather than be sampled from noise."""
        if self.config.sampler != "streaming":
            return False
        return self.streaming.plan_shift(obs_time, self.config.horizon) is not None

    def _to_eval_mode(self) -> None:
        """eval() walks every submodule, about 0.4 ms of Python per inference on these CPUs
        (docs/latency.md): only when a part of the policy is in training mode."""
        if self.training or self.obs_encoder.training or self.unet.training:
            self.eval()

    def _synchronize(self) -> None:
        if self.device.type == "cuda":   # kernels run asynchronously: time them, not their launch
            torch.cuda.synchronize(self.device)

    @torch.no_grad()
    def predict_action_chunk(self, obs_history: Mapping, obs_time: float) -> np.ndarray:
        """(n_action_steps, A) joint targets; row i is for obs_time + (i + 1) / control_rate_hz."""
        self._to_eval_mode()
        cfg = self.config
        started = time.perf_counter()
        cond = self._encode_history(obs_history)
        self._synchronize()
        encoded = time.perf_counter()
        if cfg.sampler == "streaming":
            def full():
                steps = full_timesteps(self.schedule, cfg.full_sample_method, cfg.full_sample_steps)
                chunk = self.sample_chunk(cond, cfg.full_sample_method, cfg.full_sample_steps,
                                          generator=self._generator)
                return chunk, StepReport("streaming", len(steps), False, 0, steps)
            chunk, report = self.streaming.step(self.denoiser(cond), obs_time, full,
                                                clip_sample=cfg.clip_sample, generator=self._generator)
        else:
            steps_n = cfg.num_train_timesteps if cfg.sampler == "ddpm" else cfg.ddim_steps
            chunk = self.sample_chunk(cond, cfg.sampler, steps_n, generator=self._generator)
            steps = full_timesteps(self.schedule, cfg.sampler, steps_n)
            report = StepReport(cfg.sampler, len(steps), False, 0, steps)
        start = cfg.n_obs_steps - 1
        rows = self.model_to_action(chunk[0, start:start + cfg.n_action_steps]).cpu().numpy()  # the one host sync
        self.total_nfe += report.nfe
        self.last_report = report
        self.last_timing = InferenceTiming(encoded - started, time.perf_counter() - encoded)
        return rows

    def select_action(self, obs_step: Mapping, obs_time: float) -> np.ndarray:
        """One action for obs_time + 1 / rate; replans every n_action_steps (ddpm, ddim) or refines
        every stream_execute_steps (streaming), counted in elapsed control periods."""
        cfg = self.config
        if not self._obs_queue:
            for _ in range(cfg.n_obs_steps):
                self._obs_queue.append(obs_step)
        else:
            self._obs_queue.append(obs_step)
        every = self.steps_per_inference
        index = None
        if self._rows is not None:
            index = int(round((obs_time - self._rows_time) * cfg.control_rate_hz))
            if not 0 <= index < every:
                index = None
        if index is None:
            self._rows = self.predict_action_chunk(self._queued_history(), obs_time)
            self._rows_time = float(obs_time)
            index = 0
        elif cfg.sampler == "streaming" and cfg.stream_ahead_levels and index == every - 1:
            self.refine_ahead(self._queued_history(), obs_time, self._rows_time + every / cfg.control_rate_hz)
        elif every - index < cfg.n_obs_steps:   # this step is in the next inference's history
            self.encode_ahead(obs_step)
        self.actions_selected += 1
        return self._rows[index]

    def _queued_history(self) -> dict[str, np.ndarray]:
        return {k: np.stack([np.asarray(o[k]) for o in self._obs_queue]) for k in self.config.obs_shapes}

    @torch.no_grad()
    def encode_ahead(self, obs_step: Mapping) -> None:
        """Encode one observation step that the next inference will see, at a control step
        without inference: that inference then encodes only the steps newer than this one.
        Refining every 2nd step, a refinement encodes one frame instead of two."""
        for key, shape in self.config.obs_shapes.items():
            if key not in obs_step or tuple(np.shape(obs_step[key])) != tuple(shape):
                raise PolicyConfigError(f"observation step {key!r} missing or not of shape {tuple(shape)}")
        self._to_eval_mode()
        self._step_features.features(_as_arrays({k: np.asarray(v)[None] for k, v in obs_step.items()},
                                                self.config.obs_shapes), self._encode_steps)

    @torch.no_grad()
    def refine_ahead(self, obs_history: Mapping, obs_time: float, next_obs_time: float) -> int:
        """Streaming with stream_ahead_levels > 0, at the control step before a refinement (whose
        observation is expected at `next_obs_time`): run its first levels now, conditioned on this
        history, observed at `obs_time` (its newest step is then encoded for the refinement too).
        Returns the denoiser evaluations run; they are counted in the report of the chunk
        computed next."""
        if self.config.sampler != "streaming" or not self.config.stream_ahead_levels:
            return 0
        self._to_eval_mode()
        cond = self._encode_history(obs_history)
        return self.streaming.refine_ahead(self.denoiser(cond), obs_time, next_obs_time,
                                           clip_sample=self.config.clip_sample, generator=self._generator)

    @property
    def steps_per_inference(self) -> int:
        """Control steps executed from each chunk before the next inference: a whole
        n_action_steps for a sample from noise (ddpm, ddim), stream_execute_steps when streaming."""
        cfg = self.config
        return cfg.stream_execute_steps if cfg.sampler == "streaming" else cfg.n_action_steps

    @property
    def nfe_per_action(self) -> float:
        return self.total_nfe / max(self.actions_selected, 1)


def _as_arrays(obs: Mapping, keys) -> dict[str, np.ndarray]:
    """The policy's keys of an observation (history or step) as host arrays."""
    return {key: (value.detach().cpu().numpy() if isinstance(value, torch.Tensor) else np.asarray(value))
            for key, value in obs.items() if key in keys}
