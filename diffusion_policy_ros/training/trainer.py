"""Training loop: AdamW with linear warm-up then cosine decay, EMA weights, checkpoints, resume.

Output folder: model.safetensors + config.json (EMA weights, what inference loads),
training_state.safetensors + training_state.json (raw weights, optimizer moments, step, loss
history) for resume, loss_curve.png. Everything safetensors / JSON; no pickle.

Under torchrun (see `distributed`) every process trains on its own batches through
DistributedDataParallel and only rank 0 writes; the checkpoints are the same as from one process.
"""
from __future__ import annotations

import dataclasses
import json
import math
import os
import random
import time

import numpy as np
import torch
from tqdm import tqdm

from diffusion_policy_ros.data.sequence_dataset import SequenceDataset
from diffusion_policy_ros.policy import checkpoint as ckpt
from diffusion_policy_ros.policy.configuration import PolicyConfig
from diffusion_policy_ros.policy.modeling import DiffusionPolicy, resolve_device
from diffusion_policy_ros.policy.normalizer import MinMaxNormalizer
from diffusion_policy_ros.training.distributed import Distributed
from diffusion_policy_ros.training.ema import EMA


@dataclasses.dataclass
class TrainConfig:
    steps: int = 20000
    batch_size: int = 64
    lr: float = 1e-4
    weight_decay: float = 1e-6
    betas: tuple[float, float] = (0.95, 0.999)
    warmup_steps: int = 500
    grad_clip: float = 1.0
    ema_power: float = 0.75
    ema_max_decay: float = 0.9999
    seed: int = 0
    checkpoint_every: int = 1000
    device: str = "auto"
    num_threads: int = 0            # 0 = torch default


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def lr_factor(step: int, warmup: int, total: int) -> float:
    if step < warmup:
        return (step + 1) / warmup
    progress = (step - warmup) / max(total - warmup, 1)
    return 0.5 * (1.0 + math.cos(math.pi * min(progress, 1.0)))


def _optimizer_tensors(opt: torch.optim.Optimizer) -> tuple[dict, dict]:
    state = opt.state_dict()
    tensors, scalars = {}, {}
    for idx, entry in state["state"].items():
        for name, value in entry.items():
            if torch.is_tensor(value):
                tensors[f"optim/{idx}/{name}"] = value
            else:
                scalars[f"{idx}/{name}"] = value
    return tensors, {"param_groups": state["param_groups"], "scalars": scalars}


def _restore_optimizer(opt: torch.optim.Optimizer, tensors: dict, info: dict) -> None:
    state: dict = {}
    for key, value in tensors.items():
        if key.startswith("optim/"):
            _, idx, name = key.split("/", 2)
            state.setdefault(int(idx), {})[name] = value
    for key, value in info.get("scalars", {}).items():
        idx, name = key.split("/", 1)
        state.setdefault(int(idx), {})[name] = value
    opt.load_state_dict({"state": state, "param_groups": info["param_groups"]})


