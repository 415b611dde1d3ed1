"""Checkpoints: bit-exact round trip; pickles and mismatched configs are refused clearly."""
import json
import os
import pickle

import numpy as np
import pytest
import torch

from diffusion_policy_ros.policy.checkpoint import CheckpointError, load_checkpoint, read_config, save_checkpoint
from diffusion_policy_ros.policy.configuration import PolicyConfig, PolicyConfigError
from diffusion_policy_ros.policy.modeling import DiffusionPolicy
from diffusion_policy_ros.policy.normalizer import MinMaxNormalizer

OBS = {"obs/joint_pos": [3], "obs/cam/rgb": [24, 24, 3], "obs/cam/depth": [24, 24], "obs/tip/tactile": [2, 2]}


def make_policy():
    cfg = PolicyConfig(obs_shapes=OBS, joint_names=["a", "b", "gripper"], gripper_dims=[2], down_dims=[16, 32],
                       step_embed_dim=16, horizon=8, n_action_steps=4, rgb_crop=[20, 20], rgb_channels=[8, 8],
                       rgb_keypoints=4, image_feature_dim=8, tactile_feature_dim=4, device="cpu")
    rng = np.random.default_rng(0)
    norm = MinMaxNormalizer.fit({"action": rng.normal(size=(30, 3)), "obs/joint_pos": rng.normal(size=(30, 3)),
                                 "obs/tip/tactile": rng.uniform(size=(30, 2, 2))})
    torch.manual_seed(1)
    return DiffusionPolicy(cfg, norm).to_device("cpu")


def observation(n=2):
    rng = np.random.default_rng(3)
    return {"obs/joint_pos": rng.normal(size=(n, 3)).astype(np.float32),
            "obs/cam/rgb": rng.integers(0, 255, (n, 24, 24, 3), dtype=np.uint8),
            "obs/cam/depth": rng.uniform(0, 3, (n, 24, 24)).astype(np.float32),
            "obs/tip/tactile": rng.uniform(size=(n, 2, 2)).astype(np.float32)}


def test_round_trip_is_bit_exact(tmp_path):
    policy = make_policy()
    save_checkpoint(str(tmp_path / "ck"), policy, training={"step": 3})
    loaded = load_checkpoint(str(tmp_path / "ck"), device="cpu")
    a, b = policy.state_dict(), loaded.state_dict()
    assert a.keys() == b.keys()
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert loaded.config == policy.config
    for key, stats in policy.normalizer.stats.items():
        assert np.array_equal(stats["min"], loaded.normalizer.stats[key]["min"])
        assert np.array_equal(stats["max"], loaded.normalizer.stats[key]["max"])
    noise = np.random.default_rng(0).normal(size=(8, 3)).astype(np.float32)
    assert np.array_equal(policy.sample_from_noise(observation(), noise), loaded.sample_from_noise(observation(), noise))
    assert read_config(str(tmp_path / "ck"))[2] == {"step": 3}
    # only safetensors + json on disk
    assert sorted(os.listdir(tmp_path / "ck")) == ["config.json", "model.safetensors"]


def test_sample_from_noise_is_deterministic_and_noise_dependent():
    policy = make_policy()
    noise = np.random.default_rng(0).normal(size=(8, 3)).astype(np.float32)
    first = policy.sample_from_noise(observation(), noise)
    assert np.array_equal(first, policy.sample_from_noise(observation(), noise))
    assert np.array_equal(policy.sample_from_noise(observation(), noise, method="ddpm", num_steps=10, seed=4),
                          policy.sample_from_noise(observation(), noise, method="ddpm", num_steps=10, seed=4))
    assert not np.array_equal(first[:, :2], policy.sample_from_noise(observation(), -noise)[:, :2])


def test_pickle_payload_is_refused(tmp_path):
    policy = make_policy()
    folder = tmp_path / "ck"
    save_checkpoint(str(folder), policy)
    with open(folder / "model.safetensors", "wb") as f:
        pickle.dump({"weights": [1, 2, 3]}, f)
    with pytest.raises(CheckpointError, match="pickle"):
        load_checkpoint(str(folder))
    torch.save(policy.state_dict(), folder / "model.safetensors")
    with pytest.raises(CheckpointError, match="pickle"):
        load_checkpoint(str(folder))
    save_checkpoint(str(folder), policy)
    torch.save({}, folder / "extra.pt")
    with pytest.raises(CheckpointError, match="pickle"):
        load_checkpoint(str(folder))


