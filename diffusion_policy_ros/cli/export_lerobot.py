"""`dpros export lerobot DATASET OUT`: write a recorded dataset in the LeRobotDataset v3 layout."""
from __future__ import annotations



def add_arguments(parser) -> None:
    parser.add_argument("dataset", help="zarr dataset folder (as recorded by demo_recorder_node)")
    parser.add_argument("out", help="output folder for the LeRobot v3 dataset")
    parser.add_argument("--robot-type", default=None, help="info.json robot_type (default: the recorded robot)")
    parser.add_argument("--codec", default="libx264", help="video encoder (libx264 decodes everywhere)")
    parser.add_argument("--overwrite", action="store_true", help="replace a non-empty output folder")


def run(args) -> int:
    from tqdm import tqdm

    from diffusion_policy_ros.data.lerobot_export import export_lerobot
    from diffusion_policy_ros.data.replay_buffer import ReplayBuffer

    dataset = ReplayBuffer.open(args.dataset)
    info = export_lerobot(dataset, args.out, robot_type=args.robot_type, codec=args.codec,
                          overwrite=args.overwrite, progress=lambda it: tqdm(it, desc="export", unit="episode"))
    videos = [k for k, f in info["features"].items() if f["dtype"] == "video"]
    print(f"wrote {args.out}: {info['total_episodes']} episodes, {info['total_frames']} frames at "
          f"{info['fps']} fps, {info['total_tasks']} tasks, videos {videos}")
    return 0
