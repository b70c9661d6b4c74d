"""The run folder ``<log_dir>/<model_name>``: one live run at a time, and never a fresh run over another's files.

``claim`` takes the folder's lock (``utils.RunLock``: a second run is refused while the first
lives), clears what killed writers left there, and checks what the folder holds against what the
run is asked to do:

- a fresh run needs a folder without a run in it (checkpoints, model folders, ``opt.json``, event
  files); ``--overwrite`` first moves such a run to ``<model_name>.replaced-<time>`` beside it;
- ``--resume`` continues the run there; with no checkpoint yet it starts fresh, unless model
  folders are there (a run whose checkpoints are gone: refused);
- ``--resume CHECKPOINT`` into a folder holding a run must continue that run: CHECKPOINT is one
  of its checkpoints and none goes further.
"""
from __future__ import annotations

import argparse
import glob
import logging
import os
import time

import options
import utils
from checkpoints import training_state
from fileio.atomic import is_temporary, remove_stale_temporaries
from utils import InputError

logger = logging.getLogger(__name__)

MODELS_DIR = "models"
EVENT_DIRS = ("train", "val")  # TensorBoard folders of a run
REPLACED_SUFFIX = ".replaced-"
REPLACED_TIME_FORMAT = "%Y%m%d-%H%M%S"


def model_folders(run_path: str) -> list[str]:
    """The ``models/weights_*`` folders of a run."""
    return sorted(p for p in glob.glob(os.path.join(run_path, MODELS_DIR, "weights_*"))
                  if os.path.isdir(p) and not is_temporary(p))


def run_contents(run_path: str) -> list[str]:
    """What a run left in the folder (relative paths): checkpoints, model folders, opt.json, event files."""
    found = training_state.list_checkpoints(training_state.checkpoint_dir(run_path)) + model_folders(run_path)
    found += glob.glob(os.path.join(run_path, MODELS_DIR, "opt.json"))
    found += [p for d in EVENT_DIRS for p in sorted(glob.glob(os.path.join(run_path, d, "events.*")))]
    return [os.path.relpath(p, run_path) for p in found]


def _listing(names: list[str], shown: int = 3) -> str:
    return ", ".join(names[:shown]) + (f" and {len(names) - shown} more" if len(names) > shown else "")


def move_aside(run_path: str) -> str:
    """Move everything in the run folder but its lock to a new ``<run>.replaced-<time>`` beside it; return that."""
    stamp = time.strftime(REPLACED_TIME_FORMAT)
    target, n = f"{run_path}{REPLACED_SUFFIX}{stamp}", 1
    while os.path.lexists(target):
        n += 1
        target = f"{run_path}{REPLACED_SUFFIX}{stamp}-{n}"
    os.makedirs(target)
    for name in sorted(os.listdir(run_path)):
        if name != utils.LOCK_FILE:
            os.replace(os.path.join(run_path, name), os.path.join(target, name))
    return target


def check_resume_target(run_path: str, checkpoint: str, contents: list[str]) -> None:
    """``--resume CHECKPOINT`` into a folder that holds a run must continue it (see the module's text)."""
    if not os.path.isfile(checkpoint):
        raise utils.MissingFileError(f"--resume {checkpoint}: not found")
    if not contents:
        return
    own = training_state.list_checkpoints(training_state.checkpoint_dir(run_path))
    same = [p for p in own if os.path.realpath(p) == os.path.realpath(checkpoint)]
    later = [os.path.basename(p) for p in own if training_state.step_of(p) > (training_state.step_of(checkpoint) or -1)]
    if not same or later:
        why = (f"the run in {run_path} goes further ({_listing(later)})" if same
               else f"{run_path} holds another run ({_listing(contents)})")
        raise InputError(f"--resume {checkpoint}: {why}; resume into a new folder with another --model_name (the "
                         f"run in {run_path} stays as it is)")


def check_contents(run_path: str, opts: argparse.Namespace) -> None:
    """Refuse what would write a fresh run over the run in ``run_path``; move it aside for ``--overwrite``."""
    contents = run_contents(run_path)
    if opts.overwrite:
        if contents:
            logger.warning("--overwrite: moved the earlier run in %s (%s) to %s", run_path, _listing(contents),
                           move_aside(run_path))
    elif opts.resume is None:
        if contents:
            raise InputError(f"{run_path} already holds a run ({_listing(contents)}): continue it with --resume, "
                             f"give another --model_name, or start afresh with --overwrite (which moves it aside)")
    elif opts.resume == options.RESUME_LATEST:
        checkpoints = training_state.list_checkpoints(training_state.checkpoint_dir(run_path))
        if not checkpoints and model_folders(run_path):
            raise InputError(f"--resume: {run_path} holds model folders ({_listing(model_folders(run_path))}) but no "
                             f"checkpoint to resume from; start a new run from one with --load_weights_folder and "
                             f"another --model_name, or start afresh here with --overwrite")
    else:
        check_resume_target(run_path, opts.resume, contents)


def claim(run_path: str, opts: argparse.Namespace) -> utils.RunLock:
    """Lock the run folder for this run, clear killed writers' leftovers and check its contents (module text).

    Problems writing there (read-only, full, a file in the way) raise InputError naming the path.
    """
    try:
        os.makedirs(run_path, exist_ok=True)
        lock = utils.RunLock(run_path).acquire()
    except OSError as err:
        raise InputError(f"cannot write the run folder {run_path}: {err.strerror or err}") from err
    try:
        for action in remove_stale_temporaries(run_path):
            logger.info("%s", action)
        check_contents(run_path, opts)
    except BaseException:
        lock.release()
        raise
    return lock
