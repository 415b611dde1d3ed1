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


def sim_observation_stream(policy, robot, steps: int, seed: int, after_success: int = 8):
    """The scripted expert's episodes in the sim (seeds seed, seed + 1, ...) as an observation
    stream with the expert's actions as demonstrations, for a checkpoint whose dataset is absent.
    Returns (stream, seeds used)."""
    from diffusion_policy_ros.sim.env import SimEnv

    cfg = policy.config
    stream, seeds = [], []
    with SimEnv(robot, cameras=obs_keys.cameras(cfg.obs_shapes)) as env:
        while len(stream) < steps:
            seeds.append(seed + len(seeds))
            obs, tick, success_tick = env.reset(seeds[-1]), 0, None
            while len(stream) < steps and not env.done:
                action = env.expert_action()
                stream.append((tick == 0, {k: obs[k] for k in cfg.obs_shapes}, tick / cfg.control_rate_hz, action))
                obs = env.step(action)
                tick += 1
                if success_tick is None and env.success():
                    success_tick = tick
                if success_tick is not None and tick >= success_tick + after_success:
                    break
    return stream, seeds


def streaming_neighbours(config) -> list[dict]:
    """The checkpoint's streaming settings, then one cheaper (one denoising step fewer) and one
    dearer (one more) variant over the same range of levels, each valid for it: the re-noise level,
    when the checkpoint re-noises, is the first level, and the executed steps are its own."""
    own = list(config.stream_denoising_steps)
    first, last = own[0], own[-1] if len(own) > 1 else 0
    variants = [streaming_settings(config, own, config.stream_ahead_levels)]
    for count in (len(own) - 1, len(own) + 1):
        levels = [int(round(x)) for x in np.linspace(first, last, count)] if count > 0 else []
        if levels and len(set(levels)) == count and levels != own:
            variants.append(streaming_settings(config, levels))
    return variants


def streaming_settings(config, steps: list[int], ahead: int = 0) -> dict:
    """set_sampler overrides for streaming with these denoising levels, the first `ahead` of them
    run a control step early, valid for `config`."""
    renoise = None if config.stream_renoise_level is None else steps[0]
    return {"stream_denoising_steps": list(steps), "stream_renoise_level": renoise,
            "stream_execute_steps": config.stream_execute_steps, "stream_ahead_levels": ahead}


def streaming_name(settings: dict) -> str:
    """streaming[50,0], or streaming[50|0] when the levels before '|' run ahead."""
    levels, ahead = settings["stream_denoising_steps"], settings.get("stream_ahead_levels", 0)
    early, late = ",".join(map(str, levels[:ahead])), ",".join(map(str, levels[ahead:]))
    return f"streaming[{early + '|' if ahead else ''}{late}]"


def default_methods(policy, streaming: list[dict]) -> list[tuple[str, str, dict]]:
    """(name, sampler, overrides): DDPM-100 (the reference), DDIM, then one streaming variant per
    settings dict (see streaming_neighbours)."""
    methods = [("ddpm-100", "ddpm", {}), (f"ddim-{policy.config.ddim_steps}", "ddim", {})]
    for settings in streaming:
        methods.append((streaming_name(settings), "streaming", settings))
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
            "denoising_steps": overrides.get("stream_denoising_steps"),
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
