"""`dpros dataset info DATASET`: episodes, lengths, rates, dropped/duplicated frames, thumbnails."""
from __future__ import annotations

import json
import os
import sys


def add_arguments(parser) -> None:
    parser.add_argument("dataset", help="zarr dataset folder")
    parser.add_argument("--png", default=None, help="thumbnail strip path (default: beside the dataset, <dataset>_thumbnails.png)")
    parser.add_argument("--json", default=None, help="also write the summary as JSON here")


def run(args) -> int:
    from diffusion_policy_ros.data.dataset_summary import summarize, thumbnail_strip
    from diffusion_policy_ros.data.replay_buffer import DatasetError, ReplayBuffer

    try:
        dataset = ReplayBuffer.open(args.dataset)
    except DatasetError as e:
        print(f"dpros dataset info: {e}", file=sys.stderr)
        return 2
    summary = summarize(dataset)
    print(f"{args.dataset}: {summary['episodes']} episodes, {summary['frames']} frames, "
          f"lengths {summary['length_min']}..{summary['length_max']}, tasks {summary['tasks']}")
    for key, spec in summary["keys"].items():
        print(f"  {key:32s} {spec['dtype']:8s} {tuple(spec['shape'])}")
    print(f"  {'ep':>3} {'frames':>6} {'secs':>7} {'fps':>5} {'measured':>8} {'dropped':>7} {'dup':>5}  task")
    for e in summary["per_episode"]:
        measured = f"{e['measured_hz']:.2f}" if e["measured_hz"] else "-"
        print(f"  {e['index']:>3} {e['length']:>6} {e['duration_s']:>7.2f} {e['fps'] or 0:>5g} {measured:>8} "
              f"{e['dropped_frames']:>7} {e['duplicated_frames']:>5}  {e['task']}")
    if summary["episodes"]:
        png = args.png or f"{os.path.normpath(args.dataset)}_thumbnails.png"
        key = thumbnail_strip(dataset, png)
        print(f"thumbnails ({key}): {png}" if key else "no camera in this dataset: no thumbnails")
    if args.json:
        with open(args.json, "w", encoding="utf-8") as f:
            json.dump(summary, f, indent=2)
    return 0
