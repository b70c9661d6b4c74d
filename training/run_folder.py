"""The run folder ``<log_dir>/<model_name>``: one live run at a time, never a fresh run over another's
files, only the run's own entries cleaned or moved aside (the project's marker, utils/files.py), and a
failed write ends the run with one line (the rules: docs/training.md)."""

from __future__ import annotations

import argparse
import contextlib
import glob
import logging
import os
import time
from typing import Callable, Iterator

import torch.distributed as dist

import utils
from checkpoints import training_state
from utils import InputError, TrainingError
from utils.files import OWNER_MARKER, is_temporary, mark_owned, owned, remove_stale_temporaries
from utils.locks import FileLock
from utils.processes import Runtime

logger = logging.getLogger(__name__)

MODELS_DIR = "models"
EVENT_DIRS = ("train", "val")  # TensorBoard folders of a run
REPLACED_SUFFIX = ".replaced-"
REPLACED_TIME_FORMAT = "%Y%m%d-%H%M%S"
LOCK_FILE = "run.lock"
# what runs write at the top of their folder: the only entries --overwrite moves aside
RUN_ENTRIES = (MODELS_DIR, *EVENT_DIRS, training_state.CHECKPOINT_DIR, LOCK_FILE, OWNER_MARKER)
ResumeCheck = Callable[[str, str, list], None]  # (run folder, --resume, its contents): training/resume.py


RUN_BUSY_HINT = "wait for it to end, or give another --model_name or --log_dir"


class RunLock(FileLock):
    """The lock of a run folder (``<folder>/run.lock``): one live run at a time."""

    def __init__(self, folder: str) -> None:
        super().__init__(folder, LOCK_FILE, RUN_BUSY_HINT)


def model_folders(run_path: str) -> list[str]:
    """The ``models/weights_*`` folders of a run."""
    return sorted(
        p
        for p in glob.glob(os.path.join(run_path, MODELS_DIR, "weights_*"))
        if os.path.isdir(p) and not is_temporary(p)
    )


def run_contents(run_path: str) -> list[str]:
    """What a run left in the folder (relative paths): checkpoints, model folders, opt.json, event files."""
    found = training_state.list_checkpoints(training_state.checkpoint_dir(run_path)) + model_folders(run_path)
    found += glob.glob(os.path.join(run_path, MODELS_DIR, "opt.json"))
    found += [p for d in EVENT_DIRS for p in sorted(glob.glob(os.path.join(run_path, d, "events.*")))]
    return [os.path.relpath(p, run_path) for p in found]


def listing(names: list[str], shown: int = 3) -> str:
    """The first ``shown`` names, and how many more."""
    return ", ".join(names[:shown]) + (f" and {len(names) - shown} more" if len(names) > shown else "")


def move_aside(run_path: str) -> str:
    """Move the run's own entries in the run folder (``RUN_ENTRIES`` but its lock and marker) to a new,
    marked ``<run>.replaced-<time>`` beside it; return that. Other entries stay, and are logged."""
    stamp = time.strftime(REPLACED_TIME_FORMAT)
    target, n = f"{run_path}{REPLACED_SUFFIX}{stamp}", 1
    while os.path.lexists(target):
        n += 1
        target = f"{run_path}{REPLACED_SUFFIX}{stamp}-{n}"
    os.makedirs(target)
    mark_owned(target)
    for name in sorted(os.listdir(run_path)):
        if name in (LOCK_FILE, OWNER_MARKER):
            continue
        if name in RUN_ENTRIES:
            os.replace(os.path.join(run_path, name), os.path.join(target, name))
        else:
            logger.info("--overwrite: left %s where it is (no run writes it)", os.path.join(run_path, name))
    return target


def adopt(run_path: str, fresh: bool) -> None:
    """Mark the run folder as the project's when it was made ``fresh`` for this run (new or empty) or holds
    only what runs write (an older version's run); a folder with other entries stays unmarked."""
    if owned(run_path):
        return
    if fresh or set(os.listdir(run_path)) <= set(RUN_ENTRIES):
        mark_owned(run_path)
    else:
        logger.info(
            "%s holds entries no run writes: it is used as it is, and nothing in it is cleaned", run_path
        )


def check_contents(run_path: str, opts: argparse.Namespace, check_resume: ResumeCheck) -> None:
    """Refuse what would write a fresh run over the run in ``run_path``; move it aside for ``--overwrite``."""
    contents = run_contents(run_path)
    if opts.overwrite:
        if contents:
            logger.warning(
                "--overwrite: moved the earlier run in %s (%s) to %s",
                run_path,
                listing(contents),
                move_aside(run_path),
            )
    elif opts.resume is None:
        if contents:
            raise InputError(
                f"{run_path} already holds a run ({listing(contents)}): continue it with --resume, "
                f"give another --model_name, or start afresh with --overwrite (which moves it aside)"
            )
    else:
        check_resume(run_path, opts.resume, contents)


def claim(run_path: str, opts: argparse.Namespace, check_resume: ResumeCheck) -> RunLock:
    """Lock the run folder for this run, clear killed writers' leftovers and check its contents (module text).

    Problems writing there (read-only, full, a file in the way) raise InputError naming the path.
    """
    fresh = not os.path.lexists(run_path) or (os.path.isdir(run_path) and not os.listdir(run_path))
    try:
        os.makedirs(run_path, exist_ok=True)
        lock = RunLock(run_path).acquire()
    except OSError as err:
        raise InputError(f"cannot write the run folder {run_path}: {err.strerror or err}") from err
    try:
        try:
            adopt(run_path, fresh)
        except OSError as err:
            raise InputError(f"cannot write the run folder {run_path}: {err.strerror or err}") from err
        for action in remove_stale_temporaries(run_path):
            logger.info("%s", action)
        check_contents(run_path, opts, check_resume)
    except BaseException:
        lock.release()
        raise
    return lock


def claim_for_all(
    run_path: str, opts: argparse.Namespace, runtime: Runtime, check_resume: ResumeCheck
) -> RunLock | None:
    """Rank 0 claims the run folder (``claim``); every process learns the outcome (its lock or its error)."""
    lock, problem = None, None
    if runtime.is_main:
        try:
            lock = claim(run_path, opts, check_resume)
        except InputError as err:
            problem = err
    if runtime.distributed:
        message = [str(problem) if problem else None]
        dist.broadcast_object_list(message, src=0)
        if message[0] and problem is None:
            problem = InputError(message[0])
    if problem:
        raise problem
    return lock


@contextlib.contextmanager
def writing(path: str, last_state: str | None) -> Iterator[None]:
    """A failed write (read-only or full --log_dir) ends the run in a line naming the path and last state."""
    try:
        yield
    except OSError as err:
        last = (
            f"the last complete training state is {last_state}"
            if last_state
            else "no training state was saved yet"
        )
        problem = (
            str(err)
            if isinstance(err, utils.UnwritableError)
            else f"cannot write {err.filename or path}: {err.strerror or err}"
        )
        raise TrainingError(f"{problem}; {last}") from err
