"""`dpros`: one entry point, each subcommand in its own module under `diffusion_policy_ros.cli`.

A subcommand module defines `add_arguments(parser)` and `run(args) -> int`. Modules are imported
only when their command runs, so `dpros --help` does not pay for torch or MuJoCo. A user's mistake
(see `cli.errors`) prints one line and exits 2; `--debug`, anywhere on the line, shows the traceback.
"""
from __future__ import annotations

import argparse
import importlib
import sys

from diffusion_policy_ros.cli.errors import USAGE_EXIT_CODE, is_user_error, one_line

# (command words) -> (module under diffusion_policy_ros.cli, one-line help)
COMMANDS: dict[tuple[str, ...], tuple[str, str]] = {
    ("train",): ("train", "train a diffusion policy on a recorded dataset"),
    ("eval", "offline"): ("eval_offline", "action error of a checkpoint on held-out episodes"),
    ("eval", "sim"): ("eval_sim", "success rate of samplers in the sim through the node graph"),
    ("eval", "policy"): ("eval_policy", "success of samplers in the sim without ROS: the policy alone, no latency"),
    ("bench", "sampler"): ("bench_sampler", "latency and function evaluations of each sampler"),
    ("bench", "graph"): ("bench_graph", "end-to-end latency of sim -> policy -> safety filter"),
    ("bench", "safety"): ("bench_safety", "e-stop and watchdog latency under a flood of worst-case commands; --soak"),
    ("bench", "record"): ("bench_record", "highest sensor load the recorder keeps up with"),
    ("sim", "expert"): ("sim_expert", "run the scripted expert headless and report success"),
    ("sim", "bench"): ("sim_bench", "physics steps/s, render fps and real-time factor"),
    ("sim", "record"): ("sim_record", "record the scripted expert headless straight into a dataset"),
    ("up",): ("up", "start the node graph from a config without ros2 launch"),
    ("export", "lerobot"): ("export_lerobot", "export a dataset to the LeRobotDataset v3 layout"),
    ("export", "diffusion-policy"): ("export_diffusion_policy",
                                     "export a dataset as diffusion_policy's zarr (format 2) replay buffer"),
    ("import", "bag"): ("import_bag", "convert a rosbag2 / MCAP recording into a dataset"),
    ("dataset", "info"): ("dataset_info", "episodes, lengths, rates and a thumbnail strip"),
    ("rl", "ncdpo"): ("rl_ncdpo", "fine-tune a checkpoint in the sim with NCDPO (PPO through its denoising steps)"),
    ("describe", "gazebo"): ("describe_gazebo", "write the Gazebo URDFs, worlds, controller and bridge files"),
}


def build_parser() -> tuple[argparse.ArgumentParser, dict]:
    parser = argparse.ArgumentParser(prog="dpros", description="diffusion_policy_ros command line")
    parser.add_argument("--debug", action="store_true", help="show the Python traceback of an error")
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
    argv = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in argv
    argv = [a for a in argv if a != "--debug"]
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
    except Exception as e:  # noqa: BLE001 - sorted into the user's mistakes and bugs below
        if debug or not is_user_error(e):
            raise
        print(f"dpros {' '.join(chosen or ())}: {one_line(e)}", file=sys.stderr, flush=True)
        return USAGE_EXIT_CODE


if __name__ == "__main__":
    sys.exit(main())
