"""How much signal an NCDPO policy gradient carries at a given exploration (docs/rl_finetuning.md):
the agreement of two gradients estimated from independent halves of one batch.

Collects `--envs` x `--decisions` decisions with the policy's RL sampler and the exploration head,
takes the discounted reward-to-go of each decision minus the batch's mean as its advantage (the
same for every exploration setting: no critic; `--lam` below 1 discounts later rewards by
(gamma lam)^k, and `--lam 0` keeps only the decision's own reward), and computes the REINFORCE
gradient of mean(A log pi) over the policy's parameters separately for the decisions of the first and of the
second half of the envs. When the batch pins the direction down, the cosine is positive from one
batch (seed) to the next; when noise dominates, it changes sign from seed to seed. A few
parameters (the last layers) carry most of the gradient's norm, so even a noise-only cosine can
be far from 0: compare several seeds, not one number. The median of the per-tensor cosines is
printed too: every weight tensor counts once there, whatever its gradient's size.

`--group-size G` replays each task seed in G envs with one sampler noise (common random numbers)
and takes each decision's reward-to-go minus that of the group's other envs as its advantage
(rl/advantages.group_relative_advantages); only first episodes count, and the halves split groups.
`--rounds R` (with groups) collects R rounds of first episodes, each on new task seeds, and pools
them: more decisions per half than one round of `--envs` gives.
`--same-tasks` (with groups) collects every round twice on the same task seeds and gives each
half one of the two: then both halves estimate the same gradient, and a cosine near 0 is noise
and not tasks that want different changes.
`--explore-one-decision` (with groups) draws each group's actions at one decision only, as
`dpros rl ncdpo --explore-one-decision`, and only those decisions give the gradients.

    ./env.sh python scripts/ncdpo_gradient_agreement.py --checkpoint CK --config config/single_arm_state.yaml \
        --noise-scale 0.25 --init-std 0.05 [--row-correlation 0.9 --init-std 0.02 --min-std 0.01]
"""
from __future__ import annotations

import argparse

