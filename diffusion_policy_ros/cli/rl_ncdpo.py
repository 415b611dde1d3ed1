"""`dpros rl ncdpo`: fine-tune a diffusion policy checkpoint with NCDPO (PPO through its denoising
steps) in the sim, without ROS.

    dpros rl ncdpo --checkpoint BASE --task pick_place --out DIR [--envs 4 --iterations 100 ...]

Writes a checkpoint like `dpros train` (model.safetensors + config.json; its sampler is the DDIM
with --denoising-steps and --eta it was fine-tuned with), rl_state.* for --resume, and
learning_curve.png (success rate and return of the training episodes vs environment steps).
Training task seeds are >= 1 000 000, apart from the evaluations' held-out seeds.
"""
from __future__ import annotations

import os

from diffusion_policy_ros.cli.errors import UsageError


def add_arguments(parser) -> None:
    parser.add_argument("--checkpoint", required=True, help="base policy checkpoint folder")
    parser.add_argument("--task", default="pick_place", help="sim task (a reward exists for pick_place)")
    parser.add_argument("--out", required=True, help="output folder (fine-tuned checkpoint and RL state)")
    parser.add_argument("--config", default="single_arm", help="robot config (single_arm | path)")
    parser.add_argument("--iterations", type=int, default=100, help="PPO iterations (collect + update)")
    parser.add_argument("--envs", type=int, default=4, help="sim instances stepped as one batch")
    parser.add_argument("--vector", choices=("sync", "async"), default="async",
                        help="sync: one process; async: one worker process per env")
    parser.add_argument("--decisions", type=int, default=15,
                        help="decisions (executed chunks) per env per iteration; with --group-size, whole episodes "
                             "are collected until at least this many")
    parser.add_argument("--group-size", type=int, default=1,
                        help="> 1: groups of this many envs replay one task seed with one sampler noise and the "
                             "advantages compare the group's episodes (common random numbers, no critic); "
                             "must divide --envs")
    parser.add_argument("--explore-one-decision", action="store_true",
                        help="with --group-size: a group explores at one decision of its episode and executes the "
                             "mean at the others, so its returns differ only by that decision's draw; only it is "
                             "trained on (docs/rl_finetuning.md)")
    parser.add_argument("--task-pool", type=int, default=0,
                        help="with --group-size: draw every group's task from this many fixed task seeds, so the "
                             "same tasks recur across iterations (0: a new task every time)")
    parser.add_argument("--episode-seconds", type=float, default=12.0, help="training episode time-out (sim s)")
    parser.add_argument("--denoising-steps", type=int, default=8, help="K: DDIM steps, all carrying gradient")
    parser.add_argument("--eta", type=float, default=1.0, help="DDIM eta in (0, 1]; 1 = DDPM over the K levels")
    parser.add_argument("--noise-scale", type=float, default=1.0,
                        help="std of the sampler's noise in (0, 1], saved in the checkpoint's config: below 1 the "
                             "chunks vary less with the noise, which PPO does not credit (docs/rl_finetuning.md)")
    parser.add_argument("--init-std", type=float, default=0.05, help="exploration std, normalized action space")
    parser.add_argument("--min-std", type=float, default=0.02, help="floor of the exploration std")
    parser.add_argument("--row-correlation", type=float, default=0.0,
                        help="in [0, 1]: correlation of the exploration noise between a chunk's rows (0: white "
                             "per row; 1: one offset per dim that moves the whole chunk, the likelihood on the offset; "
                             "rl/exploration.py)")
    parser.add_argument("--explore-gripper", action="store_true",
                        help="draw the gripper dims too, as runs saved before this option did: the gripper executes the "
                             "sign of its action, so a small draw changes nothing and only adds noise to the "
                             "gradient (rl/exploration.py); off, the gripper executes the policy's mean")
    parser.add_argument("--epochs", type=int, default=4)
    parser.add_argument("--minibatch", type=int, default=32, help="decisions per minibatch")
    parser.add_argument("--clip", type=float, default=0.2)
    parser.add_argument("--gamma", type=float, default=0.99, help="discount per decision")
    parser.add_argument("--lam", type=float, default=0.95, help="GAE lambda")
    parser.add_argument("--policy-lr", type=float, default=1e-6,
                        help="Adam on the U-Net: one step at 3e-6 already moves the executed means by up to 0.03")
    parser.add_argument("--policy-lr-warmup", type=int, default=10, metavar="ITERATIONS",
                        help="raise the policy's lr linearly over the first ITERATIONS that train it: Adam's first "
                             "steps move every weight by about the lr, and without it the first updates at 3e-6 "
                             "overshoot the trust region 30-fold (docs/rl_finetuning.md); runs saved before it "
                             "existed resume with 0")
    parser.add_argument("--std-lr", type=float, default=1e-3)
    parser.add_argument("--value-lr", type=float, default=1e-3)
    parser.add_argument("--target-kl", type=float, default=0.1,
                        help="stop an update's epochs once a minibatch's approximate KL passes it (0: never)")
    parser.add_argument("--kl-coef", type=float, default=0.0, help="KL to the base policy (same noise)")
    parser.add_argument("--bc-dataset", help="demonstrations for the behaviour-cloning term")
    parser.add_argument("--bc-coef", type=float, default=0.0, help="weight of the diffusion loss on --bc-dataset")
    parser.add_argument("--bc-batch", type=int, default=32)
    parser.add_argument("--freeze-encoder", action="store_true", help="no gradient into the observation encoder")
    parser.add_argument("--critic-warmup", type=int, default=0, metavar="ITERATIONS",
                        help="the first ITERATIONS fit the value network only (policy and std unchanged)")
    parser.add_argument("--success-bonus", type=float, default=10.0)
    parser.add_argument("--success-hold-s", type=float, default=1.0,
                        help="the bonus (and the episode's end) once the task's success test has held this many sim s "
                             "without a break, as `dpros eval policy --hold-s`; 0: its first true step")
    parser.add_argument("--shaping-scale", type=float, default=10.0, help="per metre of potential (rl/rewards.py)")
    parser.add_argument("--checkpoint-every", type=int, default=5, help="iterations between saves")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1, help="torch threads")
    parser.add_argument("--resume", action="store_true", help="continue from the state in --out")
    parser.add_argument("--until", type=int, default=None, metavar="ITERATION",
                        help="stop (and save) after this iteration; --resume continues")


