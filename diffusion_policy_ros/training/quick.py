"""A small multi-sensor policy trained in a minute or two on synthetic data, for benchmarks and
demos when no real checkpoint is at hand. Cached in a folder so repeated runs reuse it."""
from __future__ import annotations

import os

from diffusion_policy_ros.data.replay_buffer import ReplayBuffer
from diffusion_policy_ros.data.sequence_dataset import SequenceDataset
from diffusion_policy_ros.policy import checkpoint as ckpt
from diffusion_policy_ros.policy.configuration import PolicyConfig
from diffusion_policy_ros.training.synthetic import MULTISENSOR_JOINTS, write_multisensor_dataset
from diffusion_policy_ros.training.trainer import TrainConfig, Trainer

SYNTHETIC_OBS = {"obs/joint_pos": [7], "obs/scene/rgb": [96, 96, 3], "obs/finger_l/tactile": [4, 4],
                 "obs/finger_r/tactile": [4, 4]}


def synthetic_policy_config(**overrides) -> PolicyConfig:
    fields = dict(obs_shapes=SYNTHETIC_OBS, joint_names=MULTISENSOR_JOINTS, gripper_dims=[6],
                  control_rate_hz=10.0, down_dims=[64, 128, 256])
    fields.update(overrides)
    return PolicyConfig(**fields).validate()


def synthetic_dataset(folder: str, n_episodes: int = 24) -> ReplayBuffer:
    path = os.path.join(folder, "synthetic_dataset")
    if os.path.exists(os.path.join(path, "meta", "episodes.json")):
        return ReplayBuffer.open(path)
    return write_multisensor_dataset(path, n_episodes=n_episodes)


def quick_checkpoint(folder: str, train_steps: int = 400, device: str = "auto", progress: bool = True,
                     retrain: bool = False) -> str:
    """Train (or reuse) the synthetic checkpoint in folder/synthetic_checkpoint; returns its path."""
    out = os.path.join(folder, "synthetic_checkpoint")
    if not retrain and os.path.isfile(os.path.join(out, ckpt.CONFIG)):
        _, _, info = ckpt.read_config(out)
        if info.get("step") == train_steps:
            return out
    buf = synthetic_dataset(folder)
    config = synthetic_policy_config()
    dataset = SequenceDataset(buf, sorted(config.obs_shapes), config.horizon, config.n_obs_steps,
                              config.n_action_steps, episodes=range(buf.n_episodes - 4))
    trainer = Trainer(config, dataset, TrainConfig(steps=train_steps, batch_size=32, lr=1e-3, warmup_steps=50,
                                                   ema_max_decay=0.995, checkpoint_every=0, device=device),
                      out_dir=out, extra_info={"dataset": buf.path, "held_out_episodes":
                                               list(range(buf.n_episodes - 4, buf.n_episodes))})
    trainer.train(progress=progress)
    return out
