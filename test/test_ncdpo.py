"""NCDPO (diffusion_policy_ros.rl): the sampler is a deterministic, differentiable function of its
pre-drawn noise; the gradient reaches every denoising step (finite differences); the PPO ratio is
1 before the first update; GAE and group-relative advantages; groups replay one task with one
sampler noise, and a task pool makes tasks recur; the std floor; save / resume / load; the sim chunk env's reward with the expert;
and a few seeded iterations on a toy problem with a known optimum raise the return (with a critic
and with groups)."""
import functools
import json

import numpy as np
import pytest
import torch

torch.set_num_threads(1)   # small ops: more threads only add contention

from diffusion_policy_ros import obs_keys
from diffusion_policy_ros.policy.checkpoint import load_checkpoint
from diffusion_policy_ros.policy.configuration import PolicyConfig
from diffusion_policy_ros.policy.modeling import DiffusionPolicy
from diffusion_policy_ros.policy.normalizer import MinMaxNormalizer
from diffusion_policy_ros.rl.advantages import first_episode_mask, generalized_advantages, group_relative_advantages
from diffusion_policy_ros.rl.exploration import GaussianHead
from diffusion_policy_ros.rl.noise_sampler import NoiseConditionedSampler
from diffusion_policy_ros.rl.ppo import PPOConfig
from diffusion_policy_ros.rl.toy_env import GoalReachEnv
from diffusion_policy_ros.rl.trainer import NCDPOSettings, NCDPOTrainer
from diffusion_policy_ros.rl.vector import make_vector_env
from diffusion_policy_ros.sampling.samplers import denoise
from diffusion_policy_ros.sampling.schedule import NoiseSchedule

ACTION_DIM = 2


def tiny_policy(n_action_steps=1, seed=0) -> DiffusionPolicy:
    """A small policy observing a 2-vector (the toy env's goal); actions normalized as they are."""
    torch.manual_seed(seed)
    config = PolicyConfig(obs_shapes={obs_keys.JOINT_POS: [ACTION_DIM]},
                          joint_names=[f"joint_{i}" for i in range(ACTION_DIM)], horizon=4, n_obs_steps=1,
                          n_action_steps=n_action_steps, down_dims=[16, 32], step_embed_dim=16, kernel_size=3,
                          n_groups=4, discrete_method="none", device="cpu")
    unit = {"min": -np.ones(ACTION_DIM, np.float32), "max": np.ones(ACTION_DIM, np.float32)}
    return DiffusionPolicy(config, MinMaxNormalizer({"action": unit, obs_keys.JOINT_POS: unit}))


def goals(n, seed):
    return torch.rand((n, ACTION_DIM), generator=torch.Generator().manual_seed(seed)) * 1.2 - 0.6


def clone_offset_demonstrations(policy, offset=0.3, steps=120):
    """A base that learnt from demonstrations that miss the goal by `offset` in every dim."""
    optimizer = torch.optim.Adam(policy.parameters(), 3e-3)
    generator = torch.Generator().manual_seed(0)
    for step in range(steps):
        goal = goals(64, step)
        batch = {obs_keys.JOINT_POS: goal[:, None],
                 "action": (goal + offset)[:, None].repeat(1, policy.config.horizon, 1)}
        loss = policy.compute_loss(batch, generator=generator)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    return policy


def toy_envs(n_action_steps=1, num_envs=8):
    return make_vector_env(functools.partial(GoalReachEnv, ACTION_DIM, 1, n_action_steps), num_envs, "sync")


def mean_action_return(policy, steps=3, eta=1.0) -> float:
    """-|a - g|^2 of the Gaussian's mean (no exploration) on 256 fixed goals, fixed noise."""
    sampler = NoiseConditionedSampler(policy, steps, eta)
    goal = goals(256, 12345)
    with torch.no_grad():
        mean = sampler.mean_action({obs_keys.JOINT_POS: goal[:, None]},
                                   sampler.draw_noise(256, torch.Generator().manual_seed(7)))
    return -float(((mean - goal[:, None]) ** 2).sum(-1).mean())


# --------------------------------------------------------------------------- the sampler map
def test_same_noise_gives_the_same_action_and_matches_the_policy_sampler():
    policy = tiny_policy(n_action_steps=2)
    sampler = NoiseConditionedSampler(policy, num_steps=4, eta=1.0)
    obs = {obs_keys.JOINT_POS: goals(5, 1)[:, None]}
    noise = sampler.draw_noise(5, torch.Generator().manual_seed(3))
    first = sampler.mean_action(obs, noise)
    assert first.shape == (5, 2, ACTION_DIM)
    assert torch.equal(first, sampler.mean_action(obs, noise.clone()))
    other = sampler.mean_action(obs, sampler.draw_noise(5, torch.Generator().manual_seed(4)))
    assert not torch.allclose(first, other)
    # eta > 0: the step noise matters, not only x_K
    changed = noise.clone()
    changed[:, 2] += 1.0
    assert not torch.allclose(first, sampler.mean_action(obs, changed))
    # eta = 0 is the policy's own deterministic DDIM from the same initial noise
    deterministic = NoiseConditionedSampler(policy, num_steps=4, eta=0.0)
    with torch.no_grad():
        cond = deterministic.encode(obs)
        own = policy.sample_chunk(cond, "ddim", 4, initial_noise=noise[:, 0])
    torch.testing.assert_close(deterministic.chunk(cond, noise), own, rtol=0, atol=1e-6)
    with pytest.raises(ValueError, match="noise must have shape"):
        sampler.chunk(cond, noise[:, :3])


