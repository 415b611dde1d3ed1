"""Observation encoders, one per observation key, and the module that concatenates their features.

RGB and depth: a small ResNet-style conv net (GroupNorm, so EMA weights stay consistent) ending in
spatial-softmax keypoints; random crop while training, centre crop at inference. Depth is metric,
clipped to [0, depth_max_m] (invalid readings count as far). Tactile: MLP over the min-max
normalized taxel grid. Proprioception: the normalized vector itself.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from diffusion_policy_ros.policy.configuration import PolicyConfig, crop_sizes, modality_of
from diffusion_policy_ros.policy.normalizer import MinMaxNormalizer


def _groups(channels: int) -> int:
    return 8 if channels % 8 == 0 else 1


class ResidualConvBlock(nn.Module):
    def __init__(self, c_in: int, c_out: int, stride: int):
        super().__init__()
        self.conv1 = nn.Conv2d(c_in, c_out, 3, stride=stride, padding=1, bias=False)
        self.norm1 = nn.GroupNorm(_groups(c_out), c_out)
        self.conv2 = nn.Conv2d(c_out, c_out, 3, padding=1, bias=False)
        self.norm2 = nn.GroupNorm(_groups(c_out), c_out)
        self.skip = (nn.Identity() if stride == 1 and c_in == c_out else
                     nn.Sequential(nn.Conv2d(c_in, c_out, 1, stride=stride, bias=False),
                                   nn.GroupNorm(_groups(c_out), c_out)))

    def forward(self, x):
        h = F.relu(self.norm1(self.conv1(x)))
        return F.relu(self.norm2(self.conv2(h)) + self.skip(x))


class SpatialSoftmax(nn.Module):
    """Per keypoint channel: softmax over pixels -> expected (x, y) image coordinate in [-1, 1]."""

    def __init__(self, channels: int, keypoints: int):
        super().__init__()
        self.project = nn.Conv2d(channels, keypoints, 1)

    def forward(self, x):
        logits = self.project(x)
        b, k, h, w = logits.shape
        attention = logits.flatten(2).softmax(dim=-1)
        ys = torch.linspace(-1.0, 1.0, h, device=x.device, dtype=attention.dtype)
        xs = torch.linspace(-1.0, 1.0, w, device=x.device, dtype=attention.dtype)
        grid_y, grid_x = torch.meshgrid(ys, xs, indexing="ij")
        ex = (attention * grid_x.reshape(1, 1, -1)).sum(-1)
        ey = (attention * grid_y.reshape(1, 1, -1)).sum(-1)
        return torch.cat([ex, ey], dim=-1)


def crop(images: torch.Tensor, size: tuple[int, int], random: bool) -> torch.Tensor:
    """(N, C, H, W) -> (N, C, h, w): independent random crops per image, or the centre crop."""
    n, _, height, width = images.shape
    h, w = size
    if (h, w) == (height, width):
        return images
    if not random:
        top, left = (height - h) // 2, (width - w) // 2
        return images[:, :, top:top + h, left:left + w]
    tops = torch.randint(0, height - h + 1, (n,), device=images.device)
    lefts = torch.randint(0, width - w + 1, (n,), device=images.device)
    rows = (tops[:, None] + torch.arange(h, device=images.device))[:, None, :, None]
    cols = (lefts[:, None] + torch.arange(w, device=images.device))[:, None, None, :]
    batch = torch.arange(n, device=images.device)[:, None, None, None]
    chans = torch.arange(images.shape[1], device=images.device)[None, :, None, None]
    return images[batch, chans, rows, cols]


class ImageEncoder(nn.Module):
    def __init__(self, in_channels: int, channels: list[int], keypoints: int, feature_dim: int,
                 crop_size: tuple[int, int]):
        super().__init__()
        self.crop_size = tuple(crop_size)
        self.stem = nn.Sequential(nn.Conv2d(in_channels, channels[0], 5, stride=2, padding=2, bias=False),
                                  nn.GroupNorm(_groups(channels[0]), channels[0]), nn.ReLU())
        blocks, c_prev = [], channels[0]
        for c in channels:
            blocks.append(ResidualConvBlock(c_prev, c, stride=2))
            c_prev = c
        self.blocks = nn.Sequential(*blocks)
        self.pool = SpatialSoftmax(c_prev, keypoints)
        self.out = nn.Sequential(nn.Linear(2 * keypoints, feature_dim), nn.ReLU())
        self.feature_dim = feature_dim

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """images (N, C, H, W) already in [-1, 1]."""
        x = crop(images, self.crop_size, random=self.training)
        return self.out(self.pool(self.blocks(self.stem(x))))


class ObservationEncoder(nn.Module):
    """Dict of (B, T, ...) raw observations -> (B, T * feature_dim) conditioning vector."""

    def __init__(self, config: PolicyConfig):
        super().__init__()
        self.config = config
        self.keys = sorted(config.obs_shapes)
        self.encoders = nn.ModuleDict()
        self.feature_dims: dict[str, int] = {}
        crops = crop_sizes(config)
        for key in self.keys:
            kind, shape = modality_of(key), config.obs_shapes[key]
            name = key.replace("/", "__")
            if kind in ("rgb", "depth"):
                self.encoders[name] = ImageEncoder(3 if kind == "rgb" else 1, config.rgb_channels,
                                                   config.rgb_keypoints, config.image_feature_dim,
                                                   crops[key])
                self.feature_dims[key] = config.image_feature_dim
            elif kind == "tactile":
                taxels = shape[0] * shape[1]
                self.encoders[name] = nn.Sequential(nn.Linear(taxels, 64), nn.Mish(),
                                                    nn.Linear(64, config.tactile_feature_dim))
                self.feature_dims[key] = config.tactile_feature_dim
            else:
                self.feature_dims[key] = shape[0]
        self.step_dim = sum(self.feature_dims.values())
        self.output_dim = self.step_dim * config.n_obs_steps

    def forward(self, obs: dict[str, torch.Tensor], normalizer: MinMaxNormalizer) -> torch.Tensor:
        features = self.encode_steps(obs, normalizer)
        return features.reshape(features.shape[0], -1)

    def encode_steps(self, obs: dict[str, torch.Tensor], normalizer: MinMaxNormalizer) -> torch.Tensor:
        """Dict of (B, T, ...) -> (B, T, step_dim); each step's features depend on that step alone."""
        features = []
        batch = None
        for key in self.keys:
            x = obs[key]
            batch, steps = x.shape[:2]
            flat = x.reshape(batch * steps, *x.shape[2:])
            kind = modality_of(key)
            name = key.replace("/", "__")
            if kind == "rgb":
                img = flat.permute(0, 3, 1, 2).float() * (2.0 / 255.0) - 1.0
                f = self.encoders[name](img)
            elif kind == "depth":
                d = torch.nan_to_num(flat.float(), nan=self.config.depth_max_m, posinf=self.config.depth_max_m,
                                     neginf=0.0).clamp(0.0, self.config.depth_max_m)
                f = self.encoders[name]((d * (2.0 / self.config.depth_max_m) - 1.0).unsqueeze(1))
            elif kind == "tactile":
                f = self.encoders[name](normalizer.normalize(key, flat.float()).flatten(1))
            else:
                f = normalizer.normalize(key, flat.float())
            features.append(f.reshape(batch, steps, -1))
        return torch.cat(features, dim=-1)
