"""Noise schedule and reverse steps against their closed forms."""
import math

import pytest
import torch

from diffusion_policy_ros.sampling.samplers import ddim_step, ddpm_step, denoise, full_timesteps, predict_x0
from diffusion_policy_ros.sampling.schedule import NoiseSchedule, squared_cosine_alpha_bar


def test_cumulative_alphas_telescope_to_cosine_ratio():
    s = NoiseSchedule(100)
    for t in range(99):     # the last beta is capped at 0.999, the rest telescope exactly
        expected = squared_cosine_alpha_bar(t + 1, 100) / squared_cosine_alpha_bar(0, 100)
        assert s.alpha_bar(t) == pytest.approx(expected, rel=1e-10)
    assert float(s.betas64.max()) <= 0.999
    assert s.alpha_bar(-1) == 1.0
    assert all(a > b for a, b in zip(s.alphas_cumprod64[:-1], s.alphas_cumprod64[1:]))


def test_add_noise_is_q_sample():
    s = NoiseSchedule(100)
    x0, eps = torch.randn(4, 16, 3), torch.randn(4, 16, 3)
    t = torch.tensor([0, 10, 50, 99])
    xt = s.add_noise(x0, eps, t)
    for i, ti in enumerate(t.tolist()):
        ab = s.alpha_bar(ti)
        assert torch.allclose(xt[i], math.sqrt(ab) * x0[i] + math.sqrt(1 - ab) * eps[i], atol=1e-6)


def test_predict_x0_inverts_q_sample():
    s = NoiseSchedule(100)
    x0, eps = torch.rand(2, 8, 2) * 1.8 - 0.9, torch.randn(2, 8, 2)
    for t in (0, 5, 60):
        xt = s.add_noise(x0, eps, t)
        assert torch.allclose(predict_x0(s, xt, eps, t, clip_sample=False), x0, atol=1e-4)


def test_ddpm_step_matches_posterior_formula():
    s = NoiseSchedule(100)
    x0, eps, z = torch.rand(1, 8, 2) - 0.5, torch.randn(1, 8, 2), torch.randn(1, 8, 2)
    t = 40
    xt = s.add_noise(x0, eps, t)
    ab_t, ab_p, beta = s.alpha_bar(t), s.alpha_bar(t - 1), float(s.betas64[t])
    mean = (math.sqrt(ab_p) * beta / (1 - ab_t)) * x0 + (math.sqrt(1 - beta) * (1 - ab_p) / (1 - ab_t)) * xt
    var = (1 - ab_p) / (1 - ab_t) * beta
    out = ddpm_step(s, xt, eps, t, t - 1, clip_sample=False, noise=z)
    assert torch.allclose(out, mean + math.sqrt(var) * z, atol=1e-5)
    # the last step returns the x0 estimate itself
    assert torch.allclose(ddpm_step(s, s.add_noise(x0, eps, 0), eps, 0, -1, clip_sample=False), x0, atol=1e-4)


def test_ddim_step_with_exact_eps_stays_on_the_trajectory():
    s = NoiseSchedule(100)
    x0, eps = torch.rand(1, 8, 2) - 0.5, torch.randn(1, 8, 2)
    x = s.add_noise(x0, eps, 90)
    out = ddim_step(s, x, eps, 90, 84)
    assert torch.allclose(out, s.add_noise(x0, eps, 84), atol=1e-5)
    # full DDIM chain with an oracle denoiser recovers x0 exactly
    oracle = lambda x, t: (x - math.sqrt(s.alpha_bar(t)) * x0) / math.sqrt(1 - s.alpha_bar(t))  # noqa: E731
    steps = full_timesteps(s, "ddim", 16)
    assert steps[0] == 90 and steps[-1] == 0 and len(steps) == 16
    assert torch.allclose(denoise(oracle, x, steps, s, "ddim"), x0, atol=1e-4)


def test_step_list_validation():
    s = NoiseSchedule(100)
    with pytest.raises(ValueError, match="strictly decreasing"):
        s.check_timesteps([1, 2, 0])
    with pytest.raises(ValueError, match="must lie in"):
        s.check_timesteps([100, 0])
    with pytest.raises(ValueError, match="empty"):
        s.check_timesteps([])
    assert full_timesteps(s, "ddpm", 100) == list(range(99, -1, -1))