class PerLevelDenoiser(torch.nn.Module):
    """A tiny float64 epsilon network with one gain per noise level: d(action)/d(gain[t]) is
    nonzero only if the gradient flows back through the step that evaluates level t."""

    def __init__(self, levels, width=3):
        super().__init__()
        generator = torch.Generator().manual_seed(0)
        self.gain = torch.nn.Parameter(1.0 + 0.1 * torch.randn(levels, generator=generator, dtype=torch.float64))
        self.mix = torch.nn.Parameter(0.3 * torch.randn(width, width, generator=generator, dtype=torch.float64))

    def forward(self, x, t):
        return self.gain[t] * torch.tanh(x @ self.mix)


@pytest.mark.parametrize("eta", [0.0, 0.5, 1.0])
def test_gradient_reaches_every_denoising_step_as_finite_differences_say(eta):
    schedule = NoiseSchedule(100)
    steps = schedule.ddim_timesteps(5)
    net = PerLevelDenoiser(100)
    generator = torch.Generator().manual_seed(1)
    noise = torch.randn((len(steps), 2, 4, 3), generator=generator, dtype=torch.float64)
    weights = torch.randn((2, 4, 3), generator=generator, dtype=torch.float64)

    def objective():
        x = denoise(net, noise[0], steps, schedule, "ddim", clip_sample=False, eta=eta,
                    step_noise=list(noise[1:]))
        return (x * weights).sum()

    objective().backward()
    analytic = net.gain.grad[steps].clone()
    numeric = torch.zeros(len(steps), dtype=torch.float64)
    h = 1e-6
    with torch.no_grad():
        for i, t in enumerate(steps):
            net.gain[t] += h
            up = objective()
            net.gain[t] -= 2 * h
            down = objective()
            net.gain[t] += h
            numeric[i] = (up - down) / (2 * h)
    assert torch.all(numeric.abs() > 1e-6), numeric          # every step matters to the action
    torch.testing.assert_close(analytic, numeric, rtol=1e-5, atol=1e-8)
    # and the shared weights, through all steps at once
    assert torch.autograd.gradcheck(lambda mix: _with_mix(net, mix, objective), (net.mix.detach().clone().requires_grad_(),))


def _with_mix(net, mix, objective):
    saved = net.mix
    del net.mix
    net.mix = mix
    try:
        return objective()
    finally:
        net.mix = saved


def test_policy_gradient_flows_into_every_unet_call():
    policy = tiny_policy(n_action_steps=2)
    sampler = NoiseConditionedSampler(policy, num_steps=4, eta=1.0)
    inputs = []
    hook = policy.unet.register_forward_pre_hook(lambda module, args: inputs.append(args[0]) or args[0].retain_grad())
    noise = sampler.draw_noise(3, torch.Generator().manual_seed(0)).requires_grad_()  # x_K too
    try:
        mean = sampler.mean_action({obs_keys.JOINT_POS: goals(3, 2)[:, None]}, noise)
        mean.square().sum().backward()
    finally:
        hook.remove()
    assert len(inputs) == 4
    for k, x in enumerate(inputs):
        assert x.grad is not None and x.grad.abs().sum() > 0, f"no gradient into denoising step {k}"
    assert all(p.grad is not None for p in policy.unet.parameters())


# --------------------------------------------------------------------------- PPO pieces
def test_gae_matches_a_hand_computation_and_stops_at_episode_ends():
    rewards = torch.tensor([[1.0], [2.0], [3.0]])
    values = torch.tensor([[0.5], [1.0], [1.5]])
    dones = torch.tensor([[0.0], [1.0], [0.0]])
    last = torch.tensor([2.0])
    adv, ret = generalized_advantages(rewards, values, dones, last, gamma=0.9, lam=0.8)
    d2 = 3.0 + 0.9 * 2.0 - 1.5
    d1 = 2.0 - 1.0                       # episode ended: no bootstrap from values[2]
    d0 = 1.0 + 0.9 * 1.0 - 0.5
    expected = torch.tensor([[d0 + 0.9 * 0.8 * d1], [d1], [d2]])
    torch.testing.assert_close(adv, expected)
    torch.testing.assert_close(ret, expected + values)


