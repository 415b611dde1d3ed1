"""The main job's pipeline in miniature, through the real commands a user runs: record expert
demonstrations through the recorder node, train on them, deploy the checkpoint in the sim through
the node graph. Each stage must produce what the next consumes (no success rate is asserted:
two demos and a few training steps teach nothing)."""
import json
import subprocess
import sys

import numpy as np

from diffusion_policy_ros.data.replay_buffer import ReplayBuffer
from diffusion_policy_ros.policy.checkpoint import load_checkpoint
from diffusion_policy_ros.policy.configuration import robot_obs_shapes
from diffusion_policy_ros.robot_config import load_robot_config

CONFIG = "config/single_arm.yaml"
TINY_POLICY = {"down_dims": [32, 64, 128], "rgb_channels": [8, 16], "image_feature_dim": 32,
               "step_embed_dim": 32, "full_sample_steps": 4, "ddim_steps": 4}


def dpros(*args, env, timeout):
    result = subprocess.run([sys.executable, "-m", "diffusion_policy_ros.cli.main", *args], env=env,
                            capture_output=True, text=True, timeout=timeout)
    assert result.returncode == 0, f"dpros {' '.join(args)} failed:\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}"
    return result.stdout


def test_record_train_and_deploy_in_the_sim(tmp_path, ros_env):
    robot = load_robot_config(CONFIG)
    dpros("up", "record", "--config", CONFIG, "--episodes", "2", "--seed", "7",
          "--set", f"record_dataset_root:={tmp_path}", "--set", "record_dataset_name:=demos", env=ros_env,
          timeout=240)
    dataset = ReplayBuffer.open(str(tmp_path / "demos"))
    assert dataset.n_episodes == 2
    for i in range(2):
        episode = dataset.get_episode(i)
        assert len(episode["action"]) >= 30, "an expert episode lasts several seconds at 10 Hz"
        assert episode["action"].shape[1] == robot.action_dim
        assert episode["obs/scene/rgb"].shape[1:] == (96, 96, 3)
        assert "red cube" in dataset.episode_meta(i)["task"]

    checkpoint = tmp_path / "checkpoint"
    dpros("train", "--dataset", str(tmp_path / "demos"), "--out", str(checkpoint), "--config", CONFIG,
          "--obs-keys", "obs/joint_pos", "obs/scene/rgb", "--steps", "20", "--batch-size", "8",
          "--val-episodes", "0", "--policy", json.dumps(TINY_POLICY), env=ros_env, timeout=300)
    policy = load_checkpoint(str(checkpoint), "cpu")
    policy.config.validate_against(robot_obs_shapes(robot), robot.joint_names)

    out = tmp_path / "eval"
    dpros("eval", "sim", "--checkpoint", str(checkpoint), "--config", CONFIG, "--episodes", "1",
          "--samplers", "streaming", "--timeout-s", "3", "--real-time-factor", "streaming=0.5,ddpm=0.2",
          "--out", str(out), env=ros_env, timeout=300)
    report = json.loads((out / "sim_eval.json").read_text())
    assert report["real_time_factor"] == {"streaming": 0.5}
    streaming = report["methods"]["streaming"]
    assert streaming["episodes"] == 1
    assert streaming["nfe_per_action"] > 0
    assert np.isfinite(streaming["end_to_end_latency_ms"]["p50"]), "no policy command reached the sim"
    assert (out / "sim_eval.png").stat().st_size > 0
