"""`dpros eval policy --checkpoint DIR`: success of each sampler in the sim, the policy alone.

The same comparison as `dpros eval sim` without ROS and without latency: for every sampler and
every seed, the MuJoCo SimEnv is reset from the seed, the policy is reset with the same seed (its
sampling noise comes from a generator seeded per episode, so a run is reproducible), and each
control step the policy's `select_action` on the current observation gives the joint targets the
sim holds for the next control period. The sim waits for the policy, so a slow sampler costs
wall time, not success.

Two criteria per episode: success reached (the task's success test true at some control step
within `--timeout-s` sim seconds, as in `dpros eval sim`) and success held (true without a break
for `--hold-s` sim seconds, the hold complete within the timeout). An episode ends when the hold is
complete or at the timeout. Only the cameras the policy reads are rendered. Writes
`<out>/policy_eval.json`, prints a table and saves a bar chart `<out>/policy_eval.png`.
"""
from __future__ import annotations

import json
import os
import sys
import time

import numpy as np

from diffusion_policy_ros.cli.eval_sim import add_episode_arguments, parse_samplers

_EPS = 1e-9  # sim times are sums of physics steps: compare with a little slack


def add_arguments(parser):
    add_episode_arguments(parser)
    parser.add_argument("--hold-s", type=float, default=1.0,
                        help="sim seconds success must last for the 'held' criterion")
    parser.add_argument("--device", default="cpu", help="torch device of the policy (cpu, cuda, auto)")
    parser.add_argument("--out", default="build/eval_policy", help="folder for policy_eval.json and the chart")


def run(args) -> int:
    from tqdm import tqdm

    from diffusion_policy_ros.policy.checkpoint import load_checkpoint
    from diffusion_policy_ros.policy.configuration import PolicyConfigError, robot_obs_shapes
    from diffusion_policy_ros.robot_config import ConfigError, config_path, load_robot_config

    samplers = parse_samplers(args.samplers)
    if args.episodes < 1 or not args.timeout_s > 0 or args.hold_s < 0:
        raise SystemExit("--episodes must be >= 1, --timeout-s > 0 and --hold-s >= 0")
    try:
        robot = load_robot_config(config_path(args.config))
        policy = load_checkpoint(args.checkpoint, device=args.device)
    except (ConfigError, PolicyConfigError) as e:
        print(f"eval policy: {e}", file=sys.stderr)
        return 1
    try:  # the sim provides what the config's robot provides (it renders only what is used)
        policy.config.validate_against(robot_obs_shapes(robot), robot.joint_names)
    except PolicyConfigError as e:
        print(f"eval policy: the sim of {args.config} cannot run this policy: {e}", file=sys.stderr)
        return 1
    keys = list(policy.config.obs_shapes)
    cameras = sorted({k.split("/")[1] for k in keys if k.endswith(("/rgb", "/depth"))})
    seeds = list(range(args.seed, args.seed + args.episodes))
    os.makedirs(args.out, exist_ok=True)

    from diffusion_policy_ros.sim.env import SimEnv
    results = {}
    with SimEnv(robot, cameras=cameras) as env:
        for sampler in samplers:
            policy.set_sampler(sampler)
            evaluator = _Evaluator(env, policy, keys)
            progress = tqdm(seeds, desc=f"eval {sampler}", unit="episode")
            for seed in progress:
                evaluator.episode(seed, args.timeout_s, args.hold_s)
                progress.set_postfix({"success": f"{evaluator.rate('success'):.0%}",
                                      "held": f"{evaluator.rate('held'):.0%}"})
            results[sampler] = evaluator.summary()
    report = {"checkpoint": os.path.abspath(args.checkpoint), "config": args.config, "seeds": seeds,
              "timeout_s": args.timeout_s, "hold_s": args.hold_s, "device": str(policy.device),
              "methods": results}
    path = os.path.join(args.out, "policy_eval.json")
    with open(path, "w", encoding="utf-8") as f:
        json.dump(report, f, indent=2)
    _print_table(results, args.hold_s)
    _save_bar_chart(results, args.hold_s, os.path.join(args.out, "policy_eval.png"))
    print(f"wrote {path}")
    return 0