def test_group_advantages_compare_each_decision_with_the_groups_other_episodes():
    # two groups of two envs; env 1 succeeds at decision 1, env 3's next episode starts at decision 2
    rewards = torch.tensor([[1.0, 2.0, 0.0, 1.0],
                            [1.0, 5.0, 0.0, 1.0],
                            [3.0, 7.0, 4.0, 9.0]])
    dones = torch.tensor([[0.0, 0.0, 0.0, 0.0],
                          [0.0, 1.0, 0.0, 1.0],
                          [1.0, 1.0, 1.0, 1.0]])
    mask = first_episode_mask(dones)
    torch.testing.assert_close(mask, torch.tensor([[1.0, 1, 1, 1], [1, 1, 1, 1], [1, 0, 1, 0]]))
    advantages, to_go, same_mask = group_relative_advantages(rewards, dones, group_size=2, gamma=0.5)
    torch.testing.assert_close(same_mask, mask)
    expected_to_go = torch.tensor([[1 + 0.5 * (1 + 0.5 * 3), 2 + 0.5 * 5, 0 + 0.5 * (0 + 0.5 * 4), 1 + 0.5 * 1],
                                   [1 + 0.5 * 3, 5.0, 0 + 0.5 * 4, 1.0],
                                   [3.0, 0.0, 4.0, 0.0]])
    torch.testing.assert_close(to_go, expected_to_go)
    # the baseline is the other env's reward-to-go while its episode runs, else all others' (0 here)
    baseline = torch.tensor([[expected_to_go[0, 1], expected_to_go[0, 0], expected_to_go[0, 3], expected_to_go[0, 2]],
                             [expected_to_go[1, 1], expected_to_go[1, 0], expected_to_go[1, 3], expected_to_go[1, 2]],
                             [0.0, 0.0, 0.0, 0.0]])
    torch.testing.assert_close(advantages, (expected_to_go - baseline) * mask)
    with pytest.raises(ValueError, match="divides"):
        group_relative_advantages(rewards, dones, group_size=3, gamma=0.5)


def test_a_group_replays_one_task_with_one_sampler_noise_and_differs_only_by_exploration():
    policy = tiny_policy(n_action_steps=2)
    settings = NCDPOSettings(denoising_steps=3, init_std=0.1, min_std=0.05, group_size=2)
    envs = toy_envs(n_action_steps=2, num_envs=4)
    rollout, finished = NCDPOTrainer(policy, envs, settings).collector.collect_episodes([11, 12])
    goal = rollout.obs[obs_keys.JOINT_POS][0, :, 0]
    torch.testing.assert_close(goal[0], goal[1])
    torch.testing.assert_close(goal[2], goal[3])
    assert not torch.allclose(goal[0], goal[2])
    torch.testing.assert_close(rollout.noise[:, 0], rollout.noise[:, 1])
    assert not torch.allclose(rollout.noise[:, 0], rollout.noise[:, 2])
    assert not torch.allclose(rollout.actions[:, 0], rollout.actions[:, 1])
    assert len(finished) == 4 and rollout.rewards.shape[0] == 2   # one whole episode per env
    with pytest.raises(ValueError, match="group size must divide"):
        NCDPOTrainer(policy, toy_envs(num_envs=3), settings)


def test_a_task_pool_makes_the_groups_tasks_recur_across_iterations():
    def goals_seen(task_pool):
        settings = NCDPOSettings(denoising_steps=2, init_std=0.1, min_std=0.05, group_size=2,
                                 decisions_per_iteration=1, task_pool=task_pool)
        trainer = NCDPOTrainer(tiny_policy(), toy_envs(num_envs=4), settings)
        seen = set()
        for iteration in range(6):   # the groups' tasks depend on the iteration
            trainer.iteration = iteration
            batch = trainer._collect()[0]
            seen |= {tuple(np.round(goal.tolist(), 6)) for goal in batch["obs"][obs_keys.JOINT_POS][:, 0]}
        return seen

    assert len(goals_seen(task_pool=3)) <= 3
    assert len(goals_seen(task_pool=0)) > 3
    with pytest.raises(ValueError, match="task_pool"):
        NCDPOSettings(task_pool=5).validate()


def test_a_group_that_explores_one_decision_executes_the_mean_at_every_other():
    policy = tiny_policy(n_action_steps=2)
    settings = NCDPOSettings(denoising_steps=3, init_std=0.1, min_std=0.05, group_size=2)
    envs = make_vector_env(functools.partial(GoalReachEnv, ACTION_DIM, 1, 2, 3), 4, "sync")
    trainer = NCDPOTrainer(policy, envs, settings)
    rollout, _ = trainer.collector.collect_episodes([11, 12], explore_at=[1, 2])
    explored = torch.tensor([[0, 0, 0, 0], [1, 1, 0, 0], [0, 0, 1, 1]], dtype=torch.float32)
    torch.testing.assert_close(rollout.explored, explored)
    for t in range(3):
        mean = trainer.sampler.mean_action({k: v[t] for k, v in rollout.obs.items()}, rollout.noise[t])
        drawn = explored[t] > 0
        torch.testing.assert_close(rollout.actions[t][~drawn], mean[~drawn])
        assert (rollout.actions[t][drawn] - mean[drawn]).abs().amax(dim=(1, 2)).gt(1e-4).all()
    # a group's episodes are one trajectory up to its exploring decision, then only its draw differs
    torch.testing.assert_close(rollout.actions[:2, 2], rollout.actions[:2, 3])
    assert not torch.allclose(rollout.actions[1, 0], rollout.actions[1, 1])
    with pytest.raises(ValueError, match="one exploring decision per group"):
        trainer.collector.collect_episodes([11, 12], explore_at=[1])
    with pytest.raises(ValueError, match="needs group_size >= 2"):
        NCDPOSettings(explore_one_decision=True).validate()


