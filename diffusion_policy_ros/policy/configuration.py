"""Policy configuration: what the policy observes, its sizes, schedule and samplers.

Stored as JSON inside every checkpoint (config.json), so a node can check a checkpoint against the
robot it is about to drive (`validate_against`) before any tensor is loaded.
"""
from __future__ import annotations

import dataclasses
import numbers
from collections.abc import Mapping, Sequence
from typing import Any

from diffusion_policy_ros import obs_keys
from diffusion_policy_ros.pose_observation import SIZE as POSE_SIZE

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

# What a config may ask to allocate, checked before any tensor exists: a hostile or mistyped
# config.json must fail with a message that names the field, not exhaust the machine's memory.
# Each bound is several times what published diffusion policies use.
MAX_PARAMETERS = 512_000_000            # ~2 GiB of float32 weights (Chi et al.'s largest U-Net: ~260 M)
MAX_IMAGE_ACTIVATIONS = 256_000_000     # float32 feature-map elements of the image encoders per inference
SIZE_LIMITS = {"horizon": 1024, "n_obs_steps": 64, "n_action_steps": 1024, "num_train_timesteps": 10_000,
               "full_sample_steps": 10_000, "ddim_steps": 10_000, "stream_execute_steps": 1024,
               "kernel_size": 31, "n_groups": 1024, "step_embed_dim": 8192, "rgb_keypoints": 1024,
               "image_feature_dim": 8192, "tactile_feature_dim": 8192}
MAX_CHANNELS = 8192                     # each entry of down_dims and rgb_channels
MAX_LEVELS = 8                          # entries in down_dims and rgb_channels
MAX_JOINTS = 256
MAX_OBSERVATIONS = 64                   # keys in obs_shapes
MAX_IMAGE_SIDE = 8192
MAX_VECTOR = 65_536                     # proprio length, tactile rows * cols


def _is_int(value) -> bool:
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def check_sizes(config: "PolicyConfig") -> None:
    """Raise PolicyConfigError, naming the field, for a size that is not an int or above its limit;
    then for a model whose estimated parameters or image activations exceed the memory bounds."""
    def bounded(field: str, value, limit: int, low: int = 1):
        if not _is_int(value) or not low <= value <= limit:
            raise PolicyConfigError(f"{field} = {value!r}: must be an integer in [{low}, {limit:,}]")

    for field, limit in SIZE_LIMITS.items():
        bounded(field, getattr(config, field), limit)
    for field in ("down_dims", "rgb_channels", "rgb_crop", "stream_denoising_steps"):
        if not isinstance(getattr(config, field), (list, tuple)):
            raise PolicyConfigError(f"{field} must be a list of integers, got {getattr(config, field)!r}")
    for field in ("down_dims", "rgb_channels"):
        values = getattr(config, field)
        bounded(f"len({field})", len(values), MAX_LEVELS)
        for value in values:
            bounded(field, value, MAX_CHANNELS)
    bounded("len(rgb_crop)", len(config.rgb_crop), 2, low=2)
    for value in config.rgb_crop:
        bounded("rgb_crop", value, MAX_IMAGE_SIDE)
    fraction = config.image_crop_fraction
    if fraction is not None and (not isinstance(fraction, numbers.Real) or isinstance(fraction, bool)
                                 or not 0.0 < fraction <= 1.0):
        raise PolicyConfigError(f"image_crop_fraction = {fraction!r}: must be null or a number in (0, 1]")
    bounded("len(stream_denoising_steps)", len(config.stream_denoising_steps), SIZE_LIMITS["num_train_timesteps"])
    for value in config.stream_denoising_steps:
        bounded("stream_denoising_steps", value, SIZE_LIMITS["num_train_timesteps"], low=0)
    bounded("len(joint_names)", len(config.joint_names), MAX_JOINTS)
    bounded("len(obs_shapes)", len(config.obs_shapes), MAX_OBSERVATIONS)
    for key, shape in config.obs_shapes.items():
        kind = modality_of(key)
        if not isinstance(shape, (list, tuple)) or len(shape) != _RANK[kind]:
            raise PolicyConfigError(f"{key}: shape {shape!r} is not a valid {kind} shape (rank {_RANK[kind]})")
        limit = MAX_IMAGE_SIDE if kind in ("rgb", "depth") else MAX_VECTOR
        for value in shape:
            bounded(f"{key} shape", value, limit)
        if kind == "tactile":
            bounded(f"{key} taxels", shape[0] * shape[1], MAX_VECTOR)

    parts = estimated_parameters(config)
    total = sum(parts.values())
    if total > MAX_PARAMETERS:
        field, largest = max(parts.items(), key=lambda item: item[1])
        raise PolicyConfigError(f"config would build ~{total:,} parameters, above the limit {MAX_PARAMETERS:,}; "
                                f"{largest:,} of them come from {field}")
    activations = estimated_image_activations(config)
    if activations > MAX_IMAGE_ACTIVATIONS:
        raise PolicyConfigError(f"image encoders would hold ~{activations:,} activations per inference, above "
                                f"the limit {MAX_IMAGE_ACTIVATIONS:,} (from the image crops {crop_sizes(config)}, "
                                f"rgb_channels {config.rgb_channels} and n_obs_steps {config.n_obs_steps})")


