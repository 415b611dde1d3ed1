"""Convert rosbag2 recordings (sqlite3 or MCAP) into dataset episodes, without ROS installed.

The bag's topics are matched to the robot config exactly as the recorder subscribes to them
(joint states and teleop trajectory per arm, `<camera>/image_raw` or `.../compressed`, depth,
tactile) and go through the same resampling, so an imported bag and a live recording of the same
session give the same arrays. One bag = one episode.

An import is all or nothing: a message that does not fit (an image of the wrong size or encoding,
a joint state missing a joint, NaN) stops it with one line naming the bag, the topic and the
message's time, and the dataset is left as it was.

Bags without teleop commands (a robot recorded while moved by hand or by another controller)
can use `action_source="next_state"`: the action at tick k is the joint position at tick k+1.
"""
from __future__ import annotations

import dataclasses
import glob
import hashlib
import os
import shutil
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

from diffusion_policy_ros import obs_keys
from diffusion_policy_ros.data.episode_builder import (EpisodeError, EpisodeRecording, episode_meta,
                                                       reorder_joints, streams_for_config)
from diffusion_policy_ros.data.image_codec import depth_from_raw, rgb_from_compressed, rgb_from_raw


_FINGERPRINT_BYTES = 1 << 20


class BagImportError(ValueError):
    """A bag that cannot become an episode: the message says which bag, topic and message time."""


def one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split()) or type(exc).__name__


def typestore_with_package_msgs():
    """Jazzy standard types plus this package's messages (bags recorded on older setups do not
    always embed message definitions)."""
    from rosbags.typesys import Stores, get_types_from_msg, get_typestore

    from diffusion_policy_ros.resources import package_share_path

    store = get_typestore(Stores.ROS2_JAZZY)
    types = {}
    for path in sorted(glob.glob(os.path.join(package_share_path("msg"), "*.msg"))):
        name = f"diffusion_policy_ros/msg/{os.path.splitext(os.path.basename(path))[0]}"
        with open(path, encoding="utf-8") as f:
            types.update(get_types_from_msg(f.read(), name))
    store.register(types)
    return store


def bag_topics(bag_path: str) -> dict[str, str]:
    """topic -> message type of a bag."""
    from rosbags.highlevel import AnyReader

    with AnyReader([Path(bag_path)], default_typestore=typestore_with_package_msgs()) as reader:
        return {c.topic: c.msgtype for c in reader.connections}


def read_bag_episode(bag_path: str, robot_config, *, task: str, rate_hz: float,
                     cameras: Sequence[str] | None = None, action_source: str = "teleop"
                     ) -> tuple[dict[str, np.ndarray], dict]:
    """One bag -> (arrays in the dataset layout, episode metadata). A message that does not fit
    the config raises BagImportError naming the bag, the topic, the message's time and what was
    expected."""
    from rosbags.highlevel import AnyReader

    if action_source not in ("teleop", "next_state"):
        raise BagImportError(f"action_source must be 'teleop' or 'next_state', got {action_source!r}")
    if not os.path.exists(bag_path):
        raise BagImportError(f"no bag at {bag_path}")
    try:
        reader_cm = AnyReader([Path(bag_path)], default_typestore=typestore_with_package_msgs())
        reader = reader_cm.__enter__()
    except Exception as e:  # noqa: BLE001 - rosbags raises several unrelated types
        raise BagImportError(f"cannot open bag {bag_path}: {one_line(e)}") from e
    try:
        topics = {c.topic: c.msgtype for c in reader.connections}
        try:
            handlers, specs, skipped = _plan(robot_config, topics, cameras, action_source)
        except BagImportError as e:
            raise BagImportError(f"{bag_path}: {e}") from None
        episode = EpisodeRecording(specs, task)
        conns = [c for c in reader.connections if c.topic in handlers]
        start_s = reader.start_time * 1e-9
        for conn, log_time_ns, raw in reader.messages(connections=conns):
            where = _MessageTime(bag_path, conn.topic, log_time_ns * 1e-9, start_s)
            try:
                msg = reader.deserialize(raw, conn.msgtype)
            except Exception as e:  # noqa: BLE001 - a corrupt message, whatever rosbags raises
                raise where.error(f"cannot decode the message as {conn.msgtype}: {one_line(e)}") from e
            stamp = _stamp(getattr(msg, "header", None), log_time_ns)
            where.stamp = stamp
            try:
                stream, value = handlers[conn.topic](msg, where)
            except (ValueError, KeyError) as e:   # ImageDecodeError is a ValueError
                raise where.error(e.args[0] if isinstance(e, KeyError) and e.args else one_line(e)) from e
            episode.add(stream, stamp, value)
    finally:
        reader_cm.__exit__(None, None, None)
    try:
        data, stats = episode.build(rate_hz)
    except EpisodeError as e:
        raise BagImportError(f"{bag_path}: {e}") from e
    if action_source == "next_state":
        pos = data[obs_keys.JOINT_POS]
        data["action"] = np.concatenate([pos[1:], pos[-1:]]).astype(np.float32)
    recorded_cams = sorted(s.name.split("/", 1)[1] for s in specs if s.name.startswith("rgb/"))
    meta = episode_meta(robot_config, task=task, rate_hz=rate_hz, stats=stats,
                        source=f"bag:{os.path.basename(os.path.normpath(bag_path))}",
                        extra={"cameras": recorded_cams, "action_source": action_source,
                               "skipped_streams": skipped})
    return data, meta


