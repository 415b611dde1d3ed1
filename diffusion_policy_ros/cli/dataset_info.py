"""`dpros dataset info DATASET`: episodes, lengths, rates, dropped/duplicated frames, thumbnails."""
from __future__ import annotations

import json
import os


def add_arguments(parser) -> None:
    parser.add_argument("dataset", help="zarr dataset folder")
    parser.add_argument("--png", default=None, help="thumbnail strip path (default: beside the dataset, <dataset>_thumbnails.png)")
    parser.add_argument("--json", default=None, help="also write the summary as JSON here")
    parser.add_argument("--thumbnails", type=int, default=12, metavar="EPISODES",
                        help="episodes in the thumbnail sheet, one row each (0: all)")


def run(args) -> int:
    from diffusion_policy_ros.data.dataset_summary import summarize, thumbnail_strip
    from diffusion_policy_ros.data.replay_buffer import ReplayBuffer
    from diffusion_policy_ros.reporting import print_dataset_summary

    dataset = ReplayBuffer.open(args.dataset)
    summary = summarize(dataset)
    print_dataset_summary(args.dataset, summary)
    if summary["episodes"]:
        png = args.png or f"{os.path.normpath(args.dataset)}_thumbnails.png"
        key, shown = thumbnail_strip(dataset, png, max_episodes=args.thumbnails)
        if key is None:
            print("no camera in this dataset: no thumbnails")
        else:
            left_out = "" if shown == dataset.n_episodes else \
                f" (--thumbnails 0 shows all {dataset.n_episodes})"
            print(f"thumbnails ({key}) of episodes 0..{shown - 1} of {dataset.n_episodes}{left_out}: {png}")
    if args.json:
        with open(args.json, "w", encoding="utf-8") as f:
            json.dump(summary, f, indent=2)
    return 0
