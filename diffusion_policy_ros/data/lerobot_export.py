"""Export a zarr dataset to the LeRobotDataset v3.0 layout (parquet + mp4 + meta).

Layout written (what `lerobot` v3 readers open):
  meta/info.json                       codebase_version v3.0, fps, features, path templates
  meta/stats.json                      per-feature min/max/mean/std/count and quantiles
  meta/tasks.parquet                   task text -> task_index (pandas index "task")
  meta/episodes/chunk-000/file-000.parquet  one row per episode: length, tasks, data/video offsets, stats
  data/chunk-000/file-000.parquet      one row per frame, many episodes per file
  videos/<key>/chunk-000/file-000.mp4  each camera, episodes back to back (H.264)

Keys: action, observation.state (joint positions), observation.images.<camera> (video),
observation.depth.<camera> (float32 metres, H x W) and observation.tactile.<sensor> (float32
newtons, rows x cols) as parquet arrays, plus timestamp/frame_index/episode_index/index/task_index.
"""
from __future__ import annotations

import json
import os
import shutil
from collections.abc import Callable

import numpy as np

from diffusion_policy_ros import obs_keys
from diffusion_policy_ros.data.video import VideoWriter

CODEBASE_VERSION = "v3.0"
CHUNKS_SIZE = 1000
DATA_PATH = "data/chunk-{chunk_index:03d}/file-{file_index:03d}.parquet"
VIDEO_PATH = "videos/{video_key}/chunk-{chunk_index:03d}/file-{file_index:03d}.mp4"
EPISODES_PATH = "meta/episodes/chunk-{chunk_index:03d}/file-{file_index:03d}.parquet"
QUANTILES = (0.01, 0.10, 0.50, 0.90, 0.99)


class ExportError(ValueError):
    pass


def feature_key(dataset_key: str) -> str | None:
    """zarr key -> LeRobot feature name (None: not exported as a feature)."""
    if dataset_key == "action":
        return "action"
    if dataset_key == obs_keys.JOINT_POS:
        return "observation.state"
    if not obs_keys.is_obs(dataset_key):
        return None
    key = obs_keys.parse(dataset_key)
    kind = {"rgb": "images", "depth": "depth", "tactile": "tactile"}.get(key.modality)
    return f"observation.{kind}.{key.name}" if kind and "/" not in key.name else None


