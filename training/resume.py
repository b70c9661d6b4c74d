"""Resume: which checkpoint, what it holds and how a run continues from it, and which options may change
(the rules, the data order and why: docs/training.md; the file format: checkpoints/training_state.py)."""

from __future__ import annotations

import argparse
import json
import logging
import os
import random
import warnings

import numpy as np
import torch
from torch import nn
from torch.utils.data import DistributedSampler

import options
import utils
from checkpoints import model_folder, training_state
from training import optimisation, run_folder
from training.loop_state import LoopState
from utils import InputError

logger = logging.getLogger(__name__)

FIXED_OPTIONS = ("height", "width")
NETWORK_OPTIONS = ("encoder", "pose_encoder", "num_layers")  # --num_layers is --encoder's alias for ResNets
VERSION_OPTIONS = ("timm_version",)  # recorded, not given: the library that built a timm encoder
SCHEDULE_OPTIONS = ("learning_rate", "lr_milestones", "lr_gamma")
DATA_ORDER_OPTIONS = ("batch_size", "seed", "split", "dataset")
NOT_COMPARED = ("resume", "overwrite")  # how this process was started, not how the run trains
AUGMENT_STREAM = 1  # tells the generator of item seeds apart from the permutation's


def changed_options(saved: dict, opts: argparse.Namespace) -> dict[str, str]:
    """Options whose value differs from the checkpoint's, as ``{name: "--name old -> new"}`` (options the
    checkpoint does not know, added since, are not compared)."""
    return {
        name: f"--{name} {saved[name]} -> {value}"
        for name, value in sorted(vars(opts).items())
        if name in saved and name not in NOT_COMPARED and saved[name] != value
    }


def schedule_changed(saved: dict, opts: argparse.Namespace) -> bool:
    """Whether the learning-rate schedule given differs from the checkpoint's."""
    return any(name in changed_options(saved, opts) for name in SCHEDULE_OPTIONS)


class ResumableSampler(DistributedSampler):
    """DistributedSampler whose epochs can start after ``skip`` items, yielding ``(index, item seed)``."""

    def __init__(self, dataset, num_replicas: int, rank: int, seed: int) -> None:
        super().__init__(dataset, num_replicas, rank, shuffle=True, seed=seed, drop_last=True)
        self.skip = 0

    def item_seeds(self) -> np.ndarray:
        """One seed per dataset index, a function of (seed, epoch, index) only."""
        rng = np.random.default_rng([self.seed, self.epoch, AUGMENT_STREAM])
        return rng.integers(0, 2**63 - 1, len(self.dataset), dtype=np.int64)

    def __iter__(self):
        seeds = self.item_seeds()
        indices = list(super().__iter__())[self.skip :]
        return iter([(index, int(seeds[index])) for index in indices])

    def __len__(self) -> int:
        return self.num_samples - self.skip


# ------------------------------------------------------------------------------------------------
# random states
# ------------------------------------------------------------------------------------------------
def rng_states() -> dict:
    """Python's, NumPy's and torch's (CPU and CUDA) generator states, in types ``weights_only`` loads."""
    _, keys, pos, has_gauss, cached = np.random.get_state()
    states = {
        "python": random.getstate(),
        "numpy": [torch.from_numpy(keys.astype(np.int64)), pos, has_gauss, cached],
        "torch": torch.get_rng_state(),
    }
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
# the run folder, the state, the options
# ------------------------------------------------------------------------------------------------
def check_run_folder(run_path: str, where: str, contents: list[str]) -> None:
    """``--resume`` into ``run_path`` (which holds ``contents``): refused where it would not continue its run.

    ``--resume`` with model folders but no checkpoint is refused (a run whose checkpoints are gone);
    ``--resume CHECKPOINT`` into a folder holding a run must continue that run: CHECKPOINT is one of
    its checkpoints and none goes further.
    """
    own = training_state.list_checkpoints(training_state.checkpoint_dir(run_path))
    if where == options.RESUME_LATEST:
        models = run_folder.model_folders(run_path)
        if not own and models:
            raise InputError(
                f"--resume: {run_path} holds model folders ({run_folder.listing(models)}) but "
                f"no checkpoint to resume from; start a new run from one with "
                f"--load_weights_folder and another --model_name, or start afresh here with "
                f"--overwrite"
            )
        return
    if not os.path.isfile(where):
        raise utils.MissingFileError(f"--resume {where}: not found")
    if not contents:
        return
    same = [p for p in own if os.path.realpath(p) == os.path.realpath(where)]
    step = training_state.step_of(where) or -1
    later = [os.path.basename(p) for p in own if training_state.step_of(p) > step]
    if not same or later:
        why = (
            f"the run in {run_path} goes further ({run_folder.listing(later)})"
            if same
            else f"{run_path} holds another run ({run_folder.listing(contents)})"
        )
        raise InputError(
            f"--resume {where}: {why}; resume into a new folder with another --model_name (the "
            f"run in {run_path} stays as it is)"
        )


