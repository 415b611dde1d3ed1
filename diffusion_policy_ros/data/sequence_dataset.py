"""Training windows over recorded episodes: n_obs_steps observations + a horizon of actions.

A window starting at step s covers steps s .. s + horizon - 1 of one episode; starts run from
-(n_obs_steps - 1) to length - n_action_steps, and steps outside the episode repeat its first or
last frame (edge padding), so the first and last actions of every episode are trained on.
All requested keys are held in memory (uint8 images stay uint8).
"""
from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from tqdm import tqdm

from diffusion_policy_ros.data.replay_buffer import ReplayBuffer
from diffusion_policy_ros.obs_keys import is_image


class SequenceDataset:
    def __init__(self, buffer: ReplayBuffer, obs_keys: Sequence[str], horizon: int, n_obs_steps: int,
                 n_action_steps: int, episodes: Sequence[int] | None = None, action_key: str = "action",
                 progress: bool = False):
        missing = [k for k in [*obs_keys, action_key] if k not in buffer.keys]
        if missing:
            raise KeyError(f"dataset {buffer.path} lacks keys {missing}; it has {buffer.keys}")
        self.obs_keys = list(obs_keys)
        self.action_key = action_key
        self.horizon, self.n_obs_steps, self.n_action_steps = horizon, n_obs_steps, n_action_steps
        self.episodes = list(range(buffer.n_episodes) if episodes is None else episodes)
        if not self.episodes:
            raise ValueError("no episodes selected")
        self.data: dict[str, np.ndarray] = {}
        parts: dict[str, list[np.ndarray]] = {k: [] for k in [*self.obs_keys, action_key]}
        bounds, offset = [], 0
        for ep in tqdm(self.episodes, desc="loading episodes", disable=not progress):
            episode = buffer.get_episode(ep, list(parts))
            for k in parts:
                parts[k].append(episode[k])
            length = len(episode[action_key])
            bounds.append((offset, offset + length))
            offset += length
        self.data = {k: np.concatenate(v) for k, v in parts.items()}
        # one row per window: (first index in self.data, episode start, episode end)
        windows = []
        for start, end in bounds:
            for s in range(-(n_obs_steps - 1), end - start - n_action_steps + 1):
                windows.append((start + s, start, end))
        if not windows:
            raise ValueError("episodes are shorter than n_action_steps; no training windows")
        self.windows = np.asarray(windows, dtype=np.int64)

    def __len__(self) -> int:
        return len(self.windows)

    def indices(self, window_ids: np.ndarray) -> np.ndarray:
        first, lo, hi = self.windows[window_ids].T
        steps = first[:, None] + np.arange(self.horizon)[None, :]
        return np.clip(steps, lo[:, None], hi[:, None] - 1)

    def batch(self, window_ids: np.ndarray) -> dict[str, np.ndarray]:
        """obs keys (B, n_obs_steps, ...) and action (B, horizon, A) for the given windows."""
        idx = self.indices(np.asarray(window_ids))
        out = {k: self.data[k][idx[:, :self.n_obs_steps]] for k in self.obs_keys}
        out[self.action_key] = self.data[self.action_key][idx].astype(np.float32)
        return out

    def stats_data(self) -> dict[str, np.ndarray]:
        """Arrays the min-max normalizer is fitted on (low-dim keys only)."""
        keys = [k for k in self.obs_keys if not is_image(k)]
        return {k: self.data[k] for k in [*keys, self.action_key]}
