"""What the training loop asks of the other processes of a distributed run (identities in a run of one)."""

from __future__ import annotations

import torch
import torch.distributed as dist

from utils.processes import Runtime


def all_reduce_sum(tensor: torch.Tensor, runtime: Runtime) -> torch.Tensor:
    """Sum a tensor over the processes of a distributed run (identity otherwise)."""
    if runtime.distributed:
        tensor = tensor.clone()
        dist.all_reduce(tensor)
    return tensor


def union_of_keys(keys, runtime: Runtime) -> list:
    """The sorted union of every process's keys (the keys themselves outside a distributed run)."""
    if not runtime.distributed:
        return sorted(keys)
    gathered: list = [None] * runtime.world_size
    dist.all_gather_object(gathered, sorted(keys))
    return sorted(set().union(*gathered))


def any_process(flags: list[torch.Tensor | bool], runtime: Runtime, device: torch.device) -> list[bool]:
    """Each flag: whether it is set on any process (one all-reduce under DDP, so that all act alike)."""
    if not runtime.distributed:
        return [bool(flag) for flag in flags]
    packed = torch.stack([torch.as_tensor(flag).float().to(device) for flag in flags])
    dist.all_reduce(packed, op=dist.ReduceOp.MAX)
    return [bool(value) for value in packed.tolist()]


def broadcast_buffers(model: torch.nn.Module, runtime: Runtime) -> None:
    """Copy rank 0's buffers (BatchNorm statistics) to every process.

    DistributedDataParallel does this before each forward; after the last one each process holds
    its own statistics, so the epoch ends with this call and every rank holds what rank 0 saves.
    """
    if runtime.distributed:
        for buffer in model.buffers():
            dist.broadcast(buffer, src=0)
