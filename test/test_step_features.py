"""Each observation step is encoded once: the conditioning a policy computes from cached step
features equals the one it computes by encoding the whole history, for every modality (RGB,
depth, tactile, joints), and only the new step of a sliding window goes through the encoder."""
import numpy as np
import pytest
import torch

from diffusion_policy_ros.policy.checkpoint import load_checkpoint
from diffusion_policy_ros.robot_config import config_path, load_robot_config
from diffusion_policy_ros.tiny_policy import make_untrained_checkpoint


@pytest.fixture(scope="module")
def policy(tmp_path_factory):
    robot = load_robot_config(config_path("bimanual"))   # every modality, two arms
    folder = make_untrained_checkpoint(robot, str(tmp_path_factory.mktemp("ckpt")), seed=3)
    return load_checkpoint(folder, device="cpu").eval()   # centre crops, as at inference


def random_step(policy, rng):
    step = {}
    for key, shape in policy.config.obs_shapes.items():
        if key.endswith("/rgb"):
            step[key] = rng.integers(0, 256, shape, dtype=np.uint8)
        elif key.endswith("/depth"):
            step[key] = rng.uniform(0.2, 1.5, shape).astype(np.float32)
        else:
            step[key] = rng.normal(0, 0.5, shape).astype(np.float32)
    return step


def history_of(steps):
    return {k: np.stack([s[k] for s in steps]) for k in steps[0]}


def encoded_whole(policy, history):
    with torch.no_grad():
        return policy.encode(policy._batch_obs(history))


def test_a_sliding_window_encodes_only_its_new_step_and_conditions_exactly_as_before(policy):
    rng = np.random.default_rng(0)
    n = policy.config.n_obs_steps
    policy.reset(seed=0)
    cache = policy._step_features
    cache.clear()
    window = [random_step(policy, rng)] * n          # an episode starts padded with its first step
    with torch.no_grad():
        first = policy._encode_history(history_of(window))
    assert cache.encoded_steps == 1
    torch.testing.assert_close(first, encoded_whole(policy, history_of(window)), rtol=1e-5, atol=1e-5)
    for i in range(6):
        window = window[1:] + [random_step(policy, rng)]
        before = cache.encoded_steps
        with torch.no_grad():
            cond = policy._encode_history(history_of(window))
        assert cache.encoded_steps == before + 1, f"step {i}: more than the new step was encoded"
        torch.testing.assert_close(cond, encoded_whole(policy, history_of(window)), rtol=1e-5, atol=1e-5)


def test_a_step_whose_values_changed_is_encoded_again(policy):
    rng = np.random.default_rng(1)
    steps = [random_step(policy, rng) for _ in range(policy.config.n_obs_steps)]
    with torch.no_grad():
        policy._encode_history(history_of(steps))
    altered = {k: v.copy() for k, v in steps[0].items()}
    altered["obs/scene/rgb"][10, 10, 0] ^= 1          # one bit of one pixel of an old step
    steps[0] = altered
    before = policy._step_features.encoded_steps
    with torch.no_grad():
        cond = policy._encode_history(history_of(steps))
    assert policy._step_features.encoded_steps == before + 1
    torch.testing.assert_close(cond, encoded_whole(policy, history_of(steps)), rtol=1e-5, atol=1e-5)


def test_features_cached_before_a_weight_update_are_not_reused_after_it(policy):
    rng = np.random.default_rng(2)
    history = history_of([random_step(policy, rng) for _ in range(policy.config.n_obs_steps)])
    with torch.no_grad():
        before_update = policy._encode_history(history)
    optimizer = torch.optim.SGD(policy.obs_encoder.parameters(), lr=0.5)
    policy.train()
    loss = policy.encode(policy._batch_obs(history)).square().sum()
    loss.backward()
    optimizer.step()
    optimizer.zero_grad()
    policy.eval()
    with torch.no_grad():
        after_update = policy._encode_history(history)
    expected = encoded_whole(policy, history)
    assert not torch.allclose(before_update, expected)
    torch.testing.assert_close(after_update, expected, rtol=1e-5, atol=1e-5)


def test_predicted_chunks_are_the_same_with_and_without_the_cache(policy):
    """The same seeded episode through predict_action_chunk, cache on and cleared before every call."""
    rng = np.random.default_rng(4)
    policy.eval()
    stream = [random_step(policy, rng) for _ in range(5)]
    n = policy.config.n_obs_steps
    runs = []
    for clear_each_time in (False, True):
        policy.reset(seed=7)
        chunks = []
        for t in range(len(stream)):
            window = [stream[max(t - n + 1 + i, 0)] for i in range(n)]
            if clear_each_time:
                policy._step_features.clear()
            chunks.append(policy.predict_action_chunk(history_of(window), t / policy.config.control_rate_hz))
        runs.append(np.stack(chunks))
    np.testing.assert_allclose(runs[0], runs[1], rtol=1e-4, atol=1e-5)


def test_a_history_of_the_wrong_shape_is_still_refused(policy):
    rng = np.random.default_rng(5)
    history = history_of([random_step(policy, rng)] * (policy.config.n_obs_steps + 1))
    with pytest.raises(Exception, match="n_obs_steps"):
        policy.predict_action_chunk(history, 0.0)
