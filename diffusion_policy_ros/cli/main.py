"""`dpros`: one entry point, each subcommand in its own module under `diffusion_policy_ros.cli`.

A subcommand module defines `add_arguments(parser)` and `run(args) -> int`. Modules are imported
only when their command runs, so `dpros --help` does not pay for torch or MuJoCo.
"""
from __future__ import annotations

import argparse
import importlib
import sys

# (command words) -> (module under diffusion_policy_ros.cli, one-line help)
COMMANDS: dict[tuple[str, ...], tuple[str, str]] = {
    ("train",): ("train", "train a diffusion policy on a recorded dataset"),
    ("eval", "offline"): ("eval_offline", "action error of a checkpoint on held-out episodes"),
    ("eval", "sim"): ("eval_sim", "success rate of samplers in the sim through the node graph"),
    ("eval", "policy"): ("eval_policy", "success of samplers in the sim without ROS: the policy alone, no latency"),
    ("bench", "sampler"): ("bench_sampler", "latency and function evaluations of each sampler"),
    ("bench", "graph"): ("bench_graph", "end-to-end latency of sim -> policy -> safety filter"),
    ("bench", "record"): ("bench_record", "highest sensor load the recorder keeps up with"),
    ("sim", "expert"): ("sim_expert", "run the scripted expert headless and report success"),
    ("sim", "bench"): ("sim_bench", "physics steps/s, render fps and real-time factor"),
    ("sim", "record"): ("sim_record", "record the scripted expert headless straight into a dataset"),
    ("up",): ("up", "start the node graph from a config without ros2 launch"),
    ("export", "lerobot"): ("export_lerobot", "export a dataset to the LeRobotDataset v3 layout"),
    ("import", "bag"): ("import_bag", "convert a rosbag2 / MCAP recording into a dataset"),
    ("dataset", "info"): ("dataset_info", "episodes, lengths, rates and a thumbnail strip"),
    ("describe", "gazebo"): ("describe_gazebo", "write the Gazebo URDFs, worlds, controller and bridge files"),
}


def build_parser() -> tuple[argparse.ArgumentParser, dict]:
    parser = argparse.ArgumentParser(prog="dpros", description="diffusion_policy_ros command line")
    top = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    groups: dict[str, argparse._SubParsersAction] = {}
    leaves = {}
    for words, (module, help_text) in COMMANDS.items():
        if len(words) == 1:
            leaves[words] = top.add_parser(words[0], help=help_text)
            continue
        group, leaf = words
        if group not in groups:
            group_parser = top.add_parser(group, help=f"{group} subcommands")
            groups[group] = group_parser.add_subparsers(dest="subcommand", metavar="SUBCOMMAND",
                                                        required=True)
        leaves[words] = groups[group].add_parser(leaf, help=help_text)
    return parser, leaves


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    parser, leaves = build_parser()
    words = tuple(w for w in argv[:2] if not w.startswith("-"))
    chosen = next((w for w in (words, words[:1]) if w in COMMANDS), None)
    if chosen is not None:
        module = importlib.import_module(f"diffusion_policy_ros.cli.{COMMANDS[chosen][0]}")
        module.add_arguments(leaves[chosen])
        leaves[chosen].set_defaults(_run=module.run)
    args = parser.parse_args(argv)
    try:
        return int(args._run(args) or 0)
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
