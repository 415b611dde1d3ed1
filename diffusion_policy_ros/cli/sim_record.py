"""`dpros sim record --episodes 200 --first-seed 1000 --cameras scene --out data/pick_place`: the
scripted expert's demonstrations written straight into a dataset, headless, without the node graph.

The dataset is the one demo_recorder_node writes when the expert teleoperates the sim
(`dpros up record`): one row per control tick, `action[t]` the joint target the expert issues at
tick t and `obs[t]` what was observed just before, the same keys and dtypes (the recorder's stream
list for the chosen cameras) and the same per-episode metadata, plus the seed. Timestamps are the
ticks' times from the episode start. An episode ends `--after-success` ticks after the first
successful one (the graph's expert driver also keeps the settling after success); seeds the expert
fails are skipped and reported, not written. Episodes are written one at a time and each is durable
once written, so Ctrl-C keeps every episode finished before it.

`--expert continuous` records the expert that re-decides every control step (no dwell at rest, so a
policy that refines every step can learn from it); `--variant displaced` etc. moves the world during
the episode (sim/perturbations.py), and each episode's metadata lists what moved and when.
`--expert-noise 0.015` (DART) pushes the arms off the expert's path with a smooth random offset while
the expert's own action is recorded, so the data shows what the expert does from states a policy's
errors lead to (sim/expert_noise.py). `--early-close` (continuous expert) holds the gripper closed for
a moment as the tcp nears the grasp, so the data shows the expert reopening and grasping again.
"""
from __future__ import annotations

import os
import sys
import time

from diffusion_policy_ros.cli.errors import UsageError
from diffusion_policy_ros.sim.expert import EXPERT_MODES
from diffusion_policy_ros.sim.perturbations import VARIANTS
from diffusion_policy_ros.sim.tasks import TASK_INSTRUCTIONS

SOURCE = "dpros sim record"


def add_arguments(parser) -> None:
    parser.add_argument("--task", choices=sorted(TASK_INSTRUCTIONS), default=None,
                        help="sim task (default: the --config's task, else pick_place)")
    parser.add_argument("--config", default=None, help="robot config (default: the task's robot)")
    parser.add_argument("--episodes", type=int, default=20, help="seeds to run (failed ones are skipped)")
    parser.add_argument("--first-seed", type=int, default=0, help="seeds first-seed, first-seed + 1, ...")
    parser.add_argument("--out", required=True, metavar="DATASET_FOLDER", help="dataset folder to write")
    parser.add_argument("--cameras", nargs="*", default=None, metavar="CAMERA",
                        help="cameras to record (default: all cameras of the config; none: --cameras alone, "
                             "for a policy that observes joints and object poses)")
    parser.add_argument("--after-success", type=int, default=8, metavar="STEPS",
                        help="control ticks kept after the first successful one; then the episode ends")
    parser.add_argument("--append", action="store_true",
                        help="add episodes to an existing dataset (otherwise --out must be new or empty)")
    parser.add_argument("--no-depth", action="store_true",
                        help="leave out depth images (the recorder's record_depth:=false)")
    parser.add_argument("--no-tactile", action="store_true",
                        help="leave out fingertip taxels (the recorder's record_tactile:=false)")
    parser.add_argument("--expert", choices=EXPERT_MODES, default=None,
                        help="scripted expert: keyframes (rest-to-rest plan) or continuous (re-decides every "
                             "step); default: the config's expert_teleop_node expert_mode, else keyframes")
    parser.add_argument("--expert-noise", type=float, default=0.0, metavar="RAD",
                        help="DART: the expert executes its action plus a smooth random offset of this standard "
                             "deviation on every arm joint (0.5 s correlation), its clean action is recorded "
                             "(sim/expert_noise.py); seeds it then fails are skipped")
    parser.add_argument("--early-close", action="store_true",
                        help="once per episode the gripper is held closed for 0.3-1 s from when the tcp comes "
                             "within 1-5 cm of the grasp, while the continuous expert's open is recorded: "
                             "demonstrations of recovering from a grasp closed on nothing (sim/expert_noise.py)")
    parser.add_argument("--dagger", default=None, metavar="CHECKPOINT",
                        help="DAgger: this policy drives, the continuous expert's action for each visited state "
                             "is recorded (sim/dagger.py); failed episodes are kept")
    parser.add_argument("--dagger-expert-fraction", type=float, default=0.0, metavar="F",
                        help="with --dagger: the fraction of episodes (drawn per seed) the expert drives")
    parser.add_argument("--timeout-s", type=float, default=12.0, help="with --dagger: sim seconds an episode may take")
    parser.add_argument("--variant", choices=VARIANTS, default=None,
                        help="what moves during an episode; default: the config's sim_node task_variant, "
                             "else static")


