"""Convert rosbag2 recordings (sqlite3 or MCAP) into dataset episodes, without ROS installed.

The bag's topics are matched to the robot config exactly as the recorder subscribes to them
(joint states and teleop trajectory per arm, `<camera>/image_raw` or `.../compressed`, depth,
tactile) and go through the same resampling, so an imported bag and a live recording of the same
session give the same arrays. One bag = one episode.

Bags without teleop commands (a robot recorded while moved by hand or by another controller)
can use `action_source="next_state"`: the action at tick k is the joint position at tick k+1.
"""
from __future__ import annotations

import glob
import os
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

from diffusion_policy_ros import obs_keys
from diffusion_policy_ros.data.episode_builder import (EpisodeRecording, episode_meta, reorder_joints,
                                                       streams_for_config)
from diffusion_policy_ros.data.image_codec import depth_from_raw, rgb_from_compressed, rgb_from_raw


class BagImportError(ValueError):
    pass


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
    """One bag -> (arrays in the dataset layout, episode metadata)."""
    from rosbags.highlevel import AnyReader

    if action_source not in ("teleop", "next_state"):
        raise BagImportError(f"action_source must be 'teleop' or 'next_state', got {action_source!r}")
    if not os.path.exists(bag_path):
        raise BagImportError(f"no bag at {bag_path}")
    try:
        reader_cm = AnyReader([Path(bag_path)], default_typestore=typestore_with_package_msgs())
        reader = reader_cm.__enter__()
    except Exception as e:  # noqa: BLE001 - rosbags raises several unrelated types
        raise BagImportError(f"cannot open bag {bag_path}: {e}") from e
    try:
        topics = {c.topic: c.msgtype for c in reader.connections}
        handlers, specs, skipped = _plan(robot_config, topics, cameras, action_source)
        episode = EpisodeRecording(specs, task)
        conns = [c for c in reader.connections if c.topic in handlers]
        for conn, log_time_ns, raw in reader.messages(connections=conns):
            msg = reader.deserialize(raw, conn.msgtype)
            stream, value = handlers[conn.topic](msg)
            if value is None:
                continue
            stamp = _stamp(getattr(msg, "header", None), log_time_ns)
            episode.add(stream, stamp, value)
    finally:
        reader_cm.__exit__(None, None, None)
    data, stats = episode.build(rate_hz)
    if action_source == "next_state":
        pos = data[obs_keys.JOINT_POS]
        data["action"] = np.concatenate([pos[1:], pos[-1:]]).astype(np.float32)
    recorded_cams = sorted(s.name.split("/", 1)[1] for s in specs if s.name.startswith("rgb/"))
    meta = episode_meta(robot_config, task=task, rate_hz=rate_hz, stats=stats,
                        source=f"bag:{os.path.basename(os.path.normpath(bag_path))}",
                        extra={"cameras": recorded_cams, "action_source": action_source,
                               "skipped_streams": skipped})
    return data, meta


def import_bags(bag_paths: Sequence[str], dataset, robot_config, *, task: str, rate_hz: float,
                cameras: Sequence[str] | None = None, action_source: str = "teleop",
                progress: Callable | None = None) -> list[int]:
    """Append one episode per bag to `dataset` (ReplayBuffer); returns the episode indices."""
    indices = []
    for bag in (progress(bag_paths) if progress else bag_paths):
        data, meta = read_bag_episode(bag, robot_config, task=task, rate_hz=rate_hz, cameras=cameras,
                                      action_source=action_source)
        result = dataset.add_episode(data, meta)
        indices.append(int(result) if result is not None else int(dataset.n_episodes) - 1)
    return indices


def _stamp(header, log_time_ns: int) -> float:
    if header is not None:
        t = header.stamp.sec + header.stamp.nanosec * 1e-9
        if t > 0:
            return t
    return log_time_ns * 1e-9


def _plan(robot_config, topics: dict[str, str], cameras, action_source):
    """topic -> handler(msg) -> (stream, value); the stream specs for what the bag has."""
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
            handlers[cam.rgb_topic] = _rgb_handler(f"rgb/{name}")
            present.append(name)
        elif f"{cam.rgb_topic}/compressed" in topics:
            handlers[f"{cam.rgb_topic}/compressed"] = lambda m, s=f"rgb/{name}": (s, bytes(m.data))
            present.append(name)
            compressed.add(name)
        else:
            if cameras is not None:
                raise BagImportError(f"bag has no images for camera {name!r} on {cam.rgb_topic}")
            skipped.append(f"rgb/{name}")
            continue
        if cam.depth:
            if cam.depth_topic in topics:
                handlers[cam.depth_topic] = _depth_handler(f"depth/{name}")
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
    decoders = {f"rgb/{c}": rgb_from_compressed for c in compressed}
    specs = [s for s in streams_for_config(robot_config, cameras=present, depth=True, tactile=True,
                                           decoders=decoders)
             if not (s.name.startswith("depth/") and s.name.split("/", 1)[1] not in depth_cams)
             and not (s.name.startswith("tactile/") and s.name.split("/", 1)[1] not in tactile_present)
             and not (action_source == "next_state" and s.name.startswith("action/"))]
    return handlers, specs, skipped


def _joint_handler(stream, joints):
    return lambda m: (stream, reorder_joints(list(m.name), m.position, joints))


def _action_handler(stream, joints):
    def handle(m):
        if not len(m.points):
            return stream, None
        return stream, reorder_joints(list(m.joint_names), m.points[0].positions, joints)
    return handle


def _rgb_handler(stream):
    return lambda m: (stream, rgb_from_raw(m.encoding, m.height, m.width, m.step, m.data,
                                           big_endian=bool(m.is_bigendian)))


def _depth_handler(stream):
    return lambda m: (stream, depth_from_raw(m.encoding, m.height, m.width, m.step, m.data,
                                             big_endian=bool(m.is_bigendian)))


def _tactile_handler(stream, rows, cols):
    def handle(m):
        values = np.asarray(m.normal_force, dtype=np.float32)
        if values.size != rows * cols:
            return stream, None
        return stream, values.reshape(rows, cols)
    return handle
