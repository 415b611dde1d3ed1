"""Min-max normalization of low-dimensional data to [-1, 1], with stats kept in the checkpoint.

Images are not normalized with stats (rgb / 255 and metric depth clipping map to [-1, 1] directly).
A dimension that never changed in the data (max == min) maps to 0 instead of dividing by zero.
"""
from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import torch

from diffusion_policy_ros import obs_keys
from diffusion_policy_ros.pose_observation import QUATERNION

RANGE_EPS = 1e-6


class MinMaxNormalizer:
    def __init__(self, stats: Mapping[str, Mapping[str, np.ndarray]] | None = None):
        self.stats: dict[str, dict[str, np.ndarray]] = {}
        self._tensors: dict[tuple[str, str], tuple[torch.Tensor, torch.Tensor]] = {}
        for key, s in (stats or {}).items():
            self.set_stats(key, s["min"], s["max"])

    def set_stats(self, key: str, lo, hi) -> None:
        lo = np.asarray(lo, dtype=np.float32)
        hi = np.asarray(hi, dtype=np.float32)
        if lo.shape != hi.shape or not (np.all(np.isfinite(lo)) and np.all(np.isfinite(hi))):
            raise ValueError(f"normalizer stats for {key}: min/max must be finite and of equal shape")
        if np.any(hi < lo):
            raise ValueError(f"normalizer stats for {key}: max < min")
        self.stats[key] = {"min": lo, "max": hi}
        self._tensors = {k: v for k, v in self._tensors.items() if k[0] != key}

    @classmethod
    def fit(cls, data: Mapping[str, np.ndarray]) -> "MinMaxNormalizer":
        """Per-dimension min/max over the leading (time) axis. An object pose's quaternion keeps
        its own range [-1, 1]: a cube that lay flat in every demonstration spans ~0.007 in qx, and
        a data range would turn a 3-degree tilt in the gripper into inputs far outside [-1, 1]."""
        norm = cls()
        for key, arr in data.items():
            arr = np.asarray(arr, dtype=np.float32)
            lo, hi = arr.min(axis=0), arr.max(axis=0)
            if obs_keys.is_pose(key):
                lo[QUATERNION], hi[QUATERNION] = -1.0, 1.0
            norm.set_stats(key, lo, hi)
        return norm

    def __contains__(self, key: str) -> bool:
        return key in self.stats

    def _scale_offset(self, key: str, device, dtype=torch.float32):
        cache_key = (key, str(device))
        if cache_key not in self._tensors:
            lo, hi = self.stats[key]["min"].astype(np.float64), self.stats[key]["max"].astype(np.float64)
            span = hi - lo
            flat = span < RANGE_EPS
            scale = np.where(flat, 1.0, 2.0 / np.where(flat, 1.0, span))
            offset = np.where(flat, -lo, -1.0 - lo * scale)
            self._tensors[cache_key] = (torch.as_tensor(scale, dtype=torch.float32, device=device),
                                        torch.as_tensor(offset, dtype=torch.float32, device=device))
        scale, offset = self._tensors[cache_key]
        return scale.to(dtype), offset.to(dtype)

    def normalize(self, key: str, x: torch.Tensor) -> torch.Tensor:
        scale, offset = self._scale_offset(key, x.device, x.dtype)
        return x * scale + offset

    def unnormalize(self, key: str, x: torch.Tensor) -> torch.Tensor:
        scale, offset = self._scale_offset(key, x.device, x.dtype)
        return (x - offset) / scale

    def to_json(self) -> dict:
        return {k: {"min": v["min"].tolist(), "max": v["max"].tolist()} for k, v in self.stats.items()}

    @classmethod
    def from_json(cls, d: Mapping) -> "MinMaxNormalizer":
        if not isinstance(d, Mapping):
            raise ValueError("normalizer stats must be a JSON object")
        try:
            return cls({k: {"min": np.asarray(v["min"], np.float32), "max": np.asarray(v["max"], np.float32)}
                        for k, v in d.items()})
        except (KeyError, TypeError) as e:
            raise ValueError(f"malformed normalizer stats: {e}") from e