def bag_fingerprint(bag_path: str) -> str:
    """Identifies a bag by its storage files' sizes and first and last MiB (moving or renaming
    the bag keeps it; re-recording changes it)."""
    path = Path(bag_path)
    if path.is_dir():
        files = sorted(p for p in path.iterdir() if p.is_file() and p.suffix in (".mcap", ".db3", ".sqlite3"))
    else:
        files = [path]
    if not files or not all(f.exists() for f in files):
        raise BagImportError(f"no bag at {bag_path} (no .mcap or .db3 storage file)")
    digest = hashlib.sha256()
    for f in files:
        size = f.stat().st_size
        digest.update(f"{f.suffix}:{size}:".encode())
        with open(f, "rb") as stream:
            digest.update(stream.read(_FINGERPRINT_BYTES))
            if size > 2 * _FINGERPRINT_BYTES:
                stream.seek(size - _FINGERPRINT_BYTES)
                digest.update(stream.read())
    return digest.hexdigest()[:32]


@dataclasses.dataclass
class ImportReport:
    dataset: str
    imported: list[tuple[str, int]]            # (bag, episode index in the dataset)
    skipped: list[tuple[str, str]]             # (bag, why)
    episodes: int                              # the dataset's episodes afterwards


def import_bags(bag_paths: Sequence[str], out: str, robot_config, *, task: str, rate_hz: float,
                cameras: Sequence[str] | None = None, action_source: str = "teleop",
                progress: Callable | None = None) -> ImportReport:
    """Append one episode per bag to the dataset at `out` (created when absent or empty).

    All-or-nothing for what the bags hold: every bag is converted and checked into a staging
    dataset beside `out` first; only when all succeed are the episodes moved (a new dataset) or
    appended (an existing one). A bag already imported into the dataset, or named twice, is
    skipped and reported, not imported again.
    """
    from diffusion_policy_ros.data.replay_buffer import ReplayBuffer

    out = os.path.abspath(out)
    if os.path.exists(out) and not os.path.isdir(out):
        raise BagImportError(f"--out {out} is a file, not a dataset folder")
    existing = ReplayBuffer.open(out, mode="a") if os.path.isdir(out) and os.listdir(out) else None
    known = {}
    for i in range(existing.n_episodes if existing else 0):
        fingerprint = existing.episode_meta(i).get("bag_fingerprint")
        if fingerprint:
            known[fingerprint] = f"already imported as episode {i}"
    todo, skipped = [], []
    for bag in bag_paths:
        fingerprint = bag_fingerprint(bag)
        if fingerprint in known:
            skipped.append((bag, known[fingerprint]))
            continue
        known[fingerprint] = f"the same bag as {bag}, named before it"
        todo.append((bag, fingerprint))
    if not todo:
        return ImportReport(out, [], skipped, existing.n_episodes if existing else 0)

    parent = os.path.dirname(out)
    os.makedirs(parent, exist_ok=True)
    staging = tempfile.mkdtemp(prefix=f".{os.path.basename(out)}.importing-", dir=parent)
    try:
        staged = ReplayBuffer.create(os.path.join(staging, "dataset"))
        for bag, fingerprint in (progress(todo) if progress else todo):
            data, meta = read_bag_episode(bag, robot_config, task=task, rate_hz=rate_hz, cameras=cameras,
                                          action_source=action_source)
            meta.update(bag_fingerprint=fingerprint, bag_path=os.path.abspath(bag))
            _check_fits(staged, data, bag, "the bags before it")
            staged.add_episode(data, meta)
        if existing is None:
            if os.path.isdir(out):
                os.rmdir(out)    # empty: the staged dataset takes its place
            os.rename(os.path.join(staging, "dataset"), out)
            first, total = 0, staged.n_episodes
        else:
            _check_fits(existing, staged.get_episode(0), todo[0][0], f"the dataset's episodes in {out}")
            first = existing.n_episodes
            for i in range(staged.n_episodes):
                existing.add_episode(staged.get_episode(i), staged.episode_meta(i))
            total = existing.n_episodes
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    imported = [(bag, first + i) for i, (bag, _) in enumerate(todo)]
    return ImportReport(out, imported, skipped, total)