def test_a_few_one_decision_iterations_raise_the_return_on_a_toy_problem():
    """Only each episode's exploring decision is trained on, and that is enough on the toy problem."""
    policy = clone_offset_demonstrations(tiny_policy())
    before = mean_action_return(policy)
    settings = NCDPOSettings(iterations=14, decisions_per_iteration=4, denoising_steps=3, eta=1.0, init_std=0.1,
                             min_std=0.05, seed=0, group_size=4, explore_one_decision=True,
                             ppo=PPOConfig(epochs=4, minibatch_size=16, policy_lr=1e-4, std_lr=1e-2, value_lr=1e-2))
    history = NCDPOTrainer(policy, toy_envs(num_envs=8), settings).train(progress=False)
    after = mean_action_return(policy)
    assert after > before + 0.3 * abs(before), (before, after)   # measured: -0.39 -> -0.16 (optimum 0)
    assert all(h["trained_decisions"] == 16 for h in history)   # 2 collections x 8 envs x 1 decision


@pytest.mark.parametrize("rho", [0.0, 0.8])
def test_exploration_density_is_the_gaussian_with_correlated_rows(rho):
    """log_prob, entropy and the KL to the base are those of N(mean, std^2 ((1 - rho) I + rho 11^T))
    per action dim over a chunk's rows, and the samples have that covariance."""
    torch.manual_seed(0)
    rows, dims = 5, 3
    head = GaussianHead(dims, init_std=0.3, min_std=0.05, row_correlation=rho)
    with torch.no_grad():
        head.log_excess.copy_(torch.log(torch.tensor([0.1, 0.25, 0.4])))
    std = head.std().detach().double()
    corr = (1 - rho) * torch.eye(rows, dtype=torch.float64) + rho * torch.ones(rows, rows, dtype=torch.float64)
    mean, other = torch.randn(4, rows, dims, dtype=torch.float64), torch.randn(4, rows, dims, dtype=torch.float64)
    action = mean + 0.3 * torch.randn(4, rows, dims, dtype=torch.float64)
    per_dim = [torch.distributions.MultivariateNormal(mean[..., d], covariance_matrix=std[d] ** 2 * corr)
               for d in range(dims)]
    other_dims = [torch.distributions.MultivariateNormal(other[..., d], covariance_matrix=std[d] ** 2 * corr)
                  for d in range(dims)]
    with torch.no_grad():
        close = functools.partial(torch.testing.assert_close, rtol=1e-5, atol=1e-5)   # the head's std is float32
        close(head.log_prob(mean, action), sum(dist.log_prob(action[..., d]) for d, dist in enumerate(per_dim)))
        close(head.entropy(mean), sum(dist.entropy() for dist in per_dim))
        close(head.kl_same_std(mean, other),
              sum(torch.distributions.kl_divergence(p, q) for p, q in zip(per_dim, other_dims)))
        samples = head.sample(torch.zeros(20000, rows, dims), torch.Generator().manual_seed(1)).double()
    for d in range(dims):
        empirical = torch.cov(samples[..., d].T)
        torch.testing.assert_close(empirical, std[d] ** 2 * corr, atol=0.03 * float(std[d]) ** 2, rtol=0)


def test_chunk_offset_head_explores_and_scores_one_offset_per_dim():
    """row_correlation 1: every row of a dim moves by one draw; the likelihood, entropy and KL are
    those of that offset, N(0, std^2) per dim; the shape no ratio sees is measured by shape_drift."""
    torch.manual_seed(0)
    rows, dims = 5, 3
    head = GaussianHead(dims, init_std=0.3, min_std=0.05, row_correlation=1.0)
    with torch.no_grad():
        head.log_excess.copy_(torch.log(torch.tensor([0.1, 0.25, 0.4])))
    std = head.std().detach()
    mean = torch.randn(4, rows, dims)
    with torch.no_grad():
        action = head.sample(mean, torch.Generator().manual_seed(1))
        offset = action - mean
        torch.testing.assert_close(offset, offset[:, :1].expand_as(offset))   # one offset moves every row
        gaussian = torch.distributions.Normal(torch.zeros(dims), std)
        close = functools.partial(torch.testing.assert_close, rtol=1e-5, atol=1e-5)
        close(head.log_prob(mean, action), gaussian.log_prob(offset[:, 0]).sum(-1))
        close(head.entropy(mean), gaussian.entropy().sum().expand(4))
        # an action drawn around this mean has this mean's shape: no drift
        close(head.shape_drift(mean, action), torch.zeros(4))
        bent = mean.clone()
        bent[:, 0, 1] += 0.05                  # one row of one dim: offset 0.01 and a shape change
        shape = torch.zeros(rows)
        shape[0] = 0.05
        shape -= 0.01
        close(head.shape_drift(bent, action), 0.5 * (shape ** 2).sum().expand(4) / std[1] ** 2)
        # the KL to a base: the offset's KL plus the shape term
        close(head.kl_same_std(bent, mean), 0.5 * (0.01 / std[1]) ** 2 + 0.5 * (shape ** 2).sum() / std[1] ** 2
              * torch.ones(4))
        samples = head.sample(torch.zeros(20000, rows, dims), torch.Generator().manual_seed(2))[:, 0]
    torch.testing.assert_close(samples.std(0), std, rtol=0.03, atol=0)


