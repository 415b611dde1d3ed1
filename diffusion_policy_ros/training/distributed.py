"""Data-parallel training over the processes torchrun starts: one per GPU (NCCL), or several on
CPU (gloo). Each process draws its own batches; DistributedDataParallel averages the gradients, so
every process holds the same weights after each step and only rank 0 writes the checkpoints.

Outside torchrun (no WORLD_SIZE, or 1) this is a single process and changes nothing.
"""
from __future__ import annotations

import dataclasses
import os

import torch
import torch.distributed as dist


@dataclasses.dataclass(frozen=True)
class Distributed:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @classmethod
    def from_environment(cls, device: str = "auto") -> "Distributed":
        """Join the process group torchrun describes (RANK, WORLD_SIZE, LOCAL_RANK, MASTER_ADDR)."""
        world_size = int(os.environ.get("WORLD_SIZE", "1"))
        if world_size <= 1:
            return cls()
        rank, local_rank = int(os.environ["RANK"]), int(os.environ.get("LOCAL_RANK", "0"))
        on_gpu = _wants_cuda(device)
        if on_gpu:
            torch.cuda.set_device(local_rank)
        dist.init_process_group("nccl" if on_gpu else "gloo")
        return cls(rank, world_size, local_rank)

    def device(self, requested: str = "auto") -> str:
        """This process's device: its own GPU (LOCAL_RANK) when CUDA is used, else as requested."""
        if self.enabled and _wants_cuda(requested):
            return f"cuda:{self.local_rank}"
        return requested

    def barrier(self) -> None:
        if self.enabled:
            dist.barrier()

    def mean(self, values: torch.Tensor) -> torch.Tensor:
        """Element-wise mean over the processes (the values themselves in one process)."""
        if not self.enabled:
            return values
        total = values.clone()
        dist.all_reduce(total, op=dist.ReduceOp.SUM)
        return total / self.world_size

    def close(self) -> None:
        if self.enabled and dist.is_initialized():
            dist.destroy_process_group()


def _wants_cuda(device: str) -> bool:
    return device.startswith("cuda") or (device == "auto" and torch.cuda.is_available())
