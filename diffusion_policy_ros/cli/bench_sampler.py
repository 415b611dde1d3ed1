"""`dpros bench sampler`: DDPM-100 and DDIM-16 (replanning every n_action_steps) against streaming
warm start as the checkpoint configures it and with 1, 2 and 3 denoising steps every control step,
on one checkpoint and one observation stream.

Per method: function evaluations (NFE) per executed action, per-control-step latency of
select_action (p50 / p99 / max over steady-state steps; the cold start of each episode, a full
sample for every method, is reported separately as cold_start_ms) and action error against the
DDPM-100 stream (mean |a - a_ddpm| in normalized action units, non-gripper dims; gripper state
mismatch as a fraction). Writes build/bench/sampler.json and sampler_latency.png beside it.
"""
from __future__ import annotations

import json
import os

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
    parser.add_argument("--stream-steps", default="1;1,0;2,1,0",
                        help="denoising step lists of the streaming variants, ';' separated")
    parser.add_argument("--seed", type=int, default=0)


def run(args) -> int:
    import torch

    from diffusion_policy_ros import reporting
    from diffusion_policy_ros.evaluation.sampler_benchmark import compare, default_methods, observation_stream
    from diffusion_policy_ros.policy.checkpoint import load_checkpoint, read_config
    from diffusion_policy_ros.training.quick import quick_checkpoint

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
    dataset = args.dataset or info.get("dataset")
    if not args.dataset and dataset and not os.path.isdir(dataset):
        print(f"the checkpoint's dataset {dataset} is not here: random observations instead (--dataset DIR "
              "for real ones)")
        dataset = None
    stream = observation_stream(policy, dataset, info.get("held_out_episodes", []) if not args.dataset else [],
                                args.steps, args.seed)
    cfg = policy.config
    methods = default_methods(policy, [[int(s) for s in text.split(",")] for text in args.stream_steps.split(";")])
    print(f"checkpoint {checkpoint}; device {policy.device}; {len(stream)} control steps "
          f"({sum(s[0] for s in stream)} episodes); stream from {dataset or 'random observations'}")
    results, latencies = compare(policy, stream, methods, args.seed)
    doc = {"checkpoint": checkpoint, "synthetic_checkpoint": synthetic, "device": str(policy.device),
           "torch_threads": torch.get_num_threads(), "control_steps": len(stream),
           "reference": "ddpm-100", "action_error_units": "mean |a - a_ref|, normalized [-1,1] action units",
           "latency_note": "steady-state steps; each episode's first step (full sample) is cold_start_ms",
           "default_streaming": {"stream_denoising_steps": info.get("stream_denoising_steps",
                                                                     cfg.stream_denoising_steps)},
           "methods": results}
    with open(args.json, "w", encoding="utf-8") as f:
        json.dump(doc, f, indent=2)
    png = os.path.splitext(args.json)[0] + "_latency.png"
    reporting.save_sampler_latency_histogram(png, latencies)
    reporting.print_sampler_table(results)
    print(f"wrote {args.json} and {png}")
    return 0

