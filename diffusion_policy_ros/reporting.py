"""Tables printed and pictures written by `dpros` evaluations and benchmarks.

Plain functions of the result dicts the evaluation modules return, so a table or a chart can be
re-drawn from a saved JSON. matplotlib and PIL are imported only when a picture is written.
"""
from __future__ import annotations

import numpy as np


def _pyplot():
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    return plt


def _save(fig, path: str) -> None:
    fig.savefig(path, dpi=110)
    _pyplot().close(fig)


# --- dpros eval sim: samplers through the node graph -------------------------------------------
def _factor(name: str, result: dict, real_time_factors: dict) -> float:
    """The sim speed a result was measured at (results of several variants name their sampler)."""
    return real_time_factors[result.get("sampler", name)]


def graph_label(name: str, result: dict, real_time_factors: dict, separator: str = " ") -> str:
    return f"{name}{separator}(sim x{_factor(name, result, real_time_factors):g})"


def print_graph_eval_table(results: dict, real_time_factors: dict) -> None:
    width = max([10] + [len(name) for name in results])
    print(f"{'method':{width}s} {'sim x':>5s} {'success':>9s} {'NFE/act':>8s} {'infer p50':>10s} {'p99':>8s} "
          f"{'e2e p50':>8s} {'p99':>8s} {'traj/s':>7s}")
    for name, r in results.items():
        inf, e2e = r["inference_latency_ms"], r["end_to_end_latency_ms"]
        print(f"{name:{width}s} {_factor(name, r, real_time_factors):>5g} {r['successes']:>3d}/{r['episodes']:<3d} "
              f"{r['success_rate']:>4.0%} {r['nfe_per_action'] or 0:>7.2f} {inf['p50']:>9.1f}ms {inf['p99']:>6.1f}ms"
              f" {e2e['p50']:>6.1f}ms {e2e['p99']:>6.1f}ms {r['command_rate_hz']:>7.2f}")
    print("sim x: the sim's speed (real-time factor); traj/s: trajectories reaching the controller per "
          "sim second, each with one setpoint per control period; latencies: observation stamp -> chunk "
          "ready (infer), -> command sent to the controller (e2e), in sim time (wall time x the factor)")
    for name, r in results.items():
        if "safety" in r:
            print(f"{name}: {safety_line(r['safety'])}")


def safety_line(safety: dict) -> str:
    """The safety filter's interventions during an evaluation, in one line."""
    stopped = safety["failed_episodes_with_clearance_reject"]
    others = ", ".join(f"{n} {key}" for key, n in safety["events"].items()) or "none"
    return (f"safety filter: arm clearance {safety['clearance_clamps']} clamps, {safety['clearance_rejects']} "
            f"rejects (in {len(safety['episodes_with_clearance_reject'])} episodes; failed episodes with one: "
            f"{stopped or 'none'}); all events: {others}")


def save_graph_eval_chart(results: dict, real_time_factors: dict, path: str) -> None:
    _save(graph_eval_figure(results, real_time_factors), path)


def graph_eval_figure(results: dict, real_time_factors: dict):
    plt = _pyplot()
    names = list(results)
    labels = [graph_label(n, results[n], real_time_factors, separator="\n") for n in names]
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(9, 3.5))
    bars = ax1.bar(labels, [100 * results[n]["success_rate"] for n in names], color="tab:green")
    _label_success_bars(ax1, bars, [(results[n]["successes"], results[n]["episodes"]) for n in names])
    ax1.set_ylabel("success (%)")
    ax1.set_ylim(0, 110)   # room for the labels above a 100 % bar
    ax1.set_yticks(range(0, 101, 20))
    ax1.set_title(f"success over {results[names[0]]['episodes']} seeded episodes")
    p99 = [results[n]["inference_latency_ms"]["p99"] for n in names]
    ax2.bar(labels, p99, color="tab:blue")
    ax2.set_ylabel("inference latency p99 (sim ms)")
    _scale_time_axis(ax2, p99)
    ax2.set_title("worst-case latency per inference, in sim time")
    fig.tight_layout()
    return fig


