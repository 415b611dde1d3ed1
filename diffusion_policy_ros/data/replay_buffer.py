"""Episode store on zarr: `data/<key>` arrays concatenated over time, `meta/episode_ends`.

Durability: add_episode writes the arrays, fsyncs the files it touched, and only then commits the
new episode list by atomically replacing `meta/episodes.json` (episode_ends + per-episode metadata).
A crash before that commit leaves the previous episodes intact; rows past the last committed
episode end are ignored on open and overwritten by the next add_episode. `meta/episode_ends` is
also mirrored as a zarr int64 array for tools that expect diffusion_policy's layout; the JSON file
is the source of truth.

Chunking: images (rgb, depth) one frame per chunk, everything else 1024 rows per chunk; all
compressed with zarr's default codec (zstd).
"""
from __future__ import annotations

import json
import os
import threading
import time
from collections.abc import Mapping

import numpy as np
import zarr

COMMIT_FILE = os.path.join("meta", "episodes.json")
FORMAT = "diffusion_policy_ros/replay_buffer"
LOWDIM_CHUNK = 1024
WRITEBACK_EVERY_S = 0.5
WRITEBACK_IDLE_S = 5.0


class DatasetError(RuntimeError):
    """A dataset folder that is missing, corrupt, or data that does not fit it."""


def _fsync_dir(path: str) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _fsync_tree_since(root: str, since: float) -> None:
    """Make every file under root modified at or after `since` durable, and their directories.
    Linux: one syncfs(2) of root's filesystem. An episode writes thousands of one-frame chunk
    files; an fsync each (and a stat of every file of the dataset to find them) took seconds of
    kernel time, during which a recording's publishers on the same cores missed their ticks.
    Elsewhere: fsync each file found."""
    if _syncfs(root):
        return
    for folder, _dirs, files in os.walk(root):
        touched = False
        for name in files:
            path = os.path.join(folder, name)
            try:
                if os.stat(path).st_mtime >= since:
                    with open(path, "rb") as f:
                        os.fsync(f.fileno())
                    touched = True
            except FileNotFoundError:
                continue
        if touched:
            _fsync_dir(folder)


def _syncfs(path: str) -> bool:
    """syncfs(2) on path's filesystem; False where there is none (not Linux) or it failed."""
    try:
        import ctypes
        syncfs = ctypes.CDLL(None, use_errno=True).syncfs
    except (OSError, AttributeError):
        return False
    fd = os.open(path, os.O_RDONLY)
    try:
        return syncfs(fd) == 0
    finally:
        os.close(fd)


def _json_ready(meta: Mapping) -> dict:
    try:
        return json.loads(json.dumps(dict(meta)))
    except (TypeError, ValueError) as e:
        raise DatasetError(f"episode metadata must be JSON-serializable: {e}") from e