def dataset_keys(specs) -> dict[str, dict]:
    """Per-key {'dtype', 'shape'} the recorder's streams produce (streams sharing a key are
    concatenated along the last axis, one arm after another), plus `timestamp`."""
    keys: dict[str, dict] = {}
    for spec in specs:
        if spec.key in keys:
            keys[spec.key]["shape"][-1] += spec.shape[-1]
        else:
            keys[spec.key] = {"dtype": spec.dtype, "shape": list(spec.shape)}
    keys["timestamp"] = {"dtype": "float64", "shape": []}
    return keys


def open_output(path: str, append: bool, keys: dict[str, dict], config):
    """The dataset to write: a new one, or with --append an existing one that takes these keys."""
    from diffusion_policy_ros.data.dataset_path import DatasetPathError, ensure_writable_dir
    from diffusion_policy_ros.data.replay_buffer import DatasetError, ReplayBuffer

    if os.path.exists(path) and not os.path.isdir(path):
        raise UsageError(f"--out {path} is a file, not a dataset folder")
    occupied = os.path.isdir(path) and bool(os.listdir(path))
    if occupied and not append:
        raise UsageError(f"{path} already exists and is not empty; pass --append to "
                         "add episodes to the dataset there, or choose another --out")
    try:
        if not occupied:
            ensure_writable_dir(path)
            return ReplayBuffer.create(path)
        dataset = ReplayBuffer.open(path, mode="a")
    except (DatasetError, DatasetPathError) as e:
        raise UsageError(f"cannot write to {path}: {e}") from e
    # Refuse now rather than after the first episode has been simulated.
    theirs = {k: dataset.key_spec(k) for k in dataset.keys}
    if dataset.n_episodes and theirs != keys:
        raise UsageError(f"cannot append to {path}: it holds keys "
                         f"{_describe(theirs)}, this recording makes {_describe(keys)} "
                         "(choose the same --cameras / --no-depth / --no-tactile)")
    if dataset.n_episodes:
        last = dataset.episode_meta(dataset.n_episodes - 1)
        if last.get("robot") != config.robot or list(last.get("joint_names", [])) != list(config.joint_names):
            raise UsageError(f"cannot append to {path}: its episodes are of robot "
                             f"{last.get('robot')!r} with joints {last.get('joint_names')}, this config is "
                             f"{config.robot!r} with {list(config.joint_names)}")
    return dataset


def _describe(keys: dict[str, dict]) -> str:
    return ", ".join(f"{k} {v['dtype']}{tuple(v['shape'])}" for k, v in sorted(keys.items()))


NOISE_CORRELATION_S = 0.5
EARLY_CLOSE_WITHIN_M = (0.01, 0.05)
EARLY_CLOSE_HOLD_S = (0.3, 1.0)


def record_episode(env, seed: int, keys: dict[str, dict], after_success: int, noise_rad: float = 0.0,
                   early_close: bool = False):
    """-> (episode arrays, tick of the first success) or (None, None) when the expert fails."""
    import numpy as np

    from diffusion_policy_ros.sim.dagger import labelled_episode
    from diffusion_policy_ros.sim.expert_noise import EarlyClose, SmoothJointNoise

    perturbations = []
    if noise_rad > 0:
        arm_joints = np.ones(env.config.action_dim, bool)
        arm_joints[list(env.config.gripper_indices)] = False
        perturbations.append(SmoothJointNoise(noise_rad, NOISE_CORRELATION_S, env.config.control_rate_hz,
                                              arm_joints, seed))
    if early_close:
        perturbations.append(EarlyClose(env.expert, env.config.gripper_indices, env.config.control_rate_hz,
                                        EARLY_CLOSE_WITHIN_M, EARLY_CLOSE_HOLD_S, seed))

    def perturb(label):
        for perturbation in perturbations:
            label = perturbation(label)
        return label
    data, success_step = labelled_episode(env, seed, keys, timeout_s=env.task.episode_seconds,
                                          after_success=after_success, perturb=perturb if perturbations else None)
    if success_step is None:
        return None, None
    for key, array in data.items():
        if list(array.shape[1:]) != keys[key]["shape"]:
            raise RuntimeError(f"sim gives {key} of shape {array.shape[1:]}, the recorder writes "
                               f"{tuple(keys[key]['shape'])}")
    return data, success_step


def _dagger_policy(checkpoint: str, config):
    from diffusion_policy_ros.policy.configuration import PolicyConfigError
    from diffusion_policy_ros.policy.deploy import load_for_robot
    try:
        # One torch thread: two spin-wait on a shared 2-core machine (~100x slower beside other jobs).
        return load_for_robot(checkpoint, config, device="cpu", torch_threads=1, compile_unet=False)
    except (PolicyConfigError, OSError, ValueError) as e:
        raise UsageError(f"--dagger {checkpoint}: {e}") from e


