"""`dpros train`: train a diffusion policy on a recorded dataset (zarr, see HELPERS.md).

The observation keys default to every obs/* key of the dataset; joint names come from the
episode metadata (or the robot config); the last --val-episodes episodes are held out for
`dpros eval offline`. Output folder: model.safetensors, config.json, training state, loss_curve.png.

Under torchrun it trains data-parallel, one process per GPU (or several on CPU), `--batch-size`
samples per process; rank 0 alone prints and writes:
    torchrun --standalone --nproc_per_node=4 -m diffusion_policy_ros.cli.main train --dataset ... --out ...
"""
from __future__ import annotations

import json
import os

from diffusion_policy_ros.cli.errors import UsageError


def add_arguments(parser) -> None:
    parser.add_argument("--dataset", required=True, help="dataset folder (zarr)")
    parser.add_argument("--out", required=True, help="checkpoint folder")
    parser.add_argument("--config", help="robot config (single_arm | bimanual | path) for joints and grippers")
    parser.add_argument("--obs-keys", nargs="*", help="observation keys (default: all obs/* keys)")
    parser.add_argument("--steps", type=int, default=20000)
    parser.add_argument("--batch-size", type=int, default=64, help="samples per step (per process under torchrun)")
    parser.add_argument("--lr", type=float, default=1e-4)
    parser.add_argument("--warmup-steps", type=int, default=500)
    parser.add_argument("--checkpoint-every", type=int, default=1000)
    parser.add_argument("--val-episodes", type=int, default=2, help="episodes held out at the end")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--threads", type=int, default=0,
                        help="torch CPU threads (0: torch's default, one per core). On a machine shared with "
                             "other work, 1 avoids threads spin-waiting for each other")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--resume", action="store_true", help="continue from the state in --out")
    parser.add_argument("--until", type=int, default=None, metavar="STEP",
                        help="stop (and save) at this step of the --steps schedule; --resume continues")
    parser.add_argument("--init-from", default=None, metavar="CHECKPOINT",
                        help="fine-tune: start from this checkpoint's weights, normalizer and policy config (its "
                             "observation keys must be in --dataset; --obs-keys and --policy must not differ); "
                             "the optimizer and schedule start afresh. A --resume that finds a state wins")
    parser.add_argument("--policy", default="{}", help="JSON object of PolicyConfig overrides, e.g. "
                                                       "'{\"down_dims\": [64, 128, 256], \"horizon\": 16}'")


def run(args) -> int:
    from diffusion_policy_ros.training.distributed import Distributed

    distributed = Distributed.from_environment(args.device)
    try:
        trainer = make_trainer(args, distributed)
        trainer.train(until=args.until)
        if distributed.is_main:
            print(f"checkpoint: {args.out} (loss curve: {args.out}/loss_curve.png)")
    finally:
        distributed.close()
    return 0


