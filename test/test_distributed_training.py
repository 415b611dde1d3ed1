"""`dpros train` under torchrun: two CPU processes (gloo) train data-parallel; after the steps both
hold identical weights (raw and EMA), only rank 0 writes the checkpoint, and the checkpoint is the
one a single process writes (loads as usual, equal to rank 0's EMA weights)."""
import json
import os
import subprocess
import sys

import numpy as np
import torch
from safetensors.torch import load_file

from diffusion_policy_ros.data.replay_buffer import ReplayBuffer
from diffusion_policy_ros.policy.checkpoint import load_checkpoint

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TINY = {"down_dims": [16, 32], "horizon": 8, "n_action_steps": 4, "step_embed_dim": 16, "full_sample_steps": 2,
        "ddim_steps": 2}


def test_two_processes_hold_identical_weights_and_only_rank_0_writes(tmp_path):
    dataset = ReplayBuffer.create(str(tmp_path / "ds"))
    rng = np.random.default_rng(0)
    for _ in range(3):
        q = np.cumsum(rng.normal(scale=0.05, size=(30, 7)), axis=0).astype(np.float32)
        dataset.add_episode({"obs/joint_pos": q, "action": q + 0.01, "timestamp": np.arange(30) / 10.0},
                            {"fps": 10.0, "joint_names": [f"joint_{i}" for i in range(6)] + ["gripper"]})
    out, report = tmp_path / "checkpoint", tmp_path / "report"
    report.mkdir()
    env = dict(os.environ, PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""), OMP_NUM_THREADS="1")
    result = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
         os.path.join(ROOT, "test", "ddp_train_probe.py"), str(out), str(report),
         "--dataset", str(tmp_path / "ds"), "--steps", "3", "--batch-size", "4", "--val-episodes", "0",
         "--checkpoint-every", "2", "--device", "cpu", "--policy", json.dumps(TINY)],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-4000:]
    ranks = [json.loads((report / f"rank{r}.json").read_text()) for r in (0, 1)]
    assert [r["world_size"] for r in ranks] == [2, 2] and [r["step"] for r in ranks] == [3, 3]
    assert ranks[0]["batch_rng_state"] != ranks[1]["batch_rng_state"], "both processes drew the same batches"
    weights = [load_file(str(report / f"rank{r}.safetensors")) for r in (0, 1)]
    assert weights[0].keys() == weights[1].keys()
    for key in weights[0]:
        assert torch.equal(weights[0][key], weights[1][key]), f"{key} differs between the ranks"
    assert ranks[1]["writes"] == [], f"rank 1 wrote {ranks[1]['writes']}"
    written = {os.path.basename(path) for _, path in ranks[0]["writes"]}
    assert {"model.safetensors", "config.json", "training_state.json", "loss_curve.png"} <= written, written
    policy = load_checkpoint(str(out), device="cpu")
    for key, value in policy.state_dict().items():
        assert torch.equal(value, weights[0][f"ema/{key}"]), key
    info = json.loads((out / "config.json").read_text())["training"]
    assert info["step"] == 3 and info["processes"] == 2
