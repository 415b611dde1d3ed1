"""`dpros bench graph --config config/single_arm.yaml --seconds 30 --json PATH`

Runs sim_node, policy_node and safety_filter_node as real processes (the `dpros up sim` graph),
starts the policy (an untrained small checkpoint unless --checkpoint is given) and measures, on the
controller topic, the end-to-end latency from the observation stamp of each policy chunk to the
safety filter publishing it, and the achieved command rate.
"""
from __future__ import annotations

import json
import os
import tempfile
import threading
import time

import numpy as np

from diffusion_policy_ros.cli.arguments import add_set_argument, parse_sets


def add_arguments(parser):
    parser.add_argument("--config", default="config/single_arm.yaml")
    parser.add_argument("--seconds", type=float, default=30.0)
    parser.add_argument("--checkpoint", default="", help="default: an untrained small policy")
    parser.add_argument("--json", default="", help="write the numbers here")
    add_set_argument(parser, "any launch argument of the sim graph (repeatable)")


def run(args) -> int:
    from trajectory_msgs.msg import JointTrajectory

    from diffusion_policy_ros.graph import build_graph
    from diffusion_policy_ros.nodes._ros_convert import seconds
    from diffusion_policy_ros.robot_config import config_path, load_robot_config
    from diffusion_policy_ros.runtime.supervisor import (catch_stop_signals, manage_lifecycle, spinning_node,
                                                         start_graph, stop_graph)
    from diffusion_policy_ros.sim.env import SimEnv
    from diffusion_policy_ros.tiny_policy import make_untrained_checkpoint

    catch_stop_signals()
    robot = load_robot_config(config_path(args.config))
    workdir = tempfile.mkdtemp(prefix="dpros_bench_graph_")
    home = SimEnv(robot, render=False).home  # the untrained policy's actions stay near the sim's home
    checkpoint = args.checkpoint or make_untrained_checkpoint(robot, os.path.join(workdir, "checkpoint"), home)
    sets = {"policy_checkpoint": checkpoint, **parse_sets(args.set)}
    specs = build_graph("sim", args.config, sets)
    procs = start_graph(specs, log_dir=workdir)
    arm = robot.arms[0]
    obs_stamps: list[float] = []
    samples: list[tuple[float, float]] = []   # (published, latency)
    lock = threading.Lock()
    try:
        error = manage_lifecycle([s.name for s in specs if s.lifecycle], start=True)
        if error:
            print(f"bench graph: {error} (logs in {workdir})")
            return 1

        def on_policy(msg):
            with lock:
                obs_stamps.append(seconds(msg.header.stamp))

        def on_controller(msg):
            published = seconds(msg.header.stamp)
            with lock:
                if obs_stamps:
                    samples.append((published, published - obs_stamps[-1]))
                    obs_stamps.clear()  # a hold or repeat is not a new policy command

        with spinning_node("dpros_bench_graph") as node:
            node.create_subscription(JointTrajectory, arm.policy_topic, on_policy, 10)
            node.create_subscription(JointTrajectory, arm.controller_topic, on_controller, 10)
            time.sleep(3.0)  # warm-up: discovery, the first chunks
            with lock:
                samples.clear()
            time.sleep(args.seconds)
    finally:
        stop_graph(procs)
    if len(samples) < 2:
        print(f"bench graph: no commands reached the controller topic (logs in {workdir})")
        return 1
    published = np.array([s[0] for s in samples])
    latency = np.array([s[1] for s in samples]) * 1000.0
    result = {"config": args.config, "seconds": args.seconds, "commands": len(samples),
              "control_rate_hz": float((len(published) - 1) / (published[-1] - published[0])),
              "target_control_rate_hz": robot.control_rate_hz,
              "latency_ms": {"p50": float(np.percentile(latency, 50)), "p99": float(np.percentile(latency, 99)),
                             "max": float(latency.max())},
              "checkpoint": "untrained small policy" if not args.checkpoint else checkpoint}
    print(json.dumps(result, indent=2))
    if args.json:
        with open(args.json, "w", encoding="utf-8") as f:
            json.dump(result, f, indent=2)
    return 0
