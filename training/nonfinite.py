"""The non-finite guard: a step whose loss, sampling grids or gradients are not finite updates nothing.

Off CUDA the loss and grids are checked before the backward pass, which they would crash
(grid_sample's CPU backward segfaults on NaN coordinates, pytorch/pytorch#24823); on CUDA, whose
kernel clamps NaN coordinates, one check after it covers all three (one host read per step). The
grids are checked where the model returns them (not under DataParallel). ``--max_nonfinite_steps``
such steps in a row stop the run with its last good state saved.
"""

from __future__ import annotations

import logging
import math
from typing import Callable

import torch
from torch import nn

from training import optimisation
from utils import TrainingError

logger = logging.getLogger(__name__)

GRID_KEY = "sample"  # model.py's outputs ("sample", frame, scale): the view synthesis' sampling grids


class NonfiniteGuard:
    """Runs the backward pass between the checks, skips bad steps and counts them (in a row, in all)."""

    def __init__(
        self,
        model: nn.Module,
        scaler: torch.amp.GradScaler,
        device: torch.device,
        agree: Callable[[torch.Tensor], bool],
        distributed: bool,
        max_in_row: int,
    ) -> None:
        self.model, self.scaler, self.device = model, scaler, device
        self.agree = agree  # a flag -> whether it is set on any process (so that all skip together)
        self.distributed, self.max_in_row = distributed, max_in_row
        self.in_row = self.total = 0

    def backward(self, loss: torch.Tensor, outputs: dict, step: int) -> bool:
        """The backward pass of ``loss`` unless it would harm; whether the optimizer may step."""
        forward_bad = self.forward_bad(loss, outputs)
        if self.device.type != "cuda" and self.agree(forward_bad):
            return self.skip(step, self.forward_problem(loss))
        optimisation.backward(loss, self.scaler)
        if self.agree(forward_bad | self.gradients_bad()):
            return self.skip(step, self.forward_problem(loss) if bool(forward_bad) else "a gradient")
        self.in_row = 0
        return True

    def forward_bad(self, loss: torch.Tensor, outputs: dict) -> torch.Tensor:
        """Whether the loss or a sampling grid in ``outputs`` is not finite (a bool on the device)."""
        bad = ~torch.isfinite(loss.detach())
        grids = [
            value.detach() for key, value in outputs.items() if isinstance(key, tuple) and key[0] == GRID_KEY
        ]
        if grids:
            bad = bad | ~torch.stack([torch.isfinite(grid).all() for grid in grids]).all()
        return bad

    def forward_problem(self, loss: torch.Tensor) -> str:
        """What was not finite in a forward pass that ``forward_bad`` (agreed by all processes) flagged."""
        value = loss.item()
        if not math.isfinite(value):
            return f"the loss ({value})"
        return "a sampling grid" + (" (or another process's loss)" if self.distributed else "")

    def gradients_bad(self) -> torch.Tensor:
        """Whether a gradient is not finite (a bool on the device; identical on every DDP process).
        Under fp16 autocast the gradient scaler makes this check itself: always False there."""
        if self.scaler.is_enabled():
            return torch.zeros((), dtype=torch.bool, device=self.device)
        grads = [p.grad for p in self.model.parameters() if p.grad is not None]
        return ~torch.isfinite(torch.nn.utils.get_total_norm(grads, norm_type=math.inf))

    def skip(self, step: int, problem: str) -> bool:
        """Count a skipped step (the weights and the optimizer's state stay as they were); False."""
        self.in_row += 1
        self.total += 1
        logger.warning(
            "step %d: %s is not finite, step skipped (%d in a row, %d in all)",
            step,
            problem,
            self.in_row,
            self.total,
        )
        return False

    def stop_if_too_many(self, step: int, save: Callable[[], str]) -> None:
        """After ``--max_nonfinite_steps`` bad steps in a row: save the last good state, stop the run."""
        if self.in_row >= self.max_in_row:
            path = save()
            raise TrainingError(
                f"the loss, a sampling grid or a gradient was not finite for {self.in_row} steps in a row "
                f"(steps {step - self.in_row}..{step - 1}, --max_nonfinite_steps {self.max_in_row}); "
                f"the last good state is saved in {path}"
            )

    def state(self) -> dict:
        """The counts, as a training-state checkpoint stores them."""
        return {"nonfinite_total": self.total, "nonfinite_in_row": self.in_row}

    def load_state(self, state: dict) -> None:
        """Restore the counts from a training-state checkpoint."""
        self.total, self.in_row = state["nonfinite_total"], state["nonfinite_in_row"]