@pytest.mark.parametrize("rho", [0.0, 0.8, 1.0])
def test_an_unexplored_dim_executes_its_mean_and_is_left_out_of_the_likelihood(rho):
    """The gripper (dim 1 here) is executed at the mean; density, entropy, KL and shape drift are
    those of a head over the other dims alone, whatever the gripper's mean does."""
    torch.manual_seed(0)
    rows = 4
    head = GaussianHead(3, init_std=0.3, min_std=0.05, row_correlation=rho, unexplored_dims=(1,))
    alone = GaussianHead(2, init_std=0.3, min_std=0.05, row_correlation=rho)
    with torch.no_grad():
        head.log_excess.copy_(torch.log(torch.tensor([0.1, 0.25, 0.4])))
        alone.log_excess.copy_(torch.log(torch.tensor([0.1, 0.4])))
    mean, other = torch.randn(6, rows, 3), torch.randn(6, rows, 3)
    kept = [0, 2]
    with torch.no_grad():
        action = head.sample(mean, torch.Generator().manual_seed(1))
        torch.testing.assert_close(action[..., 1], mean[..., 1])
        assert (action[..., kept] - mean[..., kept]).abs().amin() > 0
        moved = other.clone()
        moved[..., kept] = mean[..., kept]       # only the unexplored dim differs from mean
        close = functools.partial(torch.testing.assert_close, rtol=1e-5, atol=1e-5)
        close(head.log_prob(mean, action), alone.log_prob(mean[..., kept], action[..., kept]))
        close(head.log_prob(moved, action), head.log_prob(mean, action))
        close(head.entropy(mean), alone.entropy(mean[..., kept]))
        close(head.kl_same_std(mean, other), alone.kl_same_std(mean[..., kept], other[..., kept]))
        close(head.shape_drift(moved, action), alone.shape_drift(mean[..., kept], action[..., kept]))
    for bad in ((3,), (0, 0), (0, 1, 2)):
        with pytest.raises(ValueError, match="unexplored_dims"):
            GaussianHead(3, unexplored_dims=bad)


def test_the_trainer_leaves_the_policys_gripper_dims_unexplored_unless_asked():
    policy = tiny_policy()
    policy.config.gripper_dims, policy.config.discrete_method = [1], "clip"   # the second dim a gripper
    envs = toy_envs(num_envs=2)
    assert NCDPOTrainer(policy, envs, NCDPOSettings(explore_gripper=False)).head.explored.tolist() == [True, False]
    assert NCDPOTrainer(policy, envs, NCDPOSettings()).head.explored.tolist() == [True, True]


def test_exploration_row_correlation_must_be_a_correlation():
    for bad in (-0.1, 1.1):
        with pytest.raises(ValueError, match="row_correlation"):
            GaussianHead(2, row_correlation=bad)
        with pytest.raises(ValueError, match="row_correlation"):
            NCDPOSettings(row_correlation=bad).validate()
    assert GaussianHead(2, row_correlation=0.0).shape_drift(torch.zeros(1, 2, 2), torch.ones(1, 2, 2)).item() == 0


def test_exploration_std_never_falls_below_its_floor():
    head = GaussianHead(3, init_std=0.2, min_std=0.05)
    optimizer = torch.optim.Adam(head.parameters(), lr=1.0)
    for _ in range(100):
        optimizer.zero_grad()
        head.std().sum().backward()       # push the std down as hard as possible
        optimizer.step()
    assert torch.all(head.std() >= 0.05) and torch.all(head.std() < 0.051), head.std()
    mean = torch.zeros(4, 2, 3)
    assert torch.isfinite(head.log_prob(mean, head.sample(mean))).all()


@pytest.mark.parametrize("row_correlation", [0.0, 0.9, 1.0])
def test_ppo_ratio_is_exactly_one_before_the_first_update(row_correlation):
    policy = tiny_policy(n_action_steps=2)
    envs = toy_envs(n_action_steps=2, num_envs=4)
    trainer = NCDPOTrainer(policy, envs, NCDPOSettings(iterations=1, decisions_per_iteration=3, denoising_steps=3,
                                                       row_correlation=row_correlation))
    trainer.collector.reset(seed=0)
    rollout, _ = trainer.collector.collect(3)
    adv, ret = generalized_advantages(rollout.rewards, rollout.values, rollout.dones, rollout.last_values, 0.99, 0.95)
    for t in range(3):     # the same decisions batched as in the rollout: bit for bit the same map
        obs = {k: v[t] for k, v in rollout.obs.items()}
        new_logp, _ = trainer.updater.log_prob_and_mean(obs, rollout.noise[t], rollout.actions[t])
        ratio = (new_logp - rollout.log_prob[t]).exp()
        assert torch.equal(ratio, torch.ones_like(ratio)), ratio
    batch = rollout.flat(adv, ret)
    # as minibatches of another size see them: 1 up to float rounding of the batched kernels
    new_logp, _ = trainer.updater.log_prob_and_mean(batch["obs"], batch["noise"], batch["actions"])
    torch.testing.assert_close((new_logp - batch["log_prob"]).exp(), torch.ones(12), rtol=0, atol=1e-4)
    # and a different noise would not give ratio 1: the stored noise is what makes it exact
    other, _ = trainer.updater.log_prob_and_mean(batch["obs"], torch.randn_like(batch["noise"]), batch["actions"])
    assert not torch.allclose(other, batch["log_prob"])


