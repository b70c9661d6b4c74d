"""Training-state checkpoints: ``<run>/checkpoints/step_XXXXXXXX.pth``.

One file holds every network, the optimizer, the learning-rate schedule, the epoch, the batches
done in it, the global step, the random states and the options; written to a temporary name and
renamed, the newest ``keep`` kept. Read with ``weights_only=True``: a checkpoint can never run code.
"""
from __future__ import annotations

import glob
import logging
import os
import re

from checkpoints.files import CheckpointError, atomic_save, read_state

logger = logging.getLogger(__name__)

CHECKPOINT_DIR = "checkpoints"
CHECKPOINT_PATTERN = re.compile(r"^step_(\d+)\.pth$")


def checkpoint_dir(run_path: str) -> str:
    """Folder of a run's training-state checkpoints."""
    return os.path.join(run_path, CHECKPOINT_DIR)


def list_checkpoints(folder: str) -> list[str]:
    """Complete checkpoints of a folder (temporary files ignored), oldest first."""
    found = []
    for path in glob.glob(os.path.join(folder, "step_*.pth")):
        match = CHECKPOINT_PATTERN.match(os.path.basename(path))
        if match:
            found.append((int(match.group(1)), path))
    return [path for _, path in sorted(found)]


def save_checkpoint(folder: str, step: int, state: dict, keep: int) -> str:
    """Write ``step_XXXXXXXX.pth`` atomically, then delete all but the newest ``keep`` checkpoints."""
    os.makedirs(folder, exist_ok=True)
    path = os.path.join(folder, f"step_{step:08d}.pth")
    atomic_save(state, path)
    for old in list_checkpoints(folder)[:-keep] if keep > 0 else []:
        os.remove(old)
    return path


def load_checkpoint(path: str) -> dict:
    """A training-state checkpoint (``weights_only``: it can never run code)."""
    state = read_state(path)
    if not isinstance(state, dict) or "networks" not in state:
        raise CheckpointError(f"{path} is not a training-state checkpoint")
    return state


def latest_checkpoint(folder: str) -> tuple[str, dict] | None:
    """(path, state) of the newest checkpoint that loads; unreadable ones are reported and skipped."""
    for path in reversed(list_checkpoints(folder)):
        try:
            return path, load_checkpoint(path)
        except CheckpointError as err:
            logger.warning("skipping %s: %s", path, err)
    return None
