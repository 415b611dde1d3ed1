"""A checkpoint made ready to drive a robot (no ROS): loaded, checked against the robot config,
its sampler chosen, and warmed up so that the first command does not pay for it."""
from __future__ import annotations

import numpy as np
import torch

from diffusion_policy_ros import obs_keys
from diffusion_policy_ros.policy.checkpoint import load_checkpoint
from diffusion_policy_ros.policy.configuration import PolicyConfigError, robot_obs_shapes
from diffusion_policy_ros.policy.modeling import DiffusionPolicy


def load_for_robot(checkpoint: str, robot, device: str = "auto", sampler: str = "streaming",
                   denoising_steps=(), torch_threads: int = 0, compile_unet: bool = True,
                   ahead_levels: int = -1) -> DiffusionPolicy:
    """`denoising_steps`: streaming refinement levels overriding the checkpoint's (empty: its own);
    `ahead_levels` >= 0: how many of them run a control step early (-1: the checkpoint's);
    `torch_threads` > 0 sets torch's intra-op threads for the process; `compile_unet`: see
    `DiffusionPolicy.compile_for_inference`."""
    if not checkpoint:
        raise PolicyConfigError("parameter 'checkpoint' is empty: give a folder with model.safetensors + config.json")
    if torch_threads > 0:
        torch.set_num_threads(torch_threads)
    policy = load_checkpoint(checkpoint, device)
    policy.config.validate_against(robot_obs_shapes(robot), robot.joint_names)
    if abs(policy.config.control_rate_hz - robot.control_rate_hz) > 1e-6:
        raise PolicyConfigError(f"checkpoint control rate {policy.config.control_rate_hz} Hz != configured "
                                f"control_rate_hz {robot.control_rate_hz}")
    policy.set_sampler(sampler, **streaming_overrides(policy.config, sampler, denoising_steps, ahead_levels))
    if compile_unet:
        policy.compile_for_inference()
    warm_up(policy)
    return policy


def streaming_overrides(config, sampler: str, denoising_steps=(), ahead_levels: int = -1) -> dict:
    """`set_sampler` overrides for refinement levels other than the checkpoint's (empty: its own)
    and `ahead_levels` >= 0 of them run a control step early; nothing for a sampler from noise.
    A checkpoint that re-noises its warm start re-noises it to the first of the new levels."""
    overrides = {}
    if sampler == "streaming" and len(denoising_steps):
        steps = [int(s) for s in denoising_steps]
        overrides.update(stream_denoising_steps=steps,
                         stream_renoise_level=None if config.stream_renoise_level is None else steps[0])
    if sampler == "streaming" and ahead_levels >= 0:
        overrides["stream_ahead_levels"] = int(ahead_levels)
    return overrides


def warm_up(policy: DiffusionPolicy) -> None:
    """A sample from noise (and for streaming a refinement of it) on zero observations, then reset."""
    cfg = policy.config
    zeros = {k: np.zeros((cfg.n_obs_steps, *s), dtype=np.uint8 if obs_keys.parse(k).modality == "rgb" else np.float32)
             for k, s in cfg.obs_shapes.items()}
    policy.reset()
    for step in range(2 if cfg.sampler == "streaming" else 1):
        policy.predict_action_chunk(zeros, step / cfg.control_rate_hz)
    policy.reset()
