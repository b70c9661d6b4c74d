"""Training-state checkpoints: ``<run>/checkpoints/step_XXXXXXXX.pth``.

One file holds every network, the optimizer, the learning-rate schedule, the epoch, the batches
done in it, the global step, the random states, the options, the run's id and the SHA-256 of all
that; written to a temporary name and renamed. Rotation keeps the newest ``keep`` of the run's own
checkpoints up to the one just written: a file of another run (another id) or of a later step is
never deleted. Read with ``weights_only=True``: a checkpoint can never run code.
"""

from __future__ import annotations

import glob
import logging
import os
import re

import torch

from checkpoints.files import CheckpointError, atomic_save, read_state

logger = logging.getLogger(__name__)

CHECKPOINT_DIR = "checkpoints"
CHECKPOINT_PATTERN = re.compile(r"^step_(\d+)\.pth$")
RUN_ID_KEY = "run_id"


def checkpoint_dir(run_path: str) -> str:
    """Folder of a run's training-state checkpoints."""
    return os.path.join(run_path, CHECKPOINT_DIR)


def checkpoint_path(folder: str, step: int) -> str:
    """Name of the checkpoint of ``step`` in ``folder``."""
    return os.path.join(folder, f"step_{step:08d}.pth")


def step_of(path: str) -> int | None:
    """The step in a checkpoint's file name (None for other names)."""
    match = CHECKPOINT_PATTERN.match(os.path.basename(path))
    return int(match.group(1)) if match else None


def list_checkpoints(folder: str) -> list[str]:
    """Checkpoint files of a folder (temporary files ignored), oldest step first."""
    found = [(step_of(path), path) for path in glob.glob(os.path.join(folder, "step_*.pth"))]
    return [path for step, path in sorted(found) if step is not None]


def run_id_of(path: str) -> str | None:
    """The run id stored in a checkpoint, read without loading its tensors (None when unreadable or
    absent)."""
    try:
        state = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    except Exception:
        return None
    return state.get(RUN_ID_KEY) if isinstance(state, dict) else None


def save_checkpoint(folder: str, step: int, state: dict, keep: int) -> str:
    """Write ``step_XXXXXXXX.pth`` atomically with its content's SHA-256, then rotate (see the module's
    text)."""
    os.makedirs(folder, exist_ok=True)
    path = checkpoint_path(folder, step)
    atomic_save(state, path, with_digest=True)
    own = [p for p in list_checkpoints(folder) if step_of(p) <= step and run_id_of(p) == state[RUN_ID_KEY]]
    for old in own[:-keep]:
        os.remove(old)
    return path


def load_checkpoint(path: str) -> dict:
    """A training-state checkpoint, its checksum verified (``weights_only``: it can never run code)."""
    state = read_state(path)
    if not isinstance(state, dict) or "networks" not in state:
        raise CheckpointError(f"{path} is not a training-state checkpoint")
    return state


def latest_checkpoint(folder: str) -> tuple[str, dict] | None:
    """(path, state) of the newest checkpoint that loads; damaged ones are reported and skipped.

    Raises CheckpointError, naming each file and what is wrong with it, when there are checkpoints
    but none loads: starting afresh would silently throw the run away.
    """
    damaged = []
    for path in reversed(list_checkpoints(folder)):
        try:
            return path, load_checkpoint(path)
        except CheckpointError as err:
            logger.warning("skipping %s", err)
            damaged.append(str(err))
    if damaged:
        raise CheckpointError(
            f"no checkpoint of {folder} loads ({'; '.join(damaged)}): resume from a copy with "
            f"--resume CHECKPOINT, or start the run again with --overwrite"
        )
    return None
