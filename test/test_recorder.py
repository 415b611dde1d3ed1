"""demo_recorder_node as a real process, fed by real topics: saved episodes are complete and
match what was published, discarded and killed ones leave no trace, errors are clear."""
import fcntl
import os
import resource
import signal
import time

import numpy as np
import pytest
import rclpy

from diffusion_policy_ros.data.replay_buffer import ReplayBuffer
from diffusion_policy_ros.nodes.synthetic_sensors import SyntheticSensors, synthetic_joints, synthetic_rgb
from diffusion_policy_ros.robot_config import load_robot_config
from recorder_helpers import REPO_ROOT, Operator, start_recorder, stop, wait_for_dataset
from waiting import wait_for

RATE = 10.0


@pytest.fixture(scope="module")
def config():
    return load_robot_config(os.path.join(REPO_ROOT, "config/single_arm.yaml"))


@pytest.fixture(scope="module")
def operator(rclpy_context):
    op = Operator(rclpy_context)
    yield op
    op.close()


@pytest.fixture(scope="module")
def sensors(rclpy_context, operator, config):
    node = SyntheticSensors(config, RATE, context=rclpy_context)
    operator.add_node(node)
    node.start()
    yield node
    node.stop()


def test_save_discard_and_sigkill(tmp_path, ros_env, operator, sensors, config):
    proc = start_recorder(ros_env, "config/single_arm.yaml", {"dataset_root": str(tmp_path), "dataset_name": "demos"}, log_path=tmp_path / "recorder.log")
    try:
        operator.wait_for_recorder(proc=proc)
        assert not operator.call("SAVE").success                       # nothing to save yet
        empty = operator.call("START", "   ")
        assert not empty.success and "task" in empty.message

        saved = []
        for i, task in enumerate(["stack the red cube", "discard me", "put the cube in the bowl"]):
            assert operator.call("START", task).success
            assert not operator.call("START", "again").success           # one episode at a time
            operator.record_frames(15)
            if task == "discard me":
                assert operator.call("DISCARD").success
                continue
            res = operator.call("SAVE")
            assert res.success, res.message
            assert res.episode_index == len(saved) and res.num_frames >= 15
            saved.append((task, res.num_frames))

        assert operator.call("START", "killed mid-episode").success
        operator.record_frames(5)
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)
    finally:
        stop(proc)

    dataset = wait_for_dataset(tmp_path / "demos", len(saved))
    assert dataset.n_episodes == len(saved) == 2
    for i, (task, n) in enumerate(saved):
        ep, meta = dataset.get_episode(i), dataset.episode_meta(i)
        assert meta["task"] == task and meta["fps"] == RATE
        assert {len(v) for v in ep.values()} == {n}
        t = ep["timestamp"]
        assert np.all(np.diff(t) > 0)
        np.testing.assert_allclose(np.diff(t), 1 / RATE, atol=1e-6)
        # Every sample is the message published at (or just before) its tick: recover k per row.
        k = np.floor((t - sensors.t0) * RATE + 1e-4).astype(int)
        for row, kk in zip(ep["obs/scene/rgb"], k):
            np.testing.assert_array_equal(row, synthetic_rgb(kk, 96, 96))
        np.testing.assert_allclose(ep["obs/joint_pos"], np.stack([synthetic_joints(kk, 7, RATE) for kk in k]),
                                   atol=1e-6)
        # The action is the setpoint one period after the frame, as a joint_trajectory_controller
        # runs the forwarded commands: command j (stamped at j) moves linearly from where command
        # j - 1 ended (joints(j)) to its point joints(j + 1) at j + 1.
        phase = ((t + 1 / RATE - sensors.t0) * RATE - (k + 1))[:, None]
        expected = np.stack([synthetic_joints(kk + 1, 7, RATE) for kk in k]) * (1 - phase) + \
            np.stack([synthetic_joints(kk + 2, 7, RATE) for kk in k]) * phase
        np.testing.assert_allclose(ep["action"][:-1], expected[:-1], atol=1e-5)
        # The last frame's setpoint comes from a command published one period after it: if SAVE
        # came first, the controller holds where the previous command ended, joints(k + 1).
        held = synthetic_joints(k[-1] + 1, 7, RATE)
        assert np.allclose(ep["action"][-1], expected[-1], atol=1e-5) or \
            np.allclose(ep["action"][-1], held, atol=1e-5), (ep["action"][-1], expected[-1], held)
        np.testing.assert_allclose(ep["obs/finger_l/tactile"][:, 0, 0], k % 50)
        assert meta["dropped_frames"] == 0 and meta["duplicated_frames"] <= 1
        assert meta["joint_names"] == list(config.joint_names)


