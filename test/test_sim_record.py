"""`dpros sim record`: the scripted expert recorded headless (real MuJoCo) into a real dataset,
read back with the dataset reader; the recorder node's keys, metadata and action/observation
timing; --append and its refusal without it."""
import os
import shutil
import subprocess
import sys

os.environ.setdefault("MUJOCO_GL", "egl")

import numpy as np  # noqa: E402
import pytest  # noqa: E402

from diffusion_policy_ros.cli import sim_record  # noqa: E402
from diffusion_policy_ros.cli.main import main  # noqa: E402
from diffusion_policy_ros.data.episode_builder import streams_for_config  # noqa: E402
from diffusion_policy_ros.data.replay_buffer import ReplayBuffer  # noqa: E402
from diffusion_policy_ros.data.sequence_dataset import SequenceDataset  # noqa: E402
from diffusion_policy_ros.robot_config import load_robot_config  # noqa: E402
from diffusion_policy_ros.sim.env import SimEnv  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CONFIG = load_robot_config(os.path.join(ROOT, "config", "single_arm.yaml"))
FIRST_SEED = 1000
AFTER_SUCCESS = 8


def record(out, *extra):
    return main(["sim", "record", "--episodes", "2", "--first-seed", str(FIRST_SEED), "--cameras", "scene",
                 "--out", str(out), *extra])


@pytest.fixture(scope="module")
def recorded(tmp_path_factory):
    out = tmp_path_factory.mktemp("sim_record") / "pick_place"
    assert record(out) == 0
    return out


def test_episodes_have_the_recorder_keys_lengths_and_metadata(recorded):
    dataset = ReplayBuffer.open(recorded)
    assert dataset.n_episodes == 2
    # What demo_recorder_node records for the scene camera: no depth (off for it), both fingertips.
    recorder_keys = {s.key for s in streams_for_config(CONFIG, cameras=["scene"])}
    assert dataset.keys == sorted(recorder_keys | {"timestamp"})
    assert set(dataset.keys) == {"action", "obs/joint_pos", "obs/scene/rgb", "obs/finger_l/tactile",
                                 "obs/finger_r/tactile", "timestamp"}
    assert dataset.key_spec("obs/scene/rgb") == {"dtype": "uint8", "shape": [96, 96, 3]}
    for key in ("action", "obs/joint_pos"):
        assert dataset.key_spec(key) == {"dtype": "float32", "shape": [7]}
    assert dataset.key_spec("obs/finger_l/tactile") == {"dtype": "float32", "shape": [4, 4]}
    assert dataset.key_spec("timestamp") == {"dtype": "float64", "shape": []}
    for i in range(2):
        meta = dataset.episode_meta(i)
        length = dataset.episode_length(i)
        assert meta["seed"] == FIRST_SEED + i
        assert 0 < meta["success_step"] and length == meta["success_step"] + AFTER_SUCCESS
        assert meta["task"] == "pick up the red cube and place it on the green target"
        assert (meta["fps"], meta["robot"], meta["cameras"]) == (10.0, "single_arm", ["scene"])
        assert meta["joint_names"] == list(CONFIG.joint_names)
        assert (meta["dropped_frames"], meta["duplicated_frames"], meta["length"]) == (0, 0, length)
        assert meta["source"] == "dpros sim record"
        episode = dataset.get_episode(i)
        np.testing.assert_array_equal(episode["timestamp"], np.arange(length) / 10.0)
        assert episode["obs/scene/rgb"].std() > 10, "rendered frames, not blank ones"
    # The training reader takes it as it takes the recorder's datasets.
    windows = SequenceDataset(dataset, ["obs/joint_pos", "obs/scene/rgb"], horizon=16, n_obs_steps=2,
                              n_action_steps=8)
    assert windows.batch(np.arange(4))["action"].shape == (4, 16, 7)


def test_action_t_is_the_expert_target_issued_after_observing_obs_t(recorded):
    episode = ReplayBuffer.open(recorded).get_episode(0)
    actions, joints = episode["action"], episode["obs/joint_pos"]
    # Replaying the seed: obs[0] is the state before any action, the expert issues action[t] on
    # seeing obs[t], and holding it for one period gives obs[t + 1], exactly. (The sim is driven
    # with the expert's float64 target, stored as float32 like the recorder stores the message's.)
    with SimEnv(CONFIG, render=False) as env:
        env.reset(FIRST_SEED, observe=False)
        for t in range(len(actions)):
            np.testing.assert_array_equal(env.joint_positions().astype(np.float32), joints[t],
                                          err_msg=f"tick {t}")
            target = env.expert_action()
            np.testing.assert_array_equal(target.astype(np.float32), actions[t], err_msg=f"tick {t}")
            env.step(target, observe=False)
    # So the action leads the observation by one tick: it is where the arm is at t + 1, not at t.
    arm = slice(0, 6)
    now = np.abs(actions[:-1, arm] - joints[:-1, arm]).max(axis=1)
    next_ = np.abs(actions[:-1, arm] - joints[1:, arm]).max(axis=1)
    moving = now > 1e-3
    assert moving.sum() > len(moving) // 2
    assert np.all(next_[moving] < now[moving])
    assert next_.mean() < 0.1 * now.mean()


