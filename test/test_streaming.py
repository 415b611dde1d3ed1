"""Streaming warm start: shift by elapsed steps (up to horizon - 1), tail refill, re-noising, reset,
gripper methods, DDPM steps over skipped levels. Denoiser evaluations are counted from calls."""
import numpy as np
import pytest
import torch

torch.set_num_threads(1)   # small ops: more threads only add contention

from diffusion_policy_ros.policy.configuration import PolicyConfig
from diffusion_policy_ros.policy.modeling import DiffusionPolicy
from diffusion_policy_ros.policy.normalizer import MinMaxNormalizer
from diffusion_policy_ros.sampling.samplers import ddpm_step, denoise
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
    assert report.warm_started and report.shift_steps == 2
    # the evaluations the denoiser really got, at the configured levels, and the report says so
    assert [t for _, t in rec.inputs] == [2, 1, 0] and report.nfe == len(rec.inputs)
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


def test_renoise_level_takes_the_shifted_chunk_to_that_level():
    sampler = make_sampler(steps=[5, 0], renoise_level=5)
    chunk = ramp_chunk() - 0.35                                      # signal of both signs
    sampler.step(Recorder(), 0.0, full_sample_of(chunk))
    rec = Recorder()
    sampler.step(rec, 0.1, full_sample_of(chunk), generator=torch.Generator().manual_seed(0))
    x_in, t_in = rec.inputs[0]
    # q(x_5 | x_0) with the same noise draw: sqrt(ab_5) x0 + sqrt(1 - ab_5) eps
    ab = NoiseSchedule(100).alpha_bar(5)
    noise = torch.randn(chunk.shape, generator=torch.Generator().manual_seed(0))
    expected = ab ** 0.5 * shift_chunk(chunk, 1) + (1 - ab) ** 0.5 * noise
    assert t_in == 5
    torch.testing.assert_close(x_in, expected, rtol=0, atol=1e-6)


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
    policy = DiffusionPolicy(cfg, norm).to_device("cpu")
    policy.denoiser_inputs = []   # (x_t, level) of every U-Net evaluation, counted as it happens
    policy.unet.register_forward_hook(lambda _m, args, _out: policy.denoiser_inputs.append(
        (args[0].detach().clone(), int(args[1][0]))))
    return policy


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
    assert not policy.last_report.warm_started and len(policy.denoiser_inputs) == 8 == policy.last_report.nfe
    rows = policy.predict_action_chunk(obs, 5.3)
    r = policy.last_report
    assert rows.shape == (4, 3) and r.warm_started and r.shift_steps == 3
    assert [t for _, t in policy.denoiser_inputs[8:]] == [2, 1, 0] and r.nfe == 3
    policy.reset()
    policy.predict_action_chunk(obs, 5.4)
    assert not policy.last_report.warm_started and len(policy.denoiser_inputs) == 8 + 3 + 8
    # select_action refines once per stream_execute_steps control periods
    policy.set_sampler("streaming", stream_denoising_steps=[1], stream_execute_steps=2, full_sample_steps=8)
    policy.denoiser_inputs.clear()
    for k in range(9):
        policy.select_action({"obs/joint_pos": np.zeros(3, np.float32)}, k * 0.1)
    assert len(policy.denoiser_inputs) == 8 + 4 * 1 == policy.total_nfe and policy.actions_selected == 9


def test_select_action_encodes_a_step_the_next_inference_sees_when_it_comes_and_no_other():
    policy = tiny_policy(sampler="ddim", ddim_steps=2)         # replans every n_action_steps = 4
    cache = policy._step_features
    encoded_each_step = []
    for k in range(13):
        before = cache.encoded_steps
        policy.select_action({"obs/joint_pos": np.full(3, 0.1 * k, np.float32)}, k * 0.1)
        encoded_each_step.append(cache.encoded_steps - before)
    # inference at 0, 4, 8, 12 with 2-step histories: the step before each is encoded ahead, so
    # an inference encodes only its own; steps no history uses are not encoded at all
    assert encoded_each_step == [1, 0, 0, 1, 1, 0, 0, 1, 1, 0, 0, 1, 1]


