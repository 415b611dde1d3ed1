"""The NCDPO loop: collect decisions from a vector env, GAE, clipped PPO epochs; repeat.

Output folder, beside what `dpros train` writes: model.safetensors + config.json (the fine-tuned
policy, loadable by load_checkpoint and the policy node; its config's sampler is the one it was
fine-tuned with: DDIM with K steps and eta), rl_state.safetensors + rl_state.json (exploration
head, critic, optimizer, history: what --resume needs), learning_curve.png. Safetensors and JSON
only. A resumed run starts fresh episodes: environments are reseeded from (seed, iteration).
"""
from __future__ import annotations

import dataclasses
import functools
import json
import os
import time

import numpy as np
import torch
from tqdm import tqdm

from diffusion_policy_ros import reporting
from diffusion_policy_ros.policy import checkpoint as ckpt
from diffusion_policy_ros.rl.advantages import generalized_advantages, group_relative_advantages
from diffusion_policy_ros.rl.chunk_env import CRITIC_KEY
from diffusion_policy_ros.rl.exploration import GaussianHead
from diffusion_policy_ros.rl.noise_sampler import NoiseConditionedSampler
from diffusion_policy_ros.rl.ppo import PPOConfig, PPOUpdater
from diffusion_policy_ros.rl.rewards import REWARD_SETTINGS_OF_OLDER_RUNS
from diffusion_policy_ros.rl.rollout import Rollout, RolloutCollector
from diffusion_policy_ros.rl.value import ValueNetwork
from diffusion_policy_ros.training.trainer import _optimizer_tensors, _restore_optimizer

RL_STATE = "rl_state.safetensors"
RL_STATE_JSON = "rl_state.json"
LEARNING_CURVE = "learning_curve.png"


@dataclasses.dataclass
class NCDPOSettings:
    iterations: int = 100
    decisions_per_iteration: int = 15     # per env: one 12 s pick_place episode at 8 actions per decision
    denoising_steps: int = 8              # K: denoiser evaluations per decision, all carrying gradient
    eta: float = 1.0                      # stochastic DDIM; 1 = DDPM over the K levels
    noise_scale: float = 1.0              # std of the sampler's noise (its temperature): the part of a
                                          # chunk's variation that PPO does not credit (docs/rl_finetuning.md)
    init_std: float = 0.05                # exploration std in normalized action space ([-1, 1]);
    min_std: float = 0.02                 # pick_place base: 3/4 episodes succeed at 0.05, 0/4 at 0.1
    row_correlation: float = 0.0          # of the exploration noise between a chunk's rows (rl/exploration.py)
    seed: int = 0
    checkpoint_every: int = 5             # iterations
    critic_warmup_iterations: int = 0     # the first iterations fit the value network only: an untrained
                                          # critic's advantages would push the policy in random directions
    policy_lr_warmup_iterations: int = 0  # the policy's lr rises linearly over the first iterations that
                                          # train it: Adam's first steps move every weight by about the lr
                                          # (0 here: what runs saved before it existed did; the CLI uses 10)
    group_size: int = 1                   # > 1: groups of envs replay one task seed with one sampler noise,
                                          # and advantages compare the group's episodes (no critic); whole
                                          # episodes are collected until decisions_per_iteration per env
    explore_gripper: bool = True          # draw the gripper dims too (what runs saved before this setting did; the CLI
                                          # default is off): their executed value is the sign, so a small draw changes
                                          # nothing but adds noise to the gradient (rl/exploration.py)
    explore_one_decision: bool = False    # with groups: a group explores at one decision of its episode (drawn
                                          # uniformly) and executes the mean at the others; only that decision
                                          # is trained on (docs/rl_finetuning.md)
    task_pool: int = 0                    # with groups: > 0 draws every group's task from this many fixed
                                          # task seeds, so tasks recur (0: a new task every time)
    ppo: PPOConfig = dataclasses.field(default_factory=PPOConfig)

    def validate(self) -> "NCDPOSettings":
        if self.iterations < 1 or self.decisions_per_iteration < 1 or self.checkpoint_every < 1:
            raise ValueError("iterations, decisions_per_iteration and checkpoint_every must be >= 1")
        if not 0.0 < self.noise_scale <= 1.0:
            raise ValueError(f"noise_scale must be in (0, 1] (the sampler's noise is what NCDPO holds as an input), "
                             f"got {self.noise_scale}")
        if not 0.0 <= self.row_correlation <= 1.0:
            raise ValueError(f"row_correlation must be in [0, 1] (1: one offset per chunk), got {self.row_correlation}")
        if self.group_size < 1:
            raise ValueError(f"group_size must be >= 1, got {self.group_size}")
        if self.explore_one_decision and self.group_size < 2:
            raise ValueError("explore_one_decision compares a group's episodes: it needs group_size >= 2")
        if self.task_pool < 0 or (self.task_pool and self.group_size < 2):
            raise ValueError(f"task_pool must be 0 (new tasks) or, with group_size >= 2, a number of tasks; "
                             f"got {self.task_pool}")
        if self.critic_warmup_iterations < 0:
            raise ValueError(f"critic_warmup_iterations must be >= 0, got {self.critic_warmup_iterations}")
        if self.policy_lr_warmup_iterations < 0:
            raise ValueError(f"policy_lr_warmup_iterations must be >= 0, got {self.policy_lr_warmup_iterations}")
        self.ppo.validate()
        return self

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


