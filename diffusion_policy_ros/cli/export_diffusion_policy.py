"""`dpros export diffusion-policy DATASET OUT`: the zarr (format 2) replay buffer diffusion_policy
reads with `ReplayBuffer.copy_from_path(OUT, keys=[...])`; keys are flattened (obs/scene/rgb ->
scene_rgb)."""
from __future__ import annotations


def add_arguments(parser) -> None:
    parser.add_argument("dataset", help="zarr dataset folder (as recorded by demo_recorder_node)")
    parser.add_argument("out", help="output folder for the diffusion_policy replay buffer (e.g. demos.zarr)")
    parser.add_argument("--overwrite", action="store_true", help="replace a non-empty output folder")


def run(args) -> int:
    from tqdm import tqdm

    from diffusion_policy_ros.data.diffusion_policy_export import export_diffusion_policy
    from diffusion_policy_ros.data.replay_buffer import ReplayBuffer

    dataset = ReplayBuffer.open(args.dataset)
    summary = export_diffusion_policy(dataset, args.out, overwrite=args.overwrite,
                                      progress=lambda it: tqdm(it, desc="export", unit="key"))
    print(f"wrote {summary['path']}: zarr format 2, {summary['episodes']} episodes, {summary['steps']} steps")
    for name, key in summary["keys"].items():
        print(f"  data/{name:28s} <- {key}")
    print(f"diffusion_policy: ReplayBuffer.copy_from_path({summary['path']!r}, keys={list(summary['keys'])})")
    return 0
