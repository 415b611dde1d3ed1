"""Replay buffer on disk: append, reopen, crash consistency, corrupt stores, training windows."""
import json
import os
import signal
import subprocess
import sys

import numpy as np
import pytest

from diffusion_policy_ros.data.replay_buffer import DatasetError, ReplayBuffer
from diffusion_policy_ros.data.sequence_dataset import SequenceDataset
from waiting import wait_for


def episode(length, offset=0.0):
    t = np.arange(length, dtype=np.float32) + offset
    return {"action": np.stack([t, -t], 1), "obs/joint_pos": np.stack([t, t], 1),
            "obs/cam/rgb": np.full((length, 6, 8, 3), int(offset) % 255, np.uint8),
            "timestamp": np.arange(length, dtype=np.float64) / 10}


def test_append_and_reopen(tmp_path):
    path = str(tmp_path / "ds")
    buf = ReplayBuffer.create(path)
    assert buf.add_episode(episode(5), {"task": "pick", "fps": 10.0, "joint_names": ["a", "b"]}) == 0
    assert buf.add_episode(episode(3, 100.0), {"task": "place", "fps": 10.0, "dropped": 2}) == 1
    ro = ReplayBuffer.open(path)
    assert ro.n_episodes == 2 and ro.episode_ends.tolist() == [5, 8]
    assert ro.keys == ["action", "obs/cam/rgb", "obs/joint_pos", "timestamp"]
    assert ro.episode_slice(1) == slice(5, 8)
    ep = ro.get_episode(1)
    assert np.array_equal(ep["action"], episode(3, 100.0)["action"]) and ep["obs/cam/rgb"].dtype == np.uint8
    assert ro.episode_meta(1)["dropped"] == 2 and ro.episode_meta(0)["task"] == "pick"
    assert ro.get_array("obs/cam/rgb").chunks == (1, 6, 8, 3)       # one frame per chunk
    with pytest.raises(DatasetError, match="read-only"):
        ro.add_episode(episode(2))
    with pytest.raises(DatasetError, match="already exists"):
        ReplayBuffer.create(path)
    again = ReplayBuffer.open(path, mode="a")
    again.add_episode(episode(4, 7.0))
    assert ReplayBuffer.open(path).episode_ends.tolist() == [5, 8, 12]


KILLED_WRITER = """
import sys, numpy as np
sys.path.insert(0, {repo!r})
from diffusion_policy_ros.data.replay_buffer import ReplayBuffer
n = 400
buf = ReplayBuffer.open({path!r}, mode="a")
buf.add_episode({{"action": np.ones((n, 2), np.float32), "obs/joint_pos": np.ones((n, 2), np.float32),
                 "obs/cam/rgb": np.random.default_rng(0).integers(0, 255, (n, 6, 8, 3), dtype=np.uint8),
                 "timestamp": np.arange(n, dtype=np.float64)}}, {{"task": "killed"}})
"""


def test_process_killed_while_writing_keeps_previous_episodes(tmp_path):
    """SIGKILL a writer as soon as the new episode's first frame is on disk (the write has begun,
    the commit cannot have happened unless it wrongly comes first): the store reopens with the
    committed episodes only, and the next episode overwrites the leftover rows."""
    path = str(tmp_path / "ds")
    ReplayBuffer.create(path).add_episode(episode(5), {"task": "a"})
    first_new_frame = os.path.join(path, "data", "obs", "cam", "rgb", "c", "5", "0", "0", "0")
    repo = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    child = subprocess.Popen([sys.executable, "-c", KILLED_WRITER.format(repo=repo, path=path)])
    try:
        assert wait_for(lambda: os.path.exists(first_new_frame) or child.poll() is not None, 60, poll_s=0.0005)
        child.send_signal(signal.SIGKILL)
    finally:
        child.wait(30)
    assert child.returncode == -signal.SIGKILL, "the writer finished before it was killed"
    reopened = ReplayBuffer.open(path, mode="a")
    assert reopened.n_episodes == 1 and reopened.n_steps == 5
    assert np.array_equal(reopened.get_episode(0)["action"], episode(5)["action"])
    assert np.array_equal(reopened.get_episode(0)["obs/cam/rgb"], episode(5)["obs/cam/rgb"])
    reopened.add_episode(episode(2, 9.0), {"task": "c"})           # overwrites the uncommitted rows
    final = ReplayBuffer.open(path)
    assert final.episode_ends.tolist() == [5, 7]
    assert np.array_equal(final.get_episode(1)["action"], episode(2, 9.0)["action"])
    assert final.get_array("action").shape[0] == 7


