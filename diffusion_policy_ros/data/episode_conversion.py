"""Raw episodes (MCAP, as the recorder received them) -> training dataset episodes, in a process
of its own so that converting never delays receiving.

    python -m diffusion_policy_ros.data.episode_conversion --spool DATASET/episodes_raw --dataset DATASET

Converts every saved, unconverted episode of the spool in recording order, then exits. The
recorder starts it after each SAVE and when it starts (an interrupted conversion is redone). It
reads only the messages the frames use, decodes them and writes the dataset block by block; the
episode is committed atomically (a kill part-way leaves the dataset as it was). Committed
episodes carry their raw episode's name, so a conversion killed after the commit is not
repeated. The raw folder is deleted once its episode is committed unless --keep-raw.
"""
from __future__ import annotations

import argparse
import fcntl
import os
import shutil
import struct
import sys
import time
import traceback

import numpy as np

from diffusion_policy_ros.data.episode_builder import reorder_joints
from diffusion_policy_ros.data.image_codec import ImageDecodeError, depth_from_raw, rgb_from_compressed, rgb_from_raw
from diffusion_policy_ros.data.raw_episode import (CONVERTED_MARK, RawEpisode, episode_folders, is_converted, is_saved,
                                                   write_json_atomic)
from diffusion_policy_ros.data.recorded_frames import (Command, FrameError, controller_setpoints, describe_flags,
                                                       safety_flags, sensor_frames)
from diffusion_policy_ros.pose_observation import pose_vector

FAILED_MARK = "conversion_failed.json"
LOCK_FILE = ".conversion.lock"
SAFETY_KEY = "action_safety"
IMAGE_BLOCK = 16       # frames decoded and written per block (bounded memory at 640x480)


class ConversionError(RuntimeError):
    """A saved raw episode that cannot become a dataset episode (its folder is kept)."""


def message_typestore():
    from diffusion_policy_ros.data.bag_import import typestore_with_package_msgs
    return typestore_with_package_msgs()


def deserialize(store, data: bytes, msgtype: str):
    """A CDR message as received (rmw buffers may carry a few trailing bytes past the message,
    which rosbags' own size check rejects)."""
    if len(data) < 4 or data[1] not in (0, 1):
        raise ValueError(f"not a CDR-encoded {msgtype}")
    msgdef = store.get_msgdef(msgtype)
    func = msgdef.deserialize_cdr_le if data[1] == 1 else msgdef.deserialize_cdr_be
    try:
        message, _end = func(data[4:], 0, msgdef.cls, store)
    except (struct.error, UnicodeDecodeError, IndexError) as e:
        raise ValueError(f"cannot deserialize {msgtype}: {e}") from e
    return message


def stream_decoder(stream: dict, store):
    kind, msgtype = stream["kind"], stream["msgtype"]

    def msg(data):
        return deserialize(store, data, msgtype)

    if kind == "joints":
        return lambda d: reorder_joints(list((m := msg(d)).name), m.position, stream["joint_names"])
    if kind == "rgb":
        return lambda d: rgb_from_raw((m := msg(d)).encoding, m.height, m.width, m.step, m.data,
                                      big_endian=bool(m.is_bigendian))
    if kind == "rgb_compressed":
        return lambda d: rgb_from_compressed(msg(d).data)
    if kind == "depth":
        return lambda d: depth_from_raw((m := msg(d)).encoding, m.height, m.width, m.step, m.data,
                                        big_endian=bool(m.is_bigendian))
    if kind == "tactile":
        rows, cols = stream["shape"]

        def tactile(d):
            values = np.asarray(msg(d).normal_force, dtype=np.float32)
            if values.size != rows * cols:
                raise ImageDecodeError(f"{values.size} taxels, expected {rows}x{cols}")
            return values.reshape(rows, cols)
        return tactile
    if kind == "pose":
        def pose(d):
            m = msg(d)
            if m.header.frame_id != stream["frame_id"]:
                raise ValueError(f"pose in frame {m.header.frame_id!r}, expected {stream['frame_id']!r}")
            p, o = m.pose.position, m.pose.orientation
            vector = pose_vector([p.x, p.y, p.z], [o.x, o.y, o.z, o.w])
            if vector is None:
                raise ValueError("non-finite pose or a quaternion that is not unit length")
            return vector
        return pose
    raise ConversionError(f"unknown stream kind {kind!r}")


