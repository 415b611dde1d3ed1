"""What a dataset holds (episodes, lengths, rates, frame statistics) and a thumbnail strip."""
from __future__ import annotations

import numpy as np

from diffusion_policy_ros import obs_keys


def summarize(dataset) -> dict:
    episodes = []
    for i in range(dataset.n_episodes):
        meta = dataset.episode_meta(i)
        t = np.asarray(dataset.get_episode(i, keys=["timestamp"])["timestamp"], dtype=np.float64)
        dt = np.diff(t)
        episodes.append({
            "index": i, "task": meta.get("task", ""), "length": int(t.size),
            "duration_s": float(t[-1] - t[0]) if t.size else 0.0,
            "fps": meta.get("fps"), "measured_hz": float(1.0 / np.median(dt)) if dt.size else None,
            "dropped_frames": meta.get("dropped_frames", 0),
            "duplicated_frames": meta.get("duplicated_frames", 0), "source": meta.get("source", "")})
    lengths = [e["length"] for e in episodes]
    return {"episodes": len(episodes), "frames": int(sum(lengths)),
            "keys": {k: dataset.key_spec(k) for k in dataset.keys} if hasattr(dataset, "key_spec") else {},
            "tasks": sorted({e["task"] for e in episodes}),
            "length_min": min(lengths, default=0), "length_max": max(lengths, default=0),
            "per_episode": episodes}


def thumbnail_strip(dataset, path: str, *, per_episode: int = 6, max_episodes: int = 12,
                    camera_key: str | None = None, height: int = 96) -> tuple[str | None, int]:
    """One row per episode, `per_episode` frames evenly spread over it, at most `max_episodes`
    rows (0: all; a last line says how many were left out); returns (the camera key used, None
    when the dataset has no camera; the episodes shown)."""
    from PIL import Image, ImageDraw

    rgb_keys = sorted(k for k in dataset.keys if obs_keys.is_obs(k) and obs_keys.parse(k).modality == "rgb")
    if not rgb_keys:
        return None, 0
    key = camera_key or rgb_keys[0]
    rows = []
    shown = dataset.n_episodes if max_episodes <= 0 else min(dataset.n_episodes, max_episodes)
    for i in range(shown):
        s = dataset.episode_slice(i)
        picks = np.linspace(s.start, s.stop - 1, per_episode).round().astype(int)
        frames = [np.asarray(dataset.get_array(key)[int(p)]) for p in picks]
        row = np.concatenate(frames, axis=1)
        scale = height / row.shape[0]
        img = Image.fromarray(row).resize((max(1, int(row.shape[1] * scale)), height))
        ImageDraw.Draw(img).text((3, 2), f"ep {i}", fill=(255, 255, 0))
        rows.append(img)
    width = max(r.width for r in rows)
    note = 16 if shown < dataset.n_episodes else 0
    sheet = Image.new("RGB", (width, height * len(rows) + note), "white")
    for j, r in enumerate(rows):
        sheet.paste(r, (0, j * height))
    if note:
        ImageDraw.Draw(sheet).text((3, height * len(rows) + 2), f"episodes 0..{shown - 1} of {dataset.n_episodes} "
                                   f"shown ({dataset.n_episodes - shown} more: dpros dataset info --thumbnails 0)",
                                   fill="black")
    sheet.save(path)
    return key, shown