# --------------------------------------------------------------------------- the loop
def test_a_few_iterations_raise_the_return_on_a_toy_problem():
    policy = clone_offset_demonstrations(tiny_policy())
    before = mean_action_return(policy)
    assert before < -0.1                 # the base misses by the demonstrations' offset
    settings = NCDPOSettings(iterations=14, decisions_per_iteration=4, denoising_steps=3, eta=1.0, init_std=0.1,
                             min_std=0.05, seed=0,
                             ppo=PPOConfig(epochs=4, minibatch_size=16, policy_lr=1e-4, std_lr=1e-2, value_lr=1e-2))
    history = NCDPOTrainer(policy, toy_envs(), settings).train(progress=False)
    after = mean_action_return(policy)
    assert after > before + 0.3 * abs(before), (before, after)   # measured: -0.39 -> -0.21 (optimum 0)
    assert history[-1]["env_steps"] == 14 * 4 * 8
    assert np.mean([h["mean_return"] for h in history[-3:]]) > np.mean([h["mean_return"] for h in history[:3]])


def test_a_few_group_iterations_raise_the_return_on_a_toy_problem():
    policy = clone_offset_demonstrations(tiny_policy())
    before = mean_action_return(policy)
    settings = NCDPOSettings(iterations=14, decisions_per_iteration=4, denoising_steps=3, eta=1.0, init_std=0.1,
                             min_std=0.05, seed=0, group_size=4,
                             ppo=PPOConfig(epochs=4, minibatch_size=16, policy_lr=1e-4, std_lr=1e-2, value_lr=1e-2))
    history = NCDPOTrainer(policy, toy_envs(num_envs=8), settings).train(progress=False)
    after = mean_action_return(policy)
    assert after > before + 0.3 * abs(before), (before, after)   # measured: -0.39 -> -0.13 (optimum 0)
    assert history[-1]["env_steps"] == 14 * 4 * 8     # two 2-decision episodes per env and iteration
    assert all(h["episodes"] == 16 for h in history)


def test_a_few_chunk_offset_iterations_raise_the_return_on_a_toy_problem():
    """Exploration by one offset per 4-row chunk: the ratio sees the offset, the shape is held by
    its drift term, and the return still rises."""
    policy = clone_offset_demonstrations(tiny_policy(n_action_steps=4))
    before = mean_action_return(policy)
    settings = NCDPOSettings(iterations=14, decisions_per_iteration=4, denoising_steps=3, eta=1.0, init_std=0.1,
                             min_std=0.05, seed=0, group_size=4, row_correlation=1.0,
                             ppo=PPOConfig(epochs=4, minibatch_size=16, policy_lr=1e-4, std_lr=1e-2, value_lr=1e-2))
    history = NCDPOTrainer(policy, toy_envs(n_action_steps=4, num_envs=8), settings).train(progress=False)
    after = mean_action_return(policy)
    assert after > before + 0.3 * abs(before), (before, after)   # measured: -0.40 -> -0.15 (optimum 0)
    assert all("shape_drift" in h for h in history)


def test_critic_warmup_fits_the_value_and_leaves_the_policy_untouched():
    policy = tiny_policy()
    settings = NCDPOSettings(iterations=3, decisions_per_iteration=3, denoising_steps=3, critic_warmup_iterations=2,
                             ppo=PPOConfig(policy_lr=1e-3, std_lr=1e-2, value_lr=1e-2))
    trainer = NCDPOTrainer(policy, toy_envs(num_envs=4), settings)

    def snapshot():
        return ([p.detach().clone() for p in policy.parameters()], trainer.head.std().detach().clone(),
                [p.detach().clone() for p in trainer.value.parameters()])
    policy_before, std_before, value_before = snapshot()
    trainer.train(until=2, progress=False)
    policy_warm, std_warm, value_warm = snapshot()
    assert all(torch.equal(a, b) for a, b in zip(policy_before, policy_warm))
    assert torch.equal(std_before, std_warm)
    assert not all(torch.equal(a, b) for a, b in zip(value_before, value_warm))
    trainer.train(progress=False)            # iteration 3: past the warm-up, the policy learns
    assert not all(torch.equal(a, b) for a, b in zip(policy_warm, policy.parameters()))


def test_the_policy_lr_warms_up_over_the_first_iterations_that_train_the_policy():
    """Adam's first steps move every weight by about the lr: the lr rises linearly, counted from
    the first iteration past the critic's warm-up, and the first policy step is that much smaller."""
    def first_policy_step(lr_warmup):
        torch.manual_seed(0)
        policy = tiny_policy()
        settings = NCDPOSettings(iterations=6, decisions_per_iteration=3, denoising_steps=3, critic_warmup_iterations=1,
                                 policy_lr_warmup_iterations=lr_warmup, ppo=PPOConfig(policy_lr=1e-3, epochs=1))
        trainer = NCDPOTrainer(policy, toy_envs(num_envs=4), settings)
        lrs, steps = [], []
        for _ in range(6):
            before = [p.detach().clone() for p in policy.parameters()]
            trainer.train(until=trainer.iteration + 1, progress=False)
            lrs.append(trainer.updater.optimizer.param_groups[0]["lr"])
            steps.append(max(float((p.detach() - b).abs().max()) for p, b in zip(policy.parameters(), before)))
        return lrs, steps

    lrs, steps = first_policy_step(lr_warmup=4)
    assert lrs[1:] == pytest.approx([0.25e-3, 0.5e-3, 0.75e-3, 1e-3, 1e-3])   # iteration 1 fits the critic only
    assert steps[0] == 0.0 and 0.0 < steps[1] <= 0.25e-3 * 1.001
    plain_lrs, plain_steps = first_policy_step(lr_warmup=0)
    assert plain_lrs[1:] == pytest.approx([1e-3] * 5)
    assert plain_steps[1] > 2 * steps[1]
    with pytest.raises(ValueError, match="policy_lr_warmup_iterations"):
        NCDPOSettings(policy_lr_warmup_iterations=-1).validate()