def edit_config(folder, change):
    path = folder / "config.json"
    doc = json.loads(path.read_text())
    change(doc)
    path.write_text(json.dumps(doc))


def test_config_with_wrong_shapes_is_refused(tmp_path):
    folder = tmp_path / "ck"
    save_checkpoint(str(folder), make_policy())
    edit_config(folder, lambda d: d["policy"].update(down_dims=[16, 64]))
    with pytest.raises(CheckpointError, match="do not match its config"):
        load_checkpoint(str(folder))
    save_checkpoint(str(folder), make_policy())
    edit_config(folder, lambda d: d["policy"]["obs_shapes"].update({"obs/tip/tactile": [3, 3]}))
    with pytest.raises(CheckpointError, match="wrong shape"):
        load_checkpoint(str(folder))
    save_checkpoint(str(folder), make_policy())
    edit_config(folder, lambda d: d["policy"]["obs_shapes"].update({"obs/cam/rgb": [24, 24]}))
    with pytest.raises(CheckpointError, match="rgb"):
        load_checkpoint(str(folder))
    save_checkpoint(str(folder), make_policy())
    edit_config(folder, lambda d: d["normalizer"].pop("action"))
    with pytest.raises(PolicyConfigError, match="normalizer"):
        load_checkpoint(str(folder))
    (folder / "config.json").write_text("{not json")
    with pytest.raises(CheckpointError, match="not valid JSON"):
        load_checkpoint(str(folder))


def test_validate_against_robot():
    cfg = make_policy().config
    cfg.validate_against({**OBS, "obs/other/rgb": [5, 5, 3]}, ["a", "b", "gripper"])
    with pytest.raises(PolicyConfigError, match="joints"):
        cfg.validate_against(OBS, ["a", "gripper", "b"])
    with pytest.raises(PolicyConfigError, match="obs/cam/depth missing"):
        cfg.validate_against({k: v for k, v in OBS.items() if k != "obs/cam/depth"}, ["a", "b", "gripper"])
    with pytest.raises(PolicyConfigError, match="shape"):
        cfg.validate_against({**OBS, "obs/cam/rgb": [48, 48, 3]}, ["a", "b", "gripper"])


# ---------------------------------------------------------------- hostile checkpoints (issue 11, finding 6)
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SHIPPED = os.path.join(ROOT, "checkpoints", "single_arm_pick_place")

# Loads each folder given on the command line in a process whose address space is capped at what it
# already maps plus 1.5 GiB: a config that allocates before checking its sizes dies of MemoryError
# (or takes its time) instead of taking this machine's memory.
_LIMITED_LOADER = """
import json, resource, sys
from diffusion_policy_ros.policy.checkpoint import load_checkpoint
with open("/proc/self/status") as f:
    mapped = next(int(line.split()[1]) * 1024 for line in f if line.startswith("VmSize:"))
resource.setrlimit(resource.RLIMIT_AS, (mapped + (3 << 29), resource.RLIM_INFINITY))
for folder in sys.argv[1:]:
    try:
        load_checkpoint(folder, device="cpu")
        print(json.dumps([folder, "loaded", ""]), flush=True)
    except BaseException as e:
        print(json.dumps([folder, type(e).__name__, str(e)]), flush=True)
"""


