"""Exponential moving average of the weights, with the warm-up decay of Diffusion Policy:
decay = 1 - (1 + step / inv_gamma) ** -power, clamped to [min_decay, max_decay]."""
from __future__ import annotations

import copy

import torch
from torch import nn


class EMA:
    def __init__(self, model: nn.Module, power: float = 0.75, max_decay: float = 0.9999,
                 min_decay: float = 0.0, inv_gamma: float = 1.0):
        self.model = copy.deepcopy(model).eval()
        for p in self.model.parameters():
            p.requires_grad_(False)
        self.power, self.max_decay, self.min_decay, self.inv_gamma = power, max_decay, min_decay, inv_gamma
        self.step = 0

    def decay(self) -> float:
        value = 1.0 - (1.0 + self.step / self.inv_gamma) ** -self.power
        return max(self.min_decay, min(value, self.max_decay))

    @torch.no_grad()
    def update(self, model: nn.Module) -> None:
        d = self.decay()
        ema_params = dict(self.model.named_parameters())
        for name, p in model.named_parameters():
            ema_params[name].mul_(d).add_(p.detach(), alpha=1.0 - d)
        ema_buffers = dict(self.model.named_buffers())
        for name, b in model.named_buffers():
            ema_buffers[name].copy_(b)
        self.step += 1
