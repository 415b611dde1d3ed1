"""Clipped PPO over NCDPO decisions: several epochs of minibatches per rollout.

At update time each decision's stored noise goes back through the same K denoising steps, now
with gradients, giving the Gaussian's mean; the ratio new / old likelihood of the stored action is
exactly 1 before the first optimizer step. With a chunk-offset head (`row_correlation` 1) the
ratio sees only the offset; the drift of the chunk's shape from the rollout's is added to the loss
and to the approximate KL (`exploration.py`). Optional regularisers keep the policy near what it
learnt from demonstrations: KL to the base policy (same noise, same Gaussian head: a squared
distance between the two means in std units) and behaviour cloning (the diffusion loss on
demonstration batches).
"""
from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping

import torch

from diffusion_policy_ros.rl.exploration import GaussianHead
from diffusion_policy_ros.rl.noise_sampler import NoiseConditionedSampler
from diffusion_policy_ros.rl.value import ValueNetwork


@dataclasses.dataclass
class PPOConfig:
    epochs: int = 4
    minibatch_size: int = 32
    clip: float = 0.2
    gamma: float = 0.99
    lam: float = 0.95
    policy_lr: float = 1e-5
    std_lr: float = 1e-3
    value_lr: float = 1e-3
    value_coef: float = 0.5
    entropy_coef: float = 0.0
    kl_coef: float = 0.0           # KL to the base policy (needs base means in the rollout)
    bc_coef: float = 0.0           # diffusion loss on demonstrations (needs a dataset)
    max_grad_norm: float = 1.0
    target_kl: float | None = None  # stop the epochs early once the approximate KL passes it
    freeze_encoder: bool = False   # gradients through the denoising steps only, not the encoder

    def validate(self) -> "PPOConfig":
        if self.epochs < 1 or self.minibatch_size < 1:
            raise ValueError("epochs and minibatch_size must be >= 1")
        if not 0.0 < self.clip < 1.0:
            raise ValueError(f"clip must be in (0, 1), got {self.clip}")
        if not (0.0 < self.gamma <= 1.0 and 0.0 <= self.lam <= 1.0):
            raise ValueError(f"need 0 < gamma <= 1 and 0 <= lam <= 1, got {self.gamma}, {self.lam}")
        if min(self.policy_lr, self.std_lr, self.value_lr, self.kl_coef, self.bc_coef, self.value_coef) < 0:
            raise ValueError("learning rates and coefficients must be >= 0")
        return self


def clipped_surrogate(new_logp: torch.Tensor, old_logp: torch.Tensor, advantages: torch.Tensor,
                      clip: float) -> tuple[torch.Tensor, dict]:
    """PPO's clipped objective as a loss (to minimise) + ratio statistics."""
    log_ratio = new_logp - old_logp
    ratio = log_ratio.exp()
    unclipped = ratio * advantages
    clipped = ratio.clamp(1.0 - clip, 1.0 + clip) * advantages
    loss = -torch.minimum(unclipped, clipped).mean()
    with torch.no_grad():
        stats = {"approx_kl": float(((ratio - 1.0) - log_ratio).mean()),
                 "clip_fraction": float(((ratio - 1.0).abs() > clip).float().mean())}
    return loss, stats


