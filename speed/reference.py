"""The straightforward forms of the two fused loss kernels (Monodepth2's and the authors'), for
side-by-side benchmarks (``tools/benchmark.py --baseline``) and equality tests (tests/test_speed.py)."""

from __future__ import annotations

from contextlib import contextmanager
from typing import Iterator

import torch
import torch.nn.functional as F

import layers


def dssim_reference(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Monodepth2's DSSIM (five separate poolings): the oracle of the fused ``layers.dssim``."""
    x = F.pad(x, (1, 1, 1, 1), mode="reflect")
    y = F.pad(y, (1, 1, 1, 1), mode="reflect")
    mu_x = F.avg_pool2d(x, 3, 1)
    mu_y = F.avg_pool2d(y, 3, 1)
    sigma_x = F.avg_pool2d(x**2, 3, 1) - mu_x**2
    sigma_y = F.avg_pool2d(y**2, 3, 1) - mu_y**2
    sigma_xy = F.avg_pool2d(x * y, 3, 1) - mu_x * mu_y
    n = (2 * mu_x * mu_y + layers.SSIM_C1) * (2 * sigma_xy + layers.SSIM_C2)
    d = (mu_x**2 + mu_y**2 + layers.SSIM_C1) * (sigma_x + sigma_y + layers.SSIM_C2)
    return torch.clamp((1 - n / d) / 2, 0, 1)


def neighbour_cosines_reference(unit: torch.Tensor, kernel_size: int) -> torch.Tensor:
    """The authors' SGT dot products through an ``F.unfold`` copy: the oracle of
    ``layers.neighbour_cosines``."""
    b, c, h, w = unit.shape
    neighbours = F.unfold(unit, kernel_size, padding=kernel_size // 2).view(
        b, c, kernel_size * kernel_size, h, w
    )
    return (neighbours * unit.unsqueeze(2)).sum(1)


@contextmanager
def straightforward_kernels(enabled: bool = True) -> Iterator[None]:
    """Within the block (when ``enabled``), the losses use the straightforward DSSIM and SGT cosines."""
    if not enabled:
        yield
        return
    fused = layers.dssim, layers.neighbour_cosines
    layers.dssim, layers.neighbour_cosines = dssim_reference, neighbour_cosines_reference
    try:
        yield
    finally:
        layers.dssim, layers.neighbour_cosines = fused
