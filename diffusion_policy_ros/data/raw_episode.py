"""One recorded episode as it arrived: serialized messages appended to an MCAP file.

The recorder writes every subscribed message's CDR bytes, untouched, into a rosbag2 folder
(`<name>/<name>_0.mcap` + `metadata.yaml`), so receiving a 640x480 frame costs one append, and
the episode can be read by any ROS tool (`ros2 bag info`, the `mcap` packages, `dpros import bag`).
Beside the bag, `index.npz` lists every message's header stamp and byte range, so the conversion
to the training dataset reads only the messages it samples.

An episode folder is saved (durable, waiting for conversion) once `episode.json` exists: it is
written last, after the MCAP file, metadata.yaml and the index are on disk. A folder without it
is an episode that was still recording when the recorder stopped.
"""
from __future__ import annotations

import dataclasses
import json
import os
import shutil
import struct
import threading
import time

import numpy as np
import yaml

EPISODE_DOC = "episode.json"
INDEX_FILE = "index.npz"
CONVERTED_MARK = "converted"
SPOOL_DIR = "episodes_raw"
_CDR_HEADER_STAMP = struct.Struct("<iI")     # after the 4-byte encapsulation: sec, nanosec


class RawEpisodeError(RuntimeError):
    """A raw episode that cannot be written or read back."""


def header_stamp_ns(data: bytes) -> int:
    """The std_msgs/Header stamp at the start of a little-endian CDR message (0 when unstamped)."""
    if len(data) < 12 or data[1] != 1:        # CDR_LE encapsulation: 00 01 00 00
        return 0
    sec, nanosec = _CDR_HEADER_STAMP.unpack_from(data, 4)
    return sec * 1_000_000_000 + nanosec


@dataclasses.dataclass(frozen=True)
class Topic:
    name: str          # ROS topic
    msgtype: str       # e.g. "sensor_msgs/msg/Image"
    stamped: bool      # the message starts with a std_msgs/Header


def fsync_dir(path: str) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_json_atomic(path: str, doc) -> None:
    tmp = path + ".tmp"
    with open(tmp, "w", encoding="utf-8") as f:
        json.dump(doc, f, indent=1)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


class RawEpisodeWriter:
    """Appends serialized messages of several topics to one MCAP file, from any thread.

    A background thread writes dirty pages to disk every `sync_every_s`, so that making the
    episode durable at SAVE costs about one interval of data, not the whole episode.
    """

    def __init__(self, folder: str, topics: list[Topic], *, sync_every_s: float = 0.25):
        from mcap.writer import Writer

        from diffusion_policy_ros.data.bag_import import typestore_with_package_msgs

        self.folder = folder
        self.name = os.path.basename(folder)
        os.makedirs(folder)
        self.mcap_path = os.path.join(folder, f"{self.name}_0.mcap")
        self._file = open(self.mcap_path, "xb")   # noqa: SIM115 - closed in finish/abort
        self._writer = Writer(self._file, use_chunking=False, enable_crcs=True)
        self._writer.start(profile="ros2", library="diffusion_policy_ros demo_recorder_node")
        store = typestore_with_package_msgs()
        self.topics = {t.name: t for t in topics}
        self._channels: dict[str, int] = {}
        self._schemas: dict[str, int] = {}
        self._hashes: dict[str, str] = {}
        for topic in topics:
            if topic.msgtype not in self._schemas:
                msgdef, _ = store.generate_msgdef(topic.msgtype, ros_version=2)
                self._schemas[topic.msgtype] = self._writer.register_schema(
                    topic.msgtype, "ros2msg", msgdef.encode())
                self._hashes[topic.msgtype] = store.hash_rihs01(topic.msgtype)
            self._channels[topic.name] = self._writer.register_channel(
                topic.name, "cdr", self._schemas[topic.msgtype], {"offered_qos_profiles": ""})
        # Per topic: header stamps (ns; the log time for unstamped types), log times, byte ranges.
        self._index: dict[str, list[tuple[int, int, int, int]]] = {t.name: [] for t in topics}
        self._lock = threading.Lock()
        self._closed = False
        self.bytes_written = 0
        self.error: OSError | None = None
        self._sync_stop = threading.Event()
        self._sync_every_s = sync_every_s
        self._syncer = threading.Thread(target=self._sync_loop, daemon=True)
        self._syncer.start()

    # -- writing --------------------------------------------------------------------------------
    def write(self, topic: str, data: bytes, log_time_ns: int, stamp_ns: int) -> None:
        """Append one serialized message (`stamp_ns`: its header stamp, or the receive time for
        unstamped ones). Raises OSError when the disk is full (the episode is then unusable:
        `error` keeps the cause)."""
        stamp = stamp_ns
        with self._lock:
            if self._closed:
                raise RawEpisodeError("episode file already closed")
            if self.error is not None:
                raise self.error
            try:
                self._writer.add_message(self._channels[topic], log_time_ns, data, stamp)
            except OSError as e:
                self.error = e
                raise
            end = self._file.tell()
            self._index[topic].append((stamp, log_time_ns, end - len(data), len(data)))
            self.bytes_written = end

    def _sync_loop(self) -> None:
        fd = self._file.fileno()
        while not self._sync_stop.wait(self._sync_every_s):
            try:
                with self._lock:
                    if self._closed:
                        return
                    self._file.flush()
                os.fdatasync(fd)        # outside the lock: receiving goes on meanwhile
            except (OSError, ValueError):
                return

    def stamps(self, topic: str) -> np.ndarray:
        with self._lock:
            return np.fromiter((row[0] for row in self._index[topic]), dtype=np.int64,
                               count=len(self._index[topic]))

    def count(self, topic: str) -> int:
        return len(self._index[topic])

    # -- closing --------------------------------------------------------------------------------
    def finish(self, doc: dict) -> None:
        """Footer, metadata.yaml, index, then `episode.json` (the saved mark); all fsynced."""
        with self._lock:
            if self.error is not None:
                raise self.error
            self._closed = True
            self._sync_stop.set()
            self._writer.finish()        # closes the file object too
        self._syncer.join()
        with open(self.mcap_path, "rb") as f:
            os.fsync(f.fileno())
        index = {}
        for topic, rows in self._index.items():
            index[topic] = np.asarray(rows, dtype=np.int64).reshape(-1, 4)
        keys = {f"t{i}": name for i, name in enumerate(index)}
        with open(os.path.join(self.folder, INDEX_FILE), "wb") as f:
            np.savez(f, topics=np.asarray(list(keys.values())), **{k: index[v] for k, v in keys.items()})
            f.flush()
            os.fsync(f.fileno())
        self._write_metadata(index)
        write_json_atomic(os.path.join(self.folder, EPISODE_DOC), doc)
        fsync_dir(self.folder)
        fsync_dir(os.path.dirname(self.folder))

    def abort(self) -> None:
        """Close and delete the episode folder (DISCARD)."""
        with self._lock:
            self._closed = True
            self._sync_stop.set()
            try:
                self._file.close()
            except OSError:
                pass
        self._syncer.join()
        shutil.rmtree(self.folder, ignore_errors=True)

    def _write_metadata(self, index: dict[str, np.ndarray]) -> None:
        logs = [rows[:, 1] for rows in index.values() if len(rows)]
        start = int(min(r.min() for r in logs)) if logs else 0
        duration = int(max(r.max() for r in logs)) - start if logs else 0
        count = int(sum(len(rows) for rows in index.values()))
        info = {
            "version": 9, "storage_identifier": "mcap", "relative_file_paths": [os.path.basename(self.mcap_path)],
            "duration": {"nanoseconds": duration}, "starting_time": {"nanoseconds_since_epoch": start},
            "message_count": count,
            "topics_with_message_count": [
                {"topic_metadata": {"name": t.name, "type": t.msgtype, "serialization_format": "cdr",
                                    "offered_qos_profiles": [], "type_description_hash": self._hashes[t.msgtype]},
                 "message_count": int(len(index[t.name]))} for t in self.topics.values()],
            "compression_format": "", "compression_mode": "",
            "files": [{"path": os.path.basename(self.mcap_path), "starting_time": {"nanoseconds_since_epoch": start},
                       "duration": {"nanoseconds": duration}, "message_count": count}],
            "custom_data": None, "ros_distro": "jazzy",
        }
        path = os.path.join(self.folder, "metadata.yaml")
        with open(path + ".tmp", "w", encoding="utf-8") as f:
            yaml.safe_dump({"rosbag2_bagfile_information": info}, f, sort_keys=False)
            f.flush()
            os.fsync(f.fileno())
        os.replace(path + ".tmp", path)