def test_save_resume_and_the_checkpoint_loads_with_the_fine_tuned_sampler(tmp_path):
    out = str(tmp_path / "rl")

    def trainer():
        settings = NCDPOSettings(iterations=3, decisions_per_iteration=2, denoising_steps=3, eta=0.7,
                                 noise_scale=0.5, checkpoint_every=1, seed=4)
        return NCDPOTrainer(tiny_policy(n_action_steps=2), toy_envs(2, 2), settings, out_dir=out)

    first = trainer()
    first.train(until=2, progress=False)
    assert first.iteration == 2
    second = trainer()
    assert second.resume()
    assert second.iteration == 2 and second.env_steps == first.env_steps and second.history == first.history
    torch.testing.assert_close(second.head.std(), first.head.std())
    for a, b in zip(second.value.parameters(), first.value.parameters()):
        assert torch.equal(a, b)
    for a, b in zip(second.policy.parameters(), first.policy.parameters()):
        assert torch.equal(a, b)
    second.train(progress=False)
    assert second.iteration == 3 and len(second.history) == 3
    # the saved optimizer, head and history belong to the saved settings: another lr is refused
    changed = NCDPOSettings(iterations=5, decisions_per_iteration=2, denoising_steps=3, eta=0.7, noise_scale=0.5,
                            checkpoint_every=1, seed=4, ppo=PPOConfig(policy_lr=3e-6))
    with pytest.raises(ValueError, match=r"ppo\.policy_lr 1e-05 -> 3e-06"):
        NCDPOTrainer(tiny_policy(n_action_steps=2), toy_envs(2, 2), changed, out_dir=out).resume()
    # a run saved before a setting existed resumes under that setting's default
    state = json.loads((tmp_path / "rl" / "rl_state.json").read_text())
    del state["settings"]["group_size"]
    (tmp_path / "rl" / "rl_state.json").write_text(json.dumps(state))
    assert trainer().resume()
    # another reward is another objective; a run saved before the hold existed paid the first true step
    def with_reward(reward):
        settings = NCDPOSettings(iterations=3, decisions_per_iteration=2, denoising_steps=3, eta=0.7,
                                 noise_scale=0.5, checkpoint_every=1, seed=4)
        return NCDPOTrainer(tiny_policy(n_action_steps=2), toy_envs(2, 2), settings, out_dir=out,
                            extra_info={"reward": reward})
    with pytest.raises(ValueError, match=r"reward\.success_hold_s 0\.0 -> 1\.0"):
        with_reward({"success_hold_s": 1.0}).resume()
    assert with_reward({"success_hold_s": 0.0}).resume()
    loaded = load_checkpoint(out, device="cpu")
    assert (loaded.config.sampler, loaded.config.ddim_steps, loaded.config.ddim_eta) == ("ddim", 3, 0.7)
    assert loaded.config.sample_noise_scale == 0.5   # deployed with the noise it was fine-tuned with
    for a, b in zip(loaded.parameters(), second.policy.parameters()):
        assert torch.equal(a, b)
    assert (tmp_path / "rl" / "learning_curve.png").stat().st_size > 1000
    chunk = loaded.predict_action_chunk({obs_keys.JOINT_POS: np.zeros((1, ACTION_DIM), np.float32)}, 0.0)
    assert chunk.shape == (2, ACTION_DIM) and np.isfinite(chunk).all()


def test_the_fine_tuning_noise_has_the_policys_noise_scale_and_zero_makes_sampling_seed_free():
    """The RL sampler draws its noise at the policy's sample_noise_scale (what the deployed
    sampler draws); at 0, a stochastic DDIM sample no longer depends on the generator's seed."""
    policy = tiny_policy(n_action_steps=2)
    policy.set_sampler("ddim", ddim_steps=4, ddim_eta=1.0, sample_noise_scale=0.25)
    noise = NoiseConditionedSampler(policy, 4, 1.0).draw_noise(2000, torch.Generator().manual_seed(0))
    assert abs(float(noise.std()) - 0.25) < 0.005 and abs(float(noise.mean())) < 0.005
    cond = policy.encode({obs_keys.JOINT_POS: torch.zeros(1, 1, ACTION_DIM)})

    def sample(scale, seed):
        policy.set_sampler("ddim", ddim_steps=4, ddim_eta=1.0, sample_noise_scale=scale)
        with torch.no_grad():
            return policy.sample_chunk(cond, "ddim", 4, generator=torch.Generator().manual_seed(seed))
    assert torch.equal(sample(0.0, 1), sample(0.0, 2))
    assert not torch.allclose(sample(1.0, 1), sample(1.0, 2))
    with pytest.raises(ValueError, match="sample_noise_scale"):
        policy.set_sampler("ddim", sample_noise_scale=1.5)


