"""Synthetic episode sets written as real datasets, for tests and benchmarks without a robot.

bimodal_2d: a point moves right from the origin and bows either up or down (chosen per episode);
from the start observation both modes are valid, the straight line between them is not.
multisensor: a 6-joint arm + gripper reaching for a target that is visible only in the camera
image; the gripper closes half way and the fingertip tactile grids light up while it is closed.
"""
from __future__ import annotations

import numpy as np

from diffusion_policy_ros.data.replay_buffer import ReplayBuffer

BIMODAL_LENGTH = 32
BIMODAL_AMPLITUDE = 1.0


def bimodal_episode(sign: float, rng: np.random.Generator, length: int = BIMODAL_LENGTH) -> dict:
    amplitude = BIMODAL_AMPLITUDE * rng.uniform(0.9, 1.1)
    t = np.arange(length + 1, dtype=np.float64) / length
    path = np.stack([t, sign * amplitude * np.sin(np.pi * t)], axis=-1).astype(np.float32)
    return {"obs/joint_pos": path[:-1], "action": path[1:],
            "timestamp": np.arange(length, dtype=np.float64) / 10.0}


def write_bimodal_dataset(path: str, n_episodes: int = 64, seed: int = 0) -> ReplayBuffer:
    rng = np.random.default_rng(seed)
    buf = ReplayBuffer.create(path)
    for i in range(n_episodes):
        sign = 1.0 if i % 2 == 0 else -1.0
        buf.add_episode(bimodal_episode(sign, rng), {"task": "bow", "fps": 10.0, "robot": "point2d",
                                                     "joint_names": ["x", "y"], "mode": sign})
    return buf


MULTISENSOR_JOINTS = [f"joint_{i}" for i in range(1, 7)] + ["gripper"]


def multisensor_episode(rng: np.random.Generator, length: int = 48, image: int = 96, taxels: int = 4) -> dict:
    target_px = rng.integers(12, image - 12, size=2)
    target_q = np.concatenate([(target_px / image - 0.5) * 2.0, rng.uniform(-0.3, 0.3, 4)])
    start_q = rng.uniform(-0.2, 0.2, 6)
    steps = length + 1
    phase = np.clip(np.arange(steps) / (0.6 * length), 0.0, 1.0)
    smooth = phase * phase * (3 - 2 * phase)
    joints = start_q[None] + smooth[:, None] * (target_q - start_q)[None]
    gripper = np.where(np.arange(steps) < 0.6 * length, 0.04, 0.0)         # metres: open, then closed
    q = np.concatenate([joints, gripper[:, None]], axis=1).astype(np.float32)
    rgb = np.full((length, image, image, 3), 40, np.uint8)
    y, x = target_px
    rgb[:, y - 4:y + 4, x - 4:x + 4] = (230, 60, 40)
    tactile = np.zeros((length, taxels, taxels), np.float32)
    closed = q[:-1, 6] < 0.02
    tactile[closed] = rng.uniform(0.5, 1.5, (int(closed.sum()), taxels, taxels)).astype(np.float32)
    return {"obs/joint_pos": q[:-1], "action": q[1:], "obs/scene/rgb": rgb,
            "obs/finger_l/tactile": tactile, "obs/finger_r/tactile": tactile.copy(),
            "timestamp": np.arange(length, dtype=np.float64) / 10.0}


def write_multisensor_dataset(path: str, n_episodes: int = 24, seed: int = 0) -> ReplayBuffer:
    rng = np.random.default_rng(seed)
    buf = ReplayBuffer.create(path)
    for _ in range(n_episodes):
        buf.add_episode(multisensor_episode(rng), {"task": "reach and grasp", "fps": 10.0, "robot": "synthetic",
                                                   "joint_names": MULTISENSOR_JOINTS})
    return buf
