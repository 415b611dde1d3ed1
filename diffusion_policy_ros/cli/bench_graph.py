"""`dpros bench graph --config config/single_arm.yaml --seconds 60 --checkpoint DIR --json PATH`

Runs sim_node, policy_node and safety_filter_node as real processes (the `dpros up sim` graph),
starts the policy (an untrained small checkpoint unless --checkpoint is given) and, standing where
the robot's controller would, measures for `--seconds` after a warm-up:
- per stage, where the time from an observation's stamp to the command at the controller goes
  (evaluation/graph_latency.py; the same stages as docs/latency.md), p50 / p99 / max;
- the CPU each node process used (% of one core) and the machine's load beside it;
- the rates a controller sees: setpoints per second (one per control period the policy's commands
  covered) and trajectory messages per second (one per chunk), which differ by design.
Times are in sim seconds (the sim runs at real_time_factor 1 unless --set sim_real_time_factor:=...).
`--control-rate-hz 20` runs the graph at another control rate; a checkpoint trained at a different
rate is copied with its rate changed (same network, same cost per inference; its actions then play
faster than trained, which is fine for timing, not for success). Writes the JSON and a PNG chart.
"""
from __future__ import annotations

import json
import os
import tempfile
import time

from diffusion_policy_ros.cli.arguments import add_set_argument, parse_sets

WARM_UP_S = 5.0


def add_arguments(parser):
    parser.add_argument("--config", default="config/single_arm.yaml")
    parser.add_argument("--seconds", type=float, default=30.0, help="measured seconds after a warm-up")
    parser.add_argument("--checkpoint", default="", help="default: an untrained small policy")
    parser.add_argument("--control-rate-hz", type=float, default=0.0, help="default: the config's")
    parser.add_argument("--json", default="", help="write the numbers here (and a chart beside it)")
    add_set_argument(parser, "any launch argument of the sim graph (repeatable)")


def run(args) -> int:
    from diffusion_policy_ros.evaluation.graph_latency import GraphLatencyProbe
    from diffusion_policy_ros.graph import build_graph
    from diffusion_policy_ros.reporting import print_graph_bench_table, save_graph_bench_chart
    from diffusion_policy_ros.robot_config import config_path, load_robot_config
    from diffusion_policy_ros.runtime.supervisor import (catch_stop_signals, exited_nodes, manage_lifecycle,
                                                         spinning_node, start_graph, stop_graph)

    catch_stop_signals()
    workdir = tempfile.mkdtemp(prefix="dpros_bench_graph_")
    config = config_path(args.config)
    if args.control_rate_hz:
        config = config_at_rate(config, args.control_rate_hz, workdir)
    robot = load_robot_config(config)
    checkpoint, described = bench_checkpoint(args.checkpoint, robot, workdir)
    specs = build_graph("sim", config, {"policy_checkpoint": checkpoint, **parse_sets(args.set)})
    procs = start_graph(specs, log_dir=workdir)
    try:
        error = manage_lifecycle([s.name for s in specs if s.lifecycle], start=True)
        if error:
            print(f"bench graph: {error} (logs in {workdir})")
            return 1
        with spinning_node("dpros_bench_graph") as node:
            probe = GraphLatencyProbe(node, robot.arms[0])
            time.sleep(WARM_UP_S)  # discovery, the first chunks
            start, cpu_start, load_before = probe.start(), _cpu(specs, procs), os.getloadavg()[0]
            wall_start = time.monotonic()
            time.sleep(args.seconds)
            (records, end), cpu_end, load_after = probe.stop(), _cpu(specs, procs), os.getloadavg()[0]
            wall = time.monotonic() - wall_start
            status = probe.status
        dead = exited_nodes(specs, procs)
    finally:
        stop_graph(procs)
    if dead or start is None or end is None:
        print(f"bench graph: {', '.join(dead) or 'the sim clock'} stopped (logs in {workdir})")
        return 1
    result = records.breakdown(start, end)
    if result["answered_commands"] < 2:
        print(f"bench graph: no commands reached the controller topic (logs in {workdir})")
        return 1
    result.update({
        "config": args.config, "checkpoint": described, "control_rate_hz": robot.control_rate_hz,
        "seconds": args.seconds, "sim_seconds": end - start,
        "cpu_percent": {name: 100.0 * (cpu_end[name] - cpu_start[name]) / wall for name in cpu_end},
        "load_average_1min": {"before": load_before, "after": load_after}, "cpus": os.cpu_count(),
        "policy_status": {"control_rate": status.control_rate, "trajectory_rate": status.trajectory_rate,
                          "nfe_per_action": status.nfe_per_action} if status is not None else None})
    print_graph_bench_table(result)
    if args.json:
        os.makedirs(os.path.dirname(os.path.abspath(args.json)), exist_ok=True)
        with open(args.json, "w", encoding="utf-8") as f:
            json.dump(result, f, indent=2)
        chart = os.path.splitext(args.json)[0] + ".png"
        save_graph_bench_chart(result, chart)
        print(f"wrote {args.json} and {chart}")
    return 0


def bench_checkpoint(checkpoint: str, robot, workdir: str) -> tuple[str, str]:
    """(folder the policy loads, how the result names it)."""
    import json as json_
    import shutil

    if not checkpoint:
        from diffusion_policy_ros.sim.env import SimEnv
        from diffusion_policy_ros.tiny_policy import make_untrained_checkpoint
        home = SimEnv(robot, render=False).home  # the untrained policy's actions stay near the sim's home
        return make_untrained_checkpoint(robot, os.path.join(workdir, "checkpoint"), home), "untrained small policy"
    with open(os.path.join(checkpoint, "config.json"), encoding="utf-8") as f:
        saved = json_.load(f)
    trained_at = saved["policy"]["control_rate_hz"]
    if abs(trained_at - robot.control_rate_hz) < 1e-9:
        return checkpoint, checkpoint
    retimed = os.path.join(workdir, "checkpoint_retimed")
    os.makedirs(retimed)
    shutil.copyfile(os.path.join(checkpoint, "model.safetensors"), os.path.join(retimed, "model.safetensors"))
    saved["policy"]["control_rate_hz"] = robot.control_rate_hz
    with open(os.path.join(retimed, "config.json"), "w", encoding="utf-8") as f:
        json_.dump(saved, f, indent=2)
    return retimed, f"{checkpoint} (trained at {trained_at:g} Hz, run at {robot.control_rate_hz:g} Hz)"


def config_at_rate(config: str, rate_hz: float, workdir: str) -> str:
    """A copy of the robot config with another control rate (shared by every node)."""
    import yaml

    with open(config, encoding="utf-8") as f:
        data = yaml.safe_load(f)
    data["/**"]["ros__parameters"]["control_rate_hz"] = float(rate_hz)
    path = os.path.join(workdir, os.path.basename(config))
    with open(path, "w", encoding="utf-8") as f:
        yaml.safe_dump(data, f, sort_keys=False)
    return path


def _cpu(specs, procs) -> dict[str, float]:
    """CPU seconds (user + system) each node process has used so far."""
    ticks = os.sysconf("SC_CLK_TCK")
    out = {}
    for spec, proc in zip(specs, procs):
        try:
            with open(f"/proc/{proc.pid}/stat", encoding="ascii") as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        out[spec.name] = (int(fields[11]) + int(fields[12])) / ticks
    return out
