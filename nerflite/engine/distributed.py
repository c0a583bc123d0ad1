"""torch.distributed set-up from torchrun's environment, and the few helpers the trainer needs.

``torchrun --nproc_per_node=N train.py ...`` sets RANK, LOCAL_RANK, WORLD_SIZE, MASTER_ADDR and
MASTER_PORT for every process; ``init_from_env`` reads them and starts a process group with NCCL
on GPUs and gloo on the CPU. Without those variables everything here is a single-process no-op,
so the same trainer code runs with and without torchrun.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch import nn


@dataclass
class DistInfo:
    rank: int = 0  # global rank of this process
    local_rank: int = 0  # rank on this machine (selects the GPU)
    world_size: int = 1  # number of processes
    device: torch.device = torch.device("cpu")  # the device this process trains on

    @property
    def is_main(self) -> bool:
        """Rank 0 alone logs and writes checkpoints."""
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1


def launched_by_torchrun() -> bool:
    return "RANK" in os.environ and "WORLD_SIZE" in os.environ


def pick_device(requested: str, local_rank: int = 0) -> torch.device:
    """``auto`` -> this rank's GPU when CUDA is available, else the CPU; or an explicit name."""
    if requested == "auto":
        requested = "cuda" if torch.cuda.is_available() else "cpu"
    device = torch.device(requested)
    if device.type == "cuda" and device.index is None:
        device = torch.device("cuda", local_rank)
    return device


def init_from_env(requested_device: str = "auto") -> DistInfo:
    """Join the process group torchrun describes (if any) and choose this rank's device."""
    if not launched_by_torchrun():
        return DistInfo(device=pick_device(requested_device))
    rank, world = int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"])
    local_rank = int(os.environ.get("LOCAL_RANK", 0))
    device = pick_device(requested_device, local_rank)
    if world > 1 and not dist.is_initialized():
        if device.type == "cuda":
            torch.cuda.set_device(device)
            dist.init_process_group("nccl", device_id=device)
        else:
            dist.init_process_group("gloo")
    return DistInfo(rank=rank, local_rank=local_rank, world_size=world, device=device)


def wrap_ddp(model: nn.Module, info: DistInfo) -> nn.Module:
    """DistributedDataParallel around ``model`` when there is more than one process.

    DDP averages gradients over ranks during ``backward``, so every rank applies the same update
    and parameters stay identical (they start identical: DDP broadcasts rank 0's at wrap time).
    """
    if not info.distributed:
        return model
    ids = [info.device.index] if info.device.type == "cuda" else None
    return nn.parallel.DistributedDataParallel(model, device_ids=ids, find_unused_parameters=False)


def unwrap(model: nn.Module) -> nn.Module:
    return model.module if isinstance(model, nn.parallel.DistributedDataParallel) else model


def all_reduce_mean(t: torch.Tensor, info: DistInfo) -> torch.Tensor:
    """Mean of ``t`` over ranks (the tensor itself when not distributed)."""
    if not info.distributed:
        return t
    t = t.clone()
    dist.all_reduce(t, op=dist.ReduceOp.SUM)
    return t / info.world_size


def all_reduce_max(t: torch.Tensor, info: DistInfo) -> torch.Tensor:
    if not info.distributed:
        return t
    t = t.clone()
    dist.all_reduce(t, op=dist.ReduceOp.MAX)
    return t


def barrier(info: DistInfo) -> None:
    if info.distributed:
        dist.barrier()


def broadcast_object(obj, info: DistInfo):
    """Rank 0's ``obj`` on every rank (e.g. the run folder chosen by rank 0)."""
    if not info.distributed:
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def cleanup() -> None:
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()
