"""End to end on CPU: write a bimodal 2-D trajectory dataset, train a tiny policy, and check that
samples land in both modes and not between them, with full (DDPM, DDIM) and streaming sampling.
Also: resume continues from the saved step and training time, the loss curve is written, `dpros eval
offline` runs."""
import json
import os
import time

import numpy as np
import pytest
import torch

from diffusion_policy_ros.data.sequence_dataset import SequenceDataset
from diffusion_policy_ros.policy.checkpoint import load_checkpoint
from diffusion_policy_ros.policy.configuration import PolicyConfig
from diffusion_policy_ros.training.synthetic import write_bimodal_dataset
from diffusion_policy_ros.training.trainer import TrainConfig, Trainer

STEPS = 1000


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    torch.set_num_threads(1)   # small ops: more threads only add contention
    root = tmp_path_factory.mktemp("bimodal")
    buf = write_bimodal_dataset(str(root / "ds"), n_episodes=40)
    cfg = PolicyConfig(obs_shapes={"obs/joint_pos": [2]}, joint_names=["x", "y"], down_dims=[32, 64],
                       step_embed_dim=32, horizon=16, n_obs_steps=2, n_action_steps=8, discrete_method="none",
                       full_sample_method="ddpm", full_sample_steps=100, device="cpu")
    ds = SequenceDataset(buf, ["obs/joint_pos"], cfg.horizon, cfg.n_obs_steps, cfg.n_action_steps,
                         episodes=range(38))
    tc = TrainConfig(steps=STEPS, batch_size=128, lr=3e-3, warmup_steps=40, ema_max_decay=0.995,
                     checkpoint_every=STEPS // 2, device="cpu")
    out = str(root / "ckpt")
    trainer = Trainer(cfg, ds, tc, out_dir=out, extra_info={"dataset": buf.path, "held_out_episodes": [38, 39]})
    trainer.train(progress=False, until=STEPS // 2)      # stop half way, then resume in a fresh trainer
    half_way_seconds = read_training_info(out)["train_seconds"]
    resumed = Trainer(cfg, ds, tc, out_dir=out, extra_info={"dataset": buf.path, "held_out_episodes": [38, 39]})
    assert resumed.resume() and resumed.step == STEPS // 2
    started = time.perf_counter()
    resumed.train(progress=False)
    return out, resumed, (half_way_seconds, time.perf_counter() - started)


def read_training_info(checkpoint_dir):
    with open(os.path.join(checkpoint_dir, "config.json"), encoding="utf-8") as f:
        return json.load(f)["training"]


def mid_heights(policy, sampler, seeds=24, **overrides):
    """Closed-loop rollouts from the origin; height of the path half way (modes are about +-1)."""
    policy.set_sampler(sampler, **overrides)
    heights = []
    for seed in range(seeds):
        policy.reset(seed=seed)
        position = np.zeros(2, np.float32)
        for k in range(17):
            position = policy.select_action({"obs/joint_pos": position}, k * 0.1)
        heights.append(position[1])
    return np.asarray(heights)


def assert_bimodal(heights):
    upper, lower = np.sum(heights > 0.6), np.sum(heights < -0.6)
    assert upper >= 3 and lower >= 3, f"one mode only: {np.round(heights, 2)}"
    assert np.all(np.abs(heights) > 0.5), f"samples between the modes: {np.round(heights, 2)}"


def test_training_ran_and_resumed(trained):
    out, trainer, (half_way_seconds, resumed_seconds) = trained
    assert trainer.step == STEPS and len(trainer.losses) == STEPS
    # the checkpoint's training time adds both runs: resuming does not start the clock from zero
    assert half_way_seconds > 0.0
    added = read_training_info(out)["train_seconds"] - half_way_seconds
    assert abs(added - resumed_seconds) <= 0.1 * resumed_seconds + 0.5, (half_way_seconds, added, resumed_seconds)
    assert np.mean([l for _, l in trainer.losses[-50:]]) < 0.5 * np.mean([l for _, l in trainer.losses[:50]])
    assert os.path.getsize(os.path.join(out, "loss_curve.png")) > 1000


def test_full_sampling_covers_both_modes(trained):
    policy = load_checkpoint(trained[0], device="cpu")
    assert_bimodal(mid_heights(policy, "ddpm"))


def test_streaming_covers_both_modes(trained):
    policy = load_checkpoint(trained[0], device="cpu")
    heights = mid_heights(policy, "streaming", stream_denoising_steps=[1])
    assert_bimodal(heights)
    assert policy.nfe_per_action < 100 / 17 + 1.0 + 1e-9     # one cold start, then 1 NFE per action


def test_eval_offline_cli(trained, capsys):
    from diffusion_policy_ros.cli.main import main
    assert main(["eval", "offline", "--checkpoint", trained[0], "--sampler", "streaming", "--device", "cpu"]) == 0
    out = capsys.readouterr().out
    assert "in normalized action units" in out and " rad" in out, out
