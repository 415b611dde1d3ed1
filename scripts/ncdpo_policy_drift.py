"""How far fine-tuning moved a policy (docs/rl_finetuning.md): the executed means of the base and of
each fine-tuned checkpoint on the same observations with the same sampler noise.

The observations come from the base's own rollouts (with the exploration the runs use) in the sim;
the printout is the mean and the largest |fine-tuned - base| per action dim, in normalized action
space, where a joint spans [-1, 1], and how much of it is the chunk's offset (the mean over its
rows, what a coherent exploration explores) and how much its shape.

    ./env.sh python scripts/ncdpo_policy_drift.py --base build/train/pick_place_state30_s3000 \
        --config config/single_arm_state.yaml build/rl/RUN_A build/rl/RUN_B
"""
from __future__ import annotations

import argparse

import torch


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--base", required=True, help="the checkpoint the runs started from")
    parser.add_argument("fine_tuned", nargs="+", help="fine-tuned checkpoints (dpros rl ncdpo --out)")
    parser.add_argument("--config", default="config/single_arm.yaml", help="robot config of the sim")
    parser.add_argument("--task", default="pick_place")
    parser.add_argument("--envs", type=int, default=4)
    parser.add_argument("--decisions", type=int, default=15, help="per env")
    parser.add_argument("--denoising-steps", type=int, default=8)
    parser.add_argument("--eta", type=float, default=1.0)
    parser.add_argument("--noise-scale", type=float, default=0.25)
    parser.add_argument("--init-std", type=float, default=0.02, help="exploration of the base's rollouts")
    parser.add_argument("--row-correlation", type=float, default=0.9)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    from diffusion_policy_ros.policy.checkpoint import load_checkpoint
    from diffusion_policy_ros.rl.noise_sampler import NoiseConditionedSampler
    from diffusion_policy_ros.rl.trainer import NCDPOSettings, NCDPOTrainer
    from diffusion_policy_ros.rl.vector import make_vector_env, sim_chunk_env_fn
    from diffusion_policy_ros.robot_config import load_robot_config

    torch.set_num_threads(1)
    base = load_checkpoint(args.base, device="cpu")
    envs = make_vector_env(sim_chunk_env_fn(load_robot_config(args.config), args.task, base.config),
                           args.envs, "sync")
    try:
        settings = NCDPOSettings(denoising_steps=args.denoising_steps, eta=args.eta, noise_scale=args.noise_scale,
                                 init_std=args.init_std, min_std=args.init_std / 2,
                                 row_correlation=args.row_correlation, seed=args.seed)
        trainer = NCDPOTrainer(base, envs, settings)
        trainer.collector.reset(seed=[args.seed * 7919 + i for i in range(args.envs)])
        rollout, _ = trainer.collector.collect(args.decisions)
    finally:
        envs.close()
    obs = {k: v.reshape(-1, *v.shape[2:]) for k, v in rollout.obs.items()}
    noise = rollout.noise.reshape(-1, *rollout.noise.shape[2:])
    with torch.no_grad():
        base_mean = trainer.sampler.mean_action(obs, noise)
        for path in args.fine_tuned:
            sampler = NoiseConditionedSampler(load_checkpoint(path, device="cpu"), args.denoising_steps, args.eta)
            change = sampler.mean_action(obs, noise) - base_mean
            offset = change.mean(1, keepdim=True)
            drift = change.abs()
            print(f"{path}: over {noise.shape[0]} decisions, mean |fine-tuned - base| per action dim "
                  f"{[round(float(x), 4) for x in drift.mean((0, 1))]}, largest {float(drift.max()):.3f}; "
                  f"of which the chunk's offset (mean over rows) {[round(float(x), 4) for x in offset.abs().mean((0, 1))]} "
                  f"and its shape (rows minus offset) {[round(float(x), 4) for x in (change - offset).abs().mean((0, 1))]}")


if __name__ == "__main__":
    main()