def _feature_dim(config: "PolicyConfig", key: str, shape) -> int:
    kind = modality_of(key)
    if kind in ("rgb", "depth"):
        return config.image_feature_dim
    return config.tactile_feature_dim if kind == "tactile" else int(shape[0])


def estimated_parameters(config: "PolicyConfig") -> dict[str, int]:
    """Parameter count of the model this config builds, by the config field that drives each part
    (exact for encoders.py and unet.py; test_checkpoint compares it with a built model)."""
    def conv_norm(c_in, c_out, kernel):         # Conv1d with bias + GroupNorm
        return c_in * c_out * kernel + 3 * c_out

    def film_block(c_in, c_out):                # -> (convolutions, conditioning) parameters
        convs = conv_norm(c_in, c_out, k) + conv_norm(c_out, c_out, k) + (c_in * c_out + c_out if c_in != c_out else 0)
        return convs, cond_dim * 2 * c_out + 2 * c_out

    images = tactile = 0
    for key, shape in config.obs_shapes.items():
        kind = modality_of(key)
        if kind in ("rgb", "depth"):
            c_prev = config.rgb_channels[0]
            images += (3 if kind == "rgb" else 1) * c_prev * 25 + 2 * c_prev
            for c in config.rgb_channels:
                images += c_prev * c * 9 + c * c * 9 + c_prev * c + 6 * c
                c_prev = c
            kp = config.rgb_keypoints
            images += c_prev * kp + kp + 2 * kp * config.image_feature_dim + config.image_feature_dim
        elif kind == "tactile":
            tactile += shape[0] * shape[1] * 64 + 64 + 65 * config.tactile_feature_dim
    step_dim = sum(_feature_dim(config, key, shape) for key, shape in config.obs_shapes.items())
    e, k, dims, a = config.step_embed_dim, config.kernel_size, list(config.down_dims), len(config.joint_names)
    cond_dim = e + step_dim * config.n_obs_steps
    blocks = []
    levels = [a, *dims]
    for level, (c_in, c_out) in enumerate(zip(levels[:-1], levels[1:])):
        blocks += [(c_in, c_out), (c_out, c_out)]
    blocks += [(dims[-1], dims[-1])] * 2
    resampling = sum(3 * c * c + c for c in dims[:-1])
    for c_out, c_in in reversed(list(zip(dims[:-1], dims[1:]))):
        blocks += [(2 * c_in, c_out), (c_out, c_out)]
        resampling += 4 * c_out * c_out + c_out
    convs = conditioning = 0
    for c_in, c_out in blocks:
        conv, film = film_block(c_in, c_out)
        convs += conv
        conditioning += film
    head = conv_norm(dims[0], dims[0], k) + dims[0] * a + a
    return {"down_dims": convs + resampling + head, "n_obs_steps x observation features": conditioning,
            "step_embed_dim": 8 * e * e + 5 * e, "rgb_channels": images, "tactile_feature_dim": tactile}


