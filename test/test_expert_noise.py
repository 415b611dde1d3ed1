"""DART noise and the early close (sim/expert_noise.py) as properties on plain arrays, then `dpros
sim record --expert-noise` / `--early-close` in the real sim: the arm goes where the noise pushes it
(the gripper closes early), the recorded actions stay the expert's."""
import os

os.environ.setdefault("MUJOCO_GL", "egl")

import numpy as np  # noqa: E402
import pytest  # noqa: E402

from diffusion_policy_ros.cli.errors import USAGE_EXIT_CODE  # noqa: E402
from diffusion_policy_ros.cli.main import main  # noqa: E402
from diffusion_policy_ros.data.replay_buffer import ReplayBuffer  # noqa: E402
from diffusion_policy_ros.sim.expert import CLOSED, OPEN  # noqa: E402
from diffusion_policy_ros.sim.expert_noise import EarlyClose, SmoothJointNoise  # noqa: E402

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


class ApproachingExpert:
    """What EarlyClose reads of the continuous expert: its gripper and its distance to the grasp."""

    def __init__(self, distances, closes_at=None):
        self.distances, self.closes_at, self.tick = list(distances), closes_at, 0
        self.grip = OPEN

    def distance_to_grasp(self):
        return self.distances[self.tick]

    def label(self):
        self.grip = CLOSED if self.closes_at is not None and self.tick >= self.closes_at else OPEN
        return np.array([0.1] * 6 + [self.grip])


def early_close_run(expert, seed, within=(0.01, 0.05), hold_s=(0.3, 1.0), rate=20.0):
    early = EarlyClose(expert, [6], rate, within, hold_s, seed)
    executed = []
    for tick in range(len(expert.distances)):
        expert.tick = tick
        executed.append(early(expert.label()))
    return early, np.array(executed)


def test_early_close_holds_the_gripper_closed_once_from_the_drawn_distance_for_the_drawn_time():
    distances = np.concatenate([np.linspace(0.2, 0.0, 80), np.zeros(30)])   # 2.5 mm per tick, then there
    for seed in range(20):
        early, executed = early_close_run(ApproachingExpert(distances), seed)
        closed = np.flatnonzero(executed[:, 6] == CLOSED)
        assert 0.01 <= early.within <= 0.05
        assert 0.3 * 20 <= closed.size <= 1.0 * 20
        assert np.array_equal(closed, np.arange(closed[0], closed[0] + closed.size))   # one stretch
        assert distances[closed[0]] < early.within <= distances[closed[0] - 1]
        np.testing.assert_array_equal(executed[:, :6], 0.1)   # the arm executes the label
        again = early_close_run(ApproachingExpert(distances), seed)[1]
        np.testing.assert_array_equal(executed, again)


def test_no_early_close_once_the_expert_has_closed_on_its_own():
    distances = np.concatenate([np.linspace(0.2, 0.06, 40), np.full(40, 0.001)])
    _, executed = early_close_run(ApproachingExpert(distances, closes_at=40), seed=3)
    labels = np.where(np.arange(80) >= 40, CLOSED, OPEN)
    np.testing.assert_array_equal(executed[:, 6], labels)


@pytest.mark.parametrize("within, hold_s, rate", [((0.0, 0.05), (0.3, 1.0), 20.0), ((0.05, 0.01), (0.3, 1.0), 20.0),
                                                  ((0.01, 0.05), (0.0, 1.0), 20.0), ((0.01, 0.05), (0.3, 1.0), 0.0)])
def test_early_close_refuses_nonsense_ranges(within, hold_s, rate):
    with pytest.raises(ValueError):
        EarlyClose(ApproachingExpert([0.1]), [6], rate, within, hold_s, seed=0)


def test_early_close_needs_the_continuous_expert():
    with pytest.raises(ValueError, match="continuous"):
        EarlyClose(object(), [6], 20.0, (0.01, 0.05), (0.3, 1.0), seed=0)


def test_recorded_episode_shows_the_expert_reopening_after_the_early_close(tmp_path):
    out = tmp_path / "early"
    code = main(["sim", "record", "--config", "single_arm_reactive", "--expert", "continuous", "--early-close",
                 "--episodes", "1", "--first-seed", "1000", "--cameras", "scene", "--no-tactile", "--no-depth",
                 "--out", str(out)])
    assert code == 0
    dataset = ReplayBuffer.open(out)
    episode, meta = dataset.get_episode(0), dataset.episode_meta(0)
    assert meta["early_close"] is True and meta["success_step"] is not None
    gripper_seen, gripper_label = episode["obs/joint_pos"][:, -1], episode["action"][:, -1]
    first_closing_label = int(np.argmax(gripper_label < (OPEN + CLOSED) / 2))
    closed_before = np.flatnonzero(gripper_seen[:first_closing_label] < 0.01)
    # Closed on nothing while the expert still says open; then it opens again before grasping.
    assert closed_before.size > 0
    assert gripper_seen[closed_before[-1]:first_closing_label].max() > 0.06
    assert np.all(gripper_label[:first_closing_label] == OPEN)
    assert main(["sim", "record", "--episodes", "1", "--expert", "keyframes", "--early-close",
                 "--out", str(tmp_path / "x")]) == USAGE_EXIT_CODE
