"""Export a dataset as the zarr replay buffer diffusion_policy (real-stanford) trains from.

diffusion_policy pins zarr 2 and opens a dataset with `ReplayBuffer.copy_from_path` or
`create_from_path`: a root group holding `data/` and `meta/`. Under `data/` every key is one array
(no sub-groups: its loader slices each item of `data`), time along the first axis, all episodes
concatenated; `meta/episode_ends` is int64, the exclusive end row of each episode, uncompressed in
one chunk. Arrays are chunked along time only: one frame per chunk for images, about 2 MB per chunk
for low-dimensional arrays, compressed with Blosc lz4 (its default compressor).

Keys lose the `obs/` prefix and `/` becomes `_`: obs/joint_pos -> joint_pos, obs/scene/rgb ->
scene_rgb, obs/finger_l/tactile -> finger_l_tactile; action and timestamp keep their names. The
mapping, fps, joint names and each episode's task are root attributes (diffusion_policy ignores
them). The store is written beside OUT and moved into place when complete.
"""
from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Callable

import numpy as np

from diffusion_policy_ros import obs_keys

TARGET_CHUNK_BYTES = 2_000_000
COPY_BLOCK_BYTES = 64_000_000
ATTRIBUTE = "diffusion_policy_ros"


class ExportError(ValueError):
    """A dataset that cannot be exported, or an output folder that cannot take it."""


def flat_key(dataset_key: str) -> str:
    """obs/scene/rgb -> scene_rgb (diffusion_policy's data group holds no sub-groups)."""
    name = dataset_key[len(obs_keys.PREFIX):] if obs_keys.is_obs(dataset_key) else dataset_key
    return name.replace("/", "_")


def chunk_rows(dataset_key: str, row_shape, dtype, total_rows: int) -> int:
    """Rows per chunk: one frame for images, about TARGET_CHUNK_BYTES for the rest."""
    if obs_keys.is_obs(dataset_key) and obs_keys.is_image(dataset_key):
        return 1
    row_bytes = int(np.prod(row_shape, dtype=np.int64)) * np.dtype(dtype).itemsize
    return int(max(1, min(total_rows, TARGET_CHUNK_BYTES // max(row_bytes, 1))))


def export_diffusion_policy(dataset, out_dir: str, *, overwrite: bool = False,
                            progress: Callable | None = None) -> dict:
    """Write `dataset` (a ReplayBuffer) to `out_dir` as a zarr format-2 store; returns a summary."""
    import numcodecs
    import zarr

    n_episodes, n_steps = int(dataset.n_episodes), int(dataset.n_steps)
    if n_episodes == 0:
        raise ExportError("the dataset has no episodes to export")
    out_dir = os.path.abspath(out_dir)
    if os.path.exists(out_dir) and (not os.path.isdir(out_dir) or os.listdir(out_dir)):
        if not overwrite:
            raise ExportError(f"{out_dir} exists and is not empty (pass overwrite to replace it)")
    keys = {flat_key(k): k for k in dataset.keys}
    if len(keys) != len(dataset.keys):
        raise ExportError(f"dataset keys {dataset.keys} do not flatten to distinct names")
    compressor = numcodecs.Blosc(cname="lz4", clevel=5, shuffle=numcodecs.Blosc.NOSHUFFLE)
    parent = os.path.dirname(out_dir)
    os.makedirs(parent, exist_ok=True)
    staging = tempfile.mkdtemp(prefix=f".{os.path.basename(out_dir)}.exporting-", dir=parent)
    try:
        store = os.path.join(staging, "store")
        root = zarr.open_group(store, mode="w-", zarr_format=2)
        data = root.create_group("data")
        for name, key in (progress(list(keys.items())) if progress else keys.items()):
            source = dataset.get_array(key)
            spec = dataset.key_spec(key)
            row_shape, dtype = tuple(spec["shape"]), np.dtype(spec["dtype"])
            rows = chunk_rows(key, row_shape, dtype, n_steps)
            target = data.create_array(name, shape=(n_steps, *row_shape), chunks=(rows, *row_shape), dtype=dtype,
                                       compressors=compressor, fill_value=0)
            row_bytes = max(1, int(np.prod(row_shape, dtype=np.int64)) * dtype.itemsize)
            block = max(rows, (COPY_BLOCK_BYTES // row_bytes) // rows * rows)
            for start in range(0, n_steps, block):
                stop = min(n_steps, start + block)
                target[start:stop] = np.asarray(source[start:stop])
        ends = np.asarray(dataset.episode_ends, dtype=np.int64)
        meta = root.create_group("meta")
        meta.create_array("episode_ends", shape=ends.shape, chunks=ends.shape, dtype=np.int64, compressors=None,
                          fill_value=0)[:] = ends
        metas = [dataset.episode_meta(i) for i in range(n_episodes)]
        root.attrs[ATTRIBUTE] = {
            "source_dataset": os.path.abspath(dataset.path), "keys": keys,
            "fps": metas[0].get("fps"), "joint_names": metas[0].get("joint_names"),
            "episodes": [{"task": m.get("task", ""), "length": int(m.get("length", 0))} for m in metas]}
        if os.path.exists(out_dir):
            shutil.rmtree(out_dir) if os.path.isdir(out_dir) else os.remove(out_dir)
        os.rename(store, out_dir)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return {"path": out_dir, "episodes": n_episodes, "steps": n_steps, "keys": keys}