def save_graph_latency_histogram(results: dict, real_time_factors: dict, path: str) -> None:
    plt = _pyplot()
    from matplotlib.ticker import LogLocator, NullFormatter, ScalarFormatter
    samples = [s for r in results.values() for s in r["latency_samples_ms"] if s > 0]
    fig, ax = plt.subplots(figsize=(6, 3.5))
    if samples:
        # Log-spaced bins: streaming (tens of ms) and DDPM (seconds) on one axis.
        bins = np.geomspace(min(samples), max(samples) * 1.01, 40)
        for name, r in results.items():
            if r["latency_samples_ms"]:
                ax.hist(r["latency_samples_ms"], bins=bins, alpha=0.6, label=graph_label(name, r, real_time_factors))
        ax.legend()
    ax.set_xlabel("observation stamp -> chunk ready (sim ms)")
    ax.set_ylabel("inferences")
    ax.set_xscale("log")
    ax.xaxis.set_major_locator(LogLocator(base=10, subs=(1.0, 2.0, 5.0)))
    ax.xaxis.set_major_formatter(ScalarFormatter())
    ax.xaxis.set_minor_formatter(NullFormatter())
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def save_frame_strip(frames: list[tuple[float, np.ndarray]], path: str, title: str = "", limit: int = 12) -> None:
    """Frames side by side, each labelled with its time (seconds) under a title line."""
    from PIL import Image, ImageDraw
    shown = frames[:limit]
    strip = np.concatenate([frame for _, frame in shown], axis=1)
    scale = max(1, 256 // strip.shape[0])
    width, height = strip.shape[1] * scale, strip.shape[0] * scale
    picture = Image.fromarray(strip).resize((width, height), Image.NEAREST)
    sheet = Image.new("RGB", (width, height + _CAPTION_PX), "white")
    sheet.paste(picture, (0, _CAPTION_PX))
    draw = ImageDraw.Draw(sheet)
    more = f" (first {limit} of {len(frames)})" if len(frames) > limit else ""
    draw.text((4, 4), title + more, fill="black")
    frame_width = width // len(shown)
    for i, (seconds, _) in enumerate(shown):
        draw.text((i * frame_width + 4, _CAPTION_PX + 4), f"t={seconds:.0f} s", fill=(255, 255, 0),
                  stroke_width=1, stroke_fill="black")
    sheet.save(path)


_CAPTION_PX = 18


def _label_success_bars(ax, bars, counts: list[tuple[int, int]]) -> None:
    """'k/n' on every bar, so a 0 % bar (no height) still shows its result."""
    ax.bar_label(bars, labels=[f"{k}/{n}" for k, n in counts], padding=2, fontsize=8)


# --- dpros eval policy: samplers in the sim without ROS ----------------------------------------
def print_policy_eval_table(results: dict, hold_s: float) -> None:
    width = max([10] + [len(name) for name in results])
    print(f"{'method':{width}s} {'success':>12s} {'held':>12s} {'NFE/act':>8s} {'ms/act':>8s} {'ms/chunk':>9s}")
    for name, r in results.items():
        n = r["episodes"]
        print(f"{name:{width}s} {r['successes']:>3d}/{n:<3d} {r['success_rate']:>4.0%}"
              f" {r['held_successes']:>3d}/{n:<3d} {r['held_success_rate']:>4.0%} {r['nfe_per_action']:>8.2f}"
              f" {r['ms_per_action'] or 0:>8.1f} {r['ms_per_chunk'] or 0:>9.1f}")
    print(f"success: reached within the timeout; held: success lasted {hold_s:g} sim s; "
          "ms: wall time of select_action (every action, and those that computed a chunk)")


def _scale_time_axis(ax, values) -> None:
    """Log scale where the bars span more than 10x (DDPM-100 next to streaming); otherwise a
    linear axis from 0, on which a log scale would blow a 10 % difference up into a cliff."""
    positive = [v for v in values if v > 0]
    if positive and max(positive) > 10 * min(positive):
        ax.set_yscale("log")
    else:
        ax.set_ylim(bottom=0)


def save_policy_eval_chart(results: dict, hold_s: float, path: str) -> None:
    _save(policy_eval_figure(results, hold_s), path)


def policy_eval_figure(results: dict, hold_s: float):
    plt = _pyplot()
    names = list(results)
    x = np.arange(len(names))
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(9, 3.5))
    reached = ax1.bar(x - 0.2, [100 * results[n]["success_rate"] for n in names], 0.4, label="reached",
                      color="tab:green")
    held = ax1.bar(x + 0.2, [100 * results[n]["held_success_rate"] for n in names], 0.4,
                   label=f"held {hold_s:g} s", color="tab:olive")
    _label_success_bars(ax1, reached, [(results[n]["successes"], results[n]["episodes"]) for n in names])
    _label_success_bars(ax1, held, [(results[n]["held_successes"], results[n]["episodes"]) for n in names])
    ax1.set_xticks(x, names)
    ax1.set_ylabel("success (%)")
    ax1.set_ylim(0, 130)  # room for the labels and the legend above the 100 % bars
    ax1.set_yticks(range(0, 101, 20))
    ax1.legend(loc="upper center", ncol=2)
    ax1.set_title(f"success over {results[names[0]]['episodes']} seeded episodes")
    ms_per_chunk = [results[n]["ms_per_chunk"] or 0 for n in names]
    ax2.bar(names, ms_per_chunk, color="tab:blue")
    ax2.set_ylabel("ms per chunk")
    _scale_time_axis(ax2, ms_per_chunk)
    ax2.set_title("policy time per inference (no ROS)")
    fig.tight_layout()
    return fig


