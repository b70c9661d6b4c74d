"""Random-weight model folders in the authors' and Monodepth2's layouts, key for key from the released
files' listings in tests/data/checkpoint_keys, for loader tests."""

from __future__ import annotations

import os

import torch

from conftest import read_checkpoint_keys


def random_state(reference: str, seed: int) -> dict:
    """Every key of a reference listing with a random tensor of its shape and dtype."""
    g = torch.Generator().manual_seed(seed)
    state = {}
    for key, (shape, dtype) in read_checkpoint_keys(reference).items():
        if dtype == "int64":
            state[key] = torch.randint(0, 100, shape, generator=g, dtype=torch.int64)
        elif key.endswith("running_var"):
            state[key] = torch.rand(shape, generator=g) + 0.5
        else:
            state[key] = torch.randn(shape, generator=g) * 0.05
    return state


def write_authors_folder(folder: str, height: int = 192, width: int = 640, with_pose: bool = True) -> dict:
    """encoder.pth (+ height, width, epoch, step), decoder.pth[, pose_encoder.pth, pose.pth]; returns the
    states."""
    os.makedirs(folder, exist_ok=True)
    states = {"encoder": random_state("fsre_encoder.txt", 1), "decoder": random_state("fsre_decoder.txt", 2)}
    if with_pose:
        states["pose_encoder"] = random_state("fsre_pose_encoder.txt", 3)
        states["pose"] = random_state("fsre_pose.txt", 4)
    for name, state in states.items():
        extra = {"height": height, "width": width, "epoch": 19, "step": 66340} if name == "encoder" else {}
        torch.save({**state, **extra}, os.path.join(folder, f"{name}.pth"))
    return states


def write_monodepth2_folder(folder: str, height: int = 192, width: int = 640) -> dict:
    """Monodepth2's encoder.pth (+ height, width, use_stereo), depth.pth, pose_encoder.pth, pose.pth."""
    os.makedirs(folder, exist_ok=True)
    states = {
        "encoder": random_state("monodepth2_encoder.txt", 5),
        "depth": random_state("monodepth2_depth.txt", 6),
        "pose_encoder": random_state("monodepth2_pose_encoder.txt", 7),
        "pose": random_state("monodepth2_pose.txt", 8),
    }
    for name, state in states.items():
        extra = {"height": height, "width": width, "use_stereo": False} if name == "encoder" else {}
        torch.save({**state, **extra}, os.path.join(folder, f"{name}.pth"))
    return states