def checkpoint_of(
    loop: LoopState,
    networks: dict[str, nn.Module],
    optimizer: torch.optim.Optimizer,
    scheduler: torch.optim.lr_scheduler.LRScheduler,
    opts: argparse.Namespace,
) -> dict:
    """Everything an exact resume needs, in types that ``torch.load(weights_only=True)`` reads."""
    return {
        "networks": {name: net.state_dict() for name, net in networks.items()},
        "optimizer": optimizer.state_dict(),
        "scheduler": scheduler.state_dict(),
        **loop.state_dict(),
        "rng": rng_states(),
        "options": json.dumps(vars(opts), sort_keys=True),
    }


def load(
    where: str,
    run_path: str,
    opts: argparse.Namespace,
    loop: LoopState,
    networks: dict[str, nn.Module],
    optimizer: torch.optim.Optimizer,
    scheduler: torch.optim.lr_scheduler.LRScheduler,
) -> str | None:
    """Restore the loop, the networks, the optimizer and the schedule from a checkpoint (``--resume``
    alone: the newest of ``run_path`` that loads); the checkpoint's path, or None when there is none yet."""
    if where == options.RESUME_LATEST:
        found = training_state.latest_checkpoint(training_state.checkpoint_dir(run_path))
        if found is None:
            logger.info(
                "--resume: no checkpoint in %s yet, starting fresh", training_state.checkpoint_dir(run_path)
            )
            return None
        path, state = found
    else:
        path, state = where, training_state.load_checkpoint(where)
    saved_options = json.loads(state["options"])
    check_options(path, saved_options, opts)
    for name, net in networks.items():
        if name not in state["networks"]:
            raise model_folder.CheckpointError(f"{path} holds no {name} network")
        model_folder.check_state_dict(net, state["networks"][name], f"{path} ({name})")
        net.load_state_dict(state["networks"][name])
    optimizer.load_state_dict(state["optimizer"])
    scheduler.load_state_dict(state["scheduler"])
    loop.load_state_dict(state)
    set_rng_states(state["rng"])
    if schedule_changed(saved_options, opts):
        reschedule(scheduler, optimizer, opts)
    logger.info(
        "resumed from %s: epoch %d, batch %d of the epoch, step %d",
        path,
        loop.epoch,
        loop.batch_in_epoch,
        loop.step,
    )
    return path


def check_options(path: str, saved: dict, opts: argparse.Namespace) -> None:
    """Apply the rule of the module's text to the options that differ from the checkpoint's."""
    changes = changed_options(saved, opts)
    networks = [changes[k] for k in NETWORK_OPTIONS if k in changes]
    if networks:
        raise InputError(
            f"{', '.join(networks)}: {path} holds the weights of another network; resume "
            f"it with the options it was trained with, or start a new run with another "
            f"--model_name"
        )
    versions = [changes.pop(k) for k in VERSION_OPTIONS if k in changes]
    if versions:
        logger.warning(
            "resuming with another library version (%s): the weights fit, the outputs may differ",
            ", ".join(versions),
        )
    fixed = [k for k in FIXED_OPTIONS if k in changes]
    if fixed:
        raise InputError(
            f"{', '.join(changes[k] for k in fixed)}: a resumed run keeps the image size of "
            f"{path}; to train at another size, start a new run from its weights "
            f"(--load_weights_folder) with another --model_name"
        )
    data_order = [changes[k] for k in DATA_ORDER_OPTIONS if k in changes]
    if data_order:
        logger.warning(
            "resuming with another data order (%s): the run goes on, but not as it would have",
            ", ".join(data_order),
        )
    others = [v for k, v in changes.items() if k not in DATA_ORDER_OPTIONS]
    if others:
        logger.info(
            "resuming with other options (%s): they apply from here on (opt.json records them)",
            ", ".join(others),
        )


def reschedule(
    scheduler: torch.optim.lr_scheduler.LRScheduler,
    optimizer: torch.optim.Optimizer,
    opts: argparse.Namespace,
) -> None:
    """Rebuild the learning-rate schedule (in place) from today's options, at the epoch reached, as a run
    with them from the start would have it."""
    epochs_done = scheduler.last_epoch
    for group in optimizer.param_groups:
        group["lr"] = group["initial_lr"] = opts.learning_rate
    fresh = optimisation.schedule(optimizer, opts)
    with warnings.catch_warnings():  # "scheduler.step() before optimizer.step()": here on purpose
        warnings.simplefilter("ignore")
        for _ in range(epochs_done):
            fresh.step()
    scheduler.load_state_dict(fresh.state_dict())
    logger.warning(
        "resuming with another learning-rate schedule (--learning_rate %g, --lr_milestones %s, "
        "--lr_gamma %g): the rate is now %g",
        opts.learning_rate,
        opts.lr_milestones,
        opts.lr_gamma,
        optimizer.param_groups[0]["lr"],
    )
