"""Small helpers shared by every command: the project's errors, the one-line CLI guard, logging, --device.

Errors: an ``InputError`` names the file, split line or option at fault; a ``TrainingError`` says why
a run stopped and where its last good state is. Commands run ``main`` through ``run_cli``: such
errors print ``error: <message>`` to stderr and exit with ``EXIT_ERROR``, without a traceback.
Files written whole are ``fileio/``, processes and machines ``runtime/``, colour maps ``visualisation/``.
"""
from __future__ import annotations

import argparse
import fcntl
import logging
import os
import random
import socket
import sys
import time
import weakref
from typing import TYPE_CHECKING, Callable, Sequence

import numpy as np
import torch
import torch.distributed as dist

from visualisation.colormap import colormap

if TYPE_CHECKING:
    from runtime.processes import Runtime

logger = logging.getLogger(__name__)

PROJECT_DIR = os.path.dirname(os.path.abspath(__file__))  # the repository's root
UINT8_MAX = 255.0  # images: uint8 0..255 <-> float 0..1
IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp")  # image files the tools pick up from folders
HOST = socket.gethostname()  # recorded by writers of temporary files and by run locks


# ------------------------------------------------------------------------------------------------
# errors
# ------------------------------------------------------------------------------------------------
EXIT_ERROR = 2  # as argparse's usage errors
WORKER_TRACEBACK_MARK = "Original Traceback"  # DataLoader re-raises worker errors with their traceback in the text


class ProjectError(Exception):
    """An error whose message is the whole story: reported without a traceback."""


class InputError(ProjectError, ValueError):
    """Bad input data or options: a missing or broken file, a malformed split line, a wrong count."""


class MissingFileError(InputError, FileNotFoundError):
    """A file or folder that is not there (also a ``FileNotFoundError``)."""


class UnwritableError(InputError, OSError):
    """An output that cannot be written: a folder or file in the way, a read-only or full disk (also an ``OSError``)."""


class DependencyError(ProjectError, ImportError):
    """An optional package that is not installed; the message says how to install it."""


class TrainingError(ProjectError, RuntimeError):
    """A run that cannot go on (e.g. non-finite losses); the message says where its last state is."""


def error_message(err: BaseException) -> str:
    """The message of an error, without the worker traceback that DataLoader puts in front of it."""
    text = str(err)
    if WORKER_TRACEBACK_MARK in text:
        marker = f"{type(err).__name__}: "
        if marker in text:
            text = text.rsplit(marker, 1)[1].strip()
    return text


def run_cli(main: Callable[[Sequence[str] | None], int], argv: Sequence[str] | None = None) -> int:
    """Run a tool's ``main``; report the project's errors as ``error: ...`` on stderr with exit code 2."""
    try:
        return main(argv)
    except ProjectError as err:
        sys.stderr.write(f"error: {error_message(err)}\n")
        return EXIT_ERROR