def run(args) -> int:
    trainer, envs = make_trainer(args)
    try:
        history = trainer.train(until=args.until)
    finally:
        envs.close()
    last = history[-1] if history else {}
    print(f"checkpoint: {args.out} (learning curve: {os.path.join(args.out, 'learning_curve.png')}); "
          f"iteration {trainer.iteration}, {trainer.env_steps} env steps, {trainer.seconds:.0f} s; "
          f"last success {last.get('success_rate')}")
    return 0


def _settings(args):
    from diffusion_policy_ros.rl.ppo import PPOConfig
    from diffusion_policy_ros.rl.trainer import NCDPOSettings
    if not 0.0 < args.eta <= 1.0:
        raise UsageError(f"--eta must be in (0, 1] (NCDPO needs a stochastic sampler), got {args.eta}")
    if args.envs < 1 or args.denoising_steps < 1 or args.episode_seconds <= 0:
        raise UsageError("--envs and --denoising-steps must be >= 1 and --episode-seconds > 0")
    if args.group_size < 1 or args.envs % args.group_size:
        raise UsageError(f"--group-size must be >= 1 and divide --envs ({args.envs}), got {args.group_size}")
    if args.explore_one_decision and args.group_size < 2:
        raise UsageError("--explore-one-decision compares a group's episodes: it needs --group-size >= 2")
    if not args.success_hold_s >= 0:
        raise UsageError(f"--success-hold-s must be >= 0, got {args.success_hold_s}")
    if args.bc_coef and not args.bc_dataset:
        raise UsageError("--bc-coef needs --bc-dataset")
    ppo = PPOConfig(epochs=args.epochs, minibatch_size=args.minibatch, clip=args.clip, gamma=args.gamma,
                    lam=args.lam, policy_lr=args.policy_lr, std_lr=args.std_lr, value_lr=args.value_lr,
                    kl_coef=args.kl_coef, bc_coef=args.bc_coef, target_kl=args.target_kl or None,
                    freeze_encoder=args.freeze_encoder)
    settings = NCDPOSettings(iterations=args.iterations, decisions_per_iteration=args.decisions,
                             denoising_steps=args.denoising_steps, eta=args.eta, noise_scale=args.noise_scale,
                             init_std=args.init_std, min_std=args.min_std, row_correlation=args.row_correlation,
                             seed=args.seed, checkpoint_every=args.checkpoint_every,
                             critic_warmup_iterations=args.critic_warmup,
                             policy_lr_warmup_iterations=args.policy_lr_warmup, group_size=args.group_size,
                             explore_one_decision=args.explore_one_decision, explore_gripper=args.explore_gripper,
                             task_pool=args.task_pool, ppo=ppo)
    try:
        return settings.validate()
    except ValueError as e:
        raise UsageError(str(e)) from e