def test_dataset_name_cannot_escape_the_root(tmp_path, ros_env):
    proc = start_recorder(ros_env, "config/single_arm.yaml", {"dataset_root": f"{tmp_path}/root", "dataset_name": "../escaped"})
    out, _ = proc.communicate(timeout=30)
    assert proc.returncode == 2
    assert not os.path.exists(tmp_path / "escaped")


def test_unwritable_root_is_reported_on_start(tmp_path, ros_env, operator):
    blocker = tmp_path / "not_a_dir"
    blocker.write_text("a file where the dataset folder should be")
    proc = start_recorder(ros_env, "config/single_arm.yaml", {"dataset_root": str(blocker)})
    try:
        operator.wait_for_recorder(proc=proc)
        res = operator.call("START", "anything")
        assert not res.success and "not writable" in res.message
    finally:
        stop(proc)


FILE_SIZE_LIMIT = 1_500_000     # bytes: ~1.5 s of this config's messages at 10 Hz


def small_file_size_limit():
    """A disk that fills up, for any user: no file of the recorder (nor of its converter) may
    grow past FILE_SIZE_LIMIT; writing past it fails (EFBIG) as a full disk does (ENOSPC)."""
    resource.setrlimit(resource.RLIMIT_FSIZE, (FILE_SIZE_LIMIT, FILE_SIZE_LIMIT))


def test_full_disk_keeps_earlier_episodes(tmp_path, ros_env, operator, sensors):
    # UDP only: under the file-size limit the recorder must not create Fast DDS shared-memory
    # segments, which other processes of this domain would go on to use.
    env = dict(ros_env, FASTDDS_BUILTIN_TRANSPORTS="UDPv4")
    proc = start_recorder(env, "config/single_arm.yaml", {"dataset_root": str(tmp_path), "dataset_name": "d"},
                          log_path=tmp_path / "recorder.log", preexec_fn=small_file_size_limit)
    try:
        operator.wait_for_recorder(proc=proc)
        assert operator.call("START", "fits").success
        operator.record_frames(5)
        first = operator.call("SAVE")
        assert first.success, first.message
        since = len(operator.statuses)
        assert operator.call("START", "too long for the disk").success
        full = operator.wait_status(lambda s: s["state"] == "error", since=since)
        assert "too large" in full["message"] and "DISCARD" in full["message"], full
        res = operator.call("SAVE")
        assert not res.success and "too large" in res.message, res.message
        assert not operator.call("START", "new").success          # the broken episode is still held
        assert operator.call("DISCARD").success
        dataset = wait_for_dataset(tmp_path / "d", 1)
        # Space freed by the discard: recording goes on.
        assert operator.call("START", "fits again").success
        operator.record_frames(5)
        again = operator.call("SAVE")
        assert again.success, again.message
        dataset = wait_for_dataset(tmp_path / "d", 2)
    finally:
        stop(proc)
    assert [dataset.episode_meta(i)["task"] for i in range(2)] == ["fits", "fits again"]
    assert len(dataset.get_episode(0)["timestamp"]) == first.num_frames
    assert len(dataset.get_episode(1)["timestamp"]) == again.num_frames


def _children(pid):
    try:
        with open(f"/proc/{pid}/task/{pid}/children") as f:
            return [int(p) for p in f.read().split()]
    except OSError:
        return []