def test_the_clip_method_gives_the_gripper_of_the_warm_start_a_weak_prior():
    policy = tiny_policy(sampler="streaming", stream_denoising_steps=[2, 1, 0], stream_renoise_level=None,
                         full_sample_steps=8, discrete_method="clip", discrete_factor=10.0)
    obs = {"obs/joint_pos": np.zeros((2, 3), np.float32)}
    policy.predict_action_chunk(obs, 0.0)
    previous = policy.streaming.chunk.clone()
    policy.predict_action_chunk(obs, 0.1)
    warm_start = policy.denoiser_inputs[8][0]                    # what the refinement started from
    expected_gripper = torch.where(shift_chunk(previous, 1)[..., 2] >= 0, 1.0, -1.0) / 10.0
    torch.testing.assert_close(warm_start[..., 2], expected_gripper)
    torch.testing.assert_close(warm_start[..., :2], shift_chunk(previous, 1)[..., :2])   # joints as they were


def test_the_largest_shift_keeps_only_the_last_action():
    horizon = 8
    sampler = make_sampler()
    first = ramp_chunk(horizon)
    sampler.step(Recorder(), 0.0, full_sample_of(first))
    rec = Recorder()
    _, report = sampler.step(rec, (horizon - 1) * 0.1, full_sample_of(first))   # horizon - 1 periods on
    assert report.warm_started and report.shift_steps == horizon - 1
    torch.testing.assert_close(rec.inputs[0][0], first[:, -1:].expand(-1, horizon, -1))
    assert torch.equal(shift_chunk(first, horizon - 1), first[:, -1:].expand(-1, horizon, -1))
    sampler.step(Recorder(), 0.0, full_sample_of(first))
    rec = Recorder()
    _, report = sampler.step(rec, horizon * 0.1, full_sample_of(first))          # nothing of it left
    assert not report.warm_started and rec.inputs == []


def test_ddpm_over_skipped_levels_keeps_the_forward_marginal():
    """From x_50 ~ q(x_50 | x0) with the exact noise known (a perfect denoiser), one DDPM step to
    level 25 must give q(x_25 | x0) = N(sqrt(ab_25) x0, 1 - ab_25): the posterior of the skip, not
    of one step (a one-step beta at level 50 would shrink the variance)."""
    schedule = NoiseSchedule(100)
    generator = torch.Generator().manual_seed(0)
    x0 = torch.full((20000, 1, 1), 0.6)
    eps = torch.randn(x0.shape, generator=generator)
    x50 = schedule.add_noise(x0, eps, 50)
    x25 = ddpm_step(schedule, x50, eps, 50, 25, clip_sample=False, noise=torch.randn(x0.shape, generator=generator))
    ab25 = schedule.alpha_bar(25)
    assert float(x25.mean()) == pytest.approx(ab25 ** 0.5 * 0.6, abs=0.01)
    assert float(x25.var()) == pytest.approx(1 - ab25, rel=0.03)
    # and the whole streaming schedule [50, 25, 0] lands on x0 with that denoiser
    calls = []

    def perfect(x, t):
        calls.append(t)
        return (x - schedule.alpha_bar(t) ** 0.5 * x0) / (1 - schedule.alpha_bar(t)) ** 0.5
    out = denoise(perfect, x50, [50, 25, 0], schedule, "ddpm", clip_sample=False, generator=generator)
    assert calls == [50, 25, 0]
    torch.testing.assert_close(out, x0, rtol=0, atol=1e-4)


def test_wrong_observation_shape_is_a_clear_error():
    policy = tiny_policy()
    with pytest.raises(ValueError, match="expected"):
        policy.predict_action_chunk({"obs/joint_pos": np.zeros((3, 3), np.float32)}, 0.0)
    with pytest.raises(ValueError, match="missing"):
        policy.predict_action_chunk({}, 0.0)


def test_running_ahead_splits_a_refinement_without_changing_it():
    """Run ahead on the observation the refinement is for (no step between), the levels give the
    chunk the whole refinement gives (same denoiser, same random draws)."""
    chunk = torch.randn(1, 8, 2, generator=torch.Generator().manual_seed(0))
    results = []
    for ahead in (0, 1):
        sampler = make_sampler(steps=[50, 10, 0], renoise_level=50, ahead_levels=ahead)
        sampler.step(Recorder(), 1.0, full_sample_of(chunk))
        generator = torch.Generator().manual_seed(1)
        early, late = Recorder(), Recorder()
        assert sampler.refine_ahead(early, 1.2, 1.2, generator=generator) == ahead
        out, report = sampler.step(late, 1.2, full_sample_of(chunk), generator=generator)
        assert [t for _, t in early.inputs] == [50][:ahead]
        assert [t for _, t in late.inputs] == [50, 10, 0][ahead:]
        assert report.nfe == 3 and report.warm_started and report.shift_steps == 2
        results.append(out)
    assert torch.allclose(results[0], results[1])


