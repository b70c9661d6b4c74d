"""Where a process runs: its device and, under torchrun, its place in the process group.

The model is that of torchvision's reference scripts: ``init_runtime`` picks the device (the one
``--device`` names, else CUDA when available) and joins the process group when RANK and WORLD_SIZE
are set; ``cleanup_runtime`` leaves it. What the training loop asks of the other processes is
``training/distributed.py``.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist

from utils import pick_device


@dataclass
class Runtime:
    """Where this process runs: its device, and its place among the processes of a run."""

    device: torch.device
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    distributed: bool = False

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def init_runtime(device: str | None = None, no_cuda: bool = False, backend: str | None = None) -> Runtime:
    """Pick the device and, under torchrun (RANK and WORLD_SIZE set), join the process group."""
    if not no_cuda:
        pick_device(device)  # a named device that is not there fails here, in one line
    use_cuda = torch.cuda.is_available() and not no_cuda and (device is None or device.startswith("cuda"))
    if "RANK" in os.environ and "WORLD_SIZE" in os.environ and int(os.environ["WORLD_SIZE"]) > 1:
        rank, world_size = int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"])
        local_rank = int(os.environ.get("LOCAL_RANK", 0))
        if use_cuda:
            torch.cuda.set_device(local_rank)
            run_device = torch.device("cuda", local_rank)
        else:
            run_device = torch.device("cpu")
        if not dist.is_initialized():
            dist.init_process_group(
                backend or ("nccl" if use_cuda else "gloo"), rank=rank, world_size=world_size
            )
        return Runtime(run_device, rank, world_size, local_rank, True)
    if no_cuda:
        return Runtime(torch.device("cpu"))
    return Runtime(pick_device(device))


def cleanup_runtime(runtime: Runtime) -> None:
    """Leave the process group (if any)."""
    if runtime.distributed and dist.is_initialized():
        dist.destroy_process_group()