def _check_fits(dataset, data: dict[str, np.ndarray], bag: str, what: str) -> None:
    """Refuse, naming the bag, an episode whose keys or shapes differ from `dataset`'s."""
    if not dataset.n_episodes:
        return
    theirs = {k: dataset.key_spec(k) for k in dataset.keys}
    ours = {k: {"dtype": str(np.asarray(v).dtype), "shape": list(np.asarray(v).shape[1:])} for k, v in data.items()}
    if ours != theirs:
        differ = sorted(k for k in set(ours) | set(theirs) if ours.get(k) != theirs.get(k))
        raise BagImportError(f"{bag}: its streams do not match {what}: " + "; ".join(
            f"{k} {_spec(ours.get(k))} vs {_spec(theirs.get(k))}" for k in differ))


def _spec(spec: dict | None) -> str:
    return "absent" if spec is None else f"{spec['dtype']}{tuple(spec['shape'])}"


class _MessageTime:
    """Where a message sits, for errors: bag, topic, stamp and offset into the bag."""

    def __init__(self, bag: str, topic: str, log_s: float, start_s: float):
        self.bag, self.topic, self.log_s, self.start_s = bag, topic, log_s, start_s
        self.stamp = log_s

    def error(self, what: str) -> BagImportError:
        return BagImportError(f"{self.bag}: {self.topic} at t={self.stamp:.3f} s "
                              f"({self.log_s - self.start_s:.2f} s into the bag): {what}")


def _stamp(header, log_time_ns: int) -> float:
    if header is not None:
        t = header.stamp.sec + header.stamp.nanosec * 1e-9
        if t > 0:
            return t
    return log_time_ns * 1e-9


