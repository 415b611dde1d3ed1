"""Policy configuration: what the policy observes, its sizes, schedule and samplers.

Stored as JSON inside every checkpoint (config.json), so a node can check a checkpoint against the
robot it is about to drive (`validate_against`) before any tensor is loaded.
"""
from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from typing import Any

from diffusion_policy_ros import obs_keys

SAMPLERS = ("ddpm", "ddim", "streaming")
DISCRETE_METHODS = ("none", "scale", "clip")
AUTOCAST = ("none", "bf16", "fp16")


class PolicyConfigError(ValueError):
    """A policy config (or checkpoint) that does not fit what it is used with."""


def modality_of(key: str) -> str:
    """proprio (joint positions or any other low-dim vector), rgb, depth or tactile."""
    try:
        return obs_keys.parse(key).modality
    except obs_keys.ObsKeyError as e:
        raise PolicyConfigError(str(e)) from None


_RANK = {"proprio": 1, "rgb": 3, "depth": 2, "tactile": 2}


@dataclasses.dataclass
class PolicyConfig:
    # what is observed (per-step shapes as stored in the dataset) and what is commanded
    obs_shapes: dict[str, list[int]]
    joint_names: list[str]
    gripper_dims: list[int] = dataclasses.field(default_factory=list)
    control_rate_hz: float = 10.0
    # time layout: chunk index n_obs_steps - 1 is the target for obs_time + 1 / control_rate_hz
    horizon: int = 16
    n_obs_steps: int = 2
    n_action_steps: int = 8
    # encoders
    rgb_crop: list[int] = dataclasses.field(default_factory=lambda: [84, 84])
    rgb_channels: list[int] = dataclasses.field(default_factory=lambda: [16, 32])
    rgb_keypoints: int = 16
    image_feature_dim: int = 64
    depth_max_m: float = 2.0
    tactile_feature_dim: int = 32
    # denoiser
    down_dims: list[int] = dataclasses.field(default_factory=lambda: [128, 256, 512])
    kernel_size: int = 5
    n_groups: int = 8
    step_embed_dim: int = 128
    # diffusion
    num_train_timesteps: int = 100
    beta_schedule: str = "squaredcos_cap_v2"
    prediction_type: str = "epsilon"
    clip_sample: bool = True
    # sampling
    sampler: str = "streaming"
    full_sample_method: str = "ddim"        # cold start / ddim sampler
    full_sample_steps: int = 16
    ddim_steps: int = 16
    stream_denoising_steps: list[int] = dataclasses.field(default_factory=lambda: [1])
    stream_renoise_level: int | None = None
    stream_method: str = "ddpm"
    stream_execute_steps: int = 1           # actions executed per refinement in select_action
    discrete_method: str = "scale"
    discrete_factor: float = 10.0
    # device
    device: str = "auto"
    autocast: str = "none"

    @property
    def action_dim(self) -> int:
        return len(self.joint_names)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "PolicyConfig":
        if not isinstance(d, Mapping):
            raise PolicyConfigError("policy config must be a JSON object")
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(d) - names)
        if unknown:
            raise PolicyConfigError(f"unknown policy config fields {unknown}")
        missing = [n for n in ("obs_shapes", "joint_names") if n not in d]
        if missing:
            raise PolicyConfigError(f"policy config lacks {missing}")
        cfg = cls(**{k: v for k, v in d.items()})
        cfg.obs_shapes = {str(k): [int(s) for s in v] for k, v in dict(cfg.obs_shapes).items()}
        cfg.validate()
        return cfg

    def validate(self) -> "PolicyConfig":
        def need(cond: bool, msg: str):
            if not cond:
                raise PolicyConfigError(msg)
        need(len(self.joint_names) > 0, "joint_names is empty")
        need(len(set(self.joint_names)) == len(self.joint_names), "joint_names has duplicates")
        need(all(0 <= g < self.action_dim for g in self.gripper_dims),
             f"gripper_dims {self.gripper_dims} outside action_dim {self.action_dim}")
        need(len(self.obs_shapes) > 0, "obs_shapes is empty")
        for key, shape in self.obs_shapes.items():
            kind = modality_of(key)
            need(len(shape) == _RANK[kind] and all(int(s) > 0 for s in shape),
                 f"{key}: shape {shape} is not a valid {kind} shape (rank {_RANK[kind]}, positive sizes)")
            if kind == "rgb":
                need(shape[2] == 3, f"{key}: rgb images must be HxWx3, got {shape}")
            if kind in ("rgb", "depth"):
                need(self.rgb_crop[0] <= shape[0] and self.rgb_crop[1] <= shape[1],
                     f"{key}: crop {self.rgb_crop} larger than image {shape[:2]}")
        need(self.control_rate_hz > 0, "control_rate_hz must be > 0")
        need(self.horizon >= 4 and self.horizon % (2 ** (len(self.down_dims) - 1)) == 0,
             f"horizon {self.horizon} must be >= 4 and divisible by 2^(len(down_dims)-1)")
        need(1 <= self.n_obs_steps <= self.horizon, "n_obs_steps must be in [1, horizon]")
        need(1 <= self.n_action_steps <= self.horizon - self.n_obs_steps + 1,
             "n_action_steps must fit in the horizon after the observation steps")
        need(self.prediction_type == "epsilon", "only prediction_type 'epsilon' is supported")
        need(self.sampler in SAMPLERS, f"sampler must be one of {SAMPLERS}")
        need(self.full_sample_method in ("ddpm", "ddim"), "full_sample_method must be ddpm or ddim")
        need(self.stream_method in ("ddpm", "ddim"), "stream_method must be ddpm or ddim")
        need(1 <= self.full_sample_steps <= self.num_train_timesteps, "full_sample_steps out of range")
        need(1 <= self.ddim_steps <= self.num_train_timesteps, "ddim_steps out of range")
        need(len(self.stream_denoising_steps) > 0, "stream_denoising_steps is empty")
        need(self.stream_renoise_level in (None, self.stream_denoising_steps[0]),
             "stream_renoise_level must be null (refine the shifted chunk as it is) or the first of "
             "stream_denoising_steps (re-noise it to that level, then denoise)")
        need(1 <= self.stream_execute_steps <= self.n_action_steps,
             "stream_execute_steps must be in [1, n_action_steps]")
        need(self.discrete_method in DISCRETE_METHODS, f"discrete_method must be one of {DISCRETE_METHODS}")
        need(self.discrete_factor >= 1.0, "discrete_factor must be >= 1")
        need(self.autocast in AUTOCAST, f"autocast must be one of {AUTOCAST}")
        need(self.rgb_keypoints > 0 and self.image_feature_dim > 0, "encoder sizes must be positive")
        return self

    def validate_against(self, obs_shapes: Mapping[str, Sequence[int]], joint_names: Sequence[str]) -> None:
        """Raise PolicyConfigError unless a robot provides every observation and the same joints."""
        if list(joint_names) != list(self.joint_names):
            raise PolicyConfigError(f"checkpoint was trained for joints {self.joint_names}, robot has "
                                    f"{list(joint_names)}")
        problems = []
        for key, shape in self.obs_shapes.items():
            if key not in obs_shapes:
                problems.append(f"{key} missing (robot provides {sorted(obs_shapes)})")
            elif list(obs_shapes[key]) != list(shape):
                problems.append(f"{key} shape {list(obs_shapes[key])} != trained {list(shape)}")
        if problems:
            raise PolicyConfigError("checkpoint does not fit this robot: " + "; ".join(problems))


def robot_obs_shapes(robot_config) -> dict[str, list[int]]:
    """Observation shapes a `RobotConfig` provides, in dataset key form."""
    shapes = {obs_keys.JOINT_POS: [robot_config.action_dim]}
    for cam in robot_config.cameras:
        shapes[obs_keys.rgb(cam.name)] = [cam.height, cam.width, 3]
        if cam.depth:
            shapes[obs_keys.depth(cam.name)] = [cam.height, cam.width]
    for t in robot_config.tactile_sensors:
        shapes[obs_keys.tactile(t.name)] = [t.rows, t.cols]
    return shapes