class NCDPOTrainer:
    def __init__(self, policy, envs, settings: NCDPOSettings, out_dir: str | None = None, base_policy=None,
                 demonstrations=None, extra_info: dict | None = None):
        """policy: the DiffusionPolicy to fine-tune (in place); envs: a gymnasium vector env of chunk
        envs (SimChunkEnv, GoalReachEnv); base_policy: a frozen copy for the KL term;
        demonstrations: a callable giving a batch for the BC term."""
        self.settings = settings.validate()
        self.out_dir, self.envs, self.extra_info = out_dir, envs, dict(extra_info or {})
        torch.manual_seed(settings.seed)     # the critic's and head's initial weights
        policy.set_sampler("ddim", ddim_steps=settings.denoising_steps, ddim_eta=settings.eta,
                           sample_noise_scale=settings.noise_scale,
                           full_sample_method="ddim", full_sample_steps=settings.denoising_steps)
        self.policy = policy
        self.sampler = NoiseConditionedSampler(policy, settings.denoising_steps, settings.eta)
        self.head = GaussianHead(policy.config.action_dim, settings.init_std, settings.min_std,
                                 settings.row_correlation,
                                 unexplored_dims=() if settings.explore_gripper else tuple(policy.discrete_dims))
        self.value = ValueNetwork(envs.single_observation_space[CRITIC_KEY].shape[0])
        if settings.ppo.kl_coef and base_policy is None:
            raise ValueError("a KL coefficient needs the base policy")
        base_sampler = None
        if base_policy is not None and settings.ppo.kl_coef:
            base_policy.requires_grad_(False)
            base_sampler = NoiseConditionedSampler(base_policy, settings.denoising_steps, settings.eta)
        if settings.ppo.bc_coef and demonstrations is None:
            raise ValueError("a behaviour-cloning coefficient needs demonstrations")
        self.demonstrations = demonstrations
        self.updater = PPOUpdater(self.sampler, self.head, self.value, settings.ppo)
        self.generator = torch.Generator().manual_seed(settings.seed)
        self.collector = RolloutCollector(envs, self.sampler, self.head, self.value, self.generator, base_sampler,
                                          settings.group_size)
        self.iteration = 0
        self.env_steps = 0
        self.history: list[dict] = []
        self.seconds = 0.0

    # ------------------------------------------------------------------ loop
    def _collect(self) -> tuple[dict, list[dict], int, float]:
        """-> (PPO batch, finished episodes, decisions stepped per env, mean reward per used decision)."""
        s = self.settings
        if s.group_size == 1:
            rollout, finished = self.collector.collect(s.decisions_per_iteration)
            advantages, returns = generalized_advantages(rollout.rewards, rollout.values, rollout.dones,
                                                         rollout.last_values, s.ppo.gamma, s.ppo.lam)
            return (rollout.flat(advantages, returns), finished, s.decisions_per_iteration,
                    float(rollout.rewards.mean()))
        batches, finished, stepped, rewards = [], [], 0, []
        groups = self.envs.num_envs // s.group_size
        while stepped < s.decisions_per_iteration:
            draws = [np.random.SeedSequence([s.seed, self.iteration, len(batches), g]).generate_state(2)
                     for g in range(groups)]
            seeds = [int(draw[0]) % s.task_pool if s.task_pool else int(draw[0]) for draw in draws]
            explore_at = [int(draw[1] % self.max_decisions) for draw in draws] if s.explore_one_decision else None
            round_ = self.collect_group_round(seeds, explore_at)
            batches.append(round_.rollout.flat(round_.advantages, round_.to_go, round_.trained))
            finished += round_.episodes
            stepped += round_.rollout.rewards.shape[0]
            rewards.append(round_.rollout.rewards[round_.first_episode > 0])
        return _concat_batches(batches), finished, stepped, float(torch.cat(rewards).mean())

    def collect_group_round(self, seeds: list[int], explore_at: list[int] | None = None) -> "GroupRound":
        """The first episodes of one task seed per group, with their group-relative advantages
        (the critic is not used for them; it still learns the reward-to-go)."""
        rollout, episodes = self.collector.collect_episodes(seeds, explore_at)
        advantages, to_go, first = group_relative_advantages(rollout.rewards, rollout.dones,
                                                             self.settings.group_size, self.settings.ppo.gamma)
        trained = first if rollout.explored is None else first * rollout.explored
        return GroupRound(rollout, episodes, advantages, to_go, first, trained)

    @functools.cached_property
    def max_decisions(self) -> int:
        """Decisions in an episode that times out: the range the exploring decision is drawn from
        (asked of the workers once)."""
        return int(self.envs.get_attr("max_decisions")[0])

    def iterate(self) -> dict:
        s = self.settings
        started = time.perf_counter()
        batch, finished, stepped, mean_reward = self._collect()
        collected = time.perf_counter()
        trained = self.iteration - s.critic_warmup_iterations   # policy updates before this one
        if trained >= 0:
            self.updater.set_policy_lr(s.ppo.policy_lr * min(1.0, (trained + 1) / max(1, s.policy_lr_warmup_iterations)))
        stats = self.updater.update(batch, self.generator, self.demonstrations, train_policy=trained >= 0)
        self.iteration += 1
        # every env step the sim ran counts, those after a group episode's end included
        self.env_steps += stepped * self.envs.num_envs * self.policy.config.n_action_steps
        elapsed = time.perf_counter() - started
        self.seconds += elapsed
        record = {"iteration": self.iteration, "env_steps": self.env_steps, "episodes": len(finished),
                  "success_rate": float(np.mean([e["success"] for e in finished])) if finished else None,
                  "mean_return": float(np.mean([e["return"] for e in finished])) if finished else None,
                  "mean_decision_reward": mean_reward, "trained_decisions": int(batch["actions"].shape[0]),
                  "std": float(self.head.std()[self.head.explored].detach().mean()),
                  "collect_s": round(collected - started, 2),
                  "update_s": round(elapsed - (collected - started), 2), **stats}
        self.history.append(record)
        return record

    def train(self, until: int | None = None, progress: bool = True) -> list[dict]:
        """Run to settings.iterations (or stop after iteration `until`); saves as it goes."""
        stop = self.settings.iterations if until is None else min(until, self.settings.iterations)
        if self.settings.group_size == 1:   # groups reset their envs for every episode
            self.collector.reset(seed=[self.settings.seed * 1_000_003 + self.iteration * 1009 + i
                                       for i in range(self.envs.num_envs)])
        bar = tqdm(total=self.settings.iterations, initial=self.iteration, desc="ncdpo", disable=not progress,
                   dynamic_ncols=True)
        while self.iteration < stop:
            record = self.iterate()
            bar.update(1)
            bar.set_postfix(steps=record["env_steps"], success=_fmt(record["success_rate"]),
                            ret=_fmt(record["mean_return"]), std=f"{record['std']:.3f}")
            if self.out_dir and self.iteration % self.settings.checkpoint_every == 0:
                self.save()
        bar.close()
        if self.out_dir:
            self.save()
        return self.history

    # ------------------------------------------------------------------ persistence
    def save(self) -> None:
        os.makedirs(self.out_dir, exist_ok=True)
        info = {"method": "ncdpo", "iteration": self.iteration, "env_steps": self.env_steps,
                "train_seconds": round(self.seconds, 1), "settings": self.settings.to_dict(), **self.extra_info}
        ckpt.save_checkpoint(self.out_dir, self.policy, training=info)
        opt_tensors, opt_info = _optimizer_tensors(self.updater.optimizer)
        tensors = {f"head/{k}": v for k, v in self.head.state_dict().items()}
        tensors.update({f"value/{k}": v for k, v in self.value.state_dict().items()})
        tensors.update(opt_tensors)
        tensors["generator"] = self.generator.get_state()
        ckpt.save_tensors(os.path.join(self.out_dir, RL_STATE), tensors)
        ckpt.write_json(os.path.join(self.out_dir, RL_STATE_JSON), {
            "iteration": self.iteration, "env_steps": self.env_steps, "seconds": self.seconds,
            "optimizer": opt_info, "history": self.history, "settings": self.settings.to_dict()})
        reporting.save_rl_learning_curve(self.history, os.path.join(self.out_dir, LEARNING_CURVE),
                                         title=f"NCDPO, K={self.settings.denoising_steps}, eta={self.settings.eta}, "
                                               f"noise scale {self.settings.noise_scale}"
                                               + (f", row correlation {self.settings.row_correlation}"
                                                  if self.settings.row_correlation else "")
                                               + ("" if self.settings.explore_gripper else ", gripper not explored")
                                               + _success_meaning(self.extra_info.get("reward", {})))

    def resume(self) -> bool:
        """Load the state saved in out_dir (fine-tuned weights included); True when there was one."""
        if not self.out_dir or not os.path.isfile(os.path.join(self.out_dir, RL_STATE_JSON)):
            return False
        info = ckpt.read_bounded_json(os.path.join(self.out_dir, RL_STATE_JSON))
        # a setting newer than the saved run was at its default there
        changed = _changed_settings(info.get("settings", {}), self.settings.to_dict(), NCDPOSettings().to_dict())
        # a different reward is a different objective: the saved critic and history belong to it
        saved_reward = ckpt.read_config(self.out_dir)[2].get("reward", {})
        changed += _changed_settings({"reward": saved_reward}, {"reward": self.extra_info.get("reward", {})},
                                     {"reward": REWARD_SETTINGS_OF_OLDER_RUNS})
        if changed:
            # the saved optimizer, head and history belong to the saved settings
            raise ValueError(f"cannot resume {self.out_dir}: settings differ from the saved run's "
                             f"({'; '.join(changed)}); only iterations and checkpoint_every may change")
        saved = ckpt.load_checkpoint(self.out_dir, device=str(self.policy.device))
        self.policy.load_state_dict(saved.state_dict())
        tensors = ckpt.load_tensors(os.path.join(self.out_dir, RL_STATE))
        self.head.load_state_dict({k[len("head/"):]: v for k, v in tensors.items() if k.startswith("head/")})
        self.value.load_state_dict({k[len("value/"):]: v for k, v in tensors.items() if k.startswith("value/")})
        _restore_optimizer(self.updater.optimizer, tensors, info["optimizer"])
        self.generator.set_state(tensors["generator"])
        self.iteration, self.env_steps = int(info["iteration"]), int(info["env_steps"])
        self.seconds, self.history = float(info["seconds"]), list(info["history"])
        return True