class ReplayBuffer:
    def __init__(self, path: str, root: zarr.Group, writable: bool):
        self.path = path
        self.root = root
        self.writable = writable
        self._load_commit()

    # ------------------------------------------------------------------ opening
    @classmethod
    def create(cls, path: str, exist_ok: bool = False) -> "ReplayBuffer":
        """New empty dataset at path (append mode). exist_ok=True opens an existing one instead."""
        path = os.fspath(path)
        if os.path.exists(os.path.join(path, COMMIT_FILE)):
            if exist_ok:
                return cls.open(path, mode="a")
            raise DatasetError(f"dataset {path} already exists")
        root = zarr.open_group(path, mode="a")
        root.require_group("data")
        root.require_group("meta")
        buf = cls(path, root, writable=True)
        buf._commit([], [], {})
        return buf

    @classmethod
    def open(cls, path: str, mode: str = "r") -> "ReplayBuffer":
        """mode 'r': read-only; 'a': append episodes."""
        path = os.fspath(path)
        if mode not in ("r", "a"):
            raise ValueError("mode must be 'r' or 'a'")
        if not os.path.isfile(os.path.join(path, COMMIT_FILE)):
            raise DatasetError(f"{path} is not a dataset (no {COMMIT_FILE})")
        try:
            root = zarr.open_group(path, mode="r" if mode == "r" else "a")
        except Exception as e:  # zarr raises several types for broken stores
            raise DatasetError(f"cannot open zarr store {path}: {e}") from e
        return cls(path, root, writable=(mode == "a"))

    def _load_commit(self) -> None:
        path = os.path.join(self.path, COMMIT_FILE)
        try:
            with open(path, encoding="utf-8") as f:
                doc = json.load(f)
        except FileNotFoundError:
            doc = {"format": FORMAT, "episode_ends": [], "episodes": [], "keys": {}}
        except (OSError, json.JSONDecodeError, UnicodeDecodeError) as e:
            raise DatasetError(f"corrupt dataset {self.path}: {COMMIT_FILE} unreadable ({e})") from e
        if not isinstance(doc, dict) or doc.get("format") != FORMAT:
            raise DatasetError(f"corrupt dataset {self.path}: {COMMIT_FILE} is not a {FORMAT} record")
        ends = np.asarray(doc.get("episode_ends", []), dtype=np.int64)
        episodes = doc.get("episodes", [])
        if ends.ndim != 1 or len(episodes) != len(ends) or np.any(np.diff(np.concatenate([[0], ends])) <= 0):
            raise DatasetError(f"corrupt dataset {self.path}: episode_ends {ends.tolist()} not strictly "
                               "increasing or not matching the episode metadata")
        self._ends = ends
        self._episodes = list(episodes)
        self._key_specs = dict(doc.get("keys", {}))
        total = int(ends[-1]) if len(ends) else 0
        for key in self._key_specs:
            if key not in self.root["data"]:
                raise DatasetError(f"corrupt dataset {self.path}: array data/{key} is missing")
            if self.root["data"][key].shape[0] < total:
                raise DatasetError(f"corrupt dataset {self.path}: data/{key} has "
                                   f"{self.root['data'][key].shape[0]} rows, episodes need {total}")

    def _commit(self, ends: list[int], episodes: list[dict], keys: dict) -> None:
        doc = {"format": FORMAT, "version": 1, "episode_ends": [int(e) for e in ends], "episodes": episodes,
               "keys": keys}
        path = os.path.join(self.path, COMMIT_FILE)
        tmp = path + ".tmp"
        with open(tmp, "w", encoding="utf-8") as f:
            json.dump(doc, f, indent=1)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
        _fsync_dir(os.path.dirname(path))
        self._ends = np.asarray(ends, dtype=np.int64)
        self._episodes = list(episodes)
        self._key_specs = dict(keys)
        # diffusion_policy-style mirror; stale after a crash here only by the newest episode
        self.root["meta"].create_array("episode_ends", data=self._ends, overwrite=True)

    # ------------------------------------------------------------------ reading
    @property
    def n_episodes(self) -> int:
        return len(self._ends)

    @property
    def n_steps(self) -> int:
        return int(self._ends[-1]) if len(self._ends) else 0

    @property
    def episode_ends(self) -> np.ndarray:
        return self._ends.copy()

    @property
    def keys(self) -> list[str]:
        return sorted(self._key_specs)

    def key_spec(self, key: str) -> dict:
        """{'dtype': str, 'shape': per-step shape list}."""
        return dict(self._key_specs[key])

    def _check_index(self, i: int) -> int:
        if not -self.n_episodes <= i < self.n_episodes:
            raise IndexError(f"episode {i} out of range ({self.n_episodes} episodes)")
        return i % self.n_episodes

    def episode_slice(self, i: int) -> slice:
        i = self._check_index(i)
        start = int(self._ends[i - 1]) if i > 0 else 0
        return slice(start, int(self._ends[i]))

    def episode_length(self, i: int) -> int:
        s = self.episode_slice(i)
        return s.stop - s.start

    def get_episode(self, i: int, keys: list[str] | None = None) -> dict[str, np.ndarray]:
        s = self.episode_slice(i)
        return {k: np.asarray(self.root["data"][k][s]) for k in (keys or self.keys)}

    def get_array(self, key: str):
        """The zarr array of one key (all episodes concatenated; rows past n_steps are not data)."""
        if key not in self._key_specs:
            raise KeyError(f"no key {key!r} in dataset; keys: {self.keys}")
        return self.root["data"][key]

    def episode_meta(self, i: int) -> dict:
        return dict(self._episodes[self._check_index(i)])

    # ------------------------------------------------------------------ writing
    def add_episode(self, data: Mapping[str, np.ndarray], meta: Mapping | None = None) -> int:
        """Append one episode; durable on return. Returns its index."""
        if not data:
            raise DatasetError("episode has no arrays")
        arrays = {k: np.asarray(v) for k, v in data.items()}
        lengths = {k: len(v) for k, v in arrays.items()}
        length = next(iter(lengths.values()))
        if length == 0 or any(n != length for n in lengths.values()):
            raise DatasetError(f"episode arrays must share a non-zero length, got {lengths}")
        writer = self.episode_writer(length, {k: (v.dtype, v.shape[1:]) for k, v in arrays.items()})
        for key, arr in arrays.items():
            writer.write(key, 0, arr)
        return writer.commit(meta)

    def episode_writer(self, length: int, specs: Mapping[str, tuple]) -> "EpisodeWriter":
        """Write one episode of `length` rows block by block (`specs`: key -> (dtype, per-row
        shape)), then `commit` it; large episodes never need to be in memory at once."""
        if not self.writable:
            raise DatasetError(f"dataset {self.path} is open read-only")
        if not specs:
            raise DatasetError("episode has no arrays")
        if length <= 0:
            raise DatasetError(f"episode length must be positive, got {length}")
        specs = {k: {"dtype": str(np.dtype(d)), "shape": [int(n) for n in shape]} for k, (d, shape) in specs.items()}
        if self._key_specs:
            if set(specs) != set(self._key_specs):
                raise DatasetError(f"episode keys {sorted(specs)} differ from the dataset's {self.keys}")
            bad = [k for k in specs if specs[k] != self._key_specs[k]]
            if bad:
                raise DatasetError("episode arrays do not match the dataset: " + "; ".join(
                    f"{k} {specs[k]} vs {self._key_specs[k]}" for k in bad))
        return EpisodeWriter(self, length, specs)