def test_bad_input_and_corrupt_store(tmp_path):
    path = str(tmp_path / "ds")
    buf = ReplayBuffer.create(path)
    with pytest.raises(DatasetError, match="share a non-zero length"):
        buf.add_episode({"action": np.zeros((3, 2)), "obs/joint_pos": np.zeros((4, 2))})
    buf.add_episode(episode(3))
    with pytest.raises(DatasetError, match="differ"):
        buf.add_episode({"action": np.zeros((3, 2), np.float32)})
    bad = episode(3)
    bad["action"] = np.zeros((3, 5), np.float32)
    with pytest.raises(DatasetError, match="do not match"):
        buf.add_episode(bad)
    with pytest.raises(DatasetError, match="JSON"):
        buf.add_episode(episode(3), {"x": object()})
    commit = os.path.join(path, "meta", "episodes.json")
    doc = json.load(open(commit))
    doc["episode_ends"] = [100]
    json.dump(doc, open(commit, "w"))
    with pytest.raises(DatasetError, match="rows"):
        ReplayBuffer.open(path)
    open(commit, "w").write("{broken")
    with pytest.raises(DatasetError, match="corrupt"):
        ReplayBuffer.open(path)
    with pytest.raises(DatasetError, match="not a dataset"):
        ReplayBuffer.open(str(tmp_path / "nothing"))


def test_sequence_windows_are_edge_padded(tmp_path):
    buf = ReplayBuffer.create(str(tmp_path / "ds"))
    buf.add_episode(episode(6))
    buf.add_episode(episode(4, 100.0))
    ds = SequenceDataset(buf, ["obs/joint_pos", "obs/cam/rgb"], horizon=4, n_obs_steps=2, n_action_steps=2)
    # starts -1 .. len - 2 per episode: 6 + 4 windows
    assert len(ds) == 10
    first = ds.batch(np.array([0]))
    assert first["action"][0, :, 0].tolist() == [0, 0, 1, 2]             # padded with the first frame
    assert first["obs/joint_pos"].shape == (1, 2, 2) and first["obs/cam/rgb"].shape == (1, 2, 6, 8, 3)
    last = ds.batch(np.array([9]))
    assert last["action"][0, :, 0].tolist() == [102, 103, 103, 103]       # padded with the last frame
    held_out = SequenceDataset(buf, ["obs/joint_pos"], 4, 2, 2, episodes=[1])
    assert len(held_out) == 4


def _writeback_running(writer) -> bool:
    thread = writer._writeback._thread
    return thread is not None and thread.is_alive()


def test_an_episode_is_written_back_while_written_and_the_writeback_ends(tmp_path, monkeypatch):
    """Writing starts a writeback thread (so the commit's sync is not one burst); the commit stops
    it, and a writer that is never committed leaves no thread behind once idle."""
    from diffusion_policy_ros.data import replay_buffer
    monkeypatch.setattr(replay_buffer, "WRITEBACK_EVERY_S", 0.05)
    monkeypatch.setattr(replay_buffer, "WRITEBACK_IDLE_S", 0.3)
    buf = ReplayBuffer.create(str(tmp_path / "ds"))
    data = episode(4)
    specs = {k: (str(v.dtype), v.shape[1:]) for k, v in data.items()}
    writer = buf.episode_writer(4, specs)
    for key, value in data.items():
        writer.write(key, 0, value)
    thread = writer._writeback._thread
    assert thread is not None and thread.is_alive()
    assert writer.commit({"task": "t"}) == 0
    assert not thread.is_alive()
    assert np.array_equal(ReplayBuffer.open(str(tmp_path / "ds")).get_episode(0)["action"], data["action"])

    abandoned = buf.episode_writer(4, specs)
    abandoned.write("action", 0, data["action"])
    assert _writeback_running(abandoned)
    assert wait_for(lambda: not _writeback_running(abandoned), timeout=5), "the idle writeback thread did not end"
