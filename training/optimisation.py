"""How the weights are updated: Adam, its learning-rate schedule, and the gradient scaler that the
step's backward and optimizer step go through (enabled by ``--amp fp16`` only; otherwise a pass-through)."""

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