class PPOUpdater:
    def __init__(self, sampler: NoiseConditionedSampler, head: GaussianHead, value: ValueNetwork,
                 config: PPOConfig):
        self.sampler, self.head, self.value, self.config = sampler, head, value, config.validate()
        policy = sampler.policy
        trained = [p for name, p in policy.named_parameters()
                   if not (config.freeze_encoder and name.startswith("obs_encoder."))]
        self.policy_params = trained + list(head.parameters())
        self.optimizer = torch.optim.Adam([
            {"params": trained, "lr": config.policy_lr},
            {"params": list(head.parameters()), "lr": config.std_lr},
            {"params": list(value.parameters()), "lr": config.value_lr}])

    def set_policy_lr(self, lr: float) -> None:
        self.optimizer.param_groups[0]["lr"] = lr

    def log_prob_and_mean(self, obs: Mapping[str, torch.Tensor], noise: torch.Tensor,
                          actions: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if self.config.freeze_encoder:
            with torch.no_grad():
                cond = self.sampler.encode(obs)
        else:
            cond = self.sampler.encode(obs)
        mean = self.sampler.executed_rows(self.sampler.chunk(cond, noise))
        return self.head.log_prob(mean, actions), mean

    def update(self, batch: Mapping, generator: torch.Generator,
               demonstrations: Callable[[], Mapping[str, torch.Tensor]] | None = None,
               train_policy: bool = True) -> dict:
        """batch: 'obs' (dict of (M, ...)), 'noise', 'actions', 'log_prob', 'advantages', 'returns',
        'critic_state', optionally 'base_mean'. -> mean statistics over the minibatches.
        train_policy False: only the value network learns (the critic's warm-up); the policy and
        the exploration head are left exactly as they are."""
        if not train_policy:
            return self._update_value(batch, generator)
        cfg = self.config
        size = batch["actions"].shape[0]
        advantages = batch["advantages"]
        advantages = (advantages - advantages.mean()) / (advantages.std() + 1e-8) if size > 1 else advantages
        totals: dict[str, float] = {}
        count = 0
        stop = False
        for _ in range(cfg.epochs):
            order = torch.randperm(size, generator=generator)
            for start in range(0, size, cfg.minibatch_size):
                ids = order[start:start + cfg.minibatch_size]
                obs = {k: v[ids] for k, v in batch["obs"].items()}
                new_logp, mean = self.log_prob_and_mean(obs, batch["noise"][ids], batch["actions"][ids])
                policy_loss, stats = clipped_surrogate(new_logp, batch["log_prob"][ids], advantages[ids], cfg.clip)
                value_loss = self._value_loss(batch, ids)
                loss = policy_loss + cfg.value_coef * value_loss
                if self.head.chunk_offset:
                    # no ratio sees the chunk's shape: its drift is the trust region there
                    drift = self.head.shape_drift(mean, batch["actions"][ids]).mean()
                    loss = loss + drift
                    stats["shape_drift"] = float(drift.detach())
                    stats["approx_kl"] += stats["shape_drift"]
                if cfg.entropy_coef:
                    loss = loss - cfg.entropy_coef * self.head.entropy(mean).mean()
                if cfg.kl_coef:
                    kl = self.head.kl_same_std(mean, batch["base_mean"][ids]).mean()
                    loss = loss + cfg.kl_coef * kl
                    stats["kl_to_base"] = float(kl.detach())
                if cfg.bc_coef and demonstrations is not None:
                    bc = self.sampler.policy.compute_loss(demonstrations())
                    loss = loss + cfg.bc_coef * bc
                    stats["bc_loss"] = float(bc.detach())
                self.optimizer.zero_grad(set_to_none=True)
                loss.backward()
                if cfg.max_grad_norm:
                    torch.nn.utils.clip_grad_norm_(self.policy_params, cfg.max_grad_norm)
                    torch.nn.utils.clip_grad_norm_(self.value.parameters(), cfg.max_grad_norm)
                self.optimizer.step()
                stats.update(policy_loss=float(policy_loss.detach()), value_loss=float(value_loss.detach()))
                for k, v in stats.items():
                    totals[k] = totals.get(k, 0.0) + v
                count += 1
                if cfg.target_kl is not None and stats["approx_kl"] > cfg.target_kl:
                    stop = True
                    break
            if stop:
                break
        out = {k: v / max(count, 1) for k, v in totals.items()}
        out["minibatches"] = count
        return out

    def _update_value(self, batch: Mapping, generator: torch.Generator) -> dict:
        cfg = self.config
        size = batch["returns"].shape[0]
        total, count = 0.0, 0
        for _ in range(cfg.epochs):
            order = torch.randperm(size, generator=generator)
            for start in range(0, size, cfg.minibatch_size):
                ids = order[start:start + cfg.minibatch_size]
                value_loss = self._value_loss(batch, ids)
                self.optimizer.zero_grad(set_to_none=True)
                (cfg.value_coef * value_loss).backward()
                if cfg.max_grad_norm:
                    torch.nn.utils.clip_grad_norm_(self.value.parameters(), cfg.max_grad_norm)
                self.optimizer.step()
                total += float(value_loss.detach())
                count += 1
        return {"value_loss": total / max(count, 1), "minibatches": count}

    def _value_loss(self, batch: Mapping, ids: torch.Tensor) -> torch.Tensor:
        return 0.5 * (self.value(batch["critic_state"][ids]) - batch["returns"][ids]).pow(2).mean()