class _Evaluator:
    """Closed-loop episodes of one policy (with its current sampler) in one SimEnv."""

    def __init__(self, env, policy, keys: list[str]):
        self.env, self.policy, self.keys = env, policy, keys
        self.outcomes: list[dict] = []
        self.action_s: list[float] = []  # wall time of every select_action call
        self.chunk_s: list[float] = []   # ... of those that computed a chunk

    def episode(self, seed: int, timeout_s: float, hold_s: float) -> None:
        env, policy = self.env, self.policy
        obs = env.reset(seed)
        policy.reset(seed)
        reached_at = streak_since = None
        held = False
        while env.time < timeout_s - _EPS and not held:
            report = policy.last_report
            start = time.perf_counter()
            action = policy.select_action({k: obs[k] for k in self.keys}, env.time)
            elapsed = time.perf_counter() - start
            self.action_s.append(elapsed)
            if policy.last_report is not report:
                self.chunk_s.append(elapsed)
            obs = env.step(action)
            if env.success():
                reached_at = env.time if reached_at is None else reached_at
                streak_since = env.time if streak_since is None else streak_since
                held = env.time - streak_since >= hold_s - _EPS
            else:
                streak_since = None
        self.outcomes.append({"seed": seed, "success": reached_at is not None,
                              "sim_seconds": round(reached_at if reached_at is not None else env.time, 2),
                              "held": held})

    def rate(self, criterion: str) -> float:
        return float(np.mean([o[criterion] for o in self.outcomes])) if self.outcomes else 0.0

    def summary(self) -> dict:
        def mean_ms(values):
            return round(1000.0 * float(np.mean(values)), 3) if values else None

        return {"success_rate": self.rate("success"), "episodes": len(self.outcomes),
                "successes": int(sum(o["success"] for o in self.outcomes)),
                "held_success_rate": self.rate("held"),
                "held_successes": int(sum(o["held"] for o in self.outcomes)),
                "nfe_per_action": float(self.policy.nfe_per_action),
                "ms_per_action": mean_ms(self.action_s), "ms_per_chunk": mean_ms(self.chunk_s),
                "chunks": len(self.chunk_s), "actions": len(self.action_s),
                "outcomes": self.outcomes}


def _print_table(results: dict, hold_s: float) -> None:
    print(f"{'method':10s} {'success':>12s} {'held':>12s} {'NFE/act':>8s} {'ms/act':>8s} {'ms/chunk':>9s}")
    for name, r in results.items():
        n = r["episodes"]
        print(f"{name:10s} {r['successes']:>3d}/{n:<3d} {r['success_rate']:>4.0%}"
              f" {r['held_successes']:>3d}/{n:<3d} {r['held_success_rate']:>4.0%} {r['nfe_per_action']:>8.2f}"
              f" {r['ms_per_action'] or 0:>8.1f} {r['ms_per_chunk'] or 0:>9.1f}")
    print(f"success: reached within the timeout; held: success lasted {hold_s:g} sim s; "
          "ms: wall time of select_action (every action, and those that computed a chunk)")


def _save_bar_chart(results: dict, hold_s: float, path: str) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    names = list(results)
    x = np.arange(len(names))
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(9, 3.5))
    ax1.bar(x - 0.2, [100 * results[n]["success_rate"] for n in names], 0.4, label="reached", color="tab:green")
    ax1.bar(x + 0.2, [100 * results[n]["held_success_rate"] for n in names], 0.4,
            label=f"held {hold_s:g} s", color="tab:olive")
    ax1.set_xticks(x, names)
    ax1.set_ylabel("success (%)")
    ax1.set_ylim(0, 120)  # room for the legend above the 100 % bars
    ax1.set_yticks(range(0, 101, 20))
    ax1.legend(loc="upper center", ncol=2)
    ax1.set_title(f"success over {results[names[0]]['episodes']} seeded episodes")
    ax2.bar(names, [results[n]["ms_per_chunk"] or 0 for n in names], color="tab:blue")
    ax2.set_ylabel("ms per chunk")
    ax2.set_yscale("log")
    ax2.set_title("policy time per inference (no ROS)")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
