"""Small helpers shared by every command: the project's errors, the one-line CLI guard, logging, --device.

Errors: an ``InputError`` names the file, split line or option at fault; a ``TrainingError`` says why
a run stopped and where its last good state is. Commands run ``main`` through ``run_cli``: such
errors print ``error: <message>`` to stderr and exit with ``EXIT_ERROR``, without a traceback.
Beside them: files written whole and what the project owns (files.py), OS file locks (locks.py), exported
programs (programs.py), processes (processes.py), the machine's name (machine.py), colour maps (colormap.py).
"""

from __future__ import annotations

import argparse
import logging
import os
import random
import socket
import sys
from typing import Callable, Sequence

import numpy as np
import torch

logger = logging.getLogger(__name__)

PROJECT_DIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))  # the repository's root
UINT8_MAX = 255.0  # images: uint8 0..255 <-> float 0..1
IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp")  # image files the tools pick up from folders
HOST = socket.gethostname()  # recorded by writers of temporary files and by run locks


# ------------------------------------------------------------------------------------------------
# errors
# ------------------------------------------------------------------------------------------------
EXIT_ERROR = 2  # as argparse's usage errors
WORKER_TRACEBACK_MARK = (
    "Original Traceback"  # DataLoader re-raises worker errors with their traceback in the text
)


class ProjectError(Exception):
    """An error whose message is the whole story: reported without a traceback."""


class InputError(ProjectError, ValueError):
    """Bad input data or options: a missing or broken file, a malformed split line, a wrong count."""


class MissingFileError(InputError, FileNotFoundError):
    """A file or folder that is not there (also a ``FileNotFoundError``)."""


class UnwritableError(InputError, OSError):
    """An output that cannot be written: a folder or file in the way, a read-only or full disk (also an
    ``OSError``)."""


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
    logging.basicConfig(
        level=level if rank == 0 else logging.WARNING,
        stream=sys.stderr,
        force=True,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        datefmt="%H:%M:%S",
    )


def sec_to_hm_str(seconds: float) -> str:
    """Seconds -> '01h02m03s'."""
    seconds = int(seconds)
    return f"{seconds // 3600:02d}h{seconds // 60 % 60:02d}m{seconds % 60:02d}s"


def seed_everything(seed: int) -> None:
    """Seed Python, NumPy and torch (all devices)."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


# ------------------------------------------------------------------------------------------------
# command lines: every command's --device, --help with defaults
# ------------------------------------------------------------------------------------------------
DEVICE_TYPES = ("cpu", "cuda", "mps")  # what --device may name (torch parses many more that cannot train)


def device_option(value: str) -> str:
    """argparse type of every command's ``--device``: cpu, cuda, cuda:N or mps (availability:
    ``pick_device``)."""
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
    parser.add_argument(
        "--device",
        type=device_option,
        default=None,
        help="cpu, cuda, cuda:N or mps; default cuda when available",
    )


def pick_device(device: str | None = None) -> torch.device:
    """The device a command runs on: the one named (checked), else CUDA when available, else the CPU."""
    if device is None:
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    chosen = torch.device(device)
    if chosen.type == "cuda" and not torch.cuda.is_available():
        raise InputError(f"--device {device}: no CUDA device is available here (use --device cpu)")
    if chosen.type == "cuda" and chosen.index is not None and chosen.index >= torch.cuda.device_count():
        raise InputError(
            f"--device {device}: this machine has {torch.cuda.device_count()} CUDA device(s), numbered from 0"
        )
    if chosen.type == "mps" and not torch.backends.mps.is_available():
        raise InputError(f"--device {device}: no MPS device is available here (use --device cpu)")
    return chosen