def save_variant_success_chart(results: dict, path: str, held_label: str | None = None) -> None:
    """Success per sampler, one group of bars per task variant (results carry 'sampler' and
    'variant'); with `held_label` pale bars are success reached and dark ones success held."""
    plt = _pyplot()
    samplers = list(dict.fromkeys(r["sampler"] for r in results.values()))
    variants = list(dict.fromkeys(r["variant"] for r in results.values()))
    by = {(r["sampler"], r["variant"]): r for r in results.values()}
    width = 0.8 / len(samplers)
    colors = ["tab:green", "tab:orange", "tab:blue", "tab:red", "tab:purple"]
    fig, ax = plt.subplots(figsize=(2.2 + 1.6 * len(variants), 3.8))
    for i, sampler in enumerate(samplers):
        x = np.arange(len(variants)) + (i - (len(samplers) - 1) / 2) * width
        reached = [100 * by[sampler, v]["success_rate"] if (sampler, v) in by else 0 for v in variants]
        color = colors[i % len(colors)]
        if held_label:
            held = [100 * by[sampler, v]["held_success_rate"] if (sampler, v) in by else 0 for v in variants]
            ax.bar(x, reached, width * 0.95, color=color, alpha=0.45)
            ax.bar(x, held, width * 0.95, color=color, label=sampler)
        else:
            ax.bar(x, reached, width * 0.95, color=color, label=sampler)
        for xi, value in zip(x, reached):
            ax.text(xi, value + 1.5, f"{value:.0f}", ha="center", fontsize=7)
    ax.set_xticks(np.arange(len(variants)), variants)
    ax.set_ylabel("success (%)")
    ax.set_ylim(0, 119)
    ax.set_yticks(range(0, 101, 20))
    ax.legend(loc="upper center", ncol=len(samplers), fontsize=8)
    episodes = next(iter(results.values()))["episodes"]
    kinds = f": pale reached, dark {held_label}" if held_label else ""
    ax.set_title(f"success over {episodes} seeded episodes per bar{kinds}", fontsize=9)
    fig.tight_layout()
    _save(fig, path)


def save_episode_strip(frames: list[tuple[float, np.ndarray]], events: list[dict], path: str, title: str,
                       count: int = 10) -> None:
    """`count` camera frames of one episode, evenly spread in time; the first frame after each move
    of the world is framed in red and says what moved."""
    plt = _pyplot()
    times = np.array([t for t, _ in frames])
    picks = set(np.linspace(0, len(frames) - 1, count).round().astype(int).tolist())
    marks = {}
    for event in events:
        after = int(np.searchsorted(times, event["t"]))
        if after < len(frames):
            nearest = min(picks, key=lambda i: abs(i - after))
            picks.discard(nearest)     # keep the strip's length: the event frame replaces its neighbour
            picks.add(after)
            marks[after] = event["event"]
    picks = sorted(picks)
    fig, axes = plt.subplots(1, len(picks), figsize=(1.45 * len(picks), 2.0))
    for ax, i in zip(np.atleast_1d(axes), picks):
        ax.imshow(frames[i][1], interpolation="nearest")
        ax.set_xticks([])
        ax.set_yticks([])
        ax.set_title(f"{times[i]:.2f} s", fontsize=8)
        if i in marks:
            for spine in ax.spines.values():
                spine.set_edgecolor("red")
                spine.set_linewidth(3)
            ax.set_xlabel(marks[i], fontsize=7, color="red")
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    _save(fig, path)


