"""`dpros bench sampler`: DDPM-100 and DDIM (replanning every n_action_steps) against streaming
warm start with the checkpoint's own settings and a cheaper and a dearer neighbour of them, on one
checkpoint and one observation stream.

The stream: `--dataset`, else the checkpoint's held-out episodes when its dataset is here, else the
scripted expert's episodes recorded in the sim on the spot (a fresh clone ships the checkpoint but
not its dataset). Per method: function evaluations (NFE) per executed action, per-control-step
latency of select_action (p50 / p99 / max over steady-state steps; the cold start of each episode,
a full sample for every method, is reported separately as cold_start_ms) and action error against
the DDPM-100 stream (mean |a - a_ddpm| in normalized action units, non-gripper dims; gripper state
mismatch as a fraction). Writes build/bench/sampler.json and sampler_latency.png beside it.

The worst step of a few hundred is decided by the machine's jitter as much as by the method (on a
shared 2-core VM the ratio to DDPM-100 moved between 21x and 39x over eight runs of the same
code): `--repeats N` runs the whole comparison N times and reports each run's ratios and their
median; the table and the histogram are the first run's.
"""
from __future__ import annotations

import dataclasses
import json
import os
import statistics

from diffusion_policy_ros.cli.errors import UsageError

DEFAULT_JSON = os.path.join("build", "bench", "sampler.json")


def add_arguments(parser) -> None:
    parser.add_argument("--checkpoint", help="checkpoint folder; default: train a small synthetic one")
    parser.add_argument("--dataset", help="dataset whose episodes form the observation stream "
                                          "(default: the checkpoint's held-out episodes / synthetic data)")
    parser.add_argument("--steps", type=int, default=192, help="control steps in the stream")
    parser.add_argument("--json", default=DEFAULT_JSON, help="output JSON path")
    parser.add_argument("--device", default="cpu", help="cpu | cuda | auto")
    parser.add_argument("--autocast", default="none", choices=["none", "bf16", "fp16"])
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads (0 = torch default)")
    parser.add_argument("--train-steps", type=int, default=200, help="training steps of the synthetic model")
    parser.add_argument("--stream-steps", default=None,
                        help="denoising level lists of the streaming variants, ';' separated, e.g. '50,0;50,25,0'; "
                             "levels before a '|' run a control step ahead ('50|0', stream_ahead_levels) "
                             "(default: the checkpoint's and one step fewer and one more)")
    parser.add_argument("--config", default=None,
                        help="robot config of the sim stream when there is no dataset (default: the shipped "
                             "config the checkpoint fits)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--repeats", type=int, default=1,
                        help="run the comparison N times; report each run's worst-step and p99 ratios to DDPM-100")
    parser.add_argument("--eager", action="store_true",
                        help="keep the U-Net an eager module (default: compiled for inference, as deployed)")


