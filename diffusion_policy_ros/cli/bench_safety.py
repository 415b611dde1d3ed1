"""`dpros bench safety --config config/single_arm.yaml --seconds 20 --json PATH`
`dpros bench safety --soak 600 --checkpoint checkpoints/single_arm_pick_place --json PATH`

Without --soak: safety_filter_node in its own process, attacked at `--rate-hz` (1 kHz) with the
largest commands it accepts (max_points points spread over max_horizon_s), while a robot in this
process follows every output it sends (and checks each against the limits) and publishes joint
states at `--joint-state-rate-hz`. In turns it calls the e-stop service (then releases it) and
stops the stream to let the watchdog hold. Prints p50 / p99 / max of
- e-stop: service call -> hold trajectory received from the controller topic;
- watchdog: end of the last command the filter accepted -> hold received here, minus
  watchdog_timeout_s (the end as the filter's stale_command event reports it);
and writes the JSON (`--json`) with a PNG histogram beside it. Issue 11 asks for the e-stop under
50 ms and the watchdog under timeout + 50 ms.

With --soak SECONDS: the sim graph (`dpros up sim`: sim, policy, filter) at its rate for that long;
every trajectory the filter sends is checked against the position, velocity, step and acceleration
limits of the commanded path; prints unsafe outputs, crashed nodes and each node's RSS growth.
"""
from __future__ import annotations

import json
import os
import tempfile
import threading
import time

import numpy as np

from diffusion_policy_ros.cli.arguments import add_set_argument, parse_sets

ESTOP_BOUND_S = 0.050
WATCHDOG_BOUND_S = 0.050
SETTLE_S = 0.3          # streaming between trials, so that every trial starts from a forwarding filter
TRIAL_TIMEOUT_S = 5.0


def add_arguments(parser):
    parser.add_argument("--config", default="config/single_arm.yaml")
    parser.add_argument("--seconds", type=float, default=20.0, help="attack this long (without --soak)")
    parser.add_argument("--rate-hz", type=float, default=1000.0, help="worst-case commands per second")
    parser.add_argument("--joint-state-rate-hz", type=float, default=100.0, help="the robot's joint states")
    parser.add_argument("--soak", type=float, default=0.0, metavar="SECONDS",
                        help="run the sim graph this long instead and check every filter output")
    parser.add_argument("--checkpoint", default="", help="--soak: the policy (default: an untrained small one)")
    parser.add_argument("--json", default="", help="write the numbers here (and a PNG beside it)")
    add_set_argument(parser, "a safety_filter_node parameter, e.g. safety_max_points:=64 (repeatable)")


def run(args) -> int:
    from diffusion_policy_ros.runtime.supervisor import catch_stop_signals
    catch_stop_signals()
    result = run_soak(args) if args.soak > 0 else run_attack(args)
    if result is None:
        return 1
    if args.json:
        os.makedirs(os.path.dirname(os.path.abspath(args.json)), exist_ok=True)
        with open(args.json, "w", encoding="utf-8") as f:
            json.dump(result, f, indent=2)
        chart = os.path.splitext(args.json)[0] + ".png"
        (save_soak_chart if args.soak > 0 else save_attack_chart)(result, chart)
        print(f"wrote {args.json} and {chart}")
    return 0 if result["passed"] else 1


def percentiles(values) -> dict:
    if not values:
        return {"n": 0, "p50_ms": None, "p99_ms": None, "max_ms": None}
    ms = 1000.0 * np.asarray(values)
    return {"n": len(values), "p50_ms": float(np.percentile(ms, 50)), "p99_ms": float(np.percentile(ms, 99)),
            "max_ms": float(ms.max())}


def filter_overrides(args) -> dict:
    """--set safety_x:=v -> {x: v} (YAML-typed, as a launch argument would be)."""
    import yaml
    out = {}
    for name, value in parse_sets(args.set).items():
        out[name.removeprefix("safety_")] = yaml.safe_load(value)
    return out


