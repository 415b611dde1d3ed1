"""How much a policy's executed chunk varies with its sampler's noise, next to how much NCDPO's
exploration moves it (docs/rl_finetuning.md).

NCDPO holds the sampler's noise as an input and credits PPO only with the exploration Gaussian
around the executed rows. This plays one sim episode with the policy's RL sampler and, at each
decision, draws the sampler's noise `--draws` times for the same observation: the std over the
draws of the chunk's mean row, per action dim (normalized units), is the variation PPO cannot
credit; the exploration's white noise moves the mean row by init_std / sqrt(n_action_steps).

    ./env.sh python scripts/ncdpo_noise_spread.py --checkpoint build/train/pick_place_base20 [--noise-scale 0.25]
"""
from __future__ import annotations

import argparse
import math

import numpy as np
import torch


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--checkpoint", required=True)
    parser.add_argument("--config", default="config/single_arm.yaml", help="robot config of the sim")
    parser.add_argument("--task", default="pick_place")
    parser.add_argument("--seed", type=int, default=5, help="task seed of the episode")
    parser.add_argument("--decisions", type=int, default=8)
    parser.add_argument("--draws", type=int, default=64, help="sampler noise draws per decision")
    parser.add_argument("--denoising-steps", type=int, default=8, help="K of the RL sampler")
    parser.add_argument("--eta", type=float, default=1.0)
    parser.add_argument("--noise-scale", type=float, default=1.0, help="std of the sampler's noise")
    parser.add_argument("--init-std", type=float, default=0.05, help="exploration std to compare with")
    args = parser.parse_args()

    from diffusion_policy_ros.policy.checkpoint import load_checkpoint
    from diffusion_policy_ros.rl.chunk_env import SimChunkEnv
    from diffusion_policy_ros.rl.noise_sampler import NoiseConditionedSampler
    from diffusion_policy_ros.robot_config import load_robot_config

    policy = load_checkpoint(args.checkpoint, device="cpu")
    policy.set_sampler("ddim", ddim_steps=args.denoising_steps, ddim_eta=args.eta,
                       sample_noise_scale=args.noise_scale)
    sampler = NoiseConditionedSampler(policy, args.denoising_steps, args.eta)
    cfg = policy.config
    env = SimChunkEnv(load_robot_config(args.config), args.task, dict(cfg.obs_shapes), cfg.n_obs_steps,
                      cfg.n_action_steps)
    generator = torch.Generator().manual_seed(0)
    exploration = args.init_std / math.sqrt(cfg.n_action_steps)
    print(f"exploration moves the mean row by {exploration:.3f} per dim (init_std {args.init_std}, "
          f"{cfg.n_action_steps} rows); the sampler's noise (scale {args.noise_scale}) by:")
    obs, _ = env.reset(seed=args.seed)
    spreads = []
    for decision in range(args.decisions):
        batch = {k: torch.from_numpy(np.ascontiguousarray(obs[k]))[None].expand(args.draws, *obs[k].shape)
                 for k in cfg.obs_shapes}
        with torch.no_grad():
            rows = sampler.mean_action(batch, sampler.draw_noise(args.draws, generator))
        spread = rows.mean(1).std(0).numpy()
        spreads.append(spread)
        print(f"  decision {decision}: {np.array2string(spread, precision=3)}")
        obs, _, terminated, truncated, _ = env.step(sampler.joint_targets(rows[:1])[0])
        if terminated or truncated:
            break
    ratio = np.median(np.stack(spreads)) / exploration
    print(f"median over dims and decisions: {np.median(np.stack(spreads)):.3f} ({ratio:.1f}x the exploration's)")


if __name__ == "__main__":
    main()