def test_each_level_run_ahead_is_aligned_with_the_observation_it_sees():
    chunk = ramp_chunk()
    sampler = make_sampler(steps=[2, 1, 0], method="ddim", ahead_levels=1)
    sampler.step(Recorder(), 1.0, full_sample_of(chunk))
    early, late = Recorder(), Recorder()
    assert sampler.refine_ahead(early, 1.1, 1.2) == 1
    # level 2 on the observation at 1.1: the chunk shifted by the one step since its own (1.0)
    assert [t for _, t in early.inputs] == [2] and torch.equal(early.inputs[0][0], shift_chunk(chunk, 1))
    partial = denoise(Recorder(), shift_chunk(chunk, 1), [2], sampler.schedule, "ddim", end_level=1)
    _, report = sampler.step(late, 1.2, full_sample_of(chunk))
    # levels 1 and 0 on the observation at 1.2: that chunk shifted by one step more
    assert [t for _, t in late.inputs] == [1, 0] and torch.allclose(late.inputs[0][0], shift_chunk(partial, 1))
    assert report.nfe == 3 and report.shift_steps == 2


def test_a_refinement_for_another_shift_drops_what_ran_ahead_and_counts_it():
    chunk = ramp_chunk()
    sampler = make_sampler(steps=[2, 1, 0], ahead_levels=2)
    sampler.step(Recorder(), 1.0, full_sample_of(chunk))
    assert sampler.refine_ahead(Recorder(), 1.1, 1.2) == 2     # expected: 2 steps later
    late = Recorder()
    _, report = sampler.step(late, 1.3, full_sample_of(chunk))  # came 3 steps later
    assert [t for _, t in late.inputs] == [2, 1, 0] and report.nfe == 3 + 2 and report.shift_steps == 3
    # nothing left over for the next one
    _, report = sampler.step(Recorder(), 1.4, full_sample_of(chunk))
    assert report.nfe == 3
    # no chunk yet (or after reset): nothing to run ahead
    sampler.reset()
    assert sampler.refine_ahead(Recorder(), 1.4, 1.5) == 0


def test_ahead_levels_leave_the_last_level_to_the_refinements_own_observation():
    with pytest.raises(ValueError, match="ahead_levels"):
        make_sampler(steps=[2, 1, 0], ahead_levels=3)
    with pytest.raises(Exception, match="stream_ahead_levels"):
        tiny_policy(sampler="streaming", stream_denoising_steps=[50, 0], stream_execute_steps=1, stream_ahead_levels=1)
    with pytest.raises(Exception, match="stream_ahead_levels"):
        tiny_policy(sampler="streaming", stream_denoising_steps=[50, 0], stream_execute_steps=2, stream_ahead_levels=2)


def test_select_action_runs_a_refinements_first_level_one_step_early():
    policy = tiny_policy(sampler="streaming", stream_denoising_steps=[50, 0], stream_renoise_level=50,
                         stream_execute_steps=2, stream_ahead_levels=1, full_sample_steps=8)
    per_step, encoded = [], []
    for k in range(9):
        before, cached = len(policy.denoiser_inputs), policy._step_features.encoded_steps
        policy.select_action({"obs/joint_pos": np.full(3, 0.1 * k, np.float32)}, k * 0.1)
        per_step.append([t for _, t in policy.denoiser_inputs[before:]])
        encoded.append(policy._step_features.encoded_steps - cached)
    # step 0: the sample from noise; then level 50 at each odd step, conditioned on that step's
    # observation (encoded there), level 0 at the next even one on the newer observation: one
    # evaluation and one encoded observation a step
    assert len(per_step[0]) == 8 and per_step[1:] == [[50], [0]] * 4
    assert encoded == [1] * 9
    assert policy.total_nfe == 8 + 8 and policy.last_report.nfe == 2