class _Writeback:
    """While an episode is written, its dirty pages go to disk every WRITEBACK_EVERY_S (a syncfs(2)
    on a thread of its own), so that the commit has only the last interval left to sync. One
    syncfs at the commit wrote a 60 s rig episode's ~480 MB in one burst, and real-time publishers
    on the same 2-core machine missed their 200 Hz ticks by 12-14 ms meanwhile. The thread ends
    WRITEBACK_IDLE_S after the last write (a writer that is never committed leaves nothing behind)."""

    def __init__(self, path: str):
        self.path = path
        self._lock = threading.Lock()
        self._last_write = 0.0
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()
        self._unsupported = False

    def wrote(self) -> None:
        with self._lock:
            self._last_write = time.monotonic()
            if self._thread is None and not self._unsupported and not self._stop.is_set():
                self._thread = threading.Thread(target=self._run, name="episode-writeback", daemon=True)
                self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(WRITEBACK_EVERY_S):
            with self._lock:
                if time.monotonic() - self._last_write > WRITEBACK_IDLE_S:
                    self._thread = None
                    return
            if not _syncfs(self.path):
                with self._lock:
                    self._unsupported, self._thread = True, None
                return

    def stop(self) -> None:
        self._stop.set()
        with self._lock:
            thread = self._thread
        if thread is not None:
            thread.join()


class EpisodeWriter:
    """Rows of one episode past the last committed one; invisible until `commit`."""

    def __init__(self, buffer: ReplayBuffer, length: int, specs: dict[str, dict]):
        self.buffer, self.length, self.specs = buffer, int(length), specs
        self.start = buffer.n_steps
        self._since = time.time() - 1.0
        self._writeback = _Writeback(os.path.join(buffer.path, "data"))
        data_group = buffer.root["data"]
        for key, spec in specs.items():
            shape = tuple(spec["shape"])
            if key not in data_group:
                image = len(shape) >= 2 and (key.endswith("/rgb") or key.endswith("/depth") or len(shape) == 3)
                chunks = (1, *shape) if image else (LOWDIM_CHUNK, *shape)
                data_group.create_array(key, shape=(0, *shape), chunks=chunks, dtype=spec["dtype"])
            data_group[key].resize((self.start + self.length, *shape))   # also drops rows of an uncommitted write

    def write(self, key: str, row: int, block: np.ndarray) -> None:
        """Rows row .. row + len(block) of `key` (relative to the episode start)."""
        spec = self.specs.get(key)
        if spec is None:
            raise DatasetError(f"key {key!r} is not part of this episode ({sorted(self.specs)})")
        block = np.asarray(block, dtype=spec["dtype"])
        if list(block.shape[1:]) != spec["shape"] or row < 0 or row + len(block) > self.length:
            raise DatasetError(f"{key}: rows {row}..{row + len(block)} of shape {block.shape[1:]} do not fit "
                               f"an episode of {self.length} rows of {spec['shape']}")
        self.buffer.root["data"][key][self.start + row:self.start + row + len(block)] = block
        self._writeback.wrote()

    def commit(self, meta: Mapping | None = None) -> int:
        """Make the episode durable and visible; returns its index."""
        buffer = self.buffer
        meta = _json_ready(meta or {})
        meta.setdefault("length", self.length)
        self._writeback.stop()
        _fsync_tree_since(os.path.join(buffer.path, "data"), self._since)
        buffer._commit([*buffer._ends.tolist(), self.start + self.length], [*buffer._episodes, meta], self.specs)
        return buffer.n_episodes - 1