def _rows(episode: RawEpisode, stream: dict, indices: np.ndarray, decode, start: int, stop: int) -> np.ndarray:
    shape, dtype = tuple(stream["shape"]), stream["dtype"]
    out = np.empty((stop - start, *shape), dtype=dtype)
    last_i, last = None, None
    for row, i in enumerate(indices[start:stop]):
        i = int(i)
        if i != last_i:                         # a duplicated frame decodes once
            try:
                last = np.asarray(decode(episode.message(stream["topic"], i)), dtype=dtype)
            except (ImageDecodeError, KeyError, ValueError) as e:
                raise ConversionError(f"stream {stream['name']} message {i}: {e}") from e
            if last.shape != shape:
                raise ConversionError(f"stream {stream['name']}: sample shape {last.shape}, expected {shape}")
            last_i = i
        out[row] = last
    return out


def _commands(episode: RawEpisode, arm: dict, store, since: float | None) -> list[list[Command]]:
    """The arm's forwarded commands, one list per controller topic."""
    joints = arm["joint_names"]
    position = {n: j for j, n in enumerate(joints)}
    per_topic = []
    for source in arm["topics"]:
        commands = []
        per_topic.append(commands)
        topic, msgtype = source["topic"], source["msgtype"]
        stamps = episode.stamps_ns(topic) * 1e-9
        for i, stamp in enumerate(stamps):
            if since is not None and stamp < since:
                continue               # before this episode: the robot was reset since
            m = deserialize(store, episode.message(topic, i), msgtype)
            if "joint_names" in source:          # Float64MultiArray: positions in this joint order
                values = np.asarray(m.data, dtype=np.float64)
                if values.shape != (len(source["joint_names"]),):
                    continue
                row = np.full(len(joints), np.nan)
                for name, value in zip(source["joint_names"], values):
                    if name in position:
                        row[position[name]] = value
                commands.append(Command(stamp, np.array([stamp]), row[None, :]))
                continue
            if not len(m.points):
                continue
            cols = [position.get(n) for n in m.joint_names]
            rows = np.full((len(m.points), len(joints)), np.nan)
            times = np.empty(len(m.points))
            for p, point in enumerate(m.points):
                times[p] = stamp + point.time_from_start.sec + point.time_from_start.nanosec * 1e-9
                for c, value in zip(cols, point.positions):
                    if c is not None:
                        rows[p, c] = value
            commands.append(Command(stamp, times, rows))
    return per_topic


def _safety_events(episode: RawEpisode, topic: str | None, store) -> tuple[list[float], list[int], str]:
    if not topic or topic not in episode.index:
        return [], [], ""
    stamps, actions, last = [], [], ""
    for i, stamp in enumerate(episode.stamps_ns(topic) * 1e-9):
        m = deserialize(store, episode.message(topic, i), "diffusion_policy_ros/msg/SafetyEvent")
        stamps.append(float(stamp))
        actions.append(int(m.action))
        last = f"{m.arm}: {m.reason}"
    return stamps, actions, last


