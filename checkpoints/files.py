"""Reading and writing checkpoint files safely: whole or absent, and never running code on load."""
from __future__ import annotations

import os

import torch

import utils
from utils import ProjectError


class CheckpointError(ProjectError, RuntimeError):
    """A checkpoint file that cannot be read or does not fit the network it is loaded into."""


def read_state(path: str) -> dict:
    """A .pth file's dict, on the CPU, without running any code it may hold."""
    if not os.path.isfile(path):
        raise CheckpointError(f"{path} not found")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:
        raise CheckpointError(f"cannot read {path}: {err}") from err


def atomic_save(obj, path: str) -> None:
    """torch.save to a temporary name, then rename: the file is whole or absent."""
    with utils.atomic_write(path) as tmp:
        torch.save(obj, tmp)
