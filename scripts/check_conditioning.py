"""Does a trained policy use its observations? Two numbers per action dimension, on windows of
the dataset it was trained on:

- the denoising loss at one noise level with each window's own conditioning, with another
  window's (shuffled within the batch) and with zeros: a policy that reads its observations loses
  much more when they are shuffled;
- the squared error of a DDIM-16 sampled chunk against the recorded one, beside the recorded
  chunks' variance: a policy that ignores its observations samples from the actions' marginal
  and errs by about twice the variance; one that reads them errs far below it.

    ./env.sh python scripts/check_conditioning.py CHECKPOINT DATASET [--episodes 10] [--windows 64]

Everything is in the policy's model space (min-max normalized actions, discrete dims scaled).
"""
from __future__ import annotations

import argparse
import os
import sys

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from diffusion_policy_ros.data.replay_buffer import ReplayBuffer  # noqa: E402
from diffusion_policy_ros.data.sequence_dataset import SequenceDataset  # noqa: E402
from diffusion_policy_ros.policy.checkpoint import load_checkpoint  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("checkpoint")
    parser.add_argument("dataset")
    parser.add_argument("--episodes", type=int, default=10, help="first N episodes of the dataset")
    parser.add_argument("--windows", type=int, default=64, help="windows drawn from them")
    parser.add_argument("--noise-level", type=int, default=70, help="diffusion step of the loss comparison")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    torch.set_num_threads(1)
    policy = load_checkpoint(args.checkpoint, device="cpu").eval()
    config = policy.config
    buffer = ReplayBuffer.open(args.dataset)
    windows = SequenceDataset(buffer, sorted(config.obs_shapes), config.horizon, config.n_obs_steps,
                              config.n_action_steps, episodes=list(range(min(args.episodes, buffer.n_episodes))),
                              progress=False)
    rng = np.random.default_rng(args.seed)
    generator = torch.Generator().manual_seed(args.seed)
    batch = {k: torch.from_numpy(v) for k, v in windows.batch(rng.integers(0, len(windows), args.windows)).items()}
    np.set_printoptions(precision=3, suppress=True, linewidth=200)
    with torch.no_grad():
        x0 = policy.action_to_model(batch["action"])
        cond = policy.encode({k: batch[k][:, :config.n_obs_steps] for k in config.obs_shapes})
        noise = torch.randn(x0.shape, generator=generator)
        t = torch.full((x0.shape[0],), args.noise_level, dtype=torch.long)
        x_t = policy.schedule.add_noise(x0, noise, t)
        shuffled = cond[torch.randperm(cond.shape[0], generator=generator)]
        for name, c in (("own", cond), ("shuffled", shuffled), ("zeros", torch.zeros_like(cond))):
            loss = ((policy.unet(x_t, t, c) - noise) ** 2).mean((0, 1)).numpy()
            print(f"loss at level {args.noise_level}, {name:8s} conditioning: {loss.mean():.4f}  per dim {loss}")
        sampled = policy.sample_chunk(cond, "ddim", 16, generator=generator)
        error = ((sampled - x0) ** 2).mean((0, 1)).numpy()
        variance = x0.var((0, 1)).numpy()
    print(f"DDIM-16 chunk squared error: {error.mean():.4f}  per dim {error}")
    print(f"recorded chunks' variance:   {variance.mean():.4f}  per dim {variance}")
    print(f"error / variance: {error.mean() / variance.mean():.2f} (about 2: observations ignored; well below 1: used)")


if __name__ == "__main__":
    main()
