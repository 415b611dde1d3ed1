"""Is a U-Net width enough for a dataset's actions? Trains the policy's U-Net alone, without
observations, to denoise the dataset's recorded action chunks, then prints its loss at one noise
level beside the error of the best linear denoiser that sees only the noisy chunk
(alpha-bar v / (alpha-bar v + 1 - alpha-bar) per dimension of variance v). A network that is
wide enough ends below that bound; one that cannot pass the chunk through ends far above it,
and a policy trained with that width ignores its observations as well
(`scripts/check_conditioning.py`). Found on the bimanual handover: 14 action dimensions at
`down_dims [32, 64, 128]` (docs/bimanual_handover.md).

    ./env.sh python scripts/probe_unet_width.py DATASET [--dims 0 1 2 ...] [--down-dims 32 64 128] [--steps 600]

`--dims` picks (and may repeat) action dimensions. 600 steps take about 2 minutes on one core.
"""
from __future__ import annotations

import argparse
import os
import sys

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from diffusion_policy_ros.data.replay_buffer import ReplayBuffer  # noqa: E402
from diffusion_policy_ros.policy.configuration import PolicyConfig  # noqa: E402
from diffusion_policy_ros.policy.normalizer import MinMaxNormalizer  # noqa: E402
from diffusion_policy_ros.policy.unet import ConditionalUnet1D  # noqa: E402
from diffusion_policy_ros.sampling.schedule import NoiseSchedule  # noqa: E402


def action_chunks(dataset: str, dims: list[int] | None, horizon: int) -> torch.Tensor:
    """Every horizon-long window of min-max normalized actions inside one episode."""
    buffer = ReplayBuffer.open(dataset)
    episodes = [np.asarray(buffer.get_episode(e, ["action"])["action"], dtype=np.float32)
                for e in range(buffer.n_episodes)]
    normalizer = MinMaxNormalizer.fit({"action": np.concatenate(episodes)})
    chunks = []
    for episode in episodes:
        normalized = normalizer.normalize("action", torch.from_numpy(episode))
        chunks += [normalized[i:i + horizon] for i in range(len(normalized) - horizon + 1)]
    chunks = torch.stack(chunks)
    return chunks[..., dims] if dims else chunks


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("dataset")
    parser.add_argument("--dims", type=int, nargs="+", default=None, help="action dimensions (default: all)")
    parser.add_argument("--down-dims", type=int, nargs="+", default=[32, 64, 128])
    parser.add_argument("--steps", type=int, default=600)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--lr", type=float, default=5e-4)
    parser.add_argument("--horizon", type=int, default=16)
    parser.add_argument("--noise-level", type=int, default=70)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    torch.set_num_threads(1)
    torch.manual_seed(args.seed)
    rng = np.random.default_rng(args.seed)
    chunks = action_chunks(args.dataset, args.dims, args.horizon)
    # the policy's denoiser and schedule as PolicyConfig builds them, but for down_dims
    unet = ConditionalUnet1D(chunks.shape[-1], 1, tuple(args.down_dims), PolicyConfig.kernel_size,
                             PolicyConfig.n_groups, PolicyConfig.step_embed_dim)
    schedule = NoiseSchedule(PolicyConfig.num_train_timesteps, PolicyConfig.beta_schedule)
    optimizer = torch.optim.AdamW(unet.parameters(), lr=args.lr, weight_decay=1e-6)
    no_observation = torch.zeros(args.batch_size, 1)
    for _ in range(args.steps):
        x0 = chunks[rng.integers(0, len(chunks), args.batch_size)]
        noise = torch.randn(x0.shape)
        t = torch.randint(0, schedule.num_steps, (args.batch_size,))
        loss = ((unet(schedule.add_noise(x0, noise, t), t, no_observation) - noise) ** 2).mean()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    with torch.no_grad():
        x0 = chunks[rng.integers(0, len(chunks), 512)]
        noise = torch.randn(x0.shape)
        t = torch.full((512,), args.noise_level)
        per_dim = ((unet(schedule.add_noise(x0, noise, t), t, torch.zeros(512, 1)) - noise) ** 2).mean((0, 1))
        alpha_bar = float(schedule.alphas_cumprod[args.noise_level])
        variance = x0.var((0, 1))
        bound = alpha_bar * variance / (alpha_bar * variance + 1 - alpha_bar)
    np.set_printoptions(precision=3, suppress=True, linewidth=200)
    print(f"{chunks.shape[-1]} action dims, down_dims {args.down_dims}, {args.steps} steps "
          f"({sum(p.numel() for p in unet.parameters())} U-Net parameters without observation features)")
    print(f"loss at level {args.noise_level}: {float(per_dim.mean()):.3f}  per dim {per_dim.numpy()}")
    print(f"linear bound:      {float(bound.mean()):.3f}  per dim {bound.numpy()}")
    wide_enough = per_dim.mean() <= 1.2 * bound.mean()
    print("wide enough" if wide_enough else "too narrow (or too few steps): the loss stays above the bound")


if __name__ == "__main__":
    main()
