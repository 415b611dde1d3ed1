"""`dpros describe gazebo`: write (or check) the Gazebo files of robot configs: a URDF per arm with
gz_ros2_control, the task's world, the controller and bridge parameter files.

    dpros describe gazebo                                   # the shipped configs, into the package
    dpros describe gazebo --check                           # exit 1 if a shipped file is stale
    dpros describe gazebo --config my_arm.yaml --out gz/    # a config of your own
"""
from __future__ import annotations

import os
import sys


def add_arguments(parser) -> None:
    parser.add_argument("--config", action="append", default=None,
                        help="robot config (repeatable; default: the shipped single_arm and bimanual)")
    parser.add_argument("--out", default=None,
                        help="folder to write into, laid out like the package (default: the package source tree)")
    parser.add_argument("--check", action="store_true",
                        help="write nothing; list the files that differ from what would be written, exit 1 if any")


def run(args) -> int:
    from diffusion_policy_ros.gazebo.model_source import ModelSource
    from diffusion_policy_ros.gazebo.shipped import SHIPPED_CONFIGS, shipped_config, stale_files, write_files
    from diffusion_policy_ros.robot_config import ConfigError, config_path, load_robot_config

    out = os.path.abspath(args.out) if args.out else None
    stale = []
    try:
        paths = [config_path(c) for c in args.config] if args.config else [shipped_config(c) for c in SHIPPED_CONFIGS]
        for path in paths:
            source = ModelSource(load_robot_config(path))
            if args.check:
                stale += stale_files(source, out)
                continue
            for path in write_files(source, out):
                print(f"wrote {path}")
    except ConfigError as e:
        print(f"dpros describe gazebo: {e}", file=sys.stderr)
        return 2
    for path in stale:
        print(f"stale: {path}")
    if args.check and not stale:
        print("all Gazebo files are up to date")
    return 1 if stale else 0
