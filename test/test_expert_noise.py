"""DART noise (sim/expert_noise.py) as properties on plain arrays, then `dpros sim record
--expert-noise` in the real sim: the arm goes where the noise pushes it, the recorded actions stay
the expert's clean plan."""
import os

os.environ.setdefault("MUJOCO_GL", "egl")

import numpy as np  # noqa: E402
import pytest  # noqa: E402

from diffusion_policy_ros.cli.errors import USAGE_EXIT_CODE  # noqa: E402
from diffusion_policy_ros.cli.main import main  # noqa: E402
from diffusion_policy_ros.data.replay_buffer import ReplayBuffer  # noqa: E402
from diffusion_policy_ros.sim.expert_noise import SmoothJointNoise  # noqa: E402

ARM = np.array([True] * 6 + [False])


def offsets(noise, ticks):
    return np.array([noise(np.zeros(ARM.size)) for _ in range(ticks)])


def test_grippers_get_no_noise_and_sigma_zero_executes_the_label():
    label = np.linspace(-1.0, 1.0, ARM.size)
    executed = np.array([SmoothJointNoise(0.05, 0.5, 10.0, ARM, seed)(label) for seed in range(50)])
    np.testing.assert_array_equal(executed[:, ~ARM], np.broadcast_to(label[~ARM], (50, 1)))
    assert np.all(np.abs(executed[:, ARM] - label[ARM]).max(axis=0) > 0)
    still = SmoothJointNoise(0.0, 0.5, 10.0, ARM, seed=3)
    assert all(np.array_equal(still(label), label) for _ in range(20))


def test_the_offset_has_the_asked_spread_and_is_smooth_over_the_correlation_time():
    sigma, tau, rate = 0.02, 0.5, 10.0
    path = offsets(SmoothJointNoise(sigma, tau, rate, ARM, seed=7), 20_000)[:, ARM]
    assert path.std() == pytest.approx(sigma, rel=0.1)
    # Stationary Ornstein-Uhlenbeck: correlation exp(-lag / tau) between ticks `lag` apart.
    for lag_ticks in (1, 5):
        correlation = np.mean([np.corrcoef(path[:-lag_ticks, j], path[lag_ticks:, j])[0, 1] for j in range(6)])
        assert correlation == pytest.approx(np.exp(-lag_ticks / (tau * rate)), abs=0.05)


def test_each_seed_gives_its_own_repeatable_noise():
    first = offsets(SmoothJointNoise(0.02, 0.5, 10.0, ARM, seed=11), 30)
    np.testing.assert_array_equal(first, offsets(SmoothJointNoise(0.02, 0.5, 10.0, ARM, seed=11), 30))
    assert not np.allclose(first, offsets(SmoothJointNoise(0.02, 0.5, 10.0, ARM, seed=12), 30))


@pytest.mark.parametrize("sigma, tau, rate", [(-0.1, 0.5, 10.0), (0.1, 0.0, 10.0), (0.1, 0.5, 0.0)])
def test_nonsense_settings_are_refused(sigma, tau, rate):
    with pytest.raises(ValueError):
        SmoothJointNoise(sigma, tau, rate, ARM, seed=0)


def test_recorded_actions_are_the_clean_plan_while_the_arm_follows_the_noise(tmp_path):
    def record(out, *extra):
        code = main(["sim", "record", "--episodes", "1", "--first-seed", "1000", "--cameras", "scene",
                     "--no-tactile", "--out", str(out), *extra])
        assert code == 0
        dataset = ReplayBuffer.open(out)
        return dataset.get_episode(0), dataset.episode_meta(0)

    clean, clean_meta = record(tmp_path / "clean")
    noisy, noisy_meta = record(tmp_path / "noisy", "--expert-noise", "0.02")
    assert (clean_meta["expert_noise_rad"], noisy_meta["expert_noise_rad"]) == (0.0, 0.02)
    n = min(len(clean["action"]), len(noisy["action"]))
    # The keyframe expert's plan is made from the start and followed in time: its labels do not
    # depend on where the noise put the arm, and the arm was elsewhere.
    label_gap = np.abs(noisy["action"][:n, ARM] - clean["action"][:n, ARM]).max()
    state_gap = np.abs(noisy["obs/joint_pos"][:n, ARM] - clean["obs/joint_pos"][:n, ARM]).max()
    assert label_gap < 2e-3, label_gap
    assert state_gap > 0.01, state_gap
    assert main(["sim", "record", "--episodes", "1", "--out", str(tmp_path / "x"), "--expert-noise", "-1"]) == USAGE_EXIT_CODE
