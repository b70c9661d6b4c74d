"""How the weights are updated: Adam, its learning-rate schedule, and backward and step through the
gradient scaler (enabled by fp16 autocast only, ``--amp fp16``; otherwise it passes through)."""

from __future__ import annotations

import argparse

import torch
from torch import nn


def adam(model: nn.Module, opts: argparse.Namespace) -> torch.optim.Adam:
    """Adam over every parameter at ``--learning_rate``, as the authors train."""
    return torch.optim.Adam(model.parameters(), opts.learning_rate)


def schedule(
    optimizer: torch.optim.Optimizer, opts: argparse.Namespace
) -> torch.optim.lr_scheduler.MultiStepLR:
    """The learning rate times ``--lr_gamma`` at each of ``--lr_milestones`` (epochs)."""
    return torch.optim.lr_scheduler.MultiStepLR(optimizer, opts.lr_milestones, opts.lr_gamma)


def gradient_scaler(device: torch.device, amp: str) -> torch.amp.GradScaler:
    """The gradient scaler fp16 autocast needs; a pass-through for any other ``--amp``."""
    return torch.amp.GradScaler(device.type, enabled=amp == "fp16")


def backward(loss: torch.Tensor, scaler: torch.amp.GradScaler) -> None:
    """Backward pass (of the scaled loss under fp16 autocast)."""
    scaler.scale(loss).backward()


def step(optimizer: torch.optim.Optimizer, scaler: torch.amp.GradScaler) -> None:
    """Optimizer step (through the gradient scaler under fp16 autocast)."""
    scaler.step(optimizer)
    scaler.update()