import numpy as np
import torch


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--checkpoint", required=True)
    parser.add_argument("--config", default="config/single_arm.yaml", help="robot config of the sim")
    parser.add_argument("--task", default="pick_place")
    parser.add_argument("--envs", type=int, default=16, help="even: half of them give each gradient")
    parser.add_argument("--decisions", type=int, default=30, help="per env")
    parser.add_argument("--denoising-steps", type=int, default=8)
    parser.add_argument("--noise-scale", type=float, default=0.25)
    parser.add_argument("--init-std", type=float, default=0.05)
    parser.add_argument("--min-std", type=float, default=0.02)
    parser.add_argument("--row-correlation", type=float, default=0.0)
    parser.add_argument("--gamma", type=float, default=0.99)
    parser.add_argument("--lam", type=float, default=1.0,
                        help="weight (gamma lam)^k of the k-th later reward in a decision's advantage")
    parser.add_argument("--success-bonus", type=float, default=10.0, help="as dpros rl ncdpo's")
    parser.add_argument("--group-size", type=int, default=1,
                        help="envs that replay one task seed with one sampler noise (1: none)")
    parser.add_argument("--explore-gripper", action="store_true",
                        help="draw the gripper dims too (as dpros rl ncdpo --explore-gripper; the numbers in "
                             "docs/rl_finetuning.md before 'The gripper's exploration' were measured with it)")
    parser.add_argument("--explore-one-decision", action="store_true",
                        help="with --group-size: a group explores at one decision (as dpros rl ncdpo's)")
    parser.add_argument("--rounds", type=int, default=1,
                        help="with --group-size: rounds of first episodes on new task seeds, pooled (more "
                             "decisions per half than --envs alone gives)")
    parser.add_argument("--same-tasks", action="store_true",
                        help="with --group-size: the halves replay the same task seeds (each round is "
                             "collected twice), so both estimate one gradient; otherwise they split the groups")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    if args.explore_one_decision and args.group_size < 2:
        parser.error("--explore-one-decision needs --group-size >= 2")
    if args.rounds < 1 or ((args.rounds > 1 or args.same_tasks) and args.group_size < 2):
        parser.error("--rounds must be >= 1; above 1, and --same-tasks, only with --group-size")
    if args.envs < 2 or args.envs % (2 * args.group_size):
        parser.error("--envs must split into two halves of whole groups")

    from diffusion_policy_ros.policy.checkpoint import load_checkpoint
    from diffusion_policy_ros.rl.advantages import generalized_advantages
    from diffusion_policy_ros.rl.ppo import PPOConfig
    from diffusion_policy_ros.rl.trainer import NCDPOSettings, NCDPOTrainer
    from diffusion_policy_ros.rl.vector import make_vector_env, sim_chunk_env_fn
    from diffusion_policy_ros.robot_config import load_robot_config

    torch.set_num_threads(1)
    policy = load_checkpoint(args.checkpoint, device="cpu")
    envs = make_vector_env(sim_chunk_env_fn(load_robot_config(args.config), args.task, policy.config,
                                            reward_kwargs={"success_bonus": args.success_bonus}), args.envs, "async")
    try:
        settings = NCDPOSettings(denoising_steps=args.denoising_steps, noise_scale=args.noise_scale,
                                 init_std=args.init_std, min_std=args.min_std,
                                 row_correlation=args.row_correlation, seed=args.seed,
                                 group_size=args.group_size, explore_one_decision=args.explore_one_decision,
                                 explore_gripper=args.explore_gripper, ppo=PPOConfig(gamma=args.gamma))
        trainer = NCDPOTrainer(policy, envs, settings)
        # each half: (rollout, advantages, decisions kept, the envs of that rollout in the half)
        halves, finished = ([], []), []
        every = list(range(args.envs))
        first_envs, second_envs = every[:args.envs // 2], every[args.envs // 2:]
        if args.group_size > 1:
            groups = args.envs // args.group_size
            rng = np.random.default_rng(args.seed)
            for r in range(args.rounds):
                explore_at = (rng.integers(0, trainer.max_decisions, groups).tolist()
                              if args.explore_one_decision else None)
                for replay in range(2 if args.same_tasks else 1):
                    round_ = trainer.collect_group_round([args.seed * 7919 + r * groups + g for g in range(groups)],
                                                         explore_at)
                    kept = (round_.rollout, round_.advantages, round_.trained)
                    if args.same_tasks:
                        halves[replay].append((*kept, every))
                    else:
                        halves[0].append((*kept, first_envs))
                        halves[1].append((*kept, second_envs))
                    finished += round_.episodes
        else:
            trainer.collector.reset(seed=[args.seed * 7919 + i for i in range(args.envs)])
            rollout, finished = trainer.collector.collect(args.decisions)
            zeros = torch.zeros_like(rollout.rewards)
            raw, _ = generalized_advantages(rollout.rewards, zeros, rollout.dones, zeros[0], args.gamma, args.lam)
            raw, mask = raw - raw.mean(), torch.ones_like(raw)
            halves = ([(rollout, raw, mask, first_envs)], [(rollout, raw, mask, second_envs)])
    finally:
        envs.close()
    # (a round split between the halves is in both: the cosine does not depend on this scale)
    scale = torch.cat([raw[mask > 0] for _, raw, mask, _ in halves[0] + halves[1]]).std() + 1e-8
    params = [p for p in policy.parameters() if p.requires_grad]

    def gradient(half) -> tuple[list[torch.Tensor], int]:
        """The half's gradient of mean(A log pi) over its kept decisions, accumulated in slices."""
        parts = []
        for rollout, raw, mask, env_ids in half:
            kept = mask[:, env_ids].reshape(-1) > 0
            parts.append(({k: v[:, env_ids].reshape(-1, *v.shape[2:])[kept] for k, v in rollout.obs.items()},
                          rollout.noise[:, env_ids].reshape(-1, *rollout.noise.shape[2:])[kept],
                          rollout.actions[:, env_ids].reshape(-1, *rollout.actions.shape[2:])[kept],
                          (raw * mask / scale)[:, env_ids].reshape(-1)[kept]))
        total = sum(len(weights) for *_, weights in parts)
        policy.zero_grad(set_to_none=True)
        for obs, noise, actions, weights in parts:
            for i in range(0, len(weights), 512):   # bounded memory through the K denoising steps
                mean = trainer.sampler.mean_action({k: v[i:i + 512] for k, v in obs.items()}, noise[i:i + 512])
                (-(weights[i:i + 512] * trainer.head.log_prob(mean, actions[i:i + 512])).sum() / total).backward()
        return [p.grad.reshape(-1).clone() for p in params if p.grad is not None], total

    (first, first_n), (second, second_n) = gradient(halves[0]), gradient(halves[1])
    cosine = float(torch.nn.functional.cosine_similarity(torch.cat(first), torch.cat(second), dim=0))
    # per parameter tensor, so that the few tensors with the largest gradients do not decide alone
    tensor_cosines = [float(torch.nn.functional.cosine_similarity(a, b, dim=0))
                      for a, b in zip(first, second) if a.numel() > 1]
    success = np.mean([e["success"] for e in finished]) if finished else float("nan")
    print(f"exploration std {args.init_std} (row correlation {args.row_correlation}), sampler noise scale "
          f"{args.noise_scale}, {'one exploring decision, ' if args.explore_one_decision else ''}{'gripper explored, ' if args.explore_gripper else ''}lambda {args.lam}, success bonus {args.success_bonus}: {len(finished)} episodes, success {success:.2f}; "
          f"{first_n} + {second_n} decisions in the halves; gradient cosine between halves {cosine:+.3f}, "
          f"median over the {len(tensor_cosines)} parameter tensors {np.median(tensor_cosines):+.3f}")


if __name__ == "__main__":
    main()
