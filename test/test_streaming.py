"""Streaming warm start: shift by elapsed steps, tail refill, re-noising, reset, gripper methods."""
import numpy as np
import pytest
import torch

from diffusion_policy_ros.policy.configuration import PolicyConfig
from diffusion_policy_ros.policy.modeling import DiffusionPolicy
from diffusion_policy_ros.policy.normalizer import MinMaxNormalizer
from diffusion_policy_ros.sampling.schedule import NoiseSchedule
from diffusion_policy_ros.sampling.streaming import (StreamingSettings, WarmStartSampler, binarize_discrete,
                                                     clip_discrete, elapsed_control_steps, shift_chunk)


def ramp_chunk(horizon=8, dims=2):
    return torch.arange(horizon, dtype=torch.float32)[None, :, None].repeat(1, 1, dims) / 10


def test_shift_drops_elapsed_actions_and_repeats_the_last():
    chunk = ramp_chunk()
    out = shift_chunk(chunk, 3)
    assert torch.equal(out[0, :5], chunk[0, 3:])
    assert torch.equal(out[0, 5:], chunk[0, 7:8].expand(3, -1))
    assert torch.equal(shift_chunk(chunk, 0), chunk)
    with pytest.raises(ValueError):
        shift_chunk(chunk, 8)


def test_elapsed_steps_follow_time_not_calls():
    assert elapsed_control_steps(1.0, 1.1, 10.0) == 1
    assert elapsed_control_steps(1.0, 1.31, 10.0) == 3      # inference overran by two periods
    assert elapsed_control_steps(1.0, 1.0, 10.0) == 0


class Recorder:
    """Denoiser that records its inputs and predicts zero noise (output = x0 estimate of input)."""

    def __init__(self):
        self.inputs = []

    def __call__(self, x, t):
        self.inputs.append((x.clone(), t))
        return torch.zeros_like(x)


def make_sampler(**kw):
    settings = StreamingSettings(denoising_steps=kw.pop("steps", [2, 1, 0]), **kw)
    return WarmStartSampler(NoiseSchedule(100), settings, control_rate_hz=10.0)


def full_sample_of(value):
    def full():
        from diffusion_policy_ros.sampling.streaming import StepReport
        return value.clone(), StepReport("streaming", 16, False, 0, [])
    return full


def test_warm_start_uses_shift_from_observation_times_and_falls_back():
    sampler = make_sampler()
    first = ramp_chunk()
    rec = Recorder()
    _, report = sampler.step(rec, 0.0, full_sample_of(first))
    assert not report.warm_started and rec.inputs == []
    _, report = sampler.step(rec, 0.2, full_sample_of(first))     # two periods later
    assert report.warm_started and report.shift_steps == 2 and report.nfe == 3
    assert report.denoising_steps == [2, 1, 0]
    x_in, t_in = rec.inputs[0]
    assert t_in == 2
    assert torch.allclose(x_in, shift_chunk(first, 2))              # no re-noising by default
    # a gap longer than the horizon, or time going backwards, forces a full sample
    _, report = sampler.step(rec, 0.2 + 0.8, full_sample_of(first))
    assert not report.warm_started
    _, report = sampler.step(rec, 0.5, full_sample_of(first))
    assert not report.warm_started


def test_reset_forgets_the_warm_start():
    sampler = make_sampler()
    sampler.step(Recorder(), 0.0, full_sample_of(ramp_chunk()))
    sampler.reset()
    _, report = sampler.step(Recorder(), 0.1, full_sample_of(ramp_chunk()))
    assert not report.warm_started


def test_renoise_level_adds_forward_noise():
    sampler = make_sampler(steps=[5, 0], renoise_level=5)
    chunk = torch.zeros(1, 8, 2)
    sampler.step(Recorder(), 0.0, full_sample_of(chunk))
    rec = Recorder()
    sampler.step(rec, 0.1, full_sample_of(chunk), generator=torch.Generator().manual_seed(0))
    x_in, t_in = rec.inputs[0]
    expected_std = (1 - NoiseSchedule(100).alpha_bar(5)) ** 0.5
    assert t_in == 5 and 0.3 * expected_std < float(x_in.std()) < 3 * expected_std


