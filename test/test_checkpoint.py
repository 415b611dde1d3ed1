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