def load_with_memory_cap(folders, timeout=120):
    """{folder: (error type name or 'loaded', message)} from loading in a memory-capped process."""
    import subprocess
    import sys
    env = dict(os.environ, PYTHONPATH=os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    out = subprocess.run([sys.executable, "-c", _LIMITED_LOADER, *map(str, folders)], capture_output=True,
                         text=True, timeout=timeout, env=env)
    results = {}
    for line in out.stdout.splitlines():
        folder, kind, message = json.loads(line)
        results[folder] = (kind, message)
    assert len(results) == len(folders), out.stderr[-2000:]
    return results


def saved_checkpoint(folder, **policy_changes):
    save_checkpoint(str(folder), make_policy())
    edit_config(folder, lambda d: d["policy"].update(policy_changes))
    return folder


def test_estimated_parameter_count_is_exact():
    from diffusion_policy_ros.policy.configuration import estimated_parameters
    policy = make_policy()
    assert sum(estimated_parameters(policy.config).values()) == sum(p.numel() for p in policy.parameters())
    shipped = load_checkpoint(SHIPPED, device="cpu")
    assert sum(estimated_parameters(shipped.config).values()) == sum(p.numel() for p in shipped.parameters())


def test_oversized_configs_are_refused_before_anything_is_allocated(tmp_path):
    cases = {  # folder -> the field the refusal must name
        saved_checkpoint(tmp_path / "wide", down_dims=[16, 1 << 20]): "down_dims",
        saved_checkpoint(tmp_path / "deep_unet", down_dims=[4096] * 4, horizon=64): "down_dims",
        saved_checkpoint(tmp_path / "history", n_obs_steps=1000, horizon=1024): "n_obs_steps",
        saved_checkpoint(tmp_path / "levels", num_train_timesteps=30_000_000): "num_train_timesteps",
        saved_checkpoint(tmp_path / "image", obs_shapes={**OBS, "obs/cam/rgb": [200_000, 200_000, 3]}): "obs/cam/rgb",
        saved_checkpoint(tmp_path / "encoder", rgb_channels=[4096, 4096], obs_shapes={
            **OBS, "obs/cam/rgb": [4096, 4096, 3]}, rgb_crop=[4096, 4096]): "rgb_channels",
        saved_checkpoint(tmp_path / "typed", down_dims=["16", 32]): "down_dims",
    }
    results = load_with_memory_cap(list(cases))
    for folder, field in cases.items():
        kind, message = results[str(folder)]
        assert kind == "CheckpointError" and field in message, (folder.name, kind, message)


def test_config_json_must_be_a_regular_file_of_bounded_size(tmp_path):
    device = saved_checkpoint(tmp_path / "device")
    os.unlink(device / "config.json")
    os.symlink("/dev/zero", device / "config.json")
    padded = saved_checkpoint(tmp_path / "padded")
    with open(padded / "config.json", "a") as f:
        f.write(" " * (64 << 20))
    results = load_with_memory_cap([device, padded])
    assert results[str(device)][0] == "CheckpointError" and "regular file" in results[str(device)][1]
    assert results[str(padded)][0] == "CheckpointError" and "bytes" in results[str(padded)][1]


def test_deeply_nested_config_is_a_clear_error(tmp_path):
    folder = saved_checkpoint(tmp_path / "ck")
    (folder / "config.json").write_text("[" * 200_000 + "]" * 200_000)
    with pytest.raises(CheckpointError, match="nested"):
        load_checkpoint(str(folder))


def test_weights_of_another_dtype_are_reported_as_dtype(tmp_path):
    from safetensors.torch import save_file
    folder = saved_checkpoint(tmp_path / "ck")
    save_file({k: v.half() for k, v in make_policy().state_dict().items()}, str(folder / "model.safetensors"))
    with pytest.raises(CheckpointError, match="dtype") as error:
        load_checkpoint(str(folder))
    assert "F16" in str(error.value) and "wrong shape" not in str(error.value)


def test_normalizer_of_the_wrong_shape_fails_at_load(tmp_path):
    folder = saved_checkpoint(tmp_path / "ck")
    edit_config(folder, lambda d: d["normalizer"]["action"].update(min=[0.0] * 5, max=[1.0] * 5))
    with pytest.raises(CheckpointError, match="normalizer.*action"):
        read_config(str(folder))
    save_checkpoint(str(folder), make_policy())
    edit_config(folder, lambda d: d["normalizer"]["obs/tip/tactile"].update(min=[0.0] * 4, max=[1.0] * 4))
    with pytest.raises(CheckpointError, match="obs/tip/tactile"):
        load_checkpoint(str(folder))


@pytest.mark.parametrize("bad", [float("nan"), float("inf")])
def test_non_finite_weights_are_refused_at_load(tmp_path, bad):
    from safetensors.torch import save_file
    folder = saved_checkpoint(tmp_path / "ck")
    weights = make_policy().state_dict()
    name = sorted(k for k in weights if k.startswith("unet."))[0]
    weights[name] = weights[name].clone()
    weights[name].view(-1)[0] = bad
    save_file(weights, str(folder / "model.safetensors"))
    with pytest.raises(CheckpointError, match=f"NaN or Inf.*{name}"):
        load_checkpoint(str(folder))


def test_other_format_version_is_refused_clearly(tmp_path):
    folder = saved_checkpoint(tmp_path / "ck")
    edit_config(folder, lambda d: d.update(format_version=2))
    with pytest.raises(CheckpointError, match="format_version 2.*supports 1"):
        load_checkpoint(str(folder))


def random_history(policy, rng):
    """An observation history the shipped single-arm policy accepts: joints inside its trained
    range, random scene images."""
    cfg = policy.config
    lo, hi = (policy.normalizer.stats["obs/joint_pos"][k] for k in ("min", "max"))
    return {"obs/joint_pos": rng.uniform(lo, hi, size=(cfg.n_obs_steps, len(lo))).astype(np.float32),
            "obs/scene/rgb": rng.integers(0, 255, (cfg.n_obs_steps, 96, 96, 3), dtype=np.uint8)}


def test_shipped_checkpoint_loads_and_produces_a_chunk():
    policy = load_checkpoint(SHIPPED, device="cpu")
    cfg = policy.config
    history = random_history(policy, np.random.default_rng(0))
    chunk = policy.predict_action_chunk(history, obs_time=0.0)
    assert chunk.shape == (cfg.n_action_steps, len(cfg.joint_names))
    # clip_sample keeps the model's output in [-1, 1], so targets stay inside the trained range
    action_lo, action_hi = (policy.normalizer.stats["action"][k] for k in ("min", "max"))
    assert np.all(np.isfinite(chunk))
    assert np.all(chunk >= action_lo - 1e-5) and np.all(chunk <= action_hi + 1e-5)


def test_the_compiled_denoiser_computes_what_the_module_does():
    policy = load_checkpoint(SHIPPED, device="cpu")
    keys = set(policy.state_dict())
    cfg = policy.config
    x = torch.randn(1, cfg.horizon, cfg.action_dim, generator=torch.Generator().manual_seed(0))
    cond = torch.randn(1, policy.obs_encoder.output_dim, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        eager = [policy.denoiser(cond)(x, t) for t in (0, 25, 99)]
        assert policy.compile_for_inference()
        compiled = policy.denoiser(cond)
        for t, expected in zip((0, 25, 99), eager):
            np.testing.assert_allclose(compiled(x, t).numpy(), expected.numpy(), atol=1e-5)
        assert not torch.equal(compiled(x, 25), compiled(x, 99))   # the step still reaches the network
    assert set(policy.state_dict()) == keys    # nothing joins the checkpoint
    x.requires_grad_(True)
    policy.denoiser(cond)(x, 25).sum().backward()   # gradients (NCDPO) take the module
    assert x.grad is not None and torch.isfinite(x.grad).all()


def test_inference_after_training_mode_runs_in_eval_mode():
    """The policy switches to eval mode only when a part of it is training (eval() walks every
    module at every inference otherwise); a policy left in training mode (random crops) still
    infers as in eval mode."""
    policy = load_checkpoint(SHIPPED, device="cpu")
    cfg = policy.config
    history = random_history(policy, np.random.default_rng(0))
    policy.reset(0)
    expected = policy.predict_action_chunk(history, obs_time=0.0)
    policy.obs_encoder.train()
    policy._step_features.clear()
    policy.reset(0)
    got = policy.predict_action_chunk(history, obs_time=0.0)
    assert not any(module.training for module in policy.modules())
    np.testing.assert_allclose(got, expected, atol=1e-6)


def test_the_shipped_reactive_checkpoint_fits_its_config():
    """Issue 14's second shipped checkpoint: at most 20 MB, the observations, joints and 20 Hz rate
    of config/single_arm_reactive.yaml, and a refinement every 1-2 control steps with at most 3
    denoiser evaluations."""
    from diffusion_policy_ros.policy.configuration import robot_obs_shapes
    from diffusion_policy_ros.robot_config import load_robot_config

    folder = os.path.join(ROOT, "checkpoints", "single_arm_reactive")
    assert os.path.getsize(os.path.join(folder, "model.safetensors")) <= 20 * 2**20
    robot = load_robot_config(os.path.join(ROOT, "config", "single_arm_reactive.yaml"))
    policy = load_checkpoint(folder, device="cpu")
    cfg = policy.config
    cfg.validate_against(robot_obs_shapes(robot), robot.joint_names)
    assert cfg.control_rate_hz == robot.control_rate_hz == 20.0
    assert cfg.sampler == "streaming" and cfg.stream_execute_steps <= 2 and len(cfg.stream_denoising_steps) <= 3
