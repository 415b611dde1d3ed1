"""`dpros up sim|robot|record --config config/single_arm.yaml`: the launch graph without `ros2 launch`.

Starts the nodes `diffusion_policy_ros.graph.build_graph` lists (the same list the launch files
use) as separate processes, configures and activates the lifecycle policy node as a lifecycle
manager would, and on Ctrl-C stops them (SIGINT, then SIGTERM, then SIGKILL).
"""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time

from diffusion_policy_ros.graph import build_graph


def add_arguments(parser):
    parser.add_argument("mode", choices=["sim", "robot", "record"],
                        help="sim: MuJoCo + policy + safety filter; record: teleop + recorder")
    parser.add_argument("--config", default="config/single_arm.yaml")
    parser.add_argument("--set", action="append", default=[], metavar="NAME:=VALUE",
                        help="a launch argument, e.g. policy_checkpoint:=runs/x/checkpoint (repeatable)")
    parser.add_argument("--start", action="store_true", help="also send policy/command START once active")
    parser.add_argument("--no-activate", action="store_true", help="leave the policy node unconfigured")
    record = parser.add_argument_group("record mode")
    record.add_argument("--teleop", choices=["expert", "leader", "joy"], default="expert")
    record.add_argument("--no-sim", action="store_true", help="record a real robot (its drivers run already)")
    record.add_argument("--episodes", type=int, default=0,
                        help="teleop expert: record this many successful episodes unattended (successive seeds, "
                             "at most 3 tries per episode), then stop "
                             "(default: episodes are controlled from the keyboard)")
    record.add_argument("--seed", type=int, default=0, help="first sim seed of the unattended episodes")
    record.add_argument("--log-dir", default="",
                        help="with the keyboard console in this terminal, the nodes log to <dir>/<node>.log "
                             "(default build/logs/record-<date>-<time>)")


def parse_sets(items) -> dict[str, str]:
    out = {}
    for item in items:
        name, sep, value = item.partition(":=")
        if not sep:
            raise SystemExit(f"--set expects NAME:=VALUE, got {item!r}")
        out[name] = value
    return out


def start_graph(specs, env=None, log_dir: str | None = None) -> list[subprocess.Popen]:
    procs = []
    for spec in specs:
        out = open(os.path.join(log_dir, f"{spec.name}.log"), "w") if log_dir else None  # noqa: SIM115
        procs.append(subprocess.Popen([sys.executable, "-m", spec.module, *spec.ros_args(log_dir)], env=env,
                                      stdout=out, stderr=subprocess.STDOUT if out else None,
                                      preexec_fn=_default_sigint))
    return procs


def _default_sigint():
    signal.signal(signal.SIGINT, signal.default_int_handler)


def stop_graph(procs, timeout: float = 5.0) -> None:
    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGKILL):
        alive = [p for p in procs if p.poll() is None]
        if not alive:
            return
        for p in alive:
            p.send_signal(sig)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and any(p.poll() is None for p in alive):
            time.sleep(0.05)


def manage_lifecycle(node_names, start: bool = False, timeout: float = 120.0) -> str:
    """configure + activate each lifecycle node (and START the policy); returns '' or an error."""
    import rclpy
    from lifecycle_msgs.msg import Transition
    from lifecycle_msgs.srv import ChangeState

    from diffusion_policy_ros.srv import PolicyCommand
    from rclpy.signals import SignalHandlerOptions
    # no rclpy SIGINT handler: Ctrl-C must reach `dpros up` as KeyboardInterrupt
    rclpy.init(args=[], signal_handler_options=SignalHandlerOptions.NO)
    node = rclpy.create_node("dpros_lifecycle_manager")
    try:
        for name in node_names:
            client = node.create_client(ChangeState, f"/{name}/change_state")
            if not client.wait_for_service(timeout_sec=timeout):
                return f"{name}: lifecycle service not available"
            for transition in (Transition.TRANSITION_CONFIGURE, Transition.TRANSITION_ACTIVATE):
                future = client.call_async(ChangeState.Request(transition=Transition(id=transition)))
                rclpy.spin_until_future_complete(node, future, timeout_sec=timeout)
                if not future.done() or not future.result().success:
                    return f"{name}: transition {transition} failed (see the node's log)"
        if start:
            client = node.create_client(PolicyCommand, "policy/command")
            client.wait_for_service(timeout_sec=timeout)
            future = client.call_async(PolicyCommand.Request(command=PolicyCommand.Request.START))
            rclpy.spin_until_future_complete(node, future, timeout_sec=timeout)
            if not future.done() or not future.result().success:
                return "policy START failed"
        return ""
    finally:
        node.destroy_node()
        rclpy.try_shutdown()


def _interrupt(signum, frame):
    raise KeyboardInterrupt


def catch_stop_signals() -> None:
    """Ctrl-C and SIGTERM both stop the graph cleanly (also when started in the background,
    where a shell leaves SIGINT ignored)."""
    signal.signal(signal.SIGINT, _interrupt)
    signal.signal(signal.SIGTERM, _interrupt)


