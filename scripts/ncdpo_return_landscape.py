"""Is an episode's return a smooth function of the exploration? (docs/rl_finetuning.md)

For each training task seed: one sampler noise and one exploration draw per decision (the head's
distribution: std and row correlation as the runs use), then episodes of the same task with the
executed means offset by s times that draw, for each s in --scales. A policy gradient estimated
from exploration needs the return to change smoothly with s over about one std; a '*' marks a
success.

    ./env.sh python scripts/ncdpo_return_landscape.py --checkpoint build/train/pick_place_state30_s3000 \
        --config config/single_arm_state.yaml --tasks 1,6,7,8,9,10,11,12 --scales=-5,-3,-2,-1,0,1,2,3,5
"""
from __future__ import annotations

import argparse

import torch


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--checkpoint", required=True)
    parser.add_argument("--config", default="config/single_arm.yaml", help="robot config of the sim")
    parser.add_argument("--task", default="pick_place")
    parser.add_argument("--tasks", default="1,2,3,4,5,6", help="env reset seeds, comma-separated")
    parser.add_argument("--scales", default="-1,-0.5,0,0.5,1", help="multiples of the exploration draw")
    parser.add_argument("--episode-seconds", type=float, default=12.0)
    parser.add_argument("--denoising-steps", type=int, default=8)
    parser.add_argument("--eta", type=float, default=1.0)
    parser.add_argument("--noise-scale", type=float, default=0.25)
    parser.add_argument("--std", type=float, default=0.02)
    parser.add_argument("--row-correlation", type=float, default=0.9)
    args = parser.parse_args()

    from diffusion_policy_ros.policy.checkpoint import load_checkpoint
    from diffusion_policy_ros.rl.chunk_env import SimChunkEnv
    from diffusion_policy_ros.rl.exploration import GaussianHead
    from diffusion_policy_ros.rl.noise_sampler import NoiseConditionedSampler
    from diffusion_policy_ros.robot_config import load_robot_config

    torch.set_num_threads(1)
    policy = load_checkpoint(args.checkpoint, device="cpu")
    cfg = policy.config
    env = SimChunkEnv(load_robot_config(args.config), args.task, dict(cfg.obs_shapes), cfg.n_obs_steps,
                      cfg.n_action_steps, args.episode_seconds)
    sampler = NoiseConditionedSampler(policy, args.denoising_steps, args.eta)
    head = GaussianHead(cfg.action_dim, args.std, args.std / 2, args.row_correlation)
    keys = sorted(cfg.obs_shapes)
    scales = [float(s) for s in args.scales.split(",")]
    print(f"return per scale {scales} of one exploration draw (std {args.std}, row correlation "
          f"{args.row_correlation}); * = success")
    try:
        for task in (int(t) for t in args.tasks.split(",")):
            generator = torch.Generator().manual_seed(task)
            noise, draws = [], []

            def decision(t):
                while len(noise) <= t:   # drawn in order, so every scale sees the same ones
                    noise.append(torch.randn(sampler.noise_shape(1), generator=generator) * args.noise_scale)
                    draws.append(head.sample(torch.zeros(1, cfg.n_action_steps, cfg.action_dim), generator))
                return noise[t], draws[t]
            cells = []
            for scale in scales:
                obs, _ = env.reset(seed=task)
                total, t, terminated, truncated = 0.0, 0, False, False
                while not (terminated or truncated):
                    step_noise, draw = decision(t)
                    with torch.no_grad():
                        mean = sampler.mean_action({k: torch.from_numpy(obs[k][None]) for k in keys}, step_noise)
                        chunk = sampler.joint_targets(mean + scale * draw)[0]
                    obs, reward, terminated, truncated, _ = env.step(chunk)
                    total += reward
                    t += 1
                cells.append(f"{total:6.2f}{'*' if terminated else ' '}")
            print(f"task {task:3d}: {' '.join(cells)}", flush=True)
    finally:
        env.close()


if __name__ == "__main__":
    main()
