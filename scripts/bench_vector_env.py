"""Does stepping the sim in worker processes (gymnasium AsyncVectorEnv) pay off over stepping it
in one process (SyncVectorEnv)? Control steps per second of SimChunkEnvs as `dpros rl ncdpo`
builds them (the policy's cameras rendered), each env holding its arm still, chunk after chunk.

    ./env.sh python scripts/bench_vector_env.py [--envs 2 4] [--decisions 15] [--checkpoint DIR]

Prints one line per (mode, envs); what else runs on the machine changes the answer: say it.
"""
from __future__ import annotations

import argparse
import os
import sys
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from diffusion_policy_ros import obs_keys  # noqa: E402
from diffusion_policy_ros.policy.checkpoint import read_config  # noqa: E402
from diffusion_policy_ros.rl.vector import make_vector_env, sim_chunk_env_fn  # noqa: E402
from diffusion_policy_ros.robot_config import config_path, load_robot_config  # noqa: E402


def measure(env_fn, mode: str, num_envs: int, decisions: int, seed: int = 0) -> dict:
    started = time.perf_counter()
    envs = make_vector_env(env_fn, num_envs, mode)
    obs, _ = envs.reset(seed=seed)
    built = time.perf_counter()
    rows = envs.single_action_space.shape[0]
    for _ in range(decisions):
        hold = np.repeat(obs[obs_keys.JOINT_POS][:, -1:], rows, axis=1)
        obs, *_ = envs.step(hold)
    stepped = time.perf_counter()
    envs.close()
    steps = decisions * num_envs * rows
    return {"mode": mode, "envs": num_envs, "start_s": built - started,
            "control_steps_per_s": steps / (stepped - built)}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoint", default="checkpoints/single_arm_pick_place")
    parser.add_argument("--config", default="single_arm")
    parser.add_argument("--envs", type=int, nargs="+", default=[2, 4])
    parser.add_argument("--decisions", type=int, default=15)
    args = parser.parse_args()
    policy_config, _, _ = read_config(args.checkpoint)
    env_fn = sim_chunk_env_fn(load_robot_config(config_path(args.config)), "pick_place", policy_config)
    print(f"observations {sorted(policy_config.obs_shapes)}, {policy_config.n_action_steps} control steps "
          f"per decision, {args.decisions} decisions per env; {os.cpu_count()} cores")
    for num_envs in args.envs:
        for mode in ("sync", "async"):
            r = measure(env_fn, mode, num_envs, args.decisions)
            print(f"{mode:5s} x{num_envs}: {r['control_steps_per_s']:7.1f} control steps/s "
                  f"(start {r['start_s']:.1f} s)", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