def test_renoise_level_must_be_where_the_refinement_starts():
    with pytest.raises(ValueError, match="first denoising step"):
        make_sampler(steps=[5, 0], renoise_level=10)


def test_gripper_clip_and_sign():
    chunk = torch.tensor([[[0.3, -0.7], [0.1, 0.9]]])
    clipped = clip_discrete(chunk, [1], factor=10.0)
    assert torch.allclose(clipped[..., 1], torch.tensor([[-0.1, 0.1]]))
    assert torch.equal(clipped[..., 0], chunk[..., 0])
    signs = binarize_discrete(chunk, [1])
    assert torch.equal(signs[..., 1], torch.tensor([[-1.0, 1.0]]))

    sampler = make_sampler(discrete_dims=(1,), discrete_method="clip", discrete_factor=10.0)
    sampler.step(Recorder(), 0.0, full_sample_of(chunk))
    rec = Recorder()
    sampler.step(rec, 0.1, full_sample_of(chunk))
    assert torch.allclose(rec.inputs[0][0][0, :, 1], torch.tensor([0.1, 0.1]))


def tiny_policy(**kw):
    cfg = PolicyConfig(obs_shapes={"obs/joint_pos": [3]}, joint_names=["a", "b", "gripper"], gripper_dims=[2],
                       down_dims=[16, 32], step_embed_dim=16, horizon=8, n_action_steps=4, device="cpu", **kw)
    data = np.stack([np.linspace(-1, 1, 50), np.linspace(0, 2, 50), np.r_[np.zeros(25), np.full(25, 0.04)]], 1)
    norm = MinMaxNormalizer.fit({"action": data, "obs/joint_pos": data})
    torch.manual_seed(0)
    return DiffusionPolicy(cfg, norm).to_device("cpu")


def test_gripper_scale_method_trains_on_scaled_targets_and_outputs_two_states():
    policy = tiny_policy(discrete_method="scale", discrete_factor=10.0)
    action = torch.tensor([[[1.0, 2.0, 0.04], [-1.0, 0.0, 0.0]]])
    model = policy.action_to_model(action)
    assert torch.allclose(model[0, :, 2], torch.tensor([0.1, -0.1]))
    assert torch.allclose(model[0, :, :2], torch.tensor([[1.0, 1.0], [-1.0, -1.0]]))
    out = policy.model_to_action(torch.tensor([[[0.0, 0.0, 0.03], [0.0, 0.0, -0.002]]]))
    assert out[0, :, 2].tolist() == pytest.approx([0.04, 0.0])
    rows = policy.predict_action_chunk({"obs/joint_pos": np.zeros((2, 3), np.float32)}, 0.0)
    assert np.all(np.isclose(rows[:, 2], 0.0) | np.isclose(rows[:, 2], 0.04))


def test_policy_streaming_reports_and_reset():
    policy = tiny_policy(sampler="streaming", stream_denoising_steps=[2, 1, 0], full_sample_steps=8)
    obs = {"obs/joint_pos": np.zeros((2, 3), np.float32)}
    policy.predict_action_chunk(obs, 5.0)
    assert not policy.last_report.warm_started and policy.last_report.nfe == 8
    rows = policy.predict_action_chunk(obs, 5.3)
    r = policy.last_report
    assert rows.shape == (4, 3) and r.warm_started and r.shift_steps == 3 and r.nfe == 3
    policy.reset()
    policy.predict_action_chunk(obs, 5.4)
    assert not policy.last_report.warm_started
    # select_action refines once per stream_execute_steps control periods
    policy.set_sampler("streaming", stream_denoising_steps=[1], stream_execute_steps=2, full_sample_steps=8)
    for k in range(9):
        policy.select_action({"obs/joint_pos": np.zeros(3, np.float32)}, k * 0.1)
    assert policy.total_nfe == 8 + 4 * 1 and policy.actions_selected == 9


def test_wrong_observation_shape_is_a_clear_error():
    policy = tiny_policy()
    with pytest.raises(ValueError, match="expected"):
        policy.predict_action_chunk({"obs/joint_pos": np.zeros((3, 3), np.float32)}, 0.0)
    with pytest.raises(ValueError, match="missing"):
        policy.predict_action_chunk({}, 0.0)