def crop_sizes(config: "PolicyConfig") -> dict[str, list[int]]:
    """The (height, width) each image key is cropped to: `rgb_crop` for every image, or with
    `image_crop_fraction` that fraction of each image's own sides (cameras of different sizes,
    e.g. a 96x96 scene camera and 64x64 wrist cameras, each keep the same share of their view)."""
    crops = {}
    for key, shape in config.obs_shapes.items():
        if modality_of(key) not in ("rgb", "depth"):
            continue
        if config.image_crop_fraction is None:
            crops[key] = list(config.rgb_crop)
        else:
            crops[key] = [max(1, int(config.image_crop_fraction * side + 1e-9)) for side in shape[:2]]
    return crops


def estimated_image_activations(config: "PolicyConfig") -> int:
    """Feature-map elements the image encoders produce for one observation history (upper estimate:
    every stride-2 layer's output kept, three tensors per residual block)."""
    total = 0
    for h, w in crop_sizes(config).values():
        h, w = (h + 1) // 2, (w + 1) // 2
        per_image = config.rgb_channels[0] * h * w
        for c in config.rgb_channels:
            h, w = (h + 1) // 2, (w + 1) // 2
            per_image += 3 * c * h * w
        total += per_image
    return total * config.n_obs_steps


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
    image_crop_fraction: float | None = None   # set: crop each image to this share of its own sides
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
    ddim_eta: float = 0.0                   # > 0: stochastic DDIM (what NCDPO fine-tunes, 1 = DDPM)
    sample_noise_scale: float = 1.0         # std of the noise a sample from noise draws (its x_K and each
                                            # stochastic step's); < 1: a lower temperature (NCDPO, docs/rl_finetuning.md)
    stream_denoising_steps: list[int] = dataclasses.field(default_factory=lambda: [1])
    stream_renoise_level: int | None = None
    stream_method: str = "ddpm"
    stream_execute_steps: int = 1           # actions executed per refinement in select_action
    stream_ahead_levels: int = 0            # first levels of a refinement run one control step early
                                            # (on the observation before its own; sampling/streaming.py)
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
        if not isinstance(cfg.obs_shapes, Mapping):
            raise PolicyConfigError(f"obs_shapes must be an object of key -> shape, got {cfg.obs_shapes!r}")
        cfg.obs_shapes = {str(k): list(v) if isinstance(v, (list, tuple)) else v for k, v in cfg.obs_shapes.items()}
        cfg.validate()
        return cfg

    def validate(self) -> "PolicyConfig":
        def need(cond: bool, msg: str):
            if not cond:
                raise PolicyConfigError(msg)
        need(isinstance(self.joint_names, (list, tuple)) and len(self.joint_names) > 0, "joint_names is empty")
        check_sizes(self)
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
        for key, (h, w) in crop_sizes(self).items():
            shape = self.obs_shapes[key]
            need(h <= shape[0] and w <= shape[1],
                 f"{key}: crop {[h, w]} larger than image {shape[:2]} (set image_crop_fraction to crop "
                 "cameras of different sizes alike)")
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
        need(isinstance(self.ddim_eta, numbers.Real) and 0.0 <= self.ddim_eta <= 1.0,
             f"ddim_eta must be a number in [0, 1], got {self.ddim_eta!r}")
        need(isinstance(self.sample_noise_scale, numbers.Real) and 0.0 <= self.sample_noise_scale <= 1.0,
             f"sample_noise_scale must be a number in [0, 1], got {self.sample_noise_scale!r}")
        need(len(self.stream_denoising_steps) > 0, "stream_denoising_steps is empty")
        need(self.stream_renoise_level in (None, self.stream_denoising_steps[0]),
             "stream_renoise_level must be null (refine the shifted chunk as it is) or the first of "
             "stream_denoising_steps (re-noise it to that level, then denoise)")
        need(1 <= self.stream_execute_steps <= self.n_action_steps,
             "stream_execute_steps must be in [1, n_action_steps]")
        need(_is_int(self.stream_ahead_levels) and 0 <= self.stream_ahead_levels < len(self.stream_denoising_steps),
             "stream_ahead_levels must be in [0, len(stream_denoising_steps) - 1]: the last level runs on the "
             "refinement's own observation")
        need(self.stream_ahead_levels == 0 or self.stream_execute_steps >= 2,
             "stream_ahead_levels > 0 needs stream_execute_steps >= 2: the levels run ahead at the control step "
             "between two refinements")
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
    for o in robot_config.object_poses:
        shapes[obs_keys.pose(o.name)] = [POSE_SIZE]
    return shapes
