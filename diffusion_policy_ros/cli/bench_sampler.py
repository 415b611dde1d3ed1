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
import time

import numpy as np
import torch
from tqdm import tqdm

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


def observation_stream(policy, dataset_path: str | None, held_out, steps: int, seed: int):
    """[(episode_start, obs_step dict, time, demo action or None)] of `steps` control steps."""
    cfg = policy.config
    stream = []
    if dataset_path:
        from diffusion_policy_ros.data.replay_buffer import ReplayBuffer
        buf = ReplayBuffer.open(dataset_path)
        episodes = list(held_out) or list(range(buf.n_episodes))
        i = 0
        while len(stream) < steps:
            ep = buf.get_episode(episodes[i % len(episodes)], [*cfg.obs_shapes, "action"])
            for t in range(len(ep["action"])):
                stream.append((t == 0, {k: ep[k][t] for k in cfg.obs_shapes}, t / cfg.control_rate_hz,
                               ep["action"][t]))
            i += 1
        return stream[:steps]
    rng = np.random.default_rng(seed)           # no dataset: random observations of the right shapes
    for t in range(steps):
        obs = {k: (rng.integers(0, 255, s, dtype=np.uint8) if k.endswith("/rgb") else
                   rng.normal(size=s).astype(np.float32)) for k, s in cfg.obs_shapes.items()}
        stream.append((t % 48 == 0, obs, (t % 48) / cfg.control_rate_hz, None))
    return stream


def run_method(policy, stream, seed: int, desc: str):
    actions, latencies, cold = [], [], []
    sync = policy.device.type == "cuda"
    policy.reset(seed=seed)
    for start, obs, t, _ in tqdm(stream, desc=desc, leave=False):
        if start:
            policy.reset()     # new episode; NFE counters keep running
        began = time.perf_counter()
        action = policy.select_action(obs, t)     # returns a host array: the one sync per step
        if sync:
            torch.cuda.synchronize()
        elapsed = (time.perf_counter() - began) * 1e3
        (cold if start else latencies).append(elapsed)
        actions.append(action)
    return np.asarray(actions), np.asarray(latencies), np.asarray(cold)


def run(args) -> int:
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
    # The checkpoint's own streaming setting (its levels, refining every stream_execute_steps), then
    # the --stream-steps lists refining every step; a re-noising checkpoint re-noises to each list's
    # first level.
    methods = [("ddpm-100", "ddpm", {}), (f"ddim-{cfg.ddim_steps}", "ddim", {}),
               (f"streaming-own-{len(cfg.stream_denoising_steps)}", "streaming", {})]
    for text in args.stream_steps.split(";"):
        steps = [int(s) for s in text.split(",")]
        overrides = {"stream_denoising_steps": steps, "stream_execute_steps": 1}
        if cfg.stream_renoise_level is not None:
            overrides["stream_renoise_level"] = steps[0]
        methods.append((f"streaming-{len(steps)}", "streaming", overrides))
    print(f"checkpoint {checkpoint}; device {policy.device}; {len(stream)} control steps "
          f"({sum(s[0] for s in stream)} episodes); stream from {dataset or 'random observations'}")

    gripper = list(cfg.gripper_dims)
    cont = [i for i in range(cfg.action_dim) if i not in gripper]
    demo = np.asarray([s[3] for s in stream]) if stream[0][3] is not None else None
    results, reference, hist = [], None, {}
    for name, sampler, overrides in methods:
        policy.set_sampler(sampler, **overrides)
        actions, lat, cold = run_method(policy, stream, args.seed, name)
        norm = policy.normalizer.normalize("action", torch.from_numpy(actions).float()).numpy()
        if reference is None:
            reference = norm
        entry = {
            "method": name, "sampler": sampler,
            "denoising_steps": policy.config.stream_denoising_steps if sampler == "streaming" else None,
            "refines_every": policy.steps_per_inference,
            "nfe_per_action": policy.nfe_per_action,
            "step_latency_ms": {"p50": float(np.percentile(lat, 50)), "p99": float(np.percentile(lat, 99)),
                                "max": float(lat.max()), "mean": float(lat.mean())},
            "cold_start_ms": float(cold.max()) if len(cold) else None,
            "action_error": float(np.abs(norm[:, cont] - reference[:, cont]).mean()),
            "gripper_mismatch": float(np.mean(np.sign(norm[:, gripper]) != np.sign(reference[:, gripper])))
            if gripper else None,
        }
        if demo is not None:
            demo_norm = policy.normalizer.normalize("action", torch.from_numpy(demo).float()).numpy()
            entry["action_error_vs_demo"] = float(np.abs(norm[:, cont] - demo_norm[:, cont]).mean())
        results.append(entry)
        hist[name] = lat

    ddpm, ddim = results[0], results[1]
    for r in results:
        r["max_latency_ratio_vs_ddpm"] = ddpm["step_latency_ms"]["max"] / r["step_latency_ms"]["max"]
        r["max_latency_ratio_vs_ddim"] = ddim["step_latency_ms"]["max"] / r["step_latency_ms"]["max"]
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
    _histogram(png, hist)
    _print_table(results)
    print(f"wrote {args.json} and {png}")
    return 0


def _print_table(results) -> None:
    header = (f"{'method':<18}{'NFE/act':>8}{'p50 ms':>9}{'p99 ms':>9}{'max ms':>9}{'cold ms':>9}"
              f"{'err':>8}{'grip':>7}{'xDDPM':>7}{'xDDIM':>7}")
    print(header)
    print("-" * len(header))
    for r in results:
        lat = r["step_latency_ms"]
        grip = "" if r["gripper_mismatch"] is None else f"{r['gripper_mismatch']:.3f}"
        print(f"{r['method']:<18}{r['nfe_per_action']:>8.2f}{lat['p50']:>9.2f}{lat['p99']:>9.2f}{lat['max']:>9.2f}"
              f"{r['cold_start_ms'] or 0:>9.1f}{r['action_error']:>8.4f}{grip:>7}"
              f"{r['max_latency_ratio_vs_ddpm']:>7.1f}{r['max_latency_ratio_vs_ddim']:>7.1f}")


def _histogram(path: str, latencies: dict[str, np.ndarray]) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, ax = plt.subplots(figsize=(7, 4))
    positive = np.concatenate([v[v > 0] for v in latencies.values()])
    bins = np.logspace(np.log10(max(positive.min(), 1e-3)), np.log10(positive.max() * 1.1), 50)
    for name, values in latencies.items():
        ax.hist(np.maximum(values, bins[0]), bins=bins, histtype="step", lw=1.5, label=name)
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("per-control-step latency [ms]")
    ax.set_ylabel("steps")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