def save_loss_curve(path: str, losses: list[tuple[int, float]]) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    if not losses:
        return
    steps, values = zip(*losses)
    fig, ax = plt.subplots(figsize=(6, 3.5))
    ax.plot(steps, values, lw=0.6, alpha=0.4, label="loss")
    window = max(1, len(values) // 50)
    smooth = np.convolve(values, np.ones(window) / window, mode="valid")
    ax.plot(steps[window - 1:], smooth, lw=1.5, label=f"mean of {window}")
    ax.set_yscale("log")
    ax.set_xlabel("step")
    ax.set_ylabel("epsilon MSE")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


class _Loss(torch.nn.Module):
    """The policy's training loss as a forward pass, which DistributedDataParallel wraps."""

    def __init__(self, policy: DiffusionPolicy):
        super().__init__()
        self.policy = policy

    def forward(self, batch: dict, generator: torch.Generator) -> torch.Tensor:
        return self.policy.compute_loss(batch, generator=generator)


class Trainer:
    def __init__(self, policy_config: PolicyConfig, dataset: SequenceDataset, train_config: TrainConfig,
                 out_dir: str | None = None, normalizer: MinMaxNormalizer | None = None,
                 extra_info: dict | None = None, distributed: Distributed | None = None):
        self.tc = train_config
        self.out_dir = out_dir
        self.dataset = dataset
        self.extra_info = dict(extra_info or {})
        self.train_seconds = 0.0    # wall time spent in train(), over every resumed run
        self._clock: float | None = None
        self.dist = distributed or Distributed()
        seed_everything(train_config.seed)      # the same initial weights in every process
        if train_config.num_threads:
            torch.set_num_threads(train_config.num_threads)
        self.device = resolve_device(self.dist.device(train_config.device))
        normalizer = normalizer or MinMaxNormalizer.fit(dataset.stats_data())
        self.policy = DiffusionPolicy(policy_config, normalizer).to_device(str(self.device))
        self.ema = EMA(self.policy, power=train_config.ema_power, max_decay=train_config.ema_max_decay)
        self.optimizer = torch.optim.AdamW(self.policy.parameters(), lr=train_config.lr,
                                           betas=tuple(train_config.betas), weight_decay=train_config.weight_decay)
        self.loss = _Loss(self.policy)
        if self.dist.enabled:
            self.loss = torch.nn.parallel.DistributedDataParallel(
                self.loss, device_ids=[self.device.index] if self.device.type == "cuda" else None)
        self.rng = np.random.default_rng(self._process_seed(0))
        self.generator = torch.Generator(self.device).manual_seed(train_config.seed + self.dist.rank * 1_000_003)
        self.step = 0
        self.losses: list[tuple[int, float]] = []

    def start_from(self, policy: DiffusionPolicy) -> None:
        """Fine-tuning: the weights of a trained `policy` (same config) replace the initial ones."""
        state = policy.state_dict()
        self.policy.load_state_dict(state, strict=True)
        self.ema.model.load_state_dict(state, strict=True)

    def _process_seed(self, step: int):
        """Batches differ between processes (rank 0 draws what a single process draws)."""
        return self.tc.seed if self.dist.rank == 0 and step == 0 else [self.tc.seed, self.dist.rank, step]

    # ------------------------------------------------------------------ persistence
    def save(self) -> None:
        if self._clock is not None:   # the time so far goes into this checkpoint, not only the last
            now = time.perf_counter()
            self.train_seconds += now - self._clock
            self._clock = now
        if self.out_dir and self.dist.is_main:
            self._write()
        self.dist.barrier()     # a save is complete for every process when any continues

    def _write(self) -> None:
        os.makedirs(self.out_dir, exist_ok=True)
        info = {"step": self.step, "train_config": dataclasses.asdict(self.tc), **self.extra_info,
                "train_seconds": round(self.train_seconds, 1),
                "final_loss": self.losses[-1][1] if self.losses else None}
        ckpt.save_checkpoint(self.out_dir, self.ema.model, training=info)
        opt_tensors, opt_info = _optimizer_tensors(self.optimizer)
        tensors = {f"model/{k}": v for k, v in self.policy.state_dict().items()}
        tensors.update(opt_tensors)
        ckpt.save_tensors(os.path.join(self.out_dir, ckpt.TRAIN_STATE), tensors)
        ckpt.write_json(os.path.join(self.out_dir, ckpt.TRAIN_STATE_JSON), {
            "step": self.step, "ema_step": self.ema.step, "optimizer": opt_info, "losses": self.losses,
            "train_seconds": self.train_seconds,
            "rng": self.rng.bit_generator.state, "generator_seed_offset": self.step})
        save_loss_curve(os.path.join(self.out_dir, "loss_curve.png"), self.losses)

    def resume(self) -> bool:
        """Load the training state from out_dir if there is one; True when resumed."""
        if not self.out_dir or not os.path.isfile(os.path.join(self.out_dir, ckpt.TRAIN_STATE_JSON)):
            return False
        ema_policy = ckpt.load_checkpoint(self.out_dir, device=str(self.device))
        self.ema.model.load_state_dict(ema_policy.state_dict())
        tensors = ckpt.load_tensors(os.path.join(self.out_dir, ckpt.TRAIN_STATE))
        with open(os.path.join(self.out_dir, ckpt.TRAIN_STATE_JSON), encoding="utf-8") as f:
            info = json.load(f)
        self.policy.load_state_dict({k[len("model/"):]: v for k, v in tensors.items() if k.startswith("model/")})
        _restore_optimizer(self.optimizer, {k: v.to(self.device) for k, v in tensors.items()}, info["optimizer"])
        self.step, self.ema.step = int(info["step"]), int(info["ema_step"])
        self.losses = [tuple(x) for x in info["losses"]]
        self.train_seconds = float(info.get("train_seconds", 0.0))
        if self.dist.rank == 0:
            self.rng.bit_generator.state = info["rng"]
        else:   # rank 0's saved state would give every process the same batches
            self.rng = np.random.default_rng(self._process_seed(self.step))
        self.generator.manual_seed(self.tc.seed + self.step + self.dist.rank * 1_000_003)
        return True

    # ------------------------------------------------------------------ loop
    def _to_device(self, batch: dict) -> dict:
        return {k: torch.from_numpy(v).to(self.device, non_blocking=True) for k, v in batch.items()}

    def train(self, progress: bool = True, until: int | None = None) -> DiffusionPolicy:
        """Train to tc.steps (or stop early at step `until`, e.g. to test resume)."""
        tc = self.tc
        stop = tc.steps if until is None else min(until, tc.steps)
        self.policy.train()
        bar = tqdm(total=tc.steps, initial=self.step, desc="train", disable=not (progress and self.dist.is_main),
                   dynamic_ncols=True)
        pending = []    # losses stay on the device until logged, avoiding a sync per step
        self._clock = time.perf_counter()
        while self.step < stop:
            for group in self.optimizer.param_groups:
                group["lr"] = tc.lr * lr_factor(self.step, tc.warmup_steps, tc.steps)
            ids = self.rng.integers(0, len(self.dataset), size=tc.batch_size)
            loss = self.loss(self._to_device(self.dataset.batch(ids)), self.generator)
            self.optimizer.zero_grad(set_to_none=True)
            loss.backward()
            if tc.grad_clip:
                torch.nn.utils.clip_grad_norm_(self.policy.parameters(), tc.grad_clip)
            self.optimizer.step()
            self.ema.update(self.policy)
            pending.append((self.step, loss.detach()))
            self.step += 1
            bar.update(1)
            if len(pending) >= 25 or self.step == stop:
                values = self.dist.mean(torch.stack([v for _, v in pending])).cpu().tolist()
                self.losses.extend((s, float(v)) for (s, _), v in zip(pending, values))
                pending.clear()
                bar.set_postfix(loss=f"{np.mean(values):.4f}")
            if self.out_dir and tc.checkpoint_every and self.step % tc.checkpoint_every == 0:
                self.save()
        bar.close()
        self.save()
        self._clock = None
        return self.ema.model