def setup_logging(rank: int = 0, level: int = logging.INFO) -> None:
    """Log to stderr with time stamps; ranks other than 0 only report warnings."""
    logging.basicConfig(level=level if rank == 0 else logging.WARNING, stream=sys.stderr, force=True,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s", datefmt="%H:%M:%S")


def sec_to_hm_str(seconds: float) -> str:
    """Seconds -> '01h02m03s'."""
    seconds = int(seconds)
    return f"{seconds // 3600:02d}h{seconds // 60 % 60:02d}m{seconds % 60:02d}s"


def seed_everything(seed: int) -> None:
    """Seed Python, NumPy and torch (all devices)."""
    random.seed(seed)
    np.random.seed(seed % 2 ** 32)
    torch.manual_seed(seed)


# ------------------------------------------------------------------------------------------------
# command lines: every command's --device, --help with defaults
# ------------------------------------------------------------------------------------------------
DEVICE_TYPES = ("cpu", "cuda", "mps")  # what --device may name (torch parses many more that cannot train)


def device_option(value: str) -> str:
    """argparse type of every command's ``--device``: cpu, cuda, cuda:N or mps (availability: ``pick_device``)."""
    try:
        device = torch.device(value)
    except RuntimeError:
        device = None
    if device is None or device.type not in DEVICE_TYPES:
        raise argparse.ArgumentTypeError(f"expected cpu, cuda, cuda:N or mps, got {value!r}")
    return value


class HelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """--help with each option's default, except None (the help text says what happens without the option)."""

    def _get_help_string(self, action: argparse.Action) -> str | None:
        return action.help if action.default is None else super()._get_help_string(action)


def add_device_option(parser: argparse.ArgumentParser | argparse._ArgumentGroup) -> None:
    """Every command's ``--device`` (checked by ``device_option``; None picks CUDA when available)."""
    parser.add_argument("--device", type=device_option, default=None,
                        help="cpu, cuda, cuda:N or mps; default cuda when available")


def pick_device(device: str | None = None) -> torch.device:
    """The device a command runs on: the one named (checked), else CUDA when available, else the CPU."""
    if device is None:
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    chosen = torch.device(device)
    if chosen.type == "cuda" and not torch.cuda.is_available():
        raise InputError(f"--device {device}: no CUDA device is available here (use --device cpu)")
    if chosen.type == "cuda" and chosen.index is not None and chosen.index >= torch.cuda.device_count():
        raise InputError(f"--device {device}: this machine has {torch.cuda.device_count()} CUDA device(s), "
                         f"numbered from 0")
    if chosen.type == "mps" and not torch.backends.mps.is_available():
        raise InputError(f"--device {device}: no MPS device is available here (use --device cpu)")
    return chosen


# ------------------------------------------------------------------------------------------------
# the trainer's own helpers (issue 24: they move to training/)
# ------------------------------------------------------------------------------------------------
def all_reduce_sum(tensor: torch.Tensor, runtime: Runtime) -> torch.Tensor:
    """Sum a tensor over the processes of a distributed run (identity otherwise)."""
    if runtime.distributed:
        tensor = tensor.clone()
        dist.all_reduce(tensor)
    return tensor


def broadcast_buffers(model: torch.nn.Module, runtime: Runtime) -> None:
    """Copy rank 0's buffers (BatchNorm statistics) to every process.

    DistributedDataParallel does this before each forward; after the last one each process holds
    its own statistics, so the epoch ends with this call and every rank holds what rank 0 saves.
    """
    if runtime.distributed:
        for buffer in model.buffers():
            dist.broadcast(buffer, src=0)


LOCK_FILE = "run.lock"
_HELD_LOCKS: "weakref.WeakSet[RunLock]" = weakref.WeakSet()  # this process's run locks (forked workers close them)


class RunLock:
    """An exclusive OS lock (``flock``) on ``<folder>/run.lock``, held for the life of a run.

    The kernel releases it when the holder exits or dies; a second holder is refused with one line
    that names the first (process id, host, start time, as the holder wrote them into the file).
    """

    def __init__(self, folder: str) -> None:
        self.path = os.path.join(folder, LOCK_FILE)
        self.file = None

    def acquire(self) -> "RunLock":
        """Take the lock or raise InputError naming its holder."""
        file = open(self.path, "a+")
        try:
            fcntl.flock(file, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            file.seek(0)
            holder = file.read().strip() or "one that has not said who it is"
            file.close()
            raise InputError(f"{os.path.dirname(self.path)} is in use by another run ({holder}): wait for it to "
                             f"end, or give another --model_name or --log_dir") from None
        file.truncate(0)
        file.write(f"pid {os.getpid()} on host {HOST}, since {time.strftime('%Y-%m-%d %H:%M:%S')}\n")
        file.flush()
        self.file = file
        _HELD_LOCKS.add(self)
        return self

    def release(self) -> None:
        """Let the lock go (the file stays: removing it would race with a process opening it)."""
        if self.file is not None:
            _HELD_LOCKS.discard(self)
            self.file.close()
            self.file = None


def close_inherited_locks() -> None:
    """In a forked child (a loader worker): close the run locks' files it inherited, so that a lock
    dies with the process that took it and not with the last of its children."""
    for lock in list(_HELD_LOCKS):
        lock.release()


def colormap_tensor(values: torch.Tensor) -> torch.Tensor:
    """(1, H, W) or (H, W) tensor -> (3, H, W) float image in [0, 1] for TensorBoard."""
    rgb = colormap(values.detach().float().cpu().squeeze().numpy())
    return torch.from_numpy(rgb).permute(2, 0, 1).float() / 255
