"""Test helpers: the released checkpoints' key layouts (tests/data), small random batches, and GPU skipping."""
from __future__ import annotations

import os

import pytest
import torch

PROJECT_DIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# key, shape and dtype of every tensor in the authors' and Monodepth2's released model files, one file each
CHECKPOINT_KEYS_DIR = os.path.join(PROJECT_DIR, "tests", "data", "checkpoint_keys")

torch.set_num_threads(min(2, torch.get_num_threads()))


def pytest_collection_modifyitems(config, items):
    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="needs a CUDA device")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip)


def read_checkpoint_keys(name: str) -> dict[str, tuple[tuple[int, ...], str]]:
    """Keys, shapes and dtypes of a released checkpoint file, from its listing in tests/data/checkpoint_keys."""
    path = os.path.join(CHECKPOINT_KEYS_DIR, name)
    table = {}
    with open(path) as f:
        for line in f:
            key, shape, dtype = line.rstrip("\n").split("\t")
            table[key] = (tuple(int(x) for x in shape.strip("()").split(",") if x.strip()), dtype)
    return table


def make_intrinsics(batch: int, height: int, width: int) -> torch.Tensor:
    """KITTI's normalised intrinsics scaled to a size, (B, 4, 4)."""
    K = torch.tensor([[0.58 * width, 0, 0.5 * width, 0], [0, 1.92 * height, 0.5 * height, 0],
                      [0, 0, 1, 0], [0, 0, 0, 1]], dtype=torch.float32)
    return K.expand(batch, 4, 4).clone()


def random_batch(batch: int = 2, height: int = 96, width: int = 320, frame_ids=(0, -1, 1), num_scales: int = 4,
                 num_classes: int = 19, seed: int = 0) -> dict:
    """A batch with Monodepth2's keys and random content."""
    g = torch.Generator().manual_seed(seed)
    inputs = {}
    for f in frame_ids:
        for s in range(num_scales):
            image = torch.rand(batch, 3, height // 2 ** s, width // 2 ** s, generator=g)
            inputs[("color", f, s)] = image
            inputs[("color_aug", f, s)] = image.clone()
    K = make_intrinsics(batch, height, width)
    inputs[("K", 0)] = K
    inputs[("inv_K", 0)] = torch.linalg.inv(K)
    inputs[("seg", 0, 0)] = torch.randint(0, num_classes, (batch, 1, height, width), generator=g)
    return inputs
