"""Samplers compared on one checkpoint and one observation stream: function evaluations per
executed action, per-control-step latency of select_action, and action error against the first
method (DDPM-100), in normalized action units (non-gripper dims; gripper sign mismatch apart).

The cold start of each episode, a full sample for every method, is kept apart (cold_start_ms) from
the steady-state steps.
"""
from __future__ import annotations

import time

import numpy as np
import torch
from tqdm import tqdm

from diffusion_policy_ros import obs_keys


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
        obs = {k: (rng.integers(0, 255, s, dtype=np.uint8) if obs_keys.parse(k).modality == "rgb" else
                   rng.normal(size=s).astype(np.float32)) for k, s in cfg.obs_shapes.items()}
        stream.append((t % 48 == 0, obs, (t % 48) / cfg.control_rate_hz, None))
    return stream


def default_methods(policy, stream_steps: list[list[int]]) -> list[tuple[str, str, dict]]:
    """(name, sampler, overrides): DDPM-100 (the reference), DDIM, streaming as the checkpoint
    configures it (its levels, refining every stream_execute_steps), then one streaming variant per
    denoising-step list, refining every step; a re-noising checkpoint re-noises each list to its
    first level."""
    cfg = policy.config
    methods = [("ddpm-100", "ddpm", {}), (f"ddim-{cfg.ddim_steps}", "ddim", {}),
               (f"streaming-own-{len(cfg.stream_denoising_steps)}", "streaming", {})]
    for steps in stream_steps:
        overrides = {"stream_denoising_steps": steps, "stream_execute_steps": 1}
        if cfg.stream_renoise_level is not None:
            overrides["stream_renoise_level"] = steps[0]
        methods.append((f"streaming-{len(steps)}", "streaming", overrides))
    return methods


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


def compare(policy, stream, methods, seed: int) -> tuple[list[dict], dict[str, np.ndarray]]:
    """Per method its numbers (list, in `methods` order) and its steady-state latencies (ms)."""
    cfg = policy.config
    gripper = list(cfg.gripper_dims)
    cont = [i for i in range(cfg.action_dim) if i not in gripper]
    demo = np.asarray([s[3] for s in stream]) if stream[0][3] is not None else None
    results, reference, latencies = [], None, {}
    for name, sampler, overrides in methods:
        policy.set_sampler(sampler, **overrides)
        actions, lat, cold = run_method(policy, stream, seed, name)
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
        latencies[name] = lat

    ddpm, ddim = results[0], results[1]
    for r in results:
        r["max_latency_ratio_vs_ddpm"] = ddpm["step_latency_ms"]["max"] / r["step_latency_ms"]["max"]
        r["max_latency_ratio_vs_ddim"] = ddim["step_latency_ms"]["max"] / r["step_latency_ms"]["max"]
    return results, latencies