# --- dpros bench sampler ------------------------------------------------------------------------
def print_sampler_table(results: list[dict]) -> None:
    header = (f"{'method':<22}{'NFE/act':>8}{'p50 ms':>9}{'p99 ms':>9}{'max ms':>9}{'cold ms':>9}"
              f"{'err':>8}{'grip':>7}{'xDDPM':>7}{'xDDIM':>7}")
    print(header)
    print("-" * len(header))
    for r in results:
        lat = r["step_latency_ms"]
        grip = "" if r["gripper_mismatch"] is None else f"{r['gripper_mismatch']:.3f}"
        print(f"{r['method']:<22}{r['nfe_per_action']:>8.2f}{lat['p50']:>9.2f}{lat['p99']:>9.2f}{lat['max']:>9.2f}"
              f"{r['cold_start_ms'] or 0:>9.1f}{r['action_error']:>8.4f}{grip:>7}"
              f"{r['max_latency_ratio_vs_ddpm']:>7.1f}{r['max_latency_ratio_vs_ddim']:>7.1f}")


def save_sampler_latency_histogram(path: str, latencies: dict[str, np.ndarray]) -> None:
    plt = _pyplot()
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


# --- dpros bench graph: where observation -> command goes ----------------------------------------
def print_graph_bench_table(result: dict) -> None:
    from diffusion_policy_ros.evaluation.graph_latency import STAGES
    print(f"bench graph: {result['checkpoint']} at {result['control_rate_hz']:g} Hz, {result['seconds']:g} s "
          f"({result['chunks']} chunks); load average {result['load_average_1min']['before']:.2f} -> "
          f"{result['load_average_1min']['after']:.2f} on {result['cpus']} CPUs")
    print(f"{'stage':66s} {'p50':>8s} {'p99':>8s} {'max':>8s}   (ms, sim clock)")
    for key, label in STAGES:
        ms = result["stages_ms"][key]
        print(f"{label:66s} {ms['p50']:8.1f} {ms['p99']:8.1f} {ms['max']:8.1f}")
    print("CPU (% of one core): " + ", ".join(f"{name} {pct:.0f}" for name, pct in result["cpu_percent"].items()))
    print(f"setpoints per second reaching the controller {result['setpoints_per_s']:.2f} "
          f"(one per control period covered; target {result['control_rate_hz']:g}); policy trajectories per "
          f"second {result['policy_trajectories_per_s']:.2f} (one per chunk); controller messages per second "
          f"{result['controller_messages_per_s']:.2f} (incl. holds)")