def convert_episode(folder: str, dataset_path: str, log=print) -> int:
    """One saved raw episode -> a committed dataset episode; returns its index."""
    from diffusion_policy_ros.data.replay_buffer import ReplayBuffer

    t0 = time.monotonic()
    with RawEpisode(folder) as episode:
        doc = episode.doc
        dataset = ReplayBuffer.create(dataset_path, exist_ok=True)
        for i in range(dataset.n_episodes):
            if dataset.episode_meta(i).get("raw_episode") == episode.name:
                return i                  # committed before a kill: not again
        rate = float(doc["rate_hz"])
        streams = doc["streams"]
        try:
            frames = sensor_frames({s["name"]: episode.stamps_ns(s["topic"]) * 1e-9 for s in streams}, rate,
                                   start=doc["start"], stop=doc["stop"])
        except FrameError as e:
            raise ConversionError(str(e)) from e
        ticks, n = frames.ticks, frames.num_frames
        store = message_typestore()
        joints = [s for s in streams if s["kind"] == "joints"]
        others = [s for s in streams if s["kind"] != "joints"]
        joint_width = sum(s["shape"][0] for s in joints)
        specs = {"obs/joint_pos": ("float32", (joint_width,)), "action": ("float32", (joint_width,)),
                 "timestamp": ("float64", ())}
        for s in others:
            specs[s["key"]] = (s["dtype"], tuple(s["shape"]))
        safety_key = not dataset.n_episodes or SAFETY_KEY in dataset.keys   # older datasets stay readable
        if safety_key:
            specs[SAFETY_KEY] = ("uint8", ())
        writer = dataset.episode_writer(n, specs)

        joint_pos = np.concatenate([_rows(episode, s, frames.indices[s["name"]], stream_decoder(s, store), 0, n)
                                    for s in joints], axis=1)
        writer.write("obs/joint_pos", 0, joint_pos)
        writer.write("timestamp", 0, ticks)
        # The action of frame k is the setpoint for tick k + 1; where nothing was commanded, the
        # robot stayed where it was measured then.
        next_measured = np.concatenate([joint_pos[1:], joint_pos[-1:]]).astype(np.float64)
        period = 1.0 / rate
        actions, col = [], 0
        for arm, s in zip(doc["commands"], joints):
            width = s["shape"][0]
            commands = _commands(episode, arm, store, doc["start"])
            actions.append(controller_setpoints(commands, ticks + period, next_measured[:, col:col + width]))
            col += width
        writer.write("action", 0, np.concatenate(actions, axis=1))
        stamps, kinds, last_event = _safety_events(episode, doc.get("safety_topic"), store)
        topics = [c["topic"] for arm in doc["commands"] for c in arm["topics"]]
        command_ns = np.concatenate([episode.stamps_ns(t) for t in topics])
        command_logs = np.concatenate([episode.log_times_ns(t) for t in topics])
        flags = safety_flags(ticks, rate, stamps, kinds, command_ns * 1e-9, command_ns != command_logs)
        if safety_key:
            writer.write(SAFETY_KEY, 0, flags)

        for s in others:
            decode = stream_decoder(s, store)
            block = IMAGE_BLOCK if len(s["shape"]) >= 2 else n
            for start in range(0, n, block):
                stop = min(n, start + block)
                writer.write(s["key"], start, _rows(episode, s, frames.indices[s["name"]], decode, start, stop))

        meta = dict(doc["meta"])
        meta.update(raw_episode=episode.name, safety_affected_frames=int(np.count_nonzero(flags)),
                    safety_frames=describe_flags(flags), safety_events=len(stamps),
                    last_safety_event=last_event, conversion_s=round(time.monotonic() - t0, 3))
        index = writer.commit(meta)
    log(f"converted {episode.name} -> episode {index}: {n} frames in {time.monotonic() - t0:.1f} s", flush=True)
    return index


def failed(folder: str) -> str | None:
    path = os.path.join(folder, FAILED_MARK)
    if not os.path.exists(path):
        return None
    try:
        import json
        with open(path, encoding="utf-8") as f:
            return str(json.load(f).get("error", "conversion failed"))
    except (OSError, ValueError):
        return "conversion failed"


def pending(spool: str) -> list[str]:
    """Saved episodes not converted yet (nor failed), oldest first."""
    return [f for f in episode_folders(spool) if is_saved(f) and not is_converted(f) and failed(f) is None]


