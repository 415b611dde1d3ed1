"""Replay buffer on disk: append, reopen, crash consistency, corrupt stores, training windows."""
import json
import os

import numpy as np
import pytest

from diffusion_policy_ros.data.replay_buffer import DatasetError, ReplayBuffer
from diffusion_policy_ros.data.sequence_dataset import SequenceDataset


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


def test_crash_between_data_and_commit_keeps_previous_episodes(tmp_path):
    path = str(tmp_path / "ds")
    buf = ReplayBuffer.create(path)
    buf.add_episode(episode(5), {"task": "a"})
    commit = os.path.join(path, "meta", "episodes.json")
    before = open(commit).read()
    buf.add_episode(episode(6, 50.0), {"task": "b"})
    with open(commit, "w") as f:     # simulate: arrays of episode 1 written, commit never happened
        f.write(before)
    reopened = ReplayBuffer.open(path, mode="a")
    assert reopened.n_episodes == 1 and reopened.n_steps == 5
    assert reopened.get_array("action").shape[0] == 11          # leftover rows exist but are ignored
    assert np.array_equal(reopened.get_episode(0)["action"], episode(5)["action"])
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
