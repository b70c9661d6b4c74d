"""The project's error types, and the command-line guard that reports them as one line, not a traceback.

An ``InputError`` names the file, split line or option at fault; a ``TrainingError`` says why a run
stopped and where its last good state is. Command-line tools run ``main`` through ``run_cli``:
such errors print ``error: <message>`` to stderr and exit with ``EXIT_ERROR``.
"""
from __future__ import annotations

import sys
from typing import Callable, Sequence

EXIT_ERROR = 2  # as argparse's usage errors
WORKER_TRACEBACK_MARK = "Original Traceback"  # DataLoader re-raises worker errors with their traceback in the text


class ProjectError(Exception):
    """An error whose message is the whole story: reported without a traceback."""


class InputError(ProjectError, ValueError):
    """Bad input data or options: a missing or broken file, a malformed split line, a wrong count."""


class MissingFileError(InputError, FileNotFoundError):
    """A file or folder that is not there (also a ``FileNotFoundError``)."""


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