def export_lerobot(dataset, out_dir: str, *, robot_type: str | None = None, fps: float | None = None,
                   codec: str = "libx264", data_file_mb: float = 100.0, video_file_mb: float = 200.0,
                   overwrite: bool = False, progress: Callable | None = None) -> dict:
    """Write `dataset` (ReplayBuffer-like: n_episodes, get_episode, episode_meta) to `out_dir`.
    Returns info.json's content."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    n = int(dataset.n_episodes)
    if n == 0:
        raise ExportError("the dataset has no episodes to export")
    if os.path.exists(out_dir) and os.listdir(out_dir):
        if not overwrite:
            raise ExportError(f"{out_dir} exists and is not empty (pass overwrite to replace it)")
        shutil.rmtree(out_dir)
    metas = [dataset.episode_meta(i) for i in range(n)]
    fps = float(fps or metas[0].get("fps") or 0)
    if not fps > 0:
        raise ExportError("no fps in the episode metadata; pass fps")
    joint_names = metas[0].get("joint_names")
    robot_type = robot_type or metas[0].get("robot", "unknown")

    tasks: dict[str, int] = {}
    for m in metas:
        tasks.setdefault(m.get("task", ""), len(tasks))

    first = dataset.get_episode(0)
    features = _features(first, joint_names, fps, codec)
    video_keys = [k for k, f in features.items() if f["dtype"] == "video"]

    data_writer = _RollingParquet(out_dir, DATA_PATH, data_file_mb)
    videos = {k: _RollingVideo(out_dir, k, fps, codec, video_file_mb) for k in video_keys}
    episode_rows, all_stats = [], []
    global_index = 0
    iterator = range(n) if progress is None else progress(range(n))
    for ep in iterator:
        data = first if ep == 0 else dataset.get_episode(ep)
        meta = metas[ep]
        length = _episode_length(data)
        columns = {}
        ep_stats = {}
        for zkey, array in data.items():
            fkey = feature_key(zkey)
            if fkey is None or fkey not in features:
                continue
            if features[fkey]["dtype"] == "video":
                ep_stats[fkey] = _image_stats(array)
                continue
            arr = np.asarray(array, dtype=np.float32)
            columns[fkey] = arr
            ep_stats[fkey] = _array_stats(arr)
        t = np.asarray(data["timestamp"], dtype=np.float64)
        rel = (t - t[0]).astype(np.float32)
        columns["timestamp"] = rel
        columns["frame_index"] = np.arange(length, dtype=np.int64)
        columns["episode_index"] = np.full(length, ep, dtype=np.int64)
        columns["index"] = np.arange(global_index, global_index + length, dtype=np.int64)
        columns["task_index"] = np.full(length, tasks[meta.get("task", "")], dtype=np.int64)
        for key in ("timestamp", "frame_index", "episode_index", "index", "task_index"):
            ep_stats[key] = _array_stats(columns[key][:, None].astype(np.float64))

        table = pa.table({k: _arrow_column(v) for k, v in columns.items()})
        chunk, file = data_writer.write(table)
        row = {"episode_index": ep, "tasks": [meta.get("task", "")], "length": length,
               "data/chunk_index": chunk, "data/file_index": file,
               "dataset_from_index": global_index, "dataset_to_index": global_index + length}
        for key in video_keys:
            zkey = next(z for z in data if feature_key(z) == key)
            v_chunk, v_file, start = videos[key].write_episode(data[zkey])
            row.update({f"videos/{key}/chunk_index": v_chunk, f"videos/{key}/file_index": v_file,
                        f"videos/{key}/from_timestamp": start / fps,
                        f"videos/{key}/to_timestamp": (start + length) / fps})
        for fkey, stats in ep_stats.items():
            for stat, value in stats.items():
                row[f"stats/{fkey}/{stat}"] = np.asarray(value, dtype=np.float64).reshape(-1).tolist() \
                    if stat != "count" else [int(value)]
        row["meta/episodes/chunk_index"] = 0
        row["meta/episodes/file_index"] = 0
        episode_rows.append(row)
        all_stats.append(ep_stats)
        global_index += length
    data_writer.close()
    for v in videos.values():
        v.close()
        features[v.key]["info"]["video.codec"] = v.codec_name

    _write_parquet(pa.Table.from_pylist(episode_rows), os.path.join(out_dir, EPISODES_PATH.format(
        chunk_index=0, file_index=0)))
    _write_tasks(tasks, os.path.join(out_dir, "meta", "tasks.parquet"))
    stats = _aggregate(all_stats)
    with open(os.path.join(out_dir, "meta", "stats.json"), "w", encoding="utf-8") as f:
        json.dump(stats, f, indent=2)
    info = {
        "codebase_version": CODEBASE_VERSION,
        "robot_type": robot_type,
        "total_episodes": n,
        "total_frames": global_index,
        "total_tasks": len(tasks),
        "chunks_size": CHUNKS_SIZE,
        "data_files_size_in_mb": data_file_mb,
        "video_files_size_in_mb": video_file_mb,
        "fps": int(round(fps)) if abs(fps - round(fps)) < 1e-6 else fps,
        "splits": {"train": f"0:{n}"},
        "data_path": DATA_PATH,
        "video_path": VIDEO_PATH if video_keys else None,
        "features": features,
    }
    with open(os.path.join(out_dir, "meta", "info.json"), "w", encoding="utf-8") as f:
        json.dump(info, f, indent=4)
    return info


def _episode_length(data) -> int:
    lengths = {k: int(np.shape(v)[0]) for k, v in data.items()}
    if len(set(lengths.values())) != 1:
        raise ExportError(f"episode arrays have different lengths: {lengths}")
    return next(iter(lengths.values()))


def _features(data, joint_names, fps, codec) -> dict:
    features = {}
    for zkey in sorted(data):
        fkey = feature_key(zkey)
        if fkey is None:
            continue
        shape = list(np.shape(data[zkey])[1:])
        if fkey.startswith("observation.images."):
            h, w, c = shape
            features[fkey] = {
                "dtype": "video", "shape": [h, w, c], "names": ["height", "width", "channels"],
                "info": {"video.height": h, "video.width": w, "video.codec": codec,
                         "video.pix_fmt": "yuv420p" if h % 2 == 0 and w % 2 == 0 else "yuv444p",
                         "video.is_depth_map": False, "video.fps": fps, "video.channels": c,
                         "has_audio": False}}
        elif fkey in ("action", "observation.state"):
            names = list(joint_names) if joint_names and len(joint_names) == shape[0] else None
            features[fkey] = {"dtype": "float32", "shape": shape, "names": names}
        else:
            names = ["height", "width"] if fkey.startswith("observation.depth.") else ["rows", "cols"]
            features[fkey] = {"dtype": "float32", "shape": shape, "names": names}
    for key, dtype in (("timestamp", "float32"), ("frame_index", "int64"), ("episode_index", "int64"),
                       ("index", "int64"), ("task_index", "int64")):
        features[key] = {"dtype": dtype, "shape": [1], "names": None}
    return features


def _arrow_column(values: np.ndarray):
    """1-D -> scalar column, (T, N) -> fixed_size_list, (T, H, W) -> list of lists (Array2D)."""
    import pyarrow as pa

    if values.ndim == 1:
        return pa.array(values)
    arr = pa.array(np.ascontiguousarray(values).reshape(-1))
    if values.ndim == 2:
        return pa.FixedSizeListArray.from_arrays(arr, values.shape[1])
    for size in reversed(values.shape[1:]):
        offsets = pa.array(np.arange(0, len(arr) + 1, size, dtype=np.int32))
        arr = pa.ListArray.from_arrays(offsets, arr)
    return arr


def _array_stats(arr: np.ndarray) -> dict:
    flat = arr.reshape(arr.shape[0], -1).astype(np.float64)
    stats = {"min": flat.min(0), "max": flat.max(0), "mean": flat.mean(0), "std": flat.std(0),
             "count": flat.shape[0]}
    for q in QUANTILES:
        stats[f"q{int(round(q * 100)):02d}"] = np.quantile(flat, q, axis=0)
    return {k: (v.reshape(arr.shape[1:]) if isinstance(v, np.ndarray) else v) for k, v in stats.items()}


def _image_stats(frames: np.ndarray) -> dict:
    """Per-channel stats in [0, 1], shaped (3, 1, 1) like LeRobot's image stats."""
    step = max(1, frames.shape[0] // 100)   # a sample of frames is enough for normalisation
    x = np.asarray(frames[::step], dtype=np.float64).reshape(-1, frames.shape[-1]) / 255.0
    stats = {"min": x.min(0), "max": x.max(0), "mean": x.mean(0), "std": x.std(0), "count": frames.shape[0]}
    for q in QUANTILES:
        stats[f"q{int(round(q * 100)):02d}"] = np.quantile(x, q, axis=0)
    return {k: (v.reshape(-1, 1, 1) if isinstance(v, np.ndarray) else v) for k, v in stats.items()}


def _aggregate(per_episode: list[dict]) -> dict:
    """Pool episode stats: exact min/max/mean/std (parallel variance); quantiles count-weighted."""
    out = {}
    for key in per_episode[0]:
        eps = [s[key] for s in per_episode if key in s]
        counts = np.array([s["count"] for s in eps], dtype=np.float64)
        total = counts.sum()
        w = counts / total
        means = np.stack([np.asarray(s["mean"]) for s in eps])
        wshape = (-1,) + (1,) * (means.ndim - 1)
        mean = (means * w.reshape(wshape)).sum(0)
        var = ((np.stack([np.asarray(s["std"]) for s in eps]) ** 2 + (means - mean) ** 2)
               * w.reshape(wshape)).sum(0)
        agg = {"min": np.min(np.stack([s["min"] for s in eps]), 0),
               "max": np.max(np.stack([s["max"] for s in eps]), 0),
               "mean": mean, "std": np.sqrt(var), "count": [int(total)]}
        for q in QUANTILES:
            name = f"q{int(round(q * 100)):02d}"
            agg[name] = (np.stack([np.asarray(s[name]) for s in eps]) * w.reshape(wshape)).sum(0)
        out[key] = {k: (np.asarray(v).tolist()) for k, v in agg.items()}
    return out


def _write_parquet(table, path: str) -> None:
    import pyarrow.parquet as pq

    os.makedirs(os.path.dirname(path), exist_ok=True)
    pq.write_table(table, path)


def _write_tasks(tasks: dict[str, int], path: str) -> None:
    """LeRobot reads this with pandas and uses the task text as the index: store the pandas
    metadata that makes `pd.read_parquet` restore it (pandas itself is not needed here)."""
    import pyarrow as pa

    names = list(tasks)
    table = pa.table({"task_index": pa.array([tasks[t] for t in names], pa.int64()),
                      "task": pa.array(names, pa.string())})
    pandas_meta = {
        "index_columns": ["task"], "column_indexes": [],
        "columns": [{"name": "task_index", "field_name": "task_index", "pandas_type": "int64",
                     "numpy_type": "int64", "metadata": None},
                    {"name": "task", "field_name": "task", "pandas_type": "unicode",
                     "numpy_type": "object", "metadata": None}],
        "creator": {"library": "pyarrow", "version": pa.__version__}, "pandas_version": "2.2.3"}
    table = table.replace_schema_metadata({b"pandas": json.dumps(pandas_meta).encode()})
    _write_parquet(table, path)


class _RollingParquet:
    """Appends episode tables to data/chunk-XXX/file-YYY.parquet, starting a new file past the
    size limit (never splitting an episode)."""

    def __init__(self, root: str, template: str, limit_mb: float):
        self.root, self.template, self.limit = root, template, limit_mb * 1e6
        self.index = 0
        self._writer = None
        self._bytes = 0

    def write(self, table) -> tuple[int, int]:
        import pyarrow.parquet as pq

        if self._writer is not None and self._bytes >= self.limit:
            self._writer.close()
            self._writer, self._bytes = None, 0
            self.index += 1
        chunk, file = divmod(self.index, CHUNKS_SIZE)
        if self._writer is None:
            path = os.path.join(self.root, self.template.format(chunk_index=chunk, file_index=file))
            os.makedirs(os.path.dirname(path), exist_ok=True)
            self._writer = pq.ParquetWriter(path, table.schema)
        self._writer.write_table(table)
        self._bytes += table.nbytes
        return chunk, file

    def close(self):
        if self._writer is not None:
            self._writer.close()


class _RollingVideo:
    def __init__(self, root: str, key: str, fps: float, codec: str, limit_mb: float):
        self.root, self.key, self.fps, self.codec, self.limit = root, key, fps, codec, limit_mb * 1e6
        self.index = 0
        self._writer: VideoWriter | None = None
        self.codec_name = codec

    def write_episode(self, frames: np.ndarray) -> tuple[int, int, int]:
        """-> (chunk, file, index of the episode's first frame in that file)."""
        if self._writer is not None and os.path.getsize(self._writer.path) >= self.limit:
            self._writer.close()
            self._writer = None
            self.index += 1
        chunk, file = divmod(self.index, CHUNKS_SIZE)
        if self._writer is None:
            h, w = frames.shape[1:3]
            path = os.path.join(self.root, VIDEO_PATH.format(video_key=self.key, chunk_index=chunk,
                                                             file_index=file))
            self._writer = VideoWriter(path, w, h, self.fps, codec=self.codec)
            self.codec_name = {"libx264": "h264"}.get(self._writer.codec_name, self._writer.codec_name)
        start = self._writer.frames
        for frame in frames:
            self._writer.write(frame)
        return chunk, file, start

    def close(self):
        if self._writer is not None:
            self._writer.close()
