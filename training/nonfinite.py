"""Non-finite values: a step whose loss, sampling grids or gradients are not finite on some process updates
nothing; ``--max_nonfinite_steps`` of them in a row stop the run (the checks and why: docs/training.md)."""

from __future__ import annotations

import logging
import math
from typing import Callable

import torch
from torch import nn

from training import distributed
from training.loop_state import LoopState
from utils import TrainingError
from utils.processes import Runtime

logger = logging.getLogger(__name__)

GRID_KEY = "sample"  # model.py's outputs ("sample", frame, scale): the view synthesis' sampling grids


def forward_not_finite(loss: torch.Tensor, outputs: dict) -> torch.Tensor:
    """Whether the loss or a sampling grid in ``outputs`` is not finite (a bool on the device)."""
    bad = ~torch.isfinite(loss.detach())
    grids = [
        value.detach() for key, value in outputs.items() if isinstance(key, tuple) and key[0] == GRID_KEY
    ]
    if grids:
        bad = bad | ~torch.stack([torch.isfinite(grid).all() for grid in grids]).all()
    return bad


def gradients_not_finite(
    model: nn.Module, scaler: torch.amp.GradScaler, device: torch.device
) -> torch.Tensor:
    """Whether a gradient is not finite (a bool on the device; identical on every DDP process).
    Under fp16 autocast the gradient scaler makes this check itself: always False there."""
    if scaler.is_enabled():
        return torch.zeros((), dtype=torch.bool, device=device)
    grads = [p.grad for p in model.parameters() if p.grad is not None]
    return ~torch.isfinite(torch.nn.utils.get_total_norm(grads, norm_type=math.inf))


class NonfiniteChecks:
    """The checks of a training step (each agreed by every process) and the count of skipped steps."""

    def __init__(
        self,
        model: nn.Module,
        scaler: torch.amp.GradScaler,
        runtime: Runtime,
        device: torch.device,
        max_in_row: int,
    ) -> None:
        self.model, self.scaler, self.runtime, self.device = model, scaler, runtime, device
        self.max_in_row = max_in_row  # --max_nonfinite_steps

    def before_backward(self, loss: torch.Tensor, outputs: dict) -> str | None:
        """Off CUDA: the loss or a sampling grid not finite on some process (the backward pass would crash
        on it), else None. On CUDA: None (``after_backward`` checks them, with one host read)."""
        if self.device.type == "cuda":
            return None
        return self.forward_problem(loss) if self.on_any_process(forward_not_finite(loss, outputs)) else None

    def after_backward(self, loss: torch.Tensor, outputs: dict) -> str | None:
        """A gradient (on CUDA also the loss or a sampling grid) not finite on some process, else None."""
        if self.device.type == "cuda":
            forward_bad = forward_not_finite(loss, outputs)
        else:  # checked before the backward pass
            forward_bad = torch.zeros((), dtype=torch.bool, device=self.device)
        if not self.on_any_process(forward_bad | gradients_not_finite(self.model, self.scaler, self.device)):
            return None
        return self.forward_problem(loss) if bool(forward_bad) else "a gradient"

    def on_any_process(self, bad: torch.Tensor) -> bool:
        """Whether ``bad`` is set on any process (one all-reduce under DDP, so that all skip together)."""
        return distributed.any_process([bad], self.runtime, self.device)[0]

    def forward_problem(self, loss: torch.Tensor) -> str:
        """What was not finite in a forward pass that some process flagged."""
        value = loss.item()
        if not math.isfinite(value):
            return f"the loss ({value})"
        return "a sampling grid" + (" (or another process's loss)" if self.runtime.distributed else "")

    def count(self, loop: LoopState, problem: str | None) -> None:
        """Count a step: one skipped for ``problem`` is logged and counted (in a row, in all); one taken
        (``problem`` None) ends the row."""
        if problem is None:
            loop.nonfinite_in_row = 0
            return
        loop.nonfinite_in_row += 1
        loop.nonfinite_total += 1
        logger.warning(
            "step %d: %s is not finite, step skipped (%d in a row, %d in all)",
            loop.step,
            problem,
            loop.nonfinite_in_row,
            loop.nonfinite_total,
        )

    def stop_if_too_many(self, loop: LoopState, save: Callable[[], str]) -> None:
        """After ``--max_nonfinite_steps`` bad steps in a row: save the last good state, stop the run."""
        in_row = loop.nonfinite_in_row
        if in_row >= self.max_in_row:
            path = save()
            raise TrainingError(
                f"the loss, a sampling grid or a gradient was not finite for {in_row} steps in a row "
                f"(steps {loop.step - in_row}..{loop.step - 1}, --max_nonfinite_steps {self.max_in_row}); "
                f"the last good state is saved in {path}"
            )
