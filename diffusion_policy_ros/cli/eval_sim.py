"""`dpros eval sim --checkpoint DIR`: success of each sampler in the sim, through the node graph.

For every sampler (streaming, ddpm, ddim by default) it starts the `dpros up sim` graph
(sim_node -> policy_node -> safety_filter_node -> sim_node) with that sampler, and for every seed
resets the sim and the policy, lets the policy act until the task succeeds or times out, and
records success, inference and end-to-end latency, achieved control rate and denoiser evaluations
per executed action. Same checkpoint, same seeds, one run. Writes `<out>/sim_eval.json` and a bar
chart; `--frames` also writes a PNG strip of the scene camera and a latency histogram.
"""
from __future__ import annotations

import json
import os
import tempfile
import time

import numpy as np

from diffusion_policy_ros.policy.configuration import SAMPLERS

DEFAULT_SAMPLERS = "streaming,ddpm,ddim"


def add_episode_arguments(parser):
    """What every sampler evaluation takes (eval sim, eval policy): checkpoint, seeds, samplers."""
    parser.add_argument("--checkpoint", required=True, help="policy checkpoint folder")
    parser.add_argument("--config", default="config/single_arm.yaml")
    parser.add_argument("--episodes", type=int, default=50)
    parser.add_argument("--seed", type=int, default=10_000, help="first seed (held out from the demos)")
    parser.add_argument("--samplers", default=DEFAULT_SAMPLERS, help=f"comma-separated: {DEFAULT_SAMPLERS}")
    parser.add_argument("--timeout-s", type=float, default=12.0, help="sim seconds an episode may take")


def add_arguments(parser):
    add_episode_arguments(parser)
    parser.add_argument("--real-time-factor", default="1.0",
                        help="sim speed, one number or per sampler (e.g. 'streaming=1,ddim=1,ddpm=0.2'); "
                             "below 1 gives a slow sampler more sim time per inference, so its success "
                             "measures the policy rather than this machine's speed")
    parser.add_argument("--out", default="build/eval", help="folder for sim_eval.json and the pictures")
    parser.add_argument("--frames", action="store_true",
                        help="also save a scene-camera strip of the first episode and a latency histogram")
    parser.add_argument("--set", action="append", default=[], metavar="NAME:=VALUE",
                        help="any launch argument of the sim graph (repeatable)")


def run(args) -> int:
    from tqdm import tqdm

    from diffusion_policy_ros.cli.up import catch_stop_signals, manage_lifecycle, parse_sets, start_graph, stop_graph
    from diffusion_policy_ros.graph import build_graph
    from diffusion_policy_ros.robot_config import config_path, load_robot_config

    catch_stop_signals()
    samplers = parse_samplers(args.samplers)
    real_time_factors = parse_real_time_factors(args.real_time_factor, samplers)
    robot = load_robot_config(config_path(args.config))
    os.makedirs(args.out, exist_ok=True)
    logs = tempfile.mkdtemp(prefix="dpros_eval_sim_")
    seeds = list(range(args.seed, args.seed + args.episodes))
    results = {}
    for sampler in samplers:
        sets = {"policy_checkpoint": os.path.abspath(args.checkpoint), "policy_sampler": sampler,
                "sim_real_time_factor": str(real_time_factors[sampler]), **parse_sets(args.set)}
        specs = build_graph("sim", args.config, sets)
        procs = start_graph(specs, log_dir=logs)
        try:
            error = manage_lifecycle([s.name for s in specs if s.lifecycle], start=False)
            if error:
                print(f"eval sim: {error} (logs in {logs})")
                return 1
            with _Evaluator(robot, record_frames=args.frames and sampler == samplers[0]) as evaluator:
                progress = tqdm(seeds, desc=f"eval {sampler}", unit="episode")
                for seed in progress:
                    dead = [s.name for s, p in zip(specs, procs) if p.poll() is not None]
                    if dead:
                        print(f"eval sim: {', '.join(dead)} exited (logs in {logs})")
                        return 1
                    evaluator.episode(seed, args.timeout_s)
                    progress.set_postfix(success=f"{evaluator.success_rate():.0%}")
                results[sampler] = evaluator.summary()
                if evaluator.frames:
                    _save_strip(evaluator.frames, os.path.join(args.out, "scene_strip.png"))
        finally:
            stop_graph(procs)
    report = {"checkpoint": os.path.abspath(args.checkpoint), "config": args.config, "seeds": seeds,
              "real_time_factor": real_time_factors, "timeout_s": args.timeout_s, "methods": results}
    path = os.path.join(args.out, "sim_eval.json")
    with open(path, "w", encoding="utf-8") as f:
        json.dump(report, f, indent=2)
    _print_table(results, real_time_factors)
    _save_bar_chart(results, real_time_factors, os.path.join(args.out, "sim_eval.png"))
    if args.frames:
        _save_latency_histogram(results, real_time_factors, os.path.join(args.out, "latency.png"))
    print(f"wrote {path}")
    return 0


