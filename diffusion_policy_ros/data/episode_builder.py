"""Collect one episode's raw messages per stream, then turn them into dataset arrays.

The recorder node (and the bag importer) push decoded samples with their header stamps; `build`
puts every stream on the fixed-rate grid (`resample`) and returns the arrays in the dataset
layout (`action`, `obs/joint_pos`, `obs/<camera>/rgb`, `obs/<camera>/depth`,
`obs/<sensor>/tactile`, `timestamp`) plus per-stream frame statistics for the episode metadata.
"""
from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from diffusion_policy_ros import obs_keys
from diffusion_policy_ros.data.resample import ResampleError, resample
from diffusion_policy_ros.pose_observation import SIZE as POSE_SIZE


class EpisodeError(ValueError):
    """An episode that cannot be assembled (a stream never published, wrong shapes...)."""


@dataclasses.dataclass(frozen=True)
class StreamSpec:
    """One input stream and where it goes in the dataset.

    Streams with the same `key` are concatenated along the last axis in spec order (one joint
    state / teleop stream per arm -> one `obs/joint_pos` / `action` row).
    """
    name: str                      # e.g. "rgb/scene", "joints/left", "action/right"
    key: str                       # dataset key
    dtype: str                     # numpy dtype of the stored array
    shape: tuple[int, ...]         # per-sample shape
    decode: Callable[[Any], np.ndarray] | None = None   # lazy decoding (compressed images)


def streams_for_config(robot_config, *, cameras: Sequence[str] | None = None, depth: bool = True,
                       tactile: bool = True, decoders: dict[str, Callable] | None = None
                       ) -> list[StreamSpec]:
    """The streams the recorder records for a robot config (cameras default: all configured)."""
    decoders = decoders or {}
    specs = []
    for arm in robot_config.arms:
        specs.append(StreamSpec(f"joints/{arm.name}", obs_keys.JOINT_POS, "float32", (len(arm.joint_names),)))
    for arm in robot_config.arms:
        specs.append(StreamSpec(f"action/{arm.name}", "action", "float32", (len(arm.joint_names),)))
    wanted = [c.name for c in robot_config.cameras] if cameras is None else list(cameras)
    for name in wanted:
        cam = robot_config.camera(name)
        specs.append(StreamSpec(f"rgb/{name}", obs_keys.rgb(name), "uint8", (cam.height, cam.width, 3),
                                decoders.get(f"rgb/{name}")))
        if depth and cam.depth:
            specs.append(StreamSpec(f"depth/{name}", obs_keys.depth(name), "float32",
                                    (cam.height, cam.width)))
    if tactile:
        for sensor in robot_config.tactile_sensors:
            specs.append(StreamSpec(f"tactile/{sensor.name}", obs_keys.tactile(sensor.name), "float32",
                                    (sensor.rows, sensor.cols)))
    for pose in robot_config.object_poses:
        specs.append(StreamSpec(f"pose/{pose.name}", obs_keys.pose(pose.name), "float32", (POSE_SIZE,)))
    return specs


class EpisodeRecording:
    """Samples of one episode, per stream, in arrival order (append is O(1) and thread-safe
    enough for one writer per stream: list.append is atomic under the GIL)."""

    def __init__(self, specs: Sequence[StreamSpec], task: str):
        self.specs = {s.name: s for s in specs}
        if len(self.specs) != len(specs):
            raise EpisodeError("duplicate stream names")
        self.task = task
        # One list of (stamp, value) per stream: a single append keeps each pair together even when
        # callbacks of one subscription run in parallel threads.
        self._samples: dict[str, list[tuple[float, Any]]] = {s.name: [] for s in specs}

    def add(self, stream: str, stamp: float, value: Any) -> None:
        self._samples[stream].append((float(stamp), value))

    def count(self, stream: str) -> int:
        return len(self._samples[stream])

    def last_stamp(self, stream: str) -> float | None:
        samples = self._samples[stream]
        return samples[-1][0] if samples else None

    def missing_streams(self) -> list[str]:
        return [name for name, samples in self._samples.items() if not samples]

    def build(self, rate_hz: float, *, start: float | None = None, stop: float | None = None
              ) -> tuple[dict[str, np.ndarray], dict[str, dict[str, int]]]:
        """-> (data arrays in dataset layout, {stream: frame stats})."""
        missing = self.missing_streams()
        if missing:
            raise EpisodeError(f"no messages on stream(s) {missing} during the episode")
        # Snapshot: the node may still append while we build.
        samples = {n: list(self._samples[n]) for n in self.specs}
        try:
            result = resample({n: [t for t, _ in samples[n]] for n in self.specs}, rate_hz,
                              start=start, stop=stop)
        except ResampleError as e:
            raise EpisodeError(str(e)) from e
        parts: dict[str, list[np.ndarray]] = {}
        for name, spec in self.specs.items():
            values = [v for _, v in samples[name]]
            cache: dict[int, np.ndarray] = {}
            rows = []
            for i in result.indices[name]:
                i = int(i)
                if i not in cache:   # duplicates decode once
                    cache[i] = self._sample(spec, values[i])
                rows.append(cache[i])
            parts.setdefault(spec.key, []).append(np.stack(rows))
        data = {key: (arrs[0] if len(arrs) == 1 else np.concatenate(arrs, axis=-1))
                for key, arrs in parts.items()}
        data["timestamp"] = result.ticks.astype(np.float64)
        return data, {name: s.as_dict() for name, s in result.stats.items()}

    @staticmethod
    def _sample(spec: StreamSpec, value: Any) -> np.ndarray:
        arr = spec.decode(value) if spec.decode is not None else value
        arr = np.asarray(arr, dtype=spec.dtype)
        if arr.shape != spec.shape:
            raise EpisodeError(f"stream {spec.name}: sample shape {arr.shape}, expected {spec.shape}")
        return arr


def reorder_joints(names: Sequence[str], values: Sequence[float], wanted: Sequence[str]) -> np.ndarray:
    """Values for `wanted` joints in that order, from a message listing `names` (any order, may
    contain other joints). Raises KeyError naming the missing joints."""
    if list(names) == list(wanted) and len(values) == len(wanted):
        return np.asarray(values, dtype=np.float32)
    index = {n: i for i, n in enumerate(names)}
    missing = [w for w in wanted if w not in index or index[w] >= len(values)]
    if missing:
        raise KeyError(f"joints {missing} not in message (has {list(names)})")
    return np.asarray([values[index[w]] for w in wanted], dtype=np.float32)


def episode_meta(robot_config, *, task: str, rate_hz: float, stats: dict[str, dict[str, int]],
                 source: str, extra: dict | None = None) -> dict:
    """The per-episode metadata stored with every episode (JSON-serialisable)."""
    meta = {
        "task": task,
        "fps": float(rate_hz),
        "robot": robot_config.robot,
        "joint_names": list(robot_config.joint_names),
        "cameras": [c.name for c in robot_config.cameras],
        "dropped_frames": int(sum(s["dropped"] for s in stats.values())),
        "duplicated_frames": int(sum(s["duplicated"] for s in stats.values())),
        "stream_stats": stats,
        "source": source,
    }
    meta.update(extra or {})
    return meta