class RawEpisode:
    """A saved raw episode folder, read back: its document, index and messages."""

    def __init__(self, folder: str):
        self.folder = folder
        self.name = os.path.basename(folder)
        try:
            with open(os.path.join(folder, EPISODE_DOC), encoding="utf-8") as f:
                self.doc = json.load(f)
            with np.load(os.path.join(folder, INDEX_FILE)) as z:
                names = [str(n) for n in z["topics"]]
                self.index = {name: z[f"t{i}"] for i, name in enumerate(names)}
        except (OSError, ValueError, KeyError) as e:
            raise RawEpisodeError(f"raw episode {folder} unreadable: {e}") from e
        self.mcap_path = os.path.join(folder, f"{self.name}_0.mcap")
        self._fd = os.open(self.mcap_path, os.O_RDONLY)

    def stamps_ns(self, topic: str) -> np.ndarray:
        rows = self.index.get(topic)
        return np.zeros(0, np.int64) if rows is None else rows[:, 0]

    def log_times_ns(self, topic: str) -> np.ndarray:
        rows = self.index.get(topic)
        return np.zeros(0, np.int64) if rows is None else rows[:, 1]

    def message(self, topic: str, i: int) -> bytes:
        _stamp, _log, offset, length = self.index[topic][i]
        data = os.pread(self._fd, int(length), int(offset))
        if len(data) != length:
            raise RawEpisodeError(f"{self.mcap_path}: message {i} of {topic} is truncated")
        return data

    def close(self) -> None:
        os.close(self._fd)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def episode_folders(spool: str) -> list[str]:
    """The spool's episode folders, oldest first (names sort by creation)."""
    if not os.path.isdir(spool):
        return []
    return sorted(os.path.join(spool, n) for n in os.listdir(spool)
                  if os.path.isdir(os.path.join(spool, n)) and not n.startswith("."))


def is_saved(folder: str) -> bool:
    return os.path.isfile(os.path.join(folder, EPISODE_DOC))


def is_converted(folder: str) -> bool:
    return os.path.exists(os.path.join(folder, CONVERTED_MARK))


def remove_unsaved(spool: str) -> list[str]:
    """Delete the folders of episodes that were still recording when the recorder stopped."""
    removed = []
    for folder in episode_folders(spool):
        if not is_saved(folder):
            shutil.rmtree(folder, ignore_errors=True)
            removed.append(os.path.basename(folder))
    return removed


def new_episode_name() -> str:
    """Sortable by creation time, unique across recorder restarts."""
    return time.strftime("episode_%Y%m%d_%H%M%S_", time.gmtime()) + f"{time.time_ns() % 1_000_000_000:09d}"