def _plan(robot_config, topics: dict[str, str], cameras, action_source):
    """topic -> handler(msg, where) -> (stream, value); the stream specs for what the bag has."""
    handlers: dict[str, Callable] = {}
    skipped: list[str] = []
    for arm in robot_config.arms:
        if arm.joint_states_topic not in topics:
            raise BagImportError(f"bag has no joint states for arm {arm.name!r} on {arm.joint_states_topic} "
                                 f"(topics: {sorted(topics)})")
        handlers[arm.joint_states_topic] = _joint_handler(f"joints/{arm.name}", arm.joint_names)
        if action_source == "teleop":
            if arm.teleop_topic not in topics:
                raise BagImportError(
                    f"bag has no teleop commands on {arm.teleop_topic}; use action_source='next_state' "
                    "to take the next joint state as the action")
            handlers[arm.teleop_topic] = _action_handler(f"action/{arm.name}", arm.joint_names)
    wanted = [c.name for c in robot_config.cameras] if cameras is None else list(cameras)
    present, compressed, depth_cams = [], set(), set()
    for name in wanted:
        cam = robot_config.camera(name)
        if cam.rgb_topic in topics:
            handlers[cam.rgb_topic] = _rgb_handler(f"rgb/{name}", cam)
            present.append(name)
        elif f"{cam.rgb_topic}/compressed" in topics:
            handlers[f"{cam.rgb_topic}/compressed"] = _compressed_handler(f"rgb/{name}")
            present.append(name)
            compressed.add(name)
        else:
            if cameras is not None:
                raise BagImportError(f"bag has no images for camera {name!r} on {cam.rgb_topic}")
            skipped.append(f"rgb/{name}")
            continue
        if cam.depth:
            if cam.depth_topic in topics:
                handlers[cam.depth_topic] = _depth_handler(f"depth/{name}", cam)
                depth_cams.add(name)
            else:
                skipped.append(f"depth/{name}")
    tactile_present = []
    for sensor in robot_config.tactile_sensors:
        if sensor.topic in topics:
            handlers[sensor.topic] = _tactile_handler(f"tactile/{sensor.name}", sensor.rows, sensor.cols)
            tactile_present.append(sensor.name)
        else:
            skipped.append(f"tactile/{sensor.name}")
    decoders = {f"rgb/{c}": _decode_compressed for c in compressed}
    specs = [s for s in streams_for_config(robot_config, cameras=present, depth=True, tactile=True,
                                           decoders=decoders)
             if not (s.name.startswith("depth/") and s.name.split("/", 1)[1] not in depth_cams)
             and not (s.name.startswith("tactile/") and s.name.split("/", 1)[1] not in tactile_present)
             and not (action_source == "next_state" and s.name.startswith("action/"))]
    return handlers, specs, skipped


def _finite(values, what: str) -> np.ndarray:
    if not np.all(np.isfinite(values)):
        raise ValueError(f"{what} are not all finite: {np.asarray(values).tolist()}")
    return values


def _joint_handler(stream, joints):
    return lambda m, _where: (stream, _finite(reorder_joints(list(m.name), m.position, joints), "joint positions"))


def _action_handler(stream, joints):
    def handle(m, _where):
        if not len(m.points):
            raise ValueError("a teleop JointTrajectory with no points (expected one point with the target)")
        return stream, _finite(reorder_joints(list(m.joint_names), m.points[0].positions, joints),
                               "teleop target positions")
    return handle


def _check_size(image: np.ndarray, cam) -> np.ndarray:
    if image.shape[:2] != (cam.height, cam.width):
        raise ValueError(f"a {image.shape[1]}x{image.shape[0]} image, the config's camera {cam.name!r} is "
                         f"{cam.width}x{cam.height}")
    return image


def _rgb_handler(stream, cam):
    return lambda m, _where: (stream, _check_size(rgb_from_raw(m.encoding, m.height, m.width, m.step, m.data,
                                                               big_endian=bool(m.is_bigendian)), cam))


def _depth_handler(stream, cam):
    return lambda m, _where: (stream, _check_size(depth_from_raw(m.encoding, m.height, m.width, m.step, m.data,
                                                                 big_endian=bool(m.is_bigendian)), cam))


_IMAGE_MAGIC = (b"\xff\xd8\xff", b"\x89PNG\r\n\x1a\n")


def _compressed_handler(stream):
    """Keeps the payload (decoded only for the frames the grid uses) with its place in the bag."""
    def handle(m, where):
        payload = bytes(m.data)
        if not payload.startswith(_IMAGE_MAGIC):
            raise ValueError(f"a compressed image of {len(payload)} bytes that is neither JPEG nor PNG "
                             f"(format {m.format!r})")
        return stream, (payload, where.error)
    return handle


def _decode_compressed(value) -> np.ndarray:
    payload, error = value
    try:
        return rgb_from_compressed(payload)
    except ValueError as e:
        raise error(one_line(e)) from e


def _tactile_handler(stream, rows, cols):
    def handle(m, _where):
        values = np.asarray(m.normal_force, dtype=np.float32)
        if values.size != rows * cols:
            raise ValueError(f"{values.size} normal forces, expected {rows}x{cols} = {rows * cols}")
        return stream, _finite(values.reshape(rows, cols), "normal forces")
    return handle
