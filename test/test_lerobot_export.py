"""LeRobot v3 export: the files read back with pyarrow with the expected schema and counts, and
the videos decode to the recorded frames within codec error."""
import json
import subprocess
import sys

import numpy as np
import pyarrow.parquet as pq
import pytest

from diffusion_policy_ros.data.lerobot_export import ExportError, export_lerobot
from diffusion_policy_ros.data.replay_buffer import ReplayBuffer
from diffusion_policy_ros.data.video import read_frames
from diffusion_policy_ros.nodes.synthetic_sensors import synthetic_rgb

JOINTS = ["joint_1", "joint_2", "joint_3", "joint_4", "joint_5", "joint_6", "gripper"]
LENGTHS = [12, 7, 15]
TASKS = ["pick the cube", "place the cube", "pick the cube"]


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    path = tmp_path_factory.mktemp("ds") / "demos"
    buf = ReplayBuffer.create(str(path))
    rng = np.random.default_rng(0)
    k = 0
    for n, task in zip(LENGTHS, TASKS):
        buf.add_episode({
            "action": rng.normal(size=(n, 7)).astype(np.float32),
            "obs/joint_pos": rng.normal(size=(n, 7)).astype(np.float32),
            "obs/scene/rgb": np.stack([synthetic_rgb(k + i, 96, 96) for i in range(n)]),
            "obs/wrist/rgb": np.stack([synthetic_rgb(k + i, 64, 80, 2) for i in range(n)]),
            "obs/wrist/depth": rng.random((n, 64, 80)).astype(np.float32),
            "obs/finger_l/tactile": rng.random((n, 4, 4)).astype(np.float32),
            "timestamp": 1000.0 + k * 0.1 + np.arange(n) * 0.1,
        }, {"task": task, "fps": 10.0, "robot": "single_arm", "joint_names": JOINTS})
        k += n + 5
    return ReplayBuffer.open(str(path))


def test_export_layout_schema_and_counts(dataset, tmp_path):
    out = tmp_path / "lerobot"
    rc = subprocess.run([sys.executable, "-m", "diffusion_policy_ros.cli.main", "export", "lerobot",
                         dataset.path, str(out)], capture_output=True, text=True)
    assert rc.returncode == 0, rc.stderr
    info = json.loads((out / "meta/info.json").read_text())
    assert info["codebase_version"] == "v3.0" and info["fps"] == 10
    assert info["total_episodes"] == 3 and info["total_frames"] == sum(LENGTHS) and info["total_tasks"] == 2
    feats = info["features"]
    assert feats["action"] == {"dtype": "float32", "shape": [7], "names": JOINTS}
    assert feats["observation.images.scene"]["dtype"] == "video"
    assert feats["observation.images.wrist"]["shape"] == [64, 80, 3]
    assert feats["observation.depth.wrist"]["shape"] == [64, 80]
    assert feats["observation.tactile.finger_l"]["shape"] == [4, 4]

    table = pq.read_table(out / "data/chunk-000/file-000.parquet")
    assert set(table.column_names) == {k for k, f in feats.items() if f["dtype"] != "video"}
    assert table.num_rows == sum(LENGTHS)
    assert str(table.schema.field("action").type) == "fixed_size_list<element: float>[7]"
    assert table.schema.field("timestamp").type == "float"
    assert table.schema.field("index").type == "int64"
    np.testing.assert_array_equal(table["index"].to_numpy(), np.arange(sum(LENGTHS)))
    ep_idx = table["episode_index"].to_numpy()
    assert [int(np.sum(ep_idx == i)) for i in range(3)] == LENGTHS
    np.testing.assert_allclose(np.stack(table["action"].to_numpy(zero_copy_only=False))[:12],
                               dataset.get_episode(0)["action"])
    depth = np.asarray(table.slice(12, 1)["observation.depth.wrist"].to_pylist()[0], np.float32)
    np.testing.assert_allclose(depth, dataset.get_episode(1)["obs/wrist/depth"][0])
    assert table["timestamp"].to_numpy()[12] == 0.0                 # relative to each episode

    episodes = pq.read_table(out / "meta/episodes/chunk-000/file-000.parquet").to_pylist()
    assert [e["length"] for e in episodes] == LENGTHS
    assert [e["tasks"] for e in episodes] == [[t] for t in TASKS]
    assert [e["dataset_from_index"] for e in episodes] == [0, 12, 19]
    assert episodes[1]["videos/observation.images.scene/from_timestamp"] == pytest.approx(1.2)
    assert episodes[1]["videos/observation.images.scene/to_timestamp"] == pytest.approx(1.9)
    tasks = pq.read_table(out / "meta/tasks.parquet").to_pylist()
    assert tasks == [{"task_index": 0, "task": "pick the cube"}, {"task_index": 1, "task": "place the cube"}]
    task_idx = table["task_index"].to_numpy()
    assert task_idx[0] == 0 and task_idx[12] == 1 and task_idx[19] == 0
    stats = json.loads((out / "meta/stats.json").read_text())
    all_actions = np.concatenate([dataset.get_episode(i)["action"] for i in range(3)])
    np.testing.assert_allclose(stats["action"]["mean"], all_actions.mean(0), atol=1e-5)
    np.testing.assert_allclose(stats["action"]["std"], all_actions.std(0), atol=1e-5)
    assert np.shape(stats["observation.images.scene"]["mean"]) == (3, 1, 1)


def test_videos_decode_to_the_recorded_frames(dataset, tmp_path):
    out = tmp_path / "lerobot"
    export_lerobot(dataset, str(out))
    episodes = pq.read_table(out / "meta/episodes/chunk-000/file-000.parquet").to_pylist()
    for key, zkey in (("observation.images.scene", "obs/scene/rgb"), ("observation.images.wrist", "obs/wrist/rgb")):
        decoded = list(read_frames(str(out / f"videos/{key}/chunk-000/file-000.mp4")))
        assert len(decoded) == sum(LENGTHS)
        for i, ep in enumerate(episodes):
            frames = dataset.get_episode(i)[zkey]
            start = ep[f"videos/{key}/from_timestamp"]
            picked = [f for t, f in decoded if start - 1e-3 <= t < ep[f"videos/{key}/to_timestamp"] - 1e-3]
            assert len(picked) == len(frames)
            err = np.abs(np.stack(picked).astype(int) - frames.astype(int))
            assert err.mean() < 2.0 and np.percentile(err, 99) < 12      # H.264 crf 18, yuv420p
            # Each decoded frame is closest to its own recorded frame, not a neighbour.
            for j, f in enumerate(picked):
                dists = [np.abs(f.astype(int) - g.astype(int)).mean() for g in frames]
                assert int(np.argmin(dists)) == j


def test_refuses_to_overwrite_and_empty_dataset(dataset, tmp_path):
    (tmp_path / "busy").mkdir()
    (tmp_path / "busy" / "x").write_text("keep me")
    with pytest.raises(ExportError, match="not empty"):
        export_lerobot(dataset, str(tmp_path / "busy"))
    with pytest.raises(ExportError, match="no episodes"):
        export_lerobot(ReplayBuffer.create(str(tmp_path / "empty")), str(tmp_path / "out"))