def clear_failures(spool: str) -> None:
    for folder in episode_folders(spool):
        try:
            os.remove(os.path.join(folder, FAILED_MARK))
        except FileNotFoundError:
            pass


def convert_pending(spool: str, dataset_path: str, *, keep_raw: bool = False, linger_s: float = 0.0,
                    log=print) -> int:
    """Convert until no saved episode is left (also those saved meanwhile) and none came for
    `linger_s`; one converter at a time per spool (a second waits for the first). Returns the
    number converted."""
    os.makedirs(spool, exist_ok=True)
    converted = 0
    with open(os.path.join(spool, LOCK_FILE), "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        idle_since = time.monotonic()
        while True:
            todo = pending(spool)
            if not todo:
                if time.monotonic() - idle_since >= linger_s:
                    return converted
                time.sleep(0.2)       # an episode saved just now is picked up by this process
                continue
            folder = todo[0]
            try:
                index = convert_episode(folder, dataset_path, log=log)
            except Exception as e:  # noqa: BLE001 - any failure: keep the raw episode, say why, go on
                why = f"{type(e).__name__}: {e}" if not isinstance(e, (ConversionError, OSError)) else str(e)
                log(f"cannot convert {folder}: {why}", flush=True)
                if not isinstance(e, (ConversionError, OSError)):
                    traceback.print_exc()
                write_json_atomic(os.path.join(folder, FAILED_MARK), {"error": why})
                continue
            converted += 1
            idle_since = time.monotonic()
            if keep_raw:
                write_json_atomic(os.path.join(folder, CONVERTED_MARK), {"episode_index": index})
            else:
                shutil.rmtree(folder, ignore_errors=True)


def lower_priority(kind: str) -> None:
    """Before any thread starts (threads inherit it). At nice 10 a conversion still took a tenth
    of a busy core from the next episode's recording: its 200 Hz joint-state publisher fell behind."""
    if kind == "idle" and hasattr(os, "SCHED_IDLE"):
        try:
            os.sched_setscheduler(0, os.SCHED_IDLE, os.sched_param(0))
            _io_priority_idle()
            return
        except OSError:
            pass
    os.nice(10)


def _io_priority_idle() -> None:
    """ioprio_set(IOPRIO_WHO_PROCESS, this thread, IOPRIO_CLASS_IDLE): its reads, writes and fsyncs
    wait for the disk to be otherwise idle (Linux; threads started later inherit it)."""
    import ctypes
    import platform
    number = {"x86_64": 251, "aarch64": 30}.get(platform.machine())
    if number is not None:
        ctypes.CDLL(None, use_errno=True).syscall(number, 1, 0, 3 << 13)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--spool", required=True, help="folder of raw episodes (DATASET/episodes_raw)")
    parser.add_argument("--dataset", required=True)
    parser.add_argument("--keep-raw", action="store_true", help="keep each raw episode folder after converting")
    parser.add_argument("--priority", choices=("idle", "nice"), default="idle",
                        help="idle: run only on CPU time nothing else wants (Linux SCHED_IDLE, so a recording "
                             "under way keeps its publishers and recorder on time); nice: nice 10")
    parser.add_argument("--linger", type=float, default=0.0,
                        help="wait this long (s) for more saved episodes before exiting")
    args = parser.parse_args(argv)
    lower_priority(args.priority)
    import zarr
    # zarr's default pool (a thread per core and more) hands every one-frame chunk between threads:
    # 68k futex calls in 8 s of one conversion, kernel time that delayed the next episode's
    # publishers although the conversion runs SCHED_IDLE. A background job needs one worker.
    zarr.config.set({"threading.max_workers": 1})
    convert_pending(args.spool, args.dataset, keep_raw=args.keep_raw, linger_s=args.linger)
    return 0


if __name__ == "__main__":
    sys.exit(main())