def save_graph_bench_chart(result: dict, path: str) -> None:
    """Per stage p50 and p99 (horizontal bars), CPU per process beside it."""
    from diffusion_policy_ros.evaluation.graph_latency import STAGES
    plt = _pyplot()
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(11, 4.2), gridspec_kw={"width_ratios": [3, 1]})
    labels = [label.strip() for _, label in STAGES][::-1]
    p50 = [result["stages_ms"][key]["p50"] for key, _ in STAGES][::-1]
    p99 = [result["stages_ms"][key]["p99"] for key, _ in STAGES][::-1]
    y = np.arange(len(labels))
    ax1.barh(y + 0.2, p99, height=0.4, color="tab:orange", label="p99")
    ax1.barh(y - 0.2, p50, height=0.4, color="tab:blue", label="p50")
    ax1.set_yticks(y, [label[:48] for label in labels], fontsize=7)
    ax1.set_xlabel("ms (sim clock)")
    ax1.set_title(f"observation -> command, {result['control_rate_hz']:g} Hz, {result['seconds']:g} s", fontsize=9)
    ax1.legend(fontsize=8)
    names = list(result["cpu_percent"])
    ax2.bar(names, [result["cpu_percent"][n] for n in names], color="tab:gray")
    ax2.set_ylabel("CPU (% of one core)")
    ax2.set_title(f"load {result['load_average_1min']['after']:.1f} on {result['cpus']} CPUs", fontsize=9)
    ax2.tick_params(axis="x", labelrotation=30, labelsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


# --- dpros eval offline ------------------------------------------------------------------------
def print_offline_eval(result: dict) -> None:
    print(f"episodes {result['episodes']}, sampler {result['sampler']}, "
          f"{result['nfe_per_action']:.2f} denoiser evaluations per action")
    print(f"mean |policy - demonstration|: {result['normalized_mae']:.4f} in normalized action units "
          "(each joint's range scaled to [-1, 1])")
    for joint, error in result["mae_per_joint"].items():
        unit = "m (finger opening)" if joint.endswith("gripper") else "rad"
        print(f"  {joint:16s} {error:.4f} {unit}")


# --- dpros dataset info -------------------------------------------------------------------------
def print_dataset_summary(path: str, summary: dict) -> None:
    print(f"{path}: {summary['episodes']} episodes, {summary['frames']} frames, "
          f"lengths {summary['length_min']}..{summary['length_max']}, tasks {summary['tasks']}")
    for key, spec in summary["keys"].items():
        print(f"  {key:32s} {spec['dtype']:8s} {tuple(spec['shape'])}")
    print(f"  {'ep':>3} {'frames':>6} {'secs':>7} {'fps':>5} {'measured':>8} {'dropped':>7} {'dup':>5}  task")
    for e in summary["per_episode"]:
        measured = f"{e['measured_hz']:.2f}" if e["measured_hz"] else "-"
        print(f"  {e['index']:>3} {e['length']:>6} {e['duration_s']:>7.2f} {e['fps'] or 0:>5g} {measured:>8} "
              f"{e['dropped_frames']:>7} {e['duplicated_frames']:>5}  {e['task']}")


# --- dpros rl ncdpo: learning curve --------------------------------------------------------------
def save_rl_learning_curve(history: list[dict], path: str, title: str = "") -> None:
    """Success rate and mean return of the episodes each iteration finished (exploration on) vs
    environment steps (control periods, all envs). Iterations that finished none are skipped."""
    points = [h for h in history if h.get("episodes")]
    plt = _pyplot()
    fig, (ax_success, ax_return) = plt.subplots(1, 2, figsize=(10, 3.6))
    if points:
        steps = [h["env_steps"] for h in points]
        episodes = np.array([h["episodes"] for h in points], float)
        success = np.array([h["success_rate"] for h in points]) * 100.0
        returns = np.array([h["mean_return"] for h in points])
        window = max(1, len(points) // 20)    # a few episodes per iteration: average iterations

        def smooth(values):   # episode-weighted mean over the last `window` iterations
            kernel = np.ones(window)
            weighted = np.convolve(values * episodes, kernel)[:len(values)]
            return weighted / np.convolve(episodes, kernel)[:len(values)]

        for ax, values, color in ((ax_success, success, "tab:blue"), (ax_return, returns, "tab:orange")):
            ax.plot(steps, values, marker=".", lw=0.6, alpha=0.35, color=color, label="per iteration")
            ax.plot(steps, smooth(values), lw=1.6, color=color, label=f"mean of {window} iterations")
            ax.legend(fontsize=8)
    ax_success.set_ylim(-2, 102)
    ax_success.set_ylabel("success of training episodes (%)")
    ax_return.set_ylabel("mean episode return")
    from matplotlib.ticker import EngFormatter
    for ax in (ax_success, ax_return):
        ax.set_xlabel("environment steps")
        ax.xaxis.set_major_formatter(EngFormatter(sep=""))   # 800k, not 800000 run into its neighbour
        ax.grid(alpha=0.3)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    _save(fig, path)


# --- one episode's sensors: what a multi-sensor policy saw and did --------------------------------
SENSOR_DPI = 100


def sensor_timeline_size(n_images: int, n_arms: int, n_frames: int) -> tuple[int, int]:
    """(width, height) in pixels of `save_sensor_timeline`'s picture."""
    width_in, height_in = _sensor_timeline_inches(n_images, n_arms, n_frames)
    return round(width_in * SENSOR_DPI), round(height_in * SENSOR_DPI)


def _sensor_timeline_inches(n_images: int, n_arms: int, n_frames: int) -> tuple[float, float]:
    return max(8.0, 1.25 * n_frames), 1.0 + 1.3 * n_images + 2.0 * n_arms


def save_sensor_timeline(steps: dict[str, np.ndarray], arms: dict[str, dict], path: str, title: str,
                         n_frames: int = 8) -> tuple[int, int]:
    """One episode on one page: a strip of every camera image key (rgb, and depth in grey: near is
    dark) at `n_frames` evenly spread times, then per arm its fingertips' total force over time
    beside the gripper command and the measured gripper opening.

    `steps`: per step arrays, `time` (T,) seconds, `action` (T, A), `obs/joint_pos` (T, J) and
    the `obs/<camera>/rgb|depth` and `obs/<pad>/tactile` keys to show (a dataset episode has
    them all; `timestamp` stands in for `time`). `arms`: arm name -> {"gripper": column of its
    gripper in action and joint_pos, "tactile": [its tactile keys]}. -> the picture's pixel size."""
    from diffusion_policy_ros import obs_keys
    plt = _pyplot()
    times = np.asarray(steps["time"] if "time" in steps else steps["timestamp"], dtype=float)
    images = sorted((k for k in steps if obs_keys.is_obs(k) and obs_keys.is_image(k)),
                    key=lambda k: (obs_keys.parse(k).name, obs_keys.parse(k).modality != "rgb"))
    n_frames = max(1, min(n_frames, len(times)))
    picks = np.linspace(0, len(times) - 1, n_frames).round().astype(int)
    width_in, height_in = _sensor_timeline_inches(len(images), len(arms), n_frames)
    fig = plt.figure(figsize=(width_in, height_in), dpi=SENSOR_DPI)
    grid = fig.add_gridspec(len(images) + len(arms), n_frames,
                            height_ratios=[1.3] * len(images) + [2.0] * len(arms),
                            top=1.0 - 0.55 / height_in, bottom=0.5 / height_in, left=0.08, right=0.92,
                            hspace=0.45, wspace=0.05)
    for row, key in enumerate(images):
        frames = np.asarray(steps[key])
        for col, i in enumerate(picks):
            ax = fig.add_subplot(grid[row, col])
            if obs_keys.parse(key).modality == "depth":
                ax.imshow(frames[i], cmap="gray", interpolation="nearest")
            else:
                ax.imshow(frames[i], interpolation="nearest")
            ax.set_xticks([])
            ax.set_yticks([])
            if row == 0:
                ax.set_title(f"{times[i]:.1f} s", fontsize=8)
            if col == 0:
                ax.set_ylabel(key.removeprefix("obs/"), fontsize=7)
    action = np.asarray(steps["action"], dtype=float)
    joints = np.asarray(steps[obs_keys.JOINT_POS], dtype=float) if obs_keys.JOINT_POS in steps else None
    for row, (arm, layout) in enumerate(arms.items(), start=len(images)):
        ax = fig.add_subplot(grid[row, :])
        strongest = 0.0
        for key in layout["tactile"]:
            force = np.asarray(steps[key], dtype=float).reshape(len(times), -1).sum(axis=1)
            ax.plot(times, force, lw=1.2, label=f"{obs_keys.parse(key).name} total force")
            strongest = max(strongest, float(np.nanmax(force, initial=0.0)))
        ax.set_ylim(0.0, max(1.0, 1.25 * strongest))   # room for the legend; no touch: a flat line at 0
        ax.set_ylabel("taxel force sum (N)", fontsize=8)
        ax.set_title(f"{arm} arm: touch and gripper", fontsize=9)
        grip = ax.twinx()
        grip.step(times, action[:, layout["gripper"]], where="post", color="black", lw=1.2, label="gripper command")
        if joints is not None:
            grip.plot(times, joints[:, layout["gripper"]], color="gray", ls="--", lw=1.0, label="gripper opening")
        grip.set_ylabel("opening (m)", fontsize=8)
        handles = ax.get_legend_handles_labels()[0] + grip.get_legend_handles_labels()[0]
        labels = ax.get_legend_handles_labels()[1] + grip.get_legend_handles_labels()[1]
        ax.legend(handles, labels, fontsize=7, loc="upper left", ncol=4)
        if row == len(images) + len(arms) - 1:
            ax.set_xlabel("episode time (s)")
    fig.suptitle(title, fontsize=10)
    fig.savefig(path, dpi=SENSOR_DPI)
    plt.close(fig)
    return sensor_timeline_size(len(images), len(arms), n_frames)


def sensor_timeline_arms(robot, tactile_keys) -> dict[str, dict]:
    """`save_sensor_timeline`'s `arms` from a RobotConfig: each arm's gripper column and those of
    `tactile_keys` on its fingers."""
    from diffusion_policy_ros import obs_keys
    pads = {t.name: t.arm for t in robot.tactile_sensors}
    arms = {}
    for arm, cols in robot.arm_slices():
        columns = range(robot.action_dim)[cols]
        gripper = next(c for c in columns if c in set(robot.gripper_indices))
        arms[arm.name] = {"gripper": gripper,
                          "tactile": [k for k in tactile_keys if pads.get(obs_keys.parse(k).name) == arm.name]}
    return arms