def _demonstrations(args, policy):
    """A callable giving a random batch of demonstration windows, as torch tensors."""
    import numpy as np
    import torch

    from diffusion_policy_ros.data.replay_buffer import ReplayBuffer
    from diffusion_policy_ros.data.sequence_dataset import SequenceDataset
    cfg = policy.config
    dataset = SequenceDataset(ReplayBuffer.open(args.bc_dataset), sorted(cfg.obs_shapes), cfg.horizon,
                              cfg.n_obs_steps, cfg.n_action_steps)
    rng = np.random.default_rng(args.seed)

    def batch():
        ids = rng.integers(0, len(dataset), size=args.bc_batch)
        return {k: torch.from_numpy(v).to(policy.device) for k, v in dataset.batch(ids).items()}
    return batch


def make_trainer(args):
    import torch

    from diffusion_policy_ros.policy.checkpoint import load_checkpoint
    from diffusion_policy_ros.policy.configuration import robot_obs_shapes
    from diffusion_policy_ros.rl.rewards import REWARDS
    from diffusion_policy_ros.rl.trainer import NCDPOTrainer
    from diffusion_policy_ros.rl.vector import make_vector_env, sim_chunk_env_fn
    from diffusion_policy_ros.robot_config import config_path, load_robot_config

    settings = _settings(args)
    if args.task not in REWARDS:
        raise UsageError(f"no RL reward for task {args.task!r}; rewards exist for {sorted(REWARDS)}")
    torch.set_num_threads(max(1, args.threads))
    robot = load_robot_config(config_path(args.config))
    policy = load_checkpoint(args.checkpoint, device="cpu")
    policy.config.validate_against(robot_obs_shapes(robot), robot.joint_names)
    base = load_checkpoint(args.checkpoint, device="cpu") if args.kl_coef else None
    demonstrations = _demonstrations(args, policy) if args.bc_coef else None
    reward = {"success_bonus": args.success_bonus, "shaping_scale": args.shaping_scale,
              "success_hold_s": args.success_hold_s}
    env_fn = sim_chunk_env_fn(robot, args.task, policy.config, args.episode_seconds, reward)
    envs = make_vector_env(env_fn, args.envs, args.vector)
    try:
        trainer = NCDPOTrainer(policy, envs, settings, out_dir=args.out, base_policy=base,
                               demonstrations=demonstrations,
                               extra_info={"base_checkpoint": os.path.abspath(args.checkpoint), "task": args.task,
                                           "envs": args.envs, "vector": args.vector,
                                           "episode_seconds": args.episode_seconds, "reward": reward})
        try:
            resumed = args.resume and trainer.resume()
        except ValueError as e:
            raise UsageError(str(e)) from e
        if resumed:
            print(f"resumed at iteration {trainer.iteration} ({trainer.env_steps} env steps)")
    except BaseException:
        envs.close()
        raise
    return trainer, envs

