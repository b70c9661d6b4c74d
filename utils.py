"""Small helpers shared by training, evaluation and tools: errors, logging, processes, files, pictures.

Errors: an ``InputError`` names the file, split line or option at fault; a ``TrainingError`` says why
a run stopped and where its last good state is. Commands run ``main`` through ``run_cli``: such
errors print ``error: <message>`` to stderr and exit with ``EXIT_ERROR``, without a traceback.
"""
from __future__ import annotations

import argparse
import contextlib
import json
import logging
import os
import random
import shutil
import sys
from dataclasses import dataclass
from typing import Callable, Iterator, Sequence

import numpy as np
import torch
import torch.distributed as dist
from PIL import Image

logger = logging.getLogger(__name__)

PROJECT_DIR = os.path.dirname(os.path.abspath(__file__))  # the repository's root
UINT8_MAX = 255.0  # images: uint8 0..255 <-> float 0..1


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
# processes and devices (the model of torchvision's reference scripts)
# ------------------------------------------------------------------------------------------------
@dataclass
class Runtime:
    """Where this process runs: its device, and its place among the processes of a run."""
    device: torch.device
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    distributed: bool = False

    @property
    def is_main(self) -> bool:
        return self.rank == 0


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


def init_runtime(device: str | None = None, no_cuda: bool = False, backend: str | None = None) -> Runtime:
    """Pick the device and, under torchrun (RANK and WORLD_SIZE set), join the process group."""
    if not no_cuda:
        pick_device(device)  # a named device that is not there fails here, in one line
    use_cuda = torch.cuda.is_available() and not no_cuda and (device is None or device.startswith("cuda"))
    if "RANK" in os.environ and "WORLD_SIZE" in os.environ and int(os.environ["WORLD_SIZE"]) > 1:
        rank, world_size = int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"])
        local_rank = int(os.environ.get("LOCAL_RANK", 0))
        if use_cuda:
            torch.cuda.set_device(local_rank)
            run_device = torch.device("cuda", local_rank)
        else:
            run_device = torch.device("cpu")
        if not dist.is_initialized():
            dist.init_process_group(backend or ("nccl" if use_cuda else "gloo"), rank=rank, world_size=world_size)
        return Runtime(run_device, rank, world_size, local_rank, True)
    if no_cuda:
        return Runtime(torch.device("cpu"))
    return Runtime(pick_device(device))


def cleanup_runtime(runtime: Runtime) -> None:
    """Leave the process group (if any)."""
    if runtime.distributed and dist.is_initialized():
        dist.destroy_process_group()


def union_of_keys(keys, runtime: Runtime) -> list:
    """The sorted union of every process's keys (the keys themselves outside a distributed run)."""
    if not runtime.distributed:
        return sorted(keys)
    gathered: list = [None] * runtime.world_size
    dist.all_gather_object(gathered, sorted(keys))
    return sorted(set().union(*gathered))


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


def temporary_path(path: str) -> str:
    """Where ``atomic_write`` writes ``path`` first: beside it, with the same extension (so that
    Pillow and NumPy pick the same format), e.g. ``a/b.png`` -> ``a/b.tmp.png``."""
    root, ext = os.path.splitext(path)
    return f"{root}.tmp{ext}"


@contextlib.contextmanager
def atomic_write(path: str) -> Iterator[str]:
    """Yield a temporary path to write; on success it is renamed to ``path``, on failure removed.

    A reader never sees a half-written ``path``: it is the old file or the whole new one.
    """
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    tmp = temporary_path(path)
    try:
        yield tmp
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


@contextlib.contextmanager
def atomic_folder(folder: str) -> Iterator[str]:
    """Yield ``<folder>.tmp`` to fill; on success it replaces ``folder``, on failure it is removed.

    A reader never sees a half-written folder (a leftover ``.tmp`` of a killed run is cleared first).
    """
    tmp = folder.rstrip(os.sep) + ".tmp"
    if os.path.exists(tmp):
        shutil.rmtree(tmp)
    os.makedirs(tmp)
    try:
        yield tmp
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    if os.path.exists(folder):
        shutil.rmtree(folder)
    os.replace(tmp, folder)


def save_json(data: dict, path: str) -> None:
    """Write JSON atomically."""
    with atomic_write(path) as tmp, open(tmp, "w") as f:
        json.dump(data, f, indent=2)


def save_array(array: np.ndarray, path: str) -> None:
    """np.save atomically."""
    with atomic_write(path) as tmp:
        np.save(tmp, array)

# ------------------------------------------------------------------------------------------------
# pictures
# ------------------------------------------------------------------------------------------------
# Anchors of matplotlib's "magma" colour map, interpolated linearly in between.
MAGMA_ANCHORS = np.array([
    (0.001, 0.000, 0.014), (0.135, 0.068, 0.315), (0.317, 0.072, 0.485), (0.512, 0.128, 0.506),
    (0.716, 0.215, 0.475), (0.894, 0.325, 0.404), (0.987, 0.536, 0.382), (0.994, 0.755, 0.532),
    (0.987, 0.991, 0.750),
], dtype=np.float32)
DISPARITY_PERCENTILE = 95  # Monodepth2 maps disparities to colours up to this percentile


IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp")  # image files the tools pick up from folders


def save_png(array: np.ndarray, path: str) -> None:
    """Save an RGB (or grey) uint8 image as PNG, atomically."""
    with atomic_write(path) as tmp:
        Image.fromarray(array).save(tmp, format="PNG")


def colormap(values: np.ndarray, vmax: float | None = None) -> np.ndarray:
    """Map values (H, W) in [0, vmax] to magma colours (H, W, 3) uint8; vmax defaults to the 95th percentile."""
    values = np.asarray(values, dtype=np.float32)
    if vmax is None:
        vmax = float(np.percentile(values, DISPARITY_PERCENTILE))
    t = np.clip(values / max(vmax, 1e-8), 0, 1) * (len(MAGMA_ANCHORS) - 1)
    low = np.floor(t).astype(np.int64).clip(0, len(MAGMA_ANCHORS) - 2)
    frac = (t - low)[..., None]
    rgb = MAGMA_ANCHORS[low] * (1 - frac) + MAGMA_ANCHORS[low + 1] * frac
    return (rgb * 255 + 0.5).astype(np.uint8)


def colormap_tensor(values: torch.Tensor) -> torch.Tensor:
    """(1, H, W) or (H, W) tensor -> (3, H, W) float image in [0, 1] for TensorBoard."""
    rgb = colormap(values.detach().float().cpu().squeeze().numpy())
    return torch.from_numpy(rgb).permute(2, 0, 1).float() / 255