def parse_samplers(text: str) -> list[str]:
    """'streaming,ddpm' -> ['streaming', 'ddpm'], each a sampler the policy has."""
    samplers = [s.strip() for s in text.split(",") if s.strip()]
    unknown = sorted(set(samplers) - set(SAMPLERS))
    if unknown or not samplers:
        raise SystemExit(f"unknown samplers {unknown or [text]}; choose from {list(SAMPLERS)}")
    return samplers


def parse_real_time_factors(text: str, samplers: list[str]) -> dict[str, float]:
    """'0.5' -> the same factor for every sampler; 'ddpm=0.2,streaming=1' -> per sampler (1 when
    not named)."""
    def number(value: str) -> float:
        try:
            factor = float(value)
        except ValueError:
            raise SystemExit(f"--real-time-factor: {value!r} is not a number") from None
        if not factor > 0:
            raise SystemExit(f"--real-time-factor must be > 0, got {value}")
        return factor

    if "=" not in text:
        return {s: number(text) for s in samplers}
    factors = {s: 1.0 for s in samplers}
    for item in filter(None, (part.strip() for part in text.split(","))):
        name, _, value = item.partition("=")
        if name.strip() not in SAMPLERS:
            raise SystemExit(f"--real-time-factor: unknown sampler {name.strip()!r}; choose from {SAMPLERS}")
        factors[name.strip()] = number(value)
    return {s: factors[s] for s in samplers}


