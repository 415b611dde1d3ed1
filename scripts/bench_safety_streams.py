"""How often does the safety filter reject (and hold the arm) or drop a command of a policy's
stream at its worst for the gripper? The streams of 8-point chunks of
`test_a_moving_arm_with_late_chunks_and_gripper_targets_past_its_limits_is_followed`, longer and
many more: the arm joints drifting, the control period jittered 0.8-1.3x, chunks 0-40 ms late,
gripper targets now and then at either limit, 1 cm past it or in between, jitter 4 mm; a robot that
tracks the plan exactly. Every stream's executed path is checked against the limits and workspace.

    ./env.sh python scripts/bench_safety_streams.py [--streams 300] [--steps 80] [--config single_arm_reactive]

Prints the counts (rng seeds 0..streams-1, so two filters compare on the same streams) and the
time; one stream per line where its executed path breaks a limit. Pure Python, one core.
"""
from __future__ import annotations

import argparse
import collections
import os
import sys
import time

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path[:0] = [ROOT, os.path.join(ROOT, "test")]

from test_safety_properties import HOME, STREAM_START, check_path, gripper_stream  # noqa: E402

from diffusion_policy_ros.robot_config import config_path, load_robot_config  # noqa: E402
from diffusion_policy_ros.safety import Band  # noqa: E402
from diffusion_policy_ros.safety.build import build_safety_filter  # noqa: E402
from diffusion_policy_ros.safety.executed_path import ExecutedPath  # noqa: E402


def run_stream(config, seed: int, commands: int) -> dict:
    filt = build_safety_filter(config)
    names = list(filt.limits["arm"].names)
    path = ExecutedPath(STREAM_START, HOME)
    outcome = {"rejects": collections.Counter(), "dropped": 0, "path_error": None}
    for now, times, points in gripper_stream(filt, np.random.default_rng(seed), commands):
        result = filt.filter_command("arm", names, times, points, now)
        if result.band is Band.REJECT:   # the arm is held
            outcome["rejects"].update(event.reason for event in result.events)
        if result.trajectory is not None:
            path.replace(result.trajectory)
        elif result.band is not Band.REJECT:
            outcome["dropped"] += 1
    try:
        check_path(path, filt, "arm")
    except AssertionError as error:
        outcome["path_error"] = str(error)[:200] or "workspace"
    return outcome


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--streams", type=int, default=300)
    parser.add_argument("--steps", type=int, default=80, help="commands per stream")
    parser.add_argument("--config", default="single_arm_reactive", help="robot config (name or path)")
    args = parser.parse_args(argv)
    config = load_robot_config(config_path(args.config))
    started = time.perf_counter()
    rejects, totals = collections.Counter(), collections.Counter()
    for seed in range(args.streams):
        outcome = run_stream(config, seed, args.steps)
        rejects.update(outcome["rejects"])
        totals["streams with a reject"] += bool(outcome["rejects"])
        totals["dropped commands"] += outcome["dropped"]
        totals["streams with a dropped command"] += bool(outcome["dropped"])
        if outcome["path_error"]:
            totals["executed paths breaking a limit"] += 1
            print(f"stream {seed}: executed path: {outcome['path_error']}")
    counts = ", ".join(f"{name} {totals[name]}" for name in (
        "streams with a reject", "dropped commands", "streams with a dropped command",
        "executed paths breaking a limit"))
    print(f"{args.streams} streams of {args.steps} commands ({args.config}): {counts}; reject reasons "
          f"{dict(rejects) or 'none'}; {time.perf_counter() - started:.0f} s")


if __name__ == "__main__":
    main()