def test_killed_during_conversion_converts_on_next_start(tmp_path, ros_env, operator, sensors):
    """SIGKILL the recorder and its converter while two saved episodes wait for conversion (the
    first already committed, as if killed just after its commit) and a third is recording: the
    next start drops the third, converts the second, and does not commit the first twice."""
    from diffusion_policy_ros.data.episode_conversion import LOCK_FILE, convert_episode
    from diffusion_policy_ros.data.raw_episode import SPOOL_DIR, episode_folders
    dataset_path = tmp_path / "d"
    spool = dataset_path / SPOOL_DIR
    spool.mkdir(parents=True)
    log = tmp_path / "recorder.log"
    proc = start_recorder(ros_env, "config/single_arm.yaml", {"dataset_root": str(tmp_path), "dataset_name": "d"},
                          log_path=log)
    lock = open(spool / LOCK_FILE, "a")
    fcntl.flock(lock, fcntl.LOCK_EX)          # the converter waits for it: conversion held up
    saved = []
    try:
        operator.wait_for_recorder(proc=proc)
        for task in ("first", "second"):
            assert operator.call("START", task).success
            operator.record_frames(5)
            res = operator.call("SAVE")
            assert res.success, res.message
            saved.append(res.num_frames)
        operator.wait_status(lambda s: s["state"] == "converting" and s["pending_conversions"] == 2)
        assert operator.call("START", "in progress").success
        operator.record_frames(3)
        converters = _children(proc.pid)
        assert converters, "no conversion process"
        proc.send_signal(signal.SIGKILL)
        for pid in converters:
            os.kill(pid, signal.SIGKILL)
        proc.wait(10)
    finally:
        stop(proc)
        fcntl.flock(lock, fcntl.LOCK_UN)
        lock.close()
    folders = episode_folders(str(spool))
    assert len(folders) == 3
    convert_episode(folders[0], str(dataset_path))       # committed; its raw folder not yet deleted
    restarted = start_recorder(ros_env, "config/single_arm.yaml", {"dataset_root": str(tmp_path), "dataset_name": "d"},
                               log_path=tmp_path / "restarted.log")
    try:
        dataset = wait_for_dataset(dataset_path, 2)
        assert wait_for(lambda: not episode_folders(str(spool)), 60), episode_folders(str(spool))
    finally:
        stop(restarted)
    assert ReplayBuffer.open(str(dataset_path)).n_episodes == 2
    assert [dataset.episode_meta(i)["task"] for i in range(2)] == ["first", "second"]
    assert [dataset.episode_length(i) for i in range(2)] == saved
    text = (tmp_path / "restarted.log").read_text()
    assert "dropped 1 unsaved episode" in text and "converting 2 saved episode" in text, text


def test_raw_episode_is_a_bag_ros_tools_read(tmp_path, ros_env, operator, sensors, config):
    """With keep_raw_episodes the MCAP episode stays: the mcap packages and the project's bag
    import read it, message for message."""
    from mcap_ros2.reader import read_ros2_messages

    from diffusion_policy_ros.data.bag_import import bag_topics, read_bag_episode
    from diffusion_policy_ros.data.raw_episode import SPOOL_DIR, episode_folders
    proc = start_recorder(ros_env, "config/single_arm.yaml", {"dataset_root": str(tmp_path), "dataset_name": "d",
                                                               "keep_raw_episodes": True})
    try:
        operator.wait_for_recorder(proc=proc)
        assert operator.call("START", "kept raw").success
        operator.record_frames(10)
        res = operator.call("SAVE")
        assert res.success, res.message
        dataset = wait_for_dataset(tmp_path / "d", 1)
    finally:
        stop(proc)
    (folder,) = episode_folders(str(tmp_path / "d" / SPOOL_DIR))
    meta = dataset.episode_meta(0)
    counts = {}
    for message in read_ros2_messages(os.path.join(folder, os.path.basename(folder) + "_0.mcap")):
        counts[message.channel.topic] = counts.get(message.channel.topic, 0) + 1
        if message.channel.topic == "/camera/scene/image_raw":
            assert message.ros_msg.encoding == "rgb8" and message.ros_msg.width == 96
    assert counts["/camera/scene/image_raw"] == meta["stream_messages"]["rgb/scene"]["written"]
    assert counts["/joint_states"] == meta["stream_messages"]["joints/arm"]["written"]
    assert bag_topics(folder)["/camera/scene/image_raw"] == "sensor_msgs/msg/Image"
    data, _meta = read_bag_episode(folder, config, task="kept raw", rate_hz=RATE, action_source="next_state")
    assert len(data["timestamp"]) >= res.num_frames - 1
    assert data["obs/scene/rgb"].shape[1:] == (96, 96, 3)