# --------------------------------------------------------------------------- the sim as a chunk env
def test_sim_chunk_env_pays_the_expert_its_shaping_and_one_success_bonus():
    """Real MuJoCo: the scripted expert, one row per decision, succeeds and lets the cube rest for
    the hold; the return is the bonus (once) plus the shaping, which telescopes to
    scale * (phi(end) - phi(start))."""
    from diffusion_policy_ros.rl.chunk_env import CRITIC_KEY, SimChunkEnv
    from diffusion_policy_ros.rl.rewards import PickPlaceReward
    from diffusion_policy_ros.robot_config import load_robot_config
    env = SimChunkEnv(load_robot_config("config/single_arm.yaml"), "pick_place", {obs_keys.JOINT_POS: [7]},
                      n_obs_steps=2, n_action_steps=1, episode_seconds=12.0)
    obs, info = env.reset(seed=5)
    assert info["task_seed"] >= 1_000_000
    assert obs[obs_keys.JOINT_POS].shape == (2, 7) and obs[CRITIC_KEY].shape == (17,)
    assert env.observation_space.contains(obs)
    start = PickPlaceReward.potential(env.env)
    total, terminated, truncated = 0.0, False, False
    while not (terminated or truncated):
        obs, reward, terminated, truncated, _ = env.step(env.env.expert_action()[None])
        total += reward
    assert terminated and not truncated and env.env.success()
    shaping = 10.0 * (PickPlaceReward.potential(env.env) - start)
    assert shaping > 0
    assert total == pytest.approx(10.0 + shaping, abs=1e-9)
    with pytest.raises(ValueError, match="chunk of shape"):
        env.step(np.zeros((2, 7)))
    with pytest.raises(ValueError, match="cannot provide"):
        SimChunkEnv(load_robot_config("config/single_arm.yaml"), "pick_place", {"obs/cube_pose": [7]}, 2, 8)
    with pytest.raises(ValueError, match="unknown sim task"):
        SimChunkEnv(load_robot_config("config/single_arm.yaml"), "juggle", {obs_keys.JOINT_POS: [7]}, 2, 8)
    env.close()


class _SuccessScript:
    """What PickPlaceReward reads of a SimEnv, scripted: the success test per control step."""

    def __init__(self, successes, period_s=0.1):
        self.successes, self.period_s, self.steps = list(successes), period_s, 0

    @property
    def time(self):
        return self.steps * self.period_s

    def success(self):
        return self.successes[self.steps - 1]


def _bonus_steps(successes, hold_s):
    from diffusion_policy_ros.rl.rewards import PickPlaceReward

    class Unshaped(PickPlaceReward):
        potential = staticmethod(lambda env: 0.0)
    reward, env, paid = Unshaped(success_bonus=1.0, success_hold_s=hold_s), _SuccessScript(successes), []
    reward.reset(env)
    for step in range(1, len(successes) + 1):
        env.steps = step
        value, held = reward.step(env)
        if value:
            assert held          # the bonus comes with the episode's end
            paid.append(step)
    return paid


def test_the_success_bonus_waits_for_success_held_without_a_break():
    """A success test that flickers true while the cube is carried past the target is not paid;
    a hold of 0 is the first-true-step reward of earlier runs."""
    flicker = [False, True, False, False, True, True, False, True, True, True, True, True, True]
    assert _bonus_steps(flicker, hold_s=0.5) == [13]       # true from step 8: 0.5 s held at step 13
    assert _bonus_steps(flicker, hold_s=0.0) == [2]
    assert _bonus_steps(flicker[:12], hold_s=0.5) == []
    with pytest.raises(ValueError, match="success_hold_s"):
        _bonus_steps(flicker, hold_s=-1.0)


def test_sim_chunk_envs_with_one_seed_and_one_chunk_sequence_replay_the_same_episode():
    """What the groups rely on: the sim is deterministic, so a replay differs only where its
    actions do."""
    from diffusion_policy_ros.rl.chunk_env import CRITIC_KEY, SimChunkEnv
    from diffusion_policy_ros.robot_config import load_robot_config
    envs = [SimChunkEnv(load_robot_config("config/single_arm.yaml"), "pick_place", {obs_keys.JOINT_POS: [7]},
                        n_obs_steps=2, n_action_steps=4, episode_seconds=12.0) for _ in range(3)]
    first = [env.reset(seed=9)[0] for env in envs]
    chunks = [envs[0].env.expert_action()[None].repeat(4, 0)] * 6   # hold the expert's first target
    traces = []
    for k, env in enumerate(envs):
        trace = [first[k][CRITIC_KEY]]
        for i, chunk in enumerate(chunks):
            # the third env leaves the others by one centiradian on its first joint at decision 3
            if k == 2 and i == 3:
                chunk = chunk + np.eye(7)[0] * 0.01
            obs, reward, *_ = env.step(chunk)
            trace.append(np.append(obs[CRITIC_KEY], reward))
        traces.append(trace)
        env.close()
    assert all(np.array_equal(a, b) for a, b in zip(traces[0][1:], traces[1][1:]))
    np.testing.assert_array_equal(traces[0][0], traces[1][0])
    assert all(np.array_equal(a, b) for a, b in zip(traces[0][:4], traces[2][:4]))
    assert not np.array_equal(traces[0][5], traces[2][5])

