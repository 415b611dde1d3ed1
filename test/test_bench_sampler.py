"""`dpros bench sampler` on the shipped checkpoint as a fresh clone has it (no dataset): it records
its observation stream in the sim, says so, and compares the checkpoint's own streaming settings
with a cheaper and a dearer neighbour, run after run."""
import dataclasses
import json
import os
import subprocess
import sys

import pytest

from diffusion_policy_ros.cli.bench_sampler import parse_stream_steps, robot_for
from diffusion_policy_ros.cli.errors import UsageError
from diffusion_policy_ros.evaluation.sampler_benchmark import streaming_name, streaming_neighbours, streaming_settings
from diffusion_policy_ros.policy.checkpoint import load_checkpoint
from diffusion_policy_ros.policy.configuration import PolicyConfig

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SHIPPED = os.path.join(ROOT, "checkpoints", "single_arm_pick_place")
SHIPPED_REACTIVE = os.path.join(ROOT, "checkpoints", "single_arm_reactive")


def test_neighbours_keep_the_checkpoint_valid():
    base = PolicyConfig(obs_shapes={"obs/joint_pos": [7]}, joint_names=[f"j{i}" for i in range(7)])
    renoised = dataclasses.replace(base, stream_denoising_steps=[50, 25, 0], stream_renoise_level=50,
                                   stream_execute_steps=8).validate()
    variants = streaming_neighbours(renoised)
    assert [v["stream_denoising_steps"] for v in variants] == [[50, 25, 0], [50, 0], [50, 33, 17, 0]]
    assert all(v["stream_renoise_level"] == 50 and v["stream_execute_steps"] == 8 for v in variants)
    one_step = dataclasses.replace(base, stream_denoising_steps=[1]).validate()   # nothing is cheaper
    assert [v["stream_denoising_steps"] for v in streaming_neighbours(one_step)] == [[1], [1, 0]]
    for config, variant in [(renoised, v) for v in variants] + [(one_step, v) for v in streaming_neighbours(one_step)]:
        dataclasses.replace(config, sampler="streaming", **variant).validate()


def test_stream_steps_name_the_levels_run_ahead_before_a_bar():
    assert parse_stream_steps("50,0; 50|0;50,25|0") == [([50, 0], 0), ([50, 0], 1), ([50, 25, 0], 2)]
    config = PolicyConfig(obs_shapes={"obs/joint_pos": [7]}, joint_names=[f"j{i}" for i in range(7)],
                          stream_denoising_steps=[50, 0], stream_renoise_level=50, stream_execute_steps=2)
    names = [streaming_name(streaming_settings(config, levels, ahead)) for levels, ahead in parse_stream_steps("50,0;50|0")]
    assert names == ["streaming[50,0]", "streaming[50|0]"]
    for bad in ("50,x", ";", "50|"):
        with pytest.raises(UsageError):
            parse_stream_steps(bad)


def test_the_sim_stream_runs_at_the_checkpoints_control_rate():
    for checkpoint, expected in [(SHIPPED, "single_arm"), (SHIPPED_REACTIVE, "single_arm_reactive")]:
        policy = load_checkpoint(checkpoint, device="cpu")
        name, robot = robot_for(policy, None)
        assert (name, robot.control_rate_hz) == (expected, policy.config.control_rate_hz)


def test_shipped_checkpoint_without_its_dataset(tmp_path):
    # cwd without data/: the checkpoint names data/pick_place_expert_200, absent as on a fresh clone
    env = dict(os.environ, PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""))
    result = subprocess.run([sys.executable, "-m", "diffusion_policy_ros.cli.main", "bench", "sampler",
                             "--checkpoint", SHIPPED, "--steps", "24", "--repeats", "2", "--json", str(tmp_path / "sampler.json")],
                            cwd=tmp_path, env=env, capture_output=True, text=True, timeout=900)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "'data/pick_place_expert_200' is not here: recording 24 control steps of the scripted expert in the " \
        "sim (single_arm)" in result.stdout, result.stdout
    doc = json.loads((tmp_path / "sampler.json").read_text())
    assert "scripted expert" in doc["stream_source"] and doc["control_steps"] == 24
    assert [m["method"] for m in doc["methods"]] == [
        "ddpm-100", "ddim-16", "streaming[50,25,0]", "streaming[50,0]", "streaming[50,33,17,0]"]
    for method in doc["methods"]:
        assert method["nfe_per_action"] > 0 and method["step_latency_ms"]["max"] > 0
        assert "action_error_vs_demo" in method, "the expert's actions are the stream's demonstrations"
        assert len(method["repeats"]["worst_step_ratio_vs_ddpm"]) == 2 and all(
            r > 0 for r in method["repeats"]["p99_ratio_vs_ddpm"])
    assert doc["methods"][0]["repeats"]["worst_step_ratio_vs_ddpm"] == [1.0, 1.0]
    assert "ratios to DDPM-100 over 2 runs" in result.stdout
    nfe = {m["method"]: m["nfe_per_action"] for m in doc["methods"]}
    assert nfe["streaming[50,0]"] < nfe["streaming[50,25,0]"] < nfe["streaming[50,33,17,0]"] < nfe["ddpm-100"]
    assert (tmp_path / "sampler_latency.png").stat().st_size > 0