class _Evaluator:
    """One rclpy node that resets, starts and watches episodes of the running graph."""

    def __init__(self, robot, record_frames: bool):
        import threading

        import rclpy
        from rclpy.executors import SingleThreadedExecutor
        from rclpy.signals import SignalHandlerOptions
        from sensor_msgs.msg import Image
        from trajectory_msgs.msg import JointTrajectory

        from diffusion_policy_ros.msg import ActionChunk, PolicyStatus, TaskStatus
        from diffusion_policy_ros.nodes._ros_convert import seconds
        from diffusion_policy_ros.srv import PolicyCommand, ResetEpisode

        self._seconds = seconds
        self._lock = threading.Lock()
        rclpy.init(args=[], signal_handler_options=SignalHandlerOptions.NO)
        self.node = rclpy.create_node("dpros_eval_sim")
        self.reset_client = self.node.create_client(ResetEpisode, "/sim/reset")
        self.command_client = self.node.create_client(PolicyCommand, "policy/command")
        self.PolicyCommand, self.ResetEpisode = PolicyCommand, ResetEpisode
        self.status: TaskStatus | None = None
        self.policy_status: PolicyStatus | None = None
        self.outcomes: list[dict] = []
        self.inference_latency: list[float] = []
        self.end_to_end: list[float] = []
        self.command_times: list[float] = []
        self._pending_obs: list[float] = []
        self._commanding = False
        self.frames: list[np.ndarray] = []
        self._record_frames = record_frames
        self.node.create_subscription(TaskStatus, "/sim/task_status", self._on_status, 10)
        self.node.create_subscription(PolicyStatus, "policy/status", self._on_policy_status, 10)
        self.node.create_subscription(ActionChunk, "policy/action_chunk", self._on_chunk, 10)
        arm = robot.arms[0]
        self.node.create_subscription(JointTrajectory, arm.policy_topic, self._on_policy_command, 10)
        self.node.create_subscription(JointTrajectory, arm.controller_topic, self._on_controller_command, 10)
        if record_frames and robot.cameras:
            self.node.create_subscription(Image, robot.cameras[0].rgb_topic, self._on_image, 2)
        self._last_frame_time = -1.0
        self.executor = SingleThreadedExecutor()
        self.executor.add_node(self.node)
        self._spinner = threading.Thread(target=self.executor.spin, daemon=True)
        self._spinner.start()
        for client in (self.reset_client, self.command_client):
            if not client.wait_for_service(timeout_sec=120.0):
                raise TimeoutError(f"{client.srv_name} is not available")
        deadline = time.monotonic() + 120.0
        while self._latest() is None:  # the episode counter is read before each reset
            if time.monotonic() > deadline:
                raise TimeoutError("the sim publishes no /sim/task_status")
            time.sleep(0.05)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        import rclpy
        self.executor.shutdown()
        self._spinner.join(timeout=5.0)
        self.node.destroy_node()
        rclpy.try_shutdown()

    # --- subscriptions (executor thread)
    def _on_status(self, msg):
        with self._lock:
            self.status = msg

    def _on_policy_status(self, msg):
        with self._lock:
            self.policy_status = msg

    def _on_chunk(self, msg):
        with self._lock:
            if self._commanding:
                self.inference_latency.append(msg.inference_latency)

    def _on_policy_command(self, msg):
        with self._lock:
            if self._commanding:
                self._pending_obs.append(self._seconds(msg.header.stamp))

    def _on_controller_command(self, msg):
        published = self._seconds(msg.header.stamp)
        with self._lock:
            if self._commanding and self._pending_obs:
                self.end_to_end.append(published - self._pending_obs[-1])
                self.command_times.append(published)
                self._pending_obs.clear()  # holds and repeats are not new policy commands

    def _on_image(self, msg):
        stamp = self._seconds(msg.header.stamp)
        with self._lock:
            if not self._commanding or len(self.outcomes) > 0 or stamp - self._last_frame_time < 1.0:
                return
            self._last_frame_time = stamp
        frame = np.frombuffer(bytes(msg.data), np.uint8).reshape(msg.height, msg.width, 3)
        self.frames.append(frame.copy())

    # --- episode control (main thread)
    def _call(self, client, request, timeout_s=60.0):
        future = client.call_async(request)
        deadline = time.monotonic() + timeout_s
        while not future.done():
            if time.monotonic() > deadline:
                raise TimeoutError(f"no answer from {client.srv_name}")
            time.sleep(0.005)
        return future.result()

    def _command(self, command):
        result = self._call(self.command_client, self.PolicyCommand.Request(command=command))
        if not result.success:
            raise RuntimeError(f"policy command {command} failed: {result.message}")

    def _latest(self):
        with self._lock:
            return self.status

    def episode(self, seed: int, timeout_s: float) -> None:
        self._command(self.PolicyCommand.Request.STOP)
        previous = self._latest()
        reset = self._call(self.reset_client, self.ResetEpisode.Request(seed=seed))
        if not reset.success:
            raise RuntimeError(f"sim reset failed: {reset.message}")
        episode = self._wait_for_episode_after(previous.episode if previous else -1)
        self._command(self.PolicyCommand.Request.RESET)
        with self._lock:
            self._commanding = True
            self._pending_obs.clear()
        self._command(self.PolicyCommand.Request.START)
        success, elapsed = False, 0.0
        while True:
            time.sleep(0.02)
            status = self._latest()
            if status is None or status.episode != episode:
                continue
            elapsed = status.episode_time
            if status.success or elapsed >= timeout_s:
                success = bool(status.success)
                break
        with self._lock:
            self._commanding = False
        self._command(self.PolicyCommand.Request.STOP)
        self.outcomes.append({"seed": seed, "success": success, "sim_seconds": round(elapsed, 2)})

    def _wait_for_episode_after(self, previous: int, timeout_s: float = 30.0) -> int:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            status = self._latest()
            if status is not None and status.episode > previous:
                return status.episode
            time.sleep(0.01)
        raise TimeoutError("the sim published no status for the episode just reset")

    def success_rate(self) -> float:
        return float(np.mean([o["success"] for o in self.outcomes])) if self.outcomes else 0.0

    def summary(self) -> dict:
        with self._lock:
            inference = np.array(self.inference_latency or [np.nan]) * 1000.0
            e2e = np.array(self.end_to_end or [np.nan]) * 1000.0
            status = self.policy_status
            gaps = np.diff(self.command_times) if len(self.command_times) > 2 else np.array([np.nan])

        def percentiles(values):
            return {"p50": float(np.nanpercentile(values, 50)), "p99": float(np.nanpercentile(values, 99)),
                    "max": float(np.nanmax(values))}

        return {"success_rate": self.success_rate(), "episodes": len(self.outcomes),
                "successes": int(sum(o["success"] for o in self.outcomes)),
                "nfe_per_action": float(status.nfe_per_action) if status else None,
                "inference_latency_ms": percentiles(inference),
                "end_to_end_latency_ms": percentiles(e2e),
                # commands reaching the controller; a sampler that replans every n_action_steps
                # sends one trajectory per n_action_steps control steps
                "command_rate_hz": float(1.0 / np.nanmedian(gaps)),
                "control_rate_hz": float(status.control_rate) if status else None,
                "latency_samples_ms": [round(float(x), 2) for x in inference if np.isfinite(x)],
                "outcomes": self.outcomes}


