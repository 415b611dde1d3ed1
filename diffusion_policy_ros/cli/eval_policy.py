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

`--denoising-steps 25 10 0` refines with other levels than the checkpoint's, as the policy node's
`denoising_steps` parameter does (the report records the levels).

`--variants static,displaced` evaluates every sampler on each task variant (the same seeds; the
chart groups the bars per variant); `--frames` also saves, per variant, a camera strip of the
first sampler's first episode, marked where the world moved (`<out>/strip_<variant>.png`);
`--sensors` saves, for the same episode, every camera the policy sees as a strip, and per arm the
fingertips' forces over time beside the gripper commands (`<out>/sensors_<variant>.png`).
"""
from __future__ import annotations

import json
import os

from diffusion_policy_ros.cli.arguments import add_episode_arguments, method_label, parse_samplers, parse_variants
from diffusion_policy_ros.cli.errors import UsageError


def add_arguments(parser):
    add_episode_arguments(parser)
    parser.add_argument("--hold-s", type=float, default=1.0,
                        help="sim seconds success must last for the 'held' criterion")
    parser.add_argument("--denoising-steps", type=int, nargs="+", default=[], metavar="LEVEL",
                        help="streaming refinement levels instead of the checkpoint's, e.g. 25 10 0 "
                             "(policy_node's denoising_steps)")
    parser.add_argument("--device", default="cpu", help="torch device of the policy (cpu, cuda, auto)")
    parser.add_argument("--threads", type=int, default=1,
                        help="torch CPU threads, as policy_node's torch_threads (0: torch's default, one per "
                             "core; on a busy machine several threads wait on each other, up to 100x slower)")
    parser.add_argument("--out", default="build/eval_policy", help="folder for policy_eval.json and the chart")
    parser.add_argument("--frames", action="store_true",
                        help="also save a camera strip of the first episode of each variant (first sampler)")
    parser.add_argument("--sensors", action="store_true",
                        help="also save every camera, the touch readings and the gripper commands of that episode")


def run(args) -> int:
    from tqdm import tqdm

    from diffusion_policy_ros import obs_keys, reporting
    from diffusion_policy_ros.evaluation.sim_episodes import PolicyEpisodeRunner
    from diffusion_policy_ros.policy.checkpoint import load_checkpoint
    from diffusion_policy_ros.policy.configuration import PolicyConfigError, robot_obs_shapes
    from diffusion_policy_ros.policy.deploy import streaming_overrides
    from diffusion_policy_ros.robot_config import config_path, load_robot_config

    samplers = parse_samplers(args.samplers)
    if args.episodes < 1 or not args.timeout_s > 0 or args.hold_s < 0:
        raise UsageError("--episodes must be >= 1, --timeout-s > 0 and --hold-s >= 0")
    if args.threads < 0:
        raise UsageError("--threads must be 0 (torch's default) or more")
    if args.denoising_steps and "streaming" not in samplers:
        raise UsageError("--denoising-steps sets the streaming refinement: add streaming to --samplers")
    robot = load_robot_config(config_path(args.config))
    variants = parse_variants(args.variants, robot)
    if args.threads:
        import torch
        torch.set_num_threads(args.threads)
    policy = load_checkpoint(args.checkpoint, device=args.device)
    policy.compile_for_inference()   # as deployed (the same numbers to 1e-5, faster)
    try:  # the sim provides what the config's robot provides (it renders only what is used)
        policy.config.validate_against(robot_obs_shapes(robot), robot.joint_names)
    except PolicyConfigError as e:
        raise UsageError(f"the sim of {args.config} cannot run this policy: {e}") from e
    overrides = {sampler: streaming_overrides(policy.config, sampler, args.denoising_steps) for sampler in samplers}
    if args.denoising_steps:   # refused before any episode runs
        try:
            policy.set_sampler("streaming", **overrides["streaming"])
        except (PolicyConfigError, ValueError) as e:
            raise UsageError(f"--denoising-steps {args.denoising_steps}: {e}") from e
    keys = list(policy.config.obs_shapes)
    cameras = obs_keys.cameras(keys)
    seeds = list(range(args.seed, args.seed + args.episodes))
    os.makedirs(args.out, exist_ok=True)

    from diffusion_policy_ros.sim.env import SimEnv
    results = {}
    with SimEnv(robot, cameras=cameras) as env:
        for variant in variants:
            env.variant = variant
            for sampler in samplers:
                policy.set_sampler(sampler, **overrides[sampler])
                first = sampler == samplers[0]
                runner = PolicyEpisodeRunner(env, policy, keys, record_frames=args.frames and first,
                                             record_steps=args.sensors and first)
                label = method_label(sampler, variant, variants)
                progress = tqdm(total=len(seeds), desc=f"eval {label}", unit="episode")
                for seed in seeds:
                    runner.episode(seed, args.timeout_s, args.hold_s)
                    # the count and the rates move together: both over the episodes finished
                    progress.set_postfix({"success": f"{runner.rate('success'):.0%}",
                                          "held": f"{runner.rate('held'):.0%}"}, refresh=False)
                    progress.update(1)
                progress.close()
                results[label] = {**runner.summary(), "sampler": sampler, "variant": variant}
                if sampler == "streaming":
                    results[label]["denoising_steps"] = list(policy.config.stream_denoising_steps)
                if runner.frames:
                    strip = os.path.join(args.out, f"strip_{variant}.png")
                    reporting.save_episode_strip(runner.frames, runner.frame_events, strip,
                                                 f"{sampler}, {variant}, seed {seeds[0]}")
                    print(f"wrote {strip}")
                if runner.steps:
                    sensors = os.path.join(args.out, f"sensors_{variant}.png")
                    arms = reporting.sensor_timeline_arms(robot, [k for k in runner.steps if obs_keys.is_obs(k)
                                                          and obs_keys.parse(k).modality == "tactile"])
                    outcome = "success" if runner.outcomes[0]["success"] else "no success"
                    reporting.save_sensor_timeline(runner.steps, arms, sensors,
                                                   f"{sampler}, {variant}, seed {seeds[0]} ({outcome})")
                    print(f"wrote {sensors}")
    report = {"checkpoint": os.path.abspath(args.checkpoint), "config": args.config, "seeds": seeds,
              "variants": variants, "timeout_s": args.timeout_s, "hold_s": args.hold_s,
              "device": str(policy.device), "methods": results}
    path = os.path.join(args.out, "policy_eval.json")
    with open(path, "w", encoding="utf-8") as f:
        json.dump(report, f, indent=2)
    reporting.print_policy_eval_table(results, args.hold_s)
    chart = os.path.join(args.out, "policy_eval.png")
    if len(variants) > 1:
        reporting.save_variant_success_chart(results, chart, f"held {args.hold_s:g} s")
    else:
        reporting.save_policy_eval_chart(results, args.hold_s, chart)
    print(f"wrote {path} and {chart}")
    return 0
