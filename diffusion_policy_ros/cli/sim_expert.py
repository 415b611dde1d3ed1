"""`dpros sim expert --task pick_place --episodes 20 --json out.json`: the scripted expert's
success rate over seeded, randomized episodes, headless (no rendering unless --png)."""
from __future__ import annotations

import time


def add_arguments(parser) -> None:
    parser.add_argument("--task", default="pick_place", help="pick_place | handover")
    parser.add_argument("--config", default=None, help="robot config (default: the task's robot)")
    parser.add_argument("--episodes", type=int, default=20)
    parser.add_argument("--first-seed", type=int, default=0)
    parser.add_argument("--json", default=None, help="write the result here")
    parser.add_argument("--png", default=None, help="write the last scene frame of each episode as a PNG grid")


def run(args) -> int:
    import numpy as np
    from tqdm import tqdm

    from diffusion_policy_ros.cli.errors import UsageError
    from diffusion_policy_ros.cli.sim_common import config_for, write_json
    from diffusion_policy_ros.sim.env import SimEnv, run_expert_episode

    if args.episodes <= 0:
        raise UsageError("--episodes must be positive")
    config = config_for(args.task, args.config)
    seeds = list(range(args.first_seed, args.first_seed + args.episodes))
    results, frames = {}, []
    start = time.perf_counter()
    with SimEnv(config, task=args.task, render=bool(args.png),
                cameras=[config.cameras[0].name] if args.png else None) as env:
        for seed in tqdm(seeds, desc=f"expert {args.task}", unit="episode"):
            results[seed] = run_expert_episode(env, seed)
            if args.png:
                frames.append(env.render(config.cameras[0].name)[0])
    wall = time.perf_counter() - start
    successes = sum(results.values())
    write_json(args.json, {
        "task": args.task, "robot": config.robot, "episodes": len(seeds), "successes": successes,
        "success_rate": successes / len(seeds), "failed_seeds": [s for s, ok in results.items() if not ok],
        "seconds_per_episode": wall / len(seeds)})
    if args.png:
        import cv2
        cols = min(10, len(frames))
        frames += [np.zeros_like(frames[0])] * (-len(frames) % cols)
        grid = np.concatenate([np.concatenate(frames[i:i + cols], axis=1)
                               for i in range(0, len(frames), cols)], axis=0)
        cv2.imwrite(args.png, cv2.cvtColor(grid, cv2.COLOR_RGB2BGR))
    return 0