def _label(name: str, real_time_factors: dict, separator: str = " ") -> str:
    return f"{name}{separator}(sim x{real_time_factors[name]:g})"


def _print_table(results: dict, real_time_factors: dict) -> None:
    print(f"{'method':10s} {'sim x':>5s} {'success':>9s} {'NFE/act':>8s} {'infer p50':>10s} {'p99':>8s} "
          f"{'e2e p50':>8s} {'p99':>8s} {'traj/s':>7s}")
    for name, r in results.items():
        inf, e2e = r["inference_latency_ms"], r["end_to_end_latency_ms"]
        print(f"{name:10s} {real_time_factors[name]:>5g} {r['successes']:>3d}/{r['episodes']:<3d} "
              f"{r['success_rate']:>4.0%} {r['nfe_per_action'] or 0:>7.2f} {inf['p50']:>9.1f}ms {inf['p99']:>6.1f}ms"
              f" {e2e['p50']:>6.1f}ms {e2e['p99']:>6.1f}ms {r['command_rate_hz']:>7.2f}")
    print("sim x: the sim's speed (real-time factor); traj/s: trajectories reaching the controller per "
          "sim second, each with one setpoint per control period; latencies: observation stamp -> chunk "
          "ready (infer), -> command sent to the controller (e2e), in sim time (wall time x the factor)")


def _save_bar_chart(results: dict, real_time_factors: dict, path: str) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    names = list(results)
    labels = [_label(n, real_time_factors, separator="\n") for n in names]
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(9, 3.5))
    ax1.bar(labels, [100 * results[n]["success_rate"] for n in names], color="tab:green")
    ax1.set_ylabel("success (%)")
    ax1.set_ylim(0, 100)
    ax1.set_title(f"success over {results[names[0]]['episodes']} seeded episodes")
    ax2.bar(labels, [results[n]["inference_latency_ms"]["p99"] for n in names], color="tab:blue")
    ax2.set_ylabel("inference latency p99 (sim ms)")
    ax2.set_yscale("log")
    ax2.set_title("worst-case latency per inference, in sim time")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _save_latency_histogram(results: dict, real_time_factors: dict, path: str) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import LogLocator, NullFormatter, ScalarFormatter
    samples = [s for r in results.values() for s in r["latency_samples_ms"] if s > 0]
    fig, ax = plt.subplots(figsize=(6, 3.5))
    if samples:
        # Log-spaced bins: streaming (tens of ms) and DDPM (seconds) on one axis.
        bins = np.geomspace(min(samples), max(samples) * 1.01, 40)
        for name, r in results.items():
            if r["latency_samples_ms"]:
                ax.hist(r["latency_samples_ms"], bins=bins, alpha=0.6, label=_label(name, real_time_factors))
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


def _save_strip(frames: list[np.ndarray], path: str) -> None:
    from PIL import Image
    strip = np.concatenate(frames[:12], axis=1)
    scale = max(1, 256 // strip.shape[0])
    Image.fromarray(strip).resize((strip.shape[1] * scale, strip.shape[0] * scale), Image.NEAREST).save(path)