def make_trainer(args, distributed):
    """The Trainer `dpros train` runs, from its arguments (resumed when --resume finds a state)."""
    from diffusion_policy_ros.data.replay_buffer import ReplayBuffer
    from diffusion_policy_ros.data.sequence_dataset import SequenceDataset
    from diffusion_policy_ros.obs_keys import is_obs
    from diffusion_policy_ros.policy.configuration import PolicyConfig
    from diffusion_policy_ros.training.trainer import TrainConfig, Trainer

    say = print if distributed.is_main else (lambda *a, **k: None)
    buf = ReplayBuffer.open(args.dataset)
    if buf.n_episodes <= args.val_episodes:
        raise UsageError(f"dataset has {buf.n_episodes} episodes, need more than --val-episodes {args.val_episodes}")
    meta = buf.episode_meta(0)
    joint_names, grippers = meta.get("joint_names"), []
    rate = float(meta.get("fps", 10.0))
    if args.config:
        from diffusion_policy_ros.robot_config import config_path, load_robot_config
        robot = load_robot_config(config_path(args.config))
        joint_names, grippers, rate = list(robot.joint_names), list(robot.gripper_indices), robot.control_rate_hz
    action_dim = buf.key_spec("action")["shape"][0]
    joint_names = list(joint_names or [f"joint_{i}" for i in range(action_dim)])
    if len(joint_names) != action_dim:
        raise UsageError(f"{len(joint_names)} joint names but the dataset's actions have {action_dim} dims")
    if not args.config:
        grippers = [i for i, n in enumerate(joint_names) if n.endswith("gripper")]
    obs_keys = args.obs_keys or [k for k in buf.keys if is_obs(k)]
    unknown = [k for k in obs_keys if k not in buf.keys]
    if unknown:
        raise UsageError(f"--obs-keys {unknown} are not in the dataset (it has {buf.keys})")
    try:
        overrides = json.loads(args.policy)
    except json.JSONDecodeError as e:
        raise UsageError(f"--policy is not a JSON object: {e}") from e
    if not isinstance(overrides, dict):
        raise UsageError(f"--policy must be a JSON object of PolicyConfig fields, got {args.policy!r}")
    start = None
    if args.init_from:
        start = _fine_tuning_start(args.init_from, buf, args.obs_keys, overrides, joint_names, rate)
        config, obs_keys = start.config, list(start.config.obs_shapes)
    else:
        config = PolicyConfig(obs_shapes={k: buf.key_spec(k)["shape"] for k in obs_keys}, joint_names=joint_names,
                              gripper_dims=grippers, control_rate_hz=rate, **overrides).validate()
    train_eps = list(range(buf.n_episodes - args.val_episodes))
    held_out = list(range(buf.n_episodes - args.val_episodes, buf.n_episodes))
    dataset = SequenceDataset(buf, sorted(obs_keys), config.horizon, config.n_obs_steps, config.n_action_steps,
                              episodes=train_eps, progress=distributed.is_main)
    if args.threads < 0:
        raise UsageError("--threads must be 0 (torch's default) or more")
    tc = TrainConfig(steps=args.steps, batch_size=args.batch_size, lr=args.lr, warmup_steps=args.warmup_steps,
                     checkpoint_every=args.checkpoint_every, device=args.device, seed=args.seed,
                     num_threads=args.threads)
    extra = {"dataset": buf.path, "held_out_episodes": held_out, "processes": distributed.world_size}
    if start is not None:
        extra["init_from"] = os.path.abspath(args.init_from)
    trainer = Trainer(config, dataset, tc, out_dir=args.out, distributed=distributed, extra_info=extra,
                      normalizer=start.normalizer if start is not None else None)
    if args.resume and trainer.resume():
        say(f"resumed from step {trainer.step}")
    elif start is not None:
        trainer.start_from(start)
        say(f"fine-tuning {args.init_from} (its normalizer and config)")
    processes = f"; {distributed.world_size} processes x {args.batch_size} samples" if distributed.enabled else ""
    say(f"training on {len(train_eps)} episodes ({len(dataset)} windows), holding out {held_out}; "
        f"obs {sorted(obs_keys)}; device {trainer.device}{processes}")
    return trainer


def _fine_tuning_start(checkpoint: str, buf, obs_keys: list[str] | None, overrides: dict,
                       joint_names: list[str], rate: float):
    """The policy `--init-from` names, checked against the dataset and the other arguments."""
    from diffusion_policy_ros.policy.checkpoint import CheckpointError, load_checkpoint
    try:
        policy = load_checkpoint(checkpoint, device="cpu")
    except (CheckpointError, OSError) as e:
        raise UsageError(f"--init-from {checkpoint}: {e}") from e
    theirs = policy.config
    problems = []
    if list(theirs.joint_names) != list(joint_names):
        problems.append(f"its joints {list(theirs.joint_names)} are not the dataset's {list(joint_names)}")
    if float(theirs.control_rate_hz) != float(rate):
        problems.append(f"it acts at {theirs.control_rate_hz} Hz, the dataset at {rate} Hz")
    for key, shape in theirs.obs_shapes.items():
        if key not in buf.keys:
            problems.append(f"the dataset has no {key}")
        elif list(buf.key_spec(key)["shape"]) != list(shape):
            problems.append(f"{key} is {list(shape)} there, {buf.key_spec(key)['shape']} in the dataset")
    if obs_keys and sorted(obs_keys) != sorted(theirs.obs_shapes):
        problems.append(f"--obs-keys {sorted(obs_keys)} differ from its {sorted(theirs.obs_shapes)}")
    differing = sorted(k for k, v in overrides.items() if getattr(theirs, k, object()) != v)
    if differing:
        problems.append(f"--policy sets {differing}, which it has otherwise")
    if problems:
        raise UsageError(f"cannot fine-tune {checkpoint} on this dataset: {'; '.join(problems)}")
    return policy
