"""Where a run is: the training loop's counters in one object, which a training-state checkpoint stores
(training/resume.py) beside the weights, the optimizer and the schedule."""

from __future__ import annotations

import dataclasses
import math
import uuid

ADDED_SINCE = ("ended_part_way", "run_id")  # absent from older checkpoints: these keep their value here


def new_run_id() -> str:
    """A fresh run id (a resumed run keeps its checkpoint's: rotation deletes only the run's own files)."""
    return uuid.uuid4().hex


@dataclasses.dataclass
class LoopState:
    """The loop's counters; ``state_dict`` gives them under the keys a training-state checkpoint uses."""

    epoch: int = 0  # the epoch being trained (in a checkpoint: the epoch to train next)
    batch_in_epoch: int = 0  # batches of ``epoch`` already trained (a resumed epoch skips them)
    step: int = 0  # optimizer steps tried so far (skipped non-finite ones included)
    ended_part_way: bool = False  # the step budget ended ``epoch`` part-way and its end was done (saved)
    best_val_loss: float = math.inf
    nonfinite_total: int = 0  # steps skipped for a non-finite value, in all
    nonfinite_in_row: int = 0  # ... and in a row up to now
    run_id: str = dataclasses.field(default_factory=new_run_id)

    def state_dict(self) -> dict:
        """The counters by name (plain Python values: ``torch.load(weights_only=True)`` reads them)."""
        return dataclasses.asdict(self)

    def load_state_dict(self, state: dict) -> None:
        """Restore the counters from a checkpoint's dict (other keys ignored; see ``ADDED_SINCE``)."""
        for field in dataclasses.fields(self):
            if field.name in state or field.name not in ADDED_SINCE:
                setattr(self, field.name, state[field.name])
        self.ended_part_way = bool(self.ended_part_way)

    def after_epoch(self) -> LoopState:
        """The state as saved once ``epoch`` is complete: the next epoch, none of its batches done."""
        return dataclasses.replace(self, epoch=self.epoch + 1, batch_in_epoch=0)
