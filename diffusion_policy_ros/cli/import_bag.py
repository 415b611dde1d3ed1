"""`dpros import bag BAG... --config single_arm --out DATASET --task TEXT`: one episode per bag.

All or nothing: a bag that does not fit the config stops the import with one line naming the bag,
topic and message time, and the dataset is left as it was. A bag already in the dataset is skipped.
"""
from __future__ import annotations


def add_arguments(parser) -> None:
    parser.add_argument("bags", nargs="+", help="rosbag2 folders (sqlite3 or MCAP) or .mcap files")
    parser.add_argument("--config", default="single_arm", help="robot config name or path (topics, joints)")
    parser.add_argument("--out", required=True, help="dataset folder (created, or appended to)")
    parser.add_argument("--task", required=True, help="task text stored with every imported episode")
    parser.add_argument("--rate", type=float, default=None,
                        help="resampling rate in Hz (default: the config's demo_recorder_node record_rate_hz)")
    parser.add_argument("--cameras", nargs="*", default=None, help="cameras to import (default: those in the bag)")
    parser.add_argument("--action-source", choices=["teleop", "next_state"], default="teleop",
                        help="teleop: the teleop JointTrajectory topic; next_state: the next joint state")


def run(args) -> int:
    from tqdm import tqdm

    from diffusion_policy_ros.data.bag_import import import_bags
    from diffusion_policy_ros.data.replay_buffer import ReplayBuffer
    from diffusion_policy_ros.robot_config import config_path, load_robot_config

    config = load_robot_config(config_path(args.config))
    rate = args.rate or float(config.node_params("demo_recorder_node").get("record_rate_hz", 10.0))
    report = import_bags(args.bags, args.out, config, task=args.task, rate_hz=rate, cameras=args.cameras,
                         action_source=args.action_source,
                         progress=lambda it: tqdm(it, desc="import", unit="bag"))
    dataset = ReplayBuffer.open(report.dataset) if report.imported else None
    for bag, index in report.imported:
        meta = dataset.episode_meta(index)
        print(f"{bag} -> episode {index}: {meta['length']} frames at {rate:g} Hz, cameras {meta['cameras']}, "
              f"{meta['dropped_frames']} dropped, {meta['duplicated_frames']} duplicated")
    for bag, why in report.skipped:
        print(f"{bag}: skipped, {why}")
    print(f"imported {len(report.imported)} of {len(args.bags)} bags into {report.dataset} "
          f"({report.episodes} episodes now); skipped {len(report.skipped)}")
    return 0
