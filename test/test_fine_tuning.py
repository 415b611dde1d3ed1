"""`dpros train --init-from CHECKPOINT`: fine-tuning starts from the checkpoint's weights and
normalizer (not from fresh ones fitted to the new data), and a dataset or arguments that do not fit
the checkpoint are refused before any training."""
import json

import pytest
import torch

from diffusion_policy_ros.cli.errors import USAGE_EXIT_CODE
from diffusion_policy_ros.cli.main import main
from diffusion_policy_ros.policy.checkpoint import load_checkpoint
from diffusion_policy_ros.training.synthetic import write_multisensor_dataset

SMALL = '{"down_dims": [16, 32], "horizon": 8, "n_action_steps": 4}'


def train(dataset, out, *extra):
    return main(["train", "--dataset", str(dataset), "--out", str(out), "--batch-size", "4", "--threads", "1",
                 "--checkpoint-every", "0", "--warmup-steps", "0", *extra])


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    root = tmp_path_factory.mktemp("fine_tuning")
    write_multisensor_dataset(str(root / "first"), n_episodes=5, seed=0)
    write_multisensor_dataset(str(root / "second"), n_episodes=5, seed=1)
    assert train(root / "first", root / "base", "--steps", "3", "--lr", "1e-3", "--policy", SMALL) == 0
    return root


def weights(folder):
    return load_checkpoint(str(folder), device="cpu").state_dict()


def test_fine_tuning_starts_from_the_checkpoint_and_keeps_its_normalizer(trained):
    # A learning rate of 0: the step changes nothing, so what comes out is where it started.
    assert train(trained / "second", trained / "still", "--steps", "1", "--lr", "0",
                 "--init-from", str(trained / "base")) == 0
    base, still = weights(trained / "base"), weights(trained / "still")
    assert all(torch.equal(base[k], still[k]) for k in base)
    config = json.loads((trained / "still" / "config.json").read_text())
    assert config["normalizer"] == json.loads((trained / "base" / "config.json").read_text())["normalizer"]
    assert config["training"]["init_from"] == str(trained / "base")
    # The same from scratch on the second dataset fits its own normalizer and fresh weights.
    assert train(trained / "second", trained / "fresh", "--steps", "1", "--lr", "0", "--policy", SMALL) == 0
    fresh = json.loads((trained / "fresh" / "config.json").read_text())
    assert fresh["normalizer"] != config["normalizer"]
    assert not all(torch.equal(base[k], v) for k, v in weights(trained / "fresh").items())
    # And with a learning rate it moves on from there.
    assert train(trained / "second", trained / "tuned", "--steps", "2", "--lr", "1e-3",
                 "--init-from", str(trained / "base")) == 0
    tuned = weights(trained / "tuned")
    assert not all(torch.equal(base[k], tuned[k]) for k in base)


@pytest.mark.parametrize("extra, complaint", [
    (["--policy", '{"horizon": 16}'], "--policy sets ['horizon']"),
    (["--obs-keys", "obs/joint_pos"], "--obs-keys"),
])
def test_what_does_not_fit_the_checkpoint_is_refused(trained, capsys, extra, complaint):
    code = train(trained / "second", trained / "refused", "--steps", "1", "--init-from", str(trained / "base"), *extra)
    assert code == USAGE_EXIT_CODE
    err = capsys.readouterr().err
    assert "cannot fine-tune" in err and complaint in err, err
    assert not (trained / "refused" / "config.json").exists()


def test_a_folder_that_is_no_checkpoint_is_refused(trained, capsys):
    code = train(trained / "second", trained / "refused2", "--steps", "1", "--init-from", str(trained / "second"))
    assert code == USAGE_EXIT_CODE
    assert "--init-from" in capsys.readouterr().err
