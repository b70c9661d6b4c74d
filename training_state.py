"""What an exact resume needs: the data order of any epoch, training-state checkpoints, stop signals.

Data order: ``ResumableSampler`` is torch's DistributedSampler (one process: one replica), whose
permutation of an epoch comes from a generator seeded with (seed + epoch), so it can be recomputed;
a resumed epoch skips its first batches without loading them. Each index carries a seed that
depends only on (seed, epoch, index), from which the dataset draws the item's augmentation.

Checkpoints: ``<run>/checkpoints/step_XXXXXXXX.pth``, one file holding every network, the optimizer,
the learning-rate schedule, the epoch, the batches done in it, the global step, the random states
and the options; written to a temporary name and renamed, the newest ``keep`` kept.
"""
from __future__ import annotations

import glob
import logging
import os
import random
import re
import signal
import threading

import numpy as np
import torch
from torch.utils.data import DistributedSampler

import checkpoints

logger = logging.getLogger(__name__)

CHECKPOINT_DIR = "checkpoints"
CHECKPOINT_PATTERN = re.compile(r"^step_(\d+)\.pth$")
# options that fix the data order: resuming with other values goes on, but not exactly
DATA_ORDER_OPTIONS = ("batch_size", "seed", "split", "dataset")
STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)
SIGNAL_EXIT_BASE = 128  # a run stopped by signal N exits with 128 + N, as shells report it
AUGMENT_STREAM = 1  # tells the generator of item seeds apart from the permutation's


class ResumableSampler(DistributedSampler):
    """DistributedSampler whose epochs can start after ``skip`` items, yielding ``(index, item seed)``."""

    def __init__(self, dataset, num_replicas: int, rank: int, seed: int) -> None:
        super().__init__(dataset, num_replicas, rank, shuffle=True, seed=seed, drop_last=True)
        self.skip = 0

    def item_seeds(self) -> np.ndarray:
        """One seed per dataset index, a function of (seed, epoch, index) only."""
        rng = np.random.default_rng([self.seed, self.epoch, AUGMENT_STREAM])
        return rng.integers(0, 2 ** 63 - 1, len(self.dataset), dtype=np.int64)

    def __iter__(self):
        seeds = self.item_seeds()
        indices = list(super().__iter__())[self.skip:]
        return iter([(index, int(seeds[index])) for index in indices])

    def __len__(self) -> int:
        return self.num_samples - self.skip


class StopSignal:
    """Turns SIGTERM and SIGINT into a flag that the training loop reads after each step.

    A second SIGINT (Ctrl-C twice) restores the default behaviour and re-raises it; a repeated SIGTERM
    is ignored, so that the state being saved is not cut short.
    """

    def __init__(self) -> None:
        self.signum: int | None = None
        self.previous: dict = {}

    def _handle(self, signum: int, frame) -> None:
        if self.signum is not None:
            if signum == signal.SIGINT:
                self.uninstall()
                signal.raise_signal(signum)
            return
        self.signum = signum
        logger.warning("received %s: the state is saved after this step, then the run stops",
                       signal.Signals(signum).name)

    def install(self) -> "StopSignal":
        """Install the handlers (only possible in the main thread; elsewhere signals keep their default)."""
        if threading.current_thread() is threading.main_thread():
            for signum in STOP_SIGNALS:
                self.previous[signum] = signal.signal(signum, self._handle)
        return self

    def uninstall(self) -> None:
        """Put back the handlers that were there before ``install``."""
        for signum, handler in self.previous.items():
            signal.signal(signum, handler)
        self.previous = {}


class Interrupted(Exception):
    """A run stopped by a signal after saving its state; ``exit_code`` is 128 + the signal number."""

    def __init__(self, signum: int, path: str) -> None:
        super().__init__(f"stopped by {signal.Signals(signum).name}; the state is saved in {path}; "
                         f"continue with --resume")
        self.exit_code = SIGNAL_EXIT_BASE + signum


# ------------------------------------------------------------------------------------------------
# random states
# ------------------------------------------------------------------------------------------------
def rng_states() -> dict:
    """Python's, NumPy's and torch's (CPU and CUDA) generator states, in types ``weights_only`` loads."""
    _, keys, pos, has_gauss, cached = np.random.get_state()
    states = {"python": random.getstate(), "numpy": [torch.from_numpy(keys.astype(np.int64)), pos, has_gauss, cached],
              "torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        states["cuda"] = torch.cuda.get_rng_state_all()
    return states


def set_rng_states(states: dict) -> None:
    """Restore what ``rng_states`` returned."""
    version, internal, gauss = states["python"]
    random.setstate((version, tuple(internal), gauss))
    keys, pos, has_gauss, cached = states["numpy"]
    np.random.set_state(("MT19937", keys.numpy().astype(np.uint32), pos, has_gauss, cached))
    torch.set_rng_state(states["torch"])
    if "cuda" in states and torch.cuda.is_available() and len(states["cuda"]) == torch.cuda.device_count():
        torch.cuda.set_rng_state_all(states["cuda"])


# ------------------------------------------------------------------------------------------------
# checkpoint files
# ------------------------------------------------------------------------------------------------
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
    checkpoints.atomic_save(state, path)
    for old in list_checkpoints(folder)[:-keep] if keep > 0 else []:
        os.remove(old)
    return path


def load_checkpoint(path: str) -> dict:
    """A training-state checkpoint (``weights_only``: it can never run code)."""
    state = checkpoints.read_state(path)
    if not isinstance(state, dict) or "networks" not in state:
        raise checkpoints.CheckpointError(f"{path} is not a training-state checkpoint")
    return state


def latest_checkpoint(folder: str) -> tuple[str, dict] | None:
    """(path, state) of the newest checkpoint that loads; unreadable ones are reported and skipped."""
    for path in reversed(list_checkpoints(folder)):
        try:
            return path, load_checkpoint(path)
        except checkpoints.CheckpointError as err:
            logger.warning("skipping %s: %s", path, err)
    return None