# ---------------------------------------------------------------- the attack
def run_attack(args) -> dict | None:
    from diffusion_policy_ros.graph import NodeSpec
    from diffusion_policy_ros.robot_config import config_path, load_robot_config
    from diffusion_policy_ros.runtime.supervisor import exited_nodes, spinning_node, start_graph, stop_graph
    from diffusion_policy_ros.safety import SafetyParams
    from diffusion_policy_ros.safety.build import build_safety_filter
    from diffusion_policy_ros.sim.env import SimEnv

    config = config_path(args.config)
    robot_config = load_robot_config(config)
    values = {**robot_config.node_params("safety_filter_node"), **filter_overrides(args)}
    params = SafetyParams.from_mapping(values)
    safety_filter = build_safety_filter(robot_config, values)
    home = SimEnv(robot_config, render=False).home
    workdir = tempfile.mkdtemp(prefix="dpros_bench_safety_")
    specs = [NodeSpec("safety_filter_node", config, filter_overrides(args))]
    procs = start_graph(specs, log_dir=workdir)
    try:
        with spinning_node("dpros_bench_safety") as node:
            from diffusion_policy_ros.cli.safety_robot import SKIPPED, FollowingRobot
            robot = FollowingRobot(node, robot_config, safety_filter, params, home, args.joint_state_rate_hz)
            if not robot.wait_ready(procs):
                print(f"bench safety: the filter did not come up (logs in {workdir})")
                return None
            attack = robot.attack(args.rate_hz)
            estop, estop_answer, watchdog, skipped = [], [], [], 0
            failures = []
            ends = time.monotonic() + args.seconds
            while time.monotonic() < ends and not exited_nodes(specs, procs):
                time.sleep(SETTLE_S)
                latency, answered = robot.estop_trial()
                (estop.append(latency) if latency is not None else failures.append("e-stop: no hold"))
                estop_answer.append(answered)
                time.sleep(SETTLE_S)
                delay = robot.watchdog_trial(attack)
                if delay == SKIPPED:
                    skipped += 1
                elif delay is None:
                    failures.append("watchdog: no hold")
                else:
                    watchdog.append(delay)
            sent, attack_s = attack.stop()
            outputs, violations, unexplained = robot.summary()
        dead = exited_nodes(specs, procs)
    finally:
        stop_graph(procs)
    result = {
        "config": args.config, "seconds": args.seconds, "rate_hz_asked": args.rate_hz,
        "rate_hz_sent": sent / attack_s if attack_s > 0 else 0.0, "commands_sent": sent,
        "points_per_command": params.max_points, "horizon_s": params.max_horizon_s,
        "watchdog_timeout_s": params.watchdog_timeout_s, "joint_state_rate_hz": args.joint_state_rate_hz,
        "estop_to_hold": percentiles(estop), "estop_service_answer": percentiles(estop_answer),
        "watchdog_hold_delay": percentiles(watchdog), "watchdog_trials_already_holding": skipped,
        "estop_samples_s": estop, "watchdog_samples_s": watchdog,
        "outputs": outputs, "unsafe_outputs": len(violations), "violations": violations[:10],
        "events_outside_trials": unexplained, "failures": failures, "crashed": dead,
        "load_average_1min": os.getloadavg()[0], "cpus": os.cpu_count(), "logs": workdir}
    result["passed"] = (not dead and not violations and not failures and bool(estop) and bool(watchdog)
                        and result["estop_to_hold"]["max_ms"] < 1000 * ESTOP_BOUND_S
                        and result["watchdog_hold_delay"]["max_ms"] < 1000 * WATCHDOG_BOUND_S)
    print_attack(result)
    return result


def print_attack(r: dict) -> None:
    print(f"safety filter under {r['rate_hz_sent']:.0f} commands/s (asked {r['rate_hz_asked']:.0f}) of "
          f"{r['points_per_command']} points over {r['horizon_s']} s, {r['commands_sent']} sent; load "
          f"{r['load_average_1min']:.2f} on {r['cpus']} CPUs")
    print(f"{'':32s}{'n':>6s}{'p50 ms':>10s}{'p99 ms':>10s}{'max ms':>10s}   bound")
    rows = [("e-stop call -> hold received", r["estop_to_hold"], f"< {1000 * ESTOP_BOUND_S:.0f} ms"),
            ("e-stop service answered", r["estop_service_answer"], ""),
            ("watchdog hold - timeout", r["watchdog_hold_delay"], f"< {1000 * WATCHDOG_BOUND_S:.0f} ms")]
    for name, p, bound in rows:
        if p["n"]:
            print(f"{name:32s}{p['n']:6d}{p['p50_ms']:10.1f}{p['p99_ms']:10.1f}{p['max_ms']:10.1f}   {bound}")
        else:
            print(f"{name:32s}{0:6d}{'-':>10s}{'-':>10s}{'-':>10s}   {bound}")
    print(f"outputs {r['outputs']}, unsafe {r['unsafe_outputs']}, holds/rejects outside trials {r['events_outside_trials'] or 'none'}, "
          f"crashed {r['crashed'] or 'none'}, failures {r['failures'] or 'none'} -> "
          f"{'PASS' if r['passed'] else 'FAIL'}")


def save_attack_chart(r: dict, path: str) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.6))
    for ax, key, bound, title in ((axes[0], "estop_samples_s", ESTOP_BOUND_S, "e-stop call -> hold"),
                                  (axes[1], "watchdog_samples_s", WATCHDOG_BOUND_S, "watchdog hold - timeout")):
        ms = 1000.0 * np.asarray(r[key])
        ax.hist(ms, bins=30, color="tab:blue")
        ax.axvline(1000 * bound, color="tab:red", linestyle="--", label=f"bound {1000 * bound:.0f} ms")
        ax.set_xlabel("ms")
        ax.set_title(f"{title} (n={len(ms)})")
        ax.legend()
    fig.suptitle(f"safety filter under {r['rate_hz_sent']:.0f} commands/s of {r['points_per_command']} points")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