def test_an_episode_the_expert_fails_is_not_returned():
    keys = sim_record.dataset_keys(streams_for_config(CONFIG, cameras=[], tactile=False))
    with SimEnv(CONFIG, render=False) as env:
        env.task.episode_seconds = 1.0   # too short to reach the cube: the expert fails
        assert sim_record.record_episode(env, FIRST_SEED, keys, AFTER_SUCCESS) == (None, None)


def test_existing_dataset_is_refused_without_append(recorded):
    result = subprocess.run([sys.executable, "-m", "diffusion_policy_ros.cli.main", "sim", "record",
                             "--episodes", "1", "--cameras", "scene", "--out", str(recorded)],
                            capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert result.returncode != 0
    assert str(recorded) in result.stderr and "--append" in result.stderr, result.stderr
    assert ReplayBuffer.open(recorded).n_episodes == 2


def test_append_adds_episodes_and_refuses_other_keys(recorded, tmp_path, capsys):
    out = tmp_path / "appended"
    shutil.copytree(recorded, out)
    before = ReplayBuffer.open(out).get_episode(1)
    assert record(out, "--append", "--no-tactile") == 2
    assert "cannot append" in capsys.readouterr().err
    assert main(["sim", "record", "--episodes", "1", "--first-seed", "1002", "--cameras", "scene",
                 "--out", str(out), "--append"]) == 0
    dataset = ReplayBuffer.open(out)
    assert dataset.n_episodes == 3
    assert [dataset.episode_meta(i)["seed"] for i in range(3)] == [1000, 1001, 1002]
    after = dataset.get_episode(1)
    for key in before:
        np.testing.assert_array_equal(after[key], before[key])


def test_continuous_expert_on_a_moving_world_records_its_moves_and_corrections(tmp_path, capsys):
    out = tmp_path / "reactive"
    assert main(["sim", "record", "--config", os.path.join(ROOT, "config", "single_arm_reactive.yaml"),
                 "--episodes", "1", "--first-seed", "21003", "--cameras", "scene", "--no-tactile",
                 "--expert", "continuous", "--variant", "displaced", "--out", str(out)]) == 0
    dataset = ReplayBuffer.open(out)
    meta = dataset.episode_meta(0)
    assert meta["fps"] == 20.0 and meta["expert_mode"] == "continuous" and meta["task_variant"] == "displaced"
    (event,) = meta["world_events"]
    assert event["event"] == "cube displaced"
    actions = dataset.get_episode(0)["action"]
    moved = np.abs(np.diff(actions[:meta["success_step"], :6], axis=0)).max(axis=1)
    assert moved.min() > 1e-4, "the continuous expert rested before the task was done"
    assert main(["sim", "record", "--task", "handover", "--episodes", "1", "--expert", "continuous",
                 "--out", str(tmp_path / "handover")]) == 2
    assert "no continuous scripted expert for task 'handover'" in capsys.readouterr().err


def test_state_recording_without_cameras_keeps_the_poses_the_sim_observed(tmp_path):
    """`--cameras` with no names: no images, the config's object poses instead (a state policy's data)."""
    out = tmp_path / "state"
    assert main(["sim", "record", "--config", os.path.join(ROOT, "config", "single_arm_state.yaml"), "--episodes", "1",
                 "--first-seed", str(FIRST_SEED), "--cameras", "--no-tactile", "--out", str(out)]) == 0
    buf = ReplayBuffer.open(str(out))
    assert sorted(buf.keys) == ["action", "obs/joint_pos", "obs/object_pose", "obs/target_pose", "timestamp"]
    env = SimEnv(load_robot_config(os.path.join(ROOT, "config", "single_arm_state.yaml")), render=False)
    first = env.reset(FIRST_SEED)
    np.testing.assert_allclose(np.asarray(buf.get_array("obs/object_pose")[0]), first["obs/object_pose"], atol=1e-6)
    np.testing.assert_allclose(np.asarray(buf.get_array("obs/target_pose")[0]), first["obs/target_pose"], atol=1e-6)