def run(args) -> int:
    import numpy as np
    from tqdm import tqdm

    from diffusion_policy_ros.cli.sim_common import config_for
    from diffusion_policy_ros.data.dataset_path import DatasetPathError, check_free_space
    from diffusion_policy_ros.data.episode_builder import episode_meta, streams_for_config
    from diffusion_policy_ros.data.replay_buffer import DatasetError

    if args.episodes <= 0:
        raise UsageError("--episodes must be positive")
    if args.after_success < 0:
        raise UsageError("--after-success must be 0 or more")
    if args.expert_noise < 0 or (args.expert_noise > 0 and args.dagger):
        raise UsageError("--expert-noise must be 0 or more, and is for the expert's own episodes (not --dagger)")
    if args.early_close and args.dagger:
        raise UsageError("--early-close is for the expert's own episodes (not --dagger)")
    if not 0.0 <= args.dagger_expert_fraction <= 1.0 or not args.timeout_s > 0:
        raise UsageError("--dagger-expert-fraction must be in [0, 1] and --timeout-s > 0")
    config = config_for(args.task or "pick_place", args.config)
    task = args.task or (config.task if args.config else "pick_place")
    cameras = list(dict.fromkeys([c.name for c in config.cameras] if args.cameras is None else args.cameras))
    specs = streams_for_config(config, cameras=cameras, depth=not args.no_depth, tactile=not args.no_tactile)
    keys = dataset_keys(specs)
    out = os.path.abspath(args.out)
    dataset = open_output(out, args.append, keys, config)
    before = dataset.n_episodes

    from diffusion_policy_ros.sim.env import SimEnv

    seeds = range(args.first_seed, args.first_seed + args.episodes)
    skipped, lengths = [], []
    start = time.perf_counter()
    interrupted, write_error = False, None
    try:
        env = SimEnv(config, task=task, cameras=cameras, variant=args.variant, expert_mode=args.expert)
    except ValueError as e:   # an expert mode or variant this task does not have
        raise UsageError(str(e)) from e
    if args.early_close and env.expert_mode != "continuous":
        raise UsageError("--early-close needs --expert continuous (the expert that decides from the arm's state)")
    from diffusion_policy_ros.sim.dagger import dagger_episode
    policy = _dagger_policy(args.dagger, config) if args.dagger else None
    driver = "the policy, labelled by the expert" if policy else f"{env.expert_mode} expert"
    with env:
        progress = tqdm(seeds, desc=f"record {task} ({env.variant}, {driver})", unit="episode")
        try:
            for seed in progress:
                expert_drives = None
                if policy is None:
                    data, success_step = record_episode(env, seed, keys, args.after_success, args.expert_noise,
                                                       args.early_close)
                else:
                    expert_drives = bool(np.random.default_rng(seed).random() < args.dagger_expert_fraction)
                    try:
                        data, success_step = dagger_episode(env, policy, seed, keys, timeout_s=args.timeout_s,
                                                            after_success=args.after_success,
                                                            expert_drives=expert_drives)
                    except ValueError as e:
                        raise UsageError(str(e)) from e
                if data is None:
                    skipped.append(seed)
                else:
                    length = len(data["action"])
                    # A perfect grid: every stream has one fresh sample per tick.
                    stats = {s.name: {"received": length, "duplicated": 0, "skipped": 0, "dropped": 0}
                             for s in specs}
                    meta = episode_meta(config, task=TASK_INSTRUCTIONS.get(task, task),
                                        rate_hz=config.control_rate_hz, stats=stats, source=SOURCE,
                                        extra={"cameras": sorted(cameras), "seed": seed, "sim_task": task,
                                               "success_step": success_step, "task_variant": env.variant,
                                               "expert_mode": env.expert_mode,
                                               "expert_noise_rad": args.expert_noise,
                                               "early_close": args.early_close,
                                               "world_events": env.world.events,
                                               **({} if policy is None else {
                                                   "dagger_policy": os.path.abspath(args.dagger),
                                                   "driver": "expert" if expert_drives else "policy"})})
                    check_free_space(out, sum(a.nbytes for a in data.values()))
                    dataset.add_episode(data, meta)
                    lengths.append(length)
                progress.set_postfix(seed=seed, written=len(lengths), skipped=len(skipped),
                                     last=f"{lengths[-1]} ticks" if data is not None else "failed")
        except KeyboardInterrupt:
            interrupted = True
        except (DatasetError, DatasetPathError, OSError) as e:   # disk full, permissions: stop, keep the rest
            write_error = str(e)
        finally:
            progress.close()
    wall = time.perf_counter() - start
    written = dataset.n_episodes - before   # an interrupted write is either committed or not there
    mean = f"{np.mean(lengths):.1f}" if lengths else "-"
    print(f"dpros sim record: {'interrupted; ' if interrupted else ''}wrote {written} episodes to {out} "
          f"(now {dataset.n_episodes}); skipped seeds (expert failed): {skipped or 'none'}; "
          f"mean length {mean} ticks; wall time {wall:.1f} s", flush=True)
    if interrupted:
        return 130
    if write_error:
        print(f"dpros sim record: stopped, cannot write to {out}: {write_error}", file=sys.stderr)
        return 1
    if not written:
        print("dpros sim record: no episode written", file=sys.stderr)
        return 1
    return 0
