"""`dpros up sim|robot|record --config config/single_arm.yaml`: the launch graph without `ros2 launch`.

Starts the nodes `diffusion_policy_ros.graph.build_graph` lists (the same list the launch files
use) as separate processes, configures and activates the lifecycle policy node as a lifecycle
manager would, and on Ctrl-C stops them (SIGINT, then SIGTERM, then SIGKILL).
"""
from __future__ import annotations

import os
import subprocess
import sys
import time

from diffusion_policy_ros.cli.arguments import add_set_argument, parse_sets
from diffusion_policy_ros.cli.errors import UsageError
from diffusion_policy_ros.graph import build_graph
from diffusion_policy_ros.runtime.supervisor import (catch_stop_signals, exited_nodes, manage_lifecycle,
                                                     spinning_node, start_graph, stop_graph)

MAX_ATTEMPTS_PER_EPISODE = 3


def add_arguments(parser):
    parser.add_argument("mode", choices=["sim", "robot", "record"],
                        help="sim: MuJoCo + policy + safety filter; record: teleop + recorder")
    parser.add_argument("--config", default="config/single_arm.yaml")
    add_set_argument(parser)
    parser.add_argument("--start", action="store_true", help="also send policy/command START once active")
    parser.add_argument("--no-activate", action="store_true", help="leave the policy node unconfigured")
    record = parser.add_argument_group("record mode")
    record.add_argument("--teleop", choices=["expert", "leader", "joy"], default="expert")
    record.add_argument("--no-sim", action="store_true", help="record a real robot (its drivers run already)")
    record.add_argument("--episodes", type=int, default=0,
                        help="teleop expert: record this many successful episodes unattended (successive seeds, "
                             f"at most {MAX_ATTEMPTS_PER_EPISODE} tries per episode), then stop "
                             "(default: episodes are controlled from the keyboard)")
    record.add_argument("--seed", type=int, default=0, help="first sim seed of the unattended episodes")
    record.add_argument("--log-dir", default="",
                        help="with the keyboard console in this terminal, the nodes log to <dir>/<node>.log "
                             "(default build/logs/record-<date>-<time>)")


def run(args) -> int:
    catch_stop_signals()
    if args.mode == "record" and args.episodes and args.teleop != "expert":
        raise UsageError("--episodes records unattended, which only the scripted expert can do")
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
        print(f"dpros up: {', '.join(exited_nodes(specs, procs))} exited; stopping the graph", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 0
    finally:
        stop_graph(procs)


def keyboard_control(specs, procs, log_dir: str) -> int:
    """The operator's keyboard node in this terminal; quitting it stops the graph. A node that
    exits meanwhile is reported once, with its log."""
    keyboard = subprocess.Popen([sys.executable, "-m", "diffusion_policy_ros.nodes.keyboard_episode_node"])
    procs.append(keyboard)
    reported = set()
    while keyboard.poll() is None:
        for name in sorted(set(exited_nodes(specs, procs)) - reported):
            reported.add(name)
            print(f"\ndpros up record: {name} exited; see {os.path.join(log_dir, name + '.log')}",
                  file=sys.stderr, flush=True)
        time.sleep(0.2)
    return keyboard.returncode


def recorded_summary(status: dict, indices: list[int]) -> str:
    """What the dataset holds of the episodes recorded now: frames, drops, safety marks."""
    from diffusion_policy_ros.data.replay_buffer import ReplayBuffer

    dataset = ReplayBuffer.open(status["dataset"])
    metas = [dataset.episode_meta(i) for i in indices if i < dataset.n_episodes]
    frames = sum(m["length"] for m in metas)
    line = (f"dpros up record: {len(metas)} episodes in {status['dataset']}: {frames} frames, "
            f"{sum(m['dropped_frames'] for m in metas)} dropped, {sum(m['duplicated_frames'] for m in metas)} "
            f"duplicated, {sum(m.get('safety_affected_frames', 0) for m in metas)} with safety events")
    if status["state"] == "error":
        line += f"; recorder: {status['message']}"
    return line


def record_episodes(args, specs, procs) -> int:
    """The scripted expert records `--episodes` episodes from seeds `--seed`, `--seed + 1`, ..."""
    from tqdm import tqdm

    from diffusion_policy_ros.nodes.expert_episodes import ExpertEpisodeDriver
    from diffusion_policy_ros.robot_config import config_path, load_robot_config

    task = load_robot_config(config_path(args.config)).task
    saved, indices = 0, []
    with spinning_node("dpros_expert_episodes") as node:
        driver = ExpertEpisodeDriver(node)
        driver.wait_until_ready(timeout_s=120.0)
        # Seeds args.seed, args.seed + 1, ... until --episodes are saved: an episode the expert
        # does not finish in time is discarded, not recorded.
        max_attempts = MAX_ATTEMPTS_PER_EPISODE * args.episodes
        progress = tqdm(total=args.episodes, desc="recording", unit="episode")
        seed = args.seed
        while saved < args.episodes and seed < args.seed + max_attempts:
            dead = exited_nodes(specs, procs)
            if dead:
                print(f"dpros up record: {', '.join(dead)} exited; stopping", file=sys.stderr)
                return 1
            outcome = driver.record(seed, task)
            seed += 1
            saved += outcome.saved
            if outcome.saved:
                indices.append(outcome.episode_index)
            progress.update(int(outcome.saved))
            progress.set_postfix(seed=seed - 1, saved=saved, discarded=seed - args.seed - saved,
                                 last=f"{outcome.frames} frames" if outcome.saved else "discarded")
        progress.close()
        print(f"dpros up record: saved {saved} of {args.episodes} episodes "
              f"(seeds {args.seed}..{seed - 1}, {seed - args.seed - saved} discarded); converting...", flush=True)
        print(recorded_summary(driver.wait_for_conversions(timeout_s=600.0), indices), flush=True)
    return 0 if saved == args.episodes else 1
