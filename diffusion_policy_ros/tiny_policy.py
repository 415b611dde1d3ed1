"""An untrained, small checkpoint that fits a robot config: for graph tests and `dpros bench graph`,
which measure plumbing and latency, not skill."""
from __future__ import annotations

import numpy as np

from diffusion_policy_ros import obs_keys
from diffusion_policy_ros.robot_config import RobotConfig


def make_untrained_checkpoint(robot: RobotConfig, folder: str, center=None, seed: int = 0) -> str:
    """`center`: joint vector the (random) actions stay within +-0.05 of, e.g. the sim's home."""
    import torch

    from diffusion_policy_ros.policy.checkpoint import save_checkpoint
    from diffusion_policy_ros.policy.configuration import PolicyConfig, robot_obs_shapes
    from diffusion_policy_ros.policy.modeling import DiffusionPolicy
    from diffusion_policy_ros.policy.normalizer import MinMaxNormalizer
    torch.manual_seed(seed)
    shapes = robot_obs_shapes(robot)
    side = min([min(c.height, c.width) for c in robot.cameras] or [84])
    crop = min(84, side - side % 8)
    config = PolicyConfig(obs_shapes=shapes, joint_names=list(robot.joint_names),
                          gripper_dims=list(robot.gripper_indices), control_rate_hz=robot.control_rate_hz,
                          horizon=16, n_obs_steps=2, n_action_steps=8, rgb_crop=[crop, crop],
                          rgb_channels=[8, 16], rgb_keypoints=8, image_feature_dim=32, tactile_feature_dim=16,
                          down_dims=[32, 64], step_embed_dim=32, full_sample_steps=4, ddim_steps=4,
                          device="cpu")
    center = np.zeros(robot.action_dim, np.float32) if center is None else np.asarray(center, np.float32)
    stats = {"action": (center - 0.05, center + 0.05)}
    stats[obs_keys.JOINT_POS] = (np.full(robot.action_dim, -3.0, np.float32), np.full(robot.action_dim, 3.0, np.float32))
    for t in robot.tactile_sensors:
        stats[obs_keys.tactile(t.name)] = (np.zeros((t.rows, t.cols), np.float32), np.full((t.rows, t.cols), 5.0, np.float32))
    for o in robot.object_poses:   # a table 1 m across, any orientation
        stats[obs_keys.pose(o.name)] = (np.array([-1, -1, -1, -1, -1, -1, -1], np.float32), np.ones(7, np.float32))
    normalizer = MinMaxNormalizer({k: {"min": lo, "max": hi} for k, (lo, hi) in stats.items()})
    policy = DiffusionPolicy(config, normalizer)
    return save_checkpoint(folder, policy)