def run(args) -> int:
    catch_stop_signals()
    if args.mode == "record" and args.episodes and args.teleop != "expert":
        raise SystemExit("--episodes records unattended, which only the scripted expert can do")
    specs = build_graph(args.mode, args.config, parse_sets(args.set), teleop=args.teleop, sim=not args.no_sim)
    console = args.mode == "record" and not args.episodes
    # With the operator's console in this terminal the nodes' logs go to files: their WARN lines
    # drowned the console's answers.
    log_dir = (args.log_dir or time.strftime("build/logs/record-%Y%m%d-%H%M%S")) if console else None
    if log_dir:
        os.makedirs(log_dir, exist_ok=True)
        print(f"dpros up record: node logs in {log_dir}/<node>.log (tail -f to follow them)", flush=True)
    procs = start_graph(specs, log_dir=log_dir)
    if args.mode == "record":
        try:
            return keyboard_control(specs, procs, log_dir) if console else record_episodes(args, specs, procs)
        except KeyboardInterrupt:
            return 0
        finally:
            stop_graph(procs)
    print(f"dpros up {args.mode}: started {', '.join(s.name for s in specs)}; Ctrl-C stops", flush=True)
    try:
        if not args.no_activate:
            error = manage_lifecycle([s.name for s in specs if s.lifecycle], start=args.start)
            if error:
                print(f"dpros up: {error}", file=sys.stderr)
                return 1
            print("dpros up: policy_node active" + (" and commanding" if args.start else ""), flush=True)
        while all(p.poll() is None for p in procs):
            time.sleep(0.2)
        dead = [s.name for s, p in zip(specs, procs) if p.poll() is not None]
        print(f"dpros up: {', '.join(dead)} exited; stopping the graph", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 0
    finally:
        stop_graph(procs)


MAX_ATTEMPTS_PER_EPISODE = 3


def keyboard_control(specs, procs, log_dir: str) -> int:
    """The operator's keyboard node in this terminal; quitting it stops the graph. A node that
    exits meanwhile is reported once, with its log."""
    keyboard = subprocess.Popen([sys.executable, "-m", "diffusion_policy_ros.nodes.keyboard_episode_node"])
    nodes = list(zip(specs, procs))
    procs.append(keyboard)
    reported = set()
    while keyboard.poll() is None:
        for spec, proc in nodes:
            if proc.poll() is not None and spec.name not in reported:
                reported.add(spec.name)
                print(f"\ndpros up record: {spec.name} exited ({proc.returncode}); see "
                      f"{os.path.join(log_dir, spec.name + '.log')}", file=sys.stderr, flush=True)
        time.sleep(0.2)
    return keyboard.returncode


def record_episodes(args, specs, procs) -> int:
    """The scripted expert records `--episodes` episodes from seeds `--seed`, `--seed + 1`, ..."""
    import rclpy
    from rclpy.executors import SingleThreadedExecutor
    from rclpy.signals import SignalHandlerOptions
    from tqdm import tqdm

    from diffusion_policy_ros.nodes.expert_episodes import ExpertEpisodeDriver
    from diffusion_policy_ros.robot_config import config_path, load_robot_config

    task = load_robot_config(config_path(args.config)).task
    rclpy.init(args=[], signal_handler_options=SignalHandlerOptions.NO)
    node = rclpy.create_node("dpros_expert_episodes")
    executor = SingleThreadedExecutor()
    executor.add_node(node)
    spinner = threading.Thread(target=executor.spin, daemon=True)
    spinner.start()
    saved = 0
    try:
        driver = ExpertEpisodeDriver(node)
        driver.wait_until_ready(timeout_s=120.0)
        # Seeds args.seed, args.seed + 1, ... until --episodes are saved: an episode the expert
        # does not finish in time is discarded, not recorded.
        max_attempts = MAX_ATTEMPTS_PER_EPISODE * args.episodes
        progress = tqdm(total=args.episodes, desc="recording", unit="episode")
        seed = args.seed
        while saved < args.episodes and seed < args.seed + max_attempts:
            dead = [s.name for s, p in zip(specs, procs) if p.poll() is not None]
            if dead:
                print(f"dpros up record: {', '.join(dead)} exited; stopping", file=sys.stderr)
                return 1
            outcome = driver.record(seed, task)
            seed += 1
            saved += outcome.saved
            progress.update(int(outcome.saved))
            progress.set_postfix(seed=seed - 1, tried=seed - args.seed,
                                 last=f"{outcome.frames} frames" if outcome.saved else "discarded")
        progress.close()
        print(f"dpros up record: saved {saved} of {args.episodes} episodes "
              f"(seeds {args.seed}..{seed - 1}, {seed - args.seed - saved} discarded)", flush=True)
        return 0 if saved == args.episodes else 1
    finally:
        executor.shutdown()
        spinner.join(timeout=5.0)
        node.destroy_node()
        rclpy.try_shutdown()
