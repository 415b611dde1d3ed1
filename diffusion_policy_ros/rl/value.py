"""The critic: an MLP on a state vector the environment provides beside the policy's observation
(for the sim: joints, cube, target, tool and the episode's elapsed fraction). It is used only in
training, so it may see what the deployed policy does not (an asymmetric actor-critic)."""
from __future__ import annotations

import torch
from torch import nn


class ValueNetwork(nn.Module):
    def __init__(self, state_dim: int, hidden: int = 128):
        super().__init__()
        if state_dim < 1:
            raise ValueError(f"critic state must have at least one value, got {state_dim}")
        self.net = nn.Sequential(nn.Linear(state_dim, hidden), nn.Tanh(), nn.Linear(hidden, hidden), nn.Tanh(),
                                 nn.Linear(hidden, 1))

    def forward(self, state: torch.Tensor) -> torch.Tensor:
        return self.net(state.float()).squeeze(-1)