# ---------------------------------------------------------------- the soak
def run_soak(args) -> dict | None:
    from diffusion_policy_ros.cli.bench_graph import bench_checkpoint
    from diffusion_policy_ros.cli.safety_robot import OutputChecker
    from diffusion_policy_ros.graph import build_graph
    from diffusion_policy_ros.robot_config import config_path, load_robot_config
    from diffusion_policy_ros.runtime.supervisor import (exited_nodes, manage_lifecycle, spinning_node, start_graph,
                                                         stop_graph)
    from diffusion_policy_ros.safety import SafetyParams
    from diffusion_policy_ros.safety.build import build_safety_filter

    config = config_path(args.config)
    robot_config = load_robot_config(config)
    values = robot_config.node_params("safety_filter_node")
    safety_filter = build_safety_filter(robot_config, values)
    params = SafetyParams.from_mapping(values)
    workdir = tempfile.mkdtemp(prefix="dpros_soak_")
    checkpoint, described = bench_checkpoint(args.checkpoint, robot_config, workdir)
    specs = build_graph("sim", config, {"policy_checkpoint": checkpoint, **parse_sets(args.set)})
    procs = start_graph(specs, log_dir=workdir)
    try:
        error = manage_lifecycle([s.name for s in specs if s.lifecycle], start=True)
        if error:
            print(f"bench safety --soak: {error} (logs in {workdir})")
            return None
        with spinning_node("dpros_safety_soak") as node:
            checker = OutputChecker(node, robot_config, safety_filter, params)
            time.sleep(5.0)  # discovery, the first chunks
            rss_start = rss_of(specs, procs)
            started = time.monotonic()
            report_every, next_report = 60.0, started + 60.0
            while time.monotonic() - started < args.soak and not exited_nodes(specs, procs):
                time.sleep(1.0)
                if time.monotonic() >= next_report:
                    next_report += report_every
                    print(f"  {time.monotonic() - started:5.0f} s: {checker.outputs} outputs, "
                          f"{len(checker.violations)} unsafe", flush=True)
            rss_end = rss_of(specs, procs)
            wall = time.monotonic() - started
            outputs, violations, unchecked = checker.outputs, list(checker.violations), checker.unchecked
        dead = exited_nodes(specs, procs)
    finally:
        stop_graph(procs)
    growth = {name: 100.0 * (rss_end[name] - rss_start[name]) / rss_start[name]
              for name in rss_start if name in rss_end}
    result = {"config": args.config, "checkpoint": described, "seconds": wall, "outputs": outputs,
              "outputs_per_s": outputs / wall if wall else 0.0, "unsafe_outputs": len(violations),
              "unchecked_outputs": unchecked,
              "violations": violations[:10], "crashed": dead,
              "rss_mb_start": {k: v / 1e6 for k, v in rss_start.items()},
              "rss_mb_end": {k: v / 1e6 for k, v in rss_end.items()}, "rss_growth_percent": growth,
              "load_average_1min": os.getloadavg()[0], "cpus": os.cpu_count(), "logs": workdir}
    result["passed"] = not dead and not violations and outputs > 0 and all(g < 5.0 for g in growth.values())
    print(f"soak {wall:.0f} s of the sim graph ({described}): {outputs} filter outputs "
          f"({result['outputs_per_s']:.1f}/s; {unchecked} before its first joint state, not checked), "
          f"{len(violations)} unsafe, crashed: {', '.join(dead) or 'none'}")
    for name in rss_start:
        if name in rss_end:
            print(f"  {name:22s} RSS {rss_start[name] / 1e6:7.1f} -> {rss_end[name] / 1e6:7.1f} MB "
                  f"({growth[name]:+.1f} %)")
    for v in violations[:5]:
        print(f"  unsafe: {v}")
    print("PASS" if result["passed"] else "FAIL")
    return result


def rss_of(specs, procs) -> dict[str, int]:
    """Resident bytes of each node process still running."""
    out = {}
    for spec, proc in zip(specs, procs):
        try:
            with open(f"/proc/{proc.pid}/status", encoding="ascii") as f:
                kb = next(int(line.split()[1]) for line in f if line.startswith("VmRSS:"))
        except (OSError, StopIteration):
            continue
        out[spec.name] = kb * 1024
    return out


def save_soak_chart(r: dict, path: str) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    names = list(r["rss_mb_start"])
    x = np.arange(len(names))
    fig, ax = plt.subplots(figsize=(7, 3.6))
    ax.bar(x - 0.2, [r["rss_mb_start"][n] for n in names], 0.4, label="start")
    ax.bar(x + 0.2, [r["rss_mb_end"].get(n, 0.0) for n in names], 0.4, label="end")
    ax.set_xticks(x, names)
    ax.set_ylabel("RSS (MB)")
    ax.set_title(f"soak {r['seconds']:.0f} s: {r['outputs']} outputs, {r['unsafe_outputs']} unsafe")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