def run(args) -> int:
    import torch

    from diffusion_policy_ros import reporting
    from diffusion_policy_ros.evaluation.sampler_benchmark import (compare, default_methods, observation_stream,
                                                                   sim_observation_stream, streaming_neighbours,
                                                                   streaming_settings)
    from diffusion_policy_ros.policy.checkpoint import load_checkpoint, read_config
    from diffusion_policy_ros.training.quick import quick_checkpoint

    if args.repeats < 1:
        raise UsageError(f"--repeats must be >= 1, got {args.repeats}")
    if args.threads:
        torch.set_num_threads(args.threads)
    out_dir = os.path.dirname(os.path.abspath(args.json))
    os.makedirs(out_dir, exist_ok=True)
    synthetic = not args.checkpoint
    if synthetic:
        print(f"no --checkpoint: training a small policy on synthetic multi-sensor data "
              f"({args.train_steps} steps, cached in {out_dir}/synthetic_checkpoint)")
        checkpoint = quick_checkpoint(out_dir, train_steps=args.train_steps, device=args.device)
    else:
        checkpoint = args.checkpoint
    _, _, info = read_config(checkpoint)
    policy = load_checkpoint(checkpoint, device=args.device)
    if args.autocast != "none":
        policy.set_sampler(policy.config.sampler, autocast=args.autocast)
    if not args.eager and policy.compile_for_inference():
        print("U-Net compiled for inference, as the policy node runs it (--eager: the module)")
    cfg = policy.config
    streaming = (streaming_neighbours(cfg) if args.stream_steps is None else
                 [streaming_settings(cfg, levels, ahead) for levels, ahead in parse_stream_steps(args.stream_steps)])
    methods = default_methods(policy, streaming)
    for _, sampler, overrides in methods:   # refuse a variant the checkpoint cannot run before measuring
        dataclasses.replace(cfg, sampler=sampler, **overrides).validate()
    dataset = args.dataset or info.get("dataset")
    if synthetic or args.dataset or (dataset and os.path.isdir(dataset)):
        stream = observation_stream(policy, dataset, info.get("held_out_episodes", []) if not args.dataset else [],
                                    args.steps, args.seed)
        source = dataset or "random observations"
    else:
        robot_name, robot = robot_for(policy, args.config)
        print(f"the checkpoint's dataset {dataset!r} is not here: recording {args.steps} control steps of the "
              f"scripted expert in the sim ({robot_name}) as the observation stream", flush=True)
        stream, seeds = sim_observation_stream(policy, robot, args.steps, args.seed)
        source = f"the sim's scripted expert ({robot_name}, seeds {seeds[0]}..{seeds[-1]})"
    print(f"checkpoint {checkpoint}; device {policy.device}; {len(stream)} control steps "
          f"({sum(s[0] for s in stream)} episodes); stream from {source}")
    results, latencies = compare(policy, stream, methods, args.seed)
    runs = [results] + [compare(policy, stream, methods, args.seed)[0] for _ in range(args.repeats - 1)]
    for i, entry in enumerate(results):
        entry["repeats"] = repeat_ratios([run[i] for run in runs], [run[0] for run in runs])
    doc = {"checkpoint": checkpoint, "synthetic_checkpoint": synthetic, "device": str(policy.device),
           "torch_threads": torch.get_num_threads(), "control_steps": len(stream),
           "reference": "ddpm-100", "action_error_units": "mean |a - a_ref|, normalized [-1,1] action units",
           "latency_note": "steady-state steps; each episode's first step (full sample) is cold_start_ms",
           "stream_source": source,
           "checkpoint_streaming": {"stream_denoising_steps": cfg.stream_denoising_steps,
                                    "stream_renoise_level": cfg.stream_renoise_level,
                                    "stream_execute_steps": cfg.stream_execute_steps,
                                    "stream_ahead_levels": cfg.stream_ahead_levels},
           "methods": results}
    with open(args.json, "w", encoding="utf-8") as f:
        json.dump(doc, f, indent=2)
    png = os.path.splitext(args.json)[0] + "_latency.png"
    reporting.save_sampler_latency_histogram(png, latencies)
    reporting.print_sampler_table(results)
    if args.repeats > 1:
        print(f"ratios to DDPM-100 over {args.repeats} runs (median, min..max):")
        for entry in results[1:]:
            for measure in ("worst_step_ratio_vs_ddpm", "p99_ratio_vs_ddpm"):
                values = entry["repeats"][measure]
                print(f"  {entry['method']:<22} {measure:<26} {statistics.median(values):6.1f}x "
                      f"({min(values):.1f}..{max(values):.1f})")
    print(f"wrote {args.json} and {png}")
    return 0


def repeat_ratios(method_runs: list[dict], ddpm_runs: list[dict]) -> dict:
    """One method's latency ratios to DDPM-100, run by run (DDPM-100 of the same run)."""
    pairs = list(zip(method_runs, ddpm_runs))
    return {"worst_step_ratio_vs_ddpm": [d["step_latency_ms"]["max"] / m["step_latency_ms"]["max"] for m, d in pairs],
            "p99_ratio_vs_ddpm": [d["step_latency_ms"]["p99"] / m["step_latency_ms"]["p99"] for m, d in pairs],
            "worst_step_ms": [m["step_latency_ms"]["max"] for m, _ in pairs]}


def parse_stream_steps(text: str) -> list[tuple[list[int], int]]:
    """'50,0;50|0' -> [([50, 0], 0), ([50, 0], 1)]: levels and how many run ahead (before '|')."""
    variants = []
    for part in (p.strip() for p in text.split(";")):
        if not part:
            continue
        ahead, _, rest = part.rpartition("|")
        try:
            early = [int(s) for s in ahead.split(",")] if ahead else []
            variants.append((early + [int(s) for s in rest.split(",")], len(early)))
        except ValueError:
            raise UsageError(f"--stream-steps expects ';'-separated lists of integers, optionally with a '|' after "
                             f"the levels that run ahead, got {text!r}") from None
    if not variants:
        raise UsageError("--stream-steps names no variant")
    return variants


def robot_for(policy, config: str | None):
    """The robot config the sim stream is recorded with: --config, else the shipped config whose
    robot provides what the checkpoint observes, at the checkpoint's control rate if one does (the
    stream's observations then change per step as they do on that robot)."""
    from diffusion_policy_ros.policy.configuration import PolicyConfigError, robot_obs_shapes
    from diffusion_policy_ros.robot_config import config_path, load_robot_config

    names = [config] if config else ["single_arm", "single_arm_reactive", "bimanual"]
    robots = [(name, load_robot_config(config_path(name))) for name in names]
    robots.sort(key=lambda item: item[1].control_rate_hz != policy.config.control_rate_hz)
    problems = []
    for name, robot in robots:
        try:
            policy.config.validate_against(robot_obs_shapes(robot), robot.joint_names)
            return name, robot
        except PolicyConfigError as e:
            problems.append(f"{name}: {e}")
    raise UsageError("no robot config to record a sim stream for this checkpoint (pass --dataset or --config): "
                     + "; ".join(problems))