RESUMABLE_CHANGES = {"iterations", "checkpoint_every"}


def _changed_settings(saved: dict, current: dict, defaults: dict, prefix: str = "") -> list[str]:
    """'name saved -> current' for every setting (nested ones dotted) that differs; one the saved
    run does not name counts as its default."""
    changed = []
    for key in sorted(set(saved) | set(current)):
        name = prefix + key
        old, new = saved.get(key, defaults.get(key)), current.get(key)
        if isinstance(old, dict) and isinstance(new, dict):
            changed += _changed_settings(old, new, defaults.get(key) or {}, name + ".")
        elif name not in RESUMABLE_CHANGES and old != new:
            changed.append(f"{name} {old} -> {new}")
    return changed


def _success_meaning(reward: dict) -> str:
    """What an episode's success is in the learning curve: a success the reward asks to hold."""
    hold = reward.get("success_hold_s")
    return f"\nsuccess: held {hold:g} s" if hold else ""


@dataclasses.dataclass
class GroupRound:
    """One round of group episodes: (T, N) advantages and reward-to-go; `first_episode` marks the
    decisions of each env's first episode, `trained` those of them PPO trains on (all of them, or
    with one exploring decision per episode only that one)."""
    rollout: Rollout
    episodes: list[dict]
    advantages: torch.Tensor
    to_go: torch.Tensor
    first_episode: torch.Tensor
    trained: torch.Tensor


def _concat_batches(batches: list[dict]) -> dict:
    def cat(values):
        if isinstance(values[0], dict):
            return {k: cat([v[k] for v in values]) for k in values[0]}
        return torch.cat(values)
    return cat(batches)


def _fmt(value) -> str:
    return "-" if value is None else f"{value:.2f}"
