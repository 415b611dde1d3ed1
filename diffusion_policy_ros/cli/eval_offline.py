"""`dpros eval offline`: replay held-out episodes' observations through a checkpoint and compare
the actions it selects with the demonstrated ones (open loop, one select_action per recorded step)."""
from __future__ import annotations

import json
import os

from diffusion_policy_ros.cli.errors import UsageError


def add_arguments(parser) -> None:
    parser.add_argument("--checkpoint", required=True)
    parser.add_argument("--dataset", help="default: the dataset the checkpoint was trained on")
    parser.add_argument("--episodes", type=int, nargs="*", help="default: the held-out episodes")
    parser.add_argument("--sampler", choices=["ddpm", "ddim", "streaming"], help="default: the checkpoint's")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--json", help="write the result here too")


def run(args) -> int:
    from diffusion_policy_ros.data.replay_buffer import ReplayBuffer
    from diffusion_policy_ros.evaluation.offline import action_error
    from diffusion_policy_ros.policy.checkpoint import load_checkpoint, read_config
    from diffusion_policy_ros.reporting import print_offline_eval

    _, _, info = read_config(args.checkpoint)
    dataset = args.dataset or info.get("dataset")
    if not dataset or not os.path.isdir(dataset):
        raise UsageError(f"no dataset at {dataset!r} (pass --dataset; the checkpoint was trained on "
                         f"{info.get('dataset')!r})")
    buf = ReplayBuffer.open(dataset)
    episodes = args.episodes if args.episodes else info.get("held_out_episodes") or [buf.n_episodes - 1]
    policy = load_checkpoint(args.checkpoint, device=args.device)
    result = action_error(policy, buf, episodes, args.sampler)
    print_offline_eval(result)
    if args.json:
        with open(args.json, "w", encoding="utf-8") as f:
            json.dump(result, f, indent=2)
    return 0
