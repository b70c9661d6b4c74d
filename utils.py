"""Small helpers shared by training, evaluation and tools: errors, logging, processes, files, pictures.

Errors: an ``InputError`` names the file, split line or option at fault; a ``TrainingError`` says why
a run stopped and where its last good state is. Commands run ``main`` through ``run_cli``: such
errors print ``error: <message>`` to stderr and exit with ``EXIT_ERROR``, without a traceback.
"""
from __future__ import annotations

import argparse
import contextlib
import itertools
import json
import logging
import os
import platform
import random
import re
import shutil
import socket
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


def cpu_model() -> str:
    """The processor's model name (``/proc/cpuinfo`` on Linux), for figures that depend on the machine."""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown CPU"


def machine_summary(device: torch.device | None = None) -> str:
    """One line naming what a figure was measured on: the device (CPU model and cores, or the GPU) and torch."""
    if device is not None and device.type == "cuda":
        name = torch.cuda.get_device_name(device)
    else:
        name = f"{cpu_model()}, {os.cpu_count()} cores"
    return f"{name}, torch {torch.__version__}, Python {platform.python_version()}"


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


# ------------------------------------------------------------------------------------------------
# files: whole or absent, temporary names unique per writer, one run per run folder
# ------------------------------------------------------------------------------------------------
HOST = socket.gethostname()
TEMPORARY, ASIDE = ".tmp", ".old"  # a file or folder being written; a folder being replaced
_WRITES = itertools.count()  # next() is atomic under the GIL: names are unique per thread too
# <target><mark>-<host>-<pid>-<n><extension>: the writer is recorded, so that a leftover is removed only once its
# writer is dead (a writer on another host, e.g. over NFS, is never judged)
_WRITER_NAME = re.compile(rf"^(?P<root>.+)(?P<mark>{re.escape(TEMPORARY)}|{re.escape(ASIDE)})-{re.escape(HOST)}"
                          r"-(?P<pid>\d+)-\d+(?P<ext>\.[^.]*)?$")


def _writer_path(path: str, mark: str, pid: int | None = None, keep_extension: bool = True) -> str:
    root, ext = os.path.splitext(path) if keep_extension else (path, "")
    return f"{root}{mark}-{HOST}-{os.getpid() if pid is None else pid}-{next(_WRITES)}{ext}"


def temporary_path(path: str, pid: int | None = None) -> str:
    """Where ``atomic_write`` writes ``path`` first: beside it, named for its writer (host, process
    ``pid``, a number unique in the process), the extension last so that Pillow and NumPy pick the
    same format, e.g. ``a/b.png`` -> ``a/b.tmp-host-4242-0.png``."""
    return _writer_path(path, TEMPORARY, pid)


def is_temporary(name: str) -> bool:
    """Whether a file or folder name is a temporary (or set-aside) name of ``atomic_write``/``atomic_folder``."""
    return re.search(rf"({re.escape(TEMPORARY)}|{re.escape(ASIDE)})-[^/]+-\d+-\d+(\.[^.]*)?$", name) is not None


def process_alive(pid: int) -> bool:
    """Whether a process of this host has the id ``pid`` (one of another user counts)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _clear_stale(directory: str, name: str) -> str | None:
    """Remove a dead writer's leftover ``name`` (restore a folder that was set aside and not replaced)."""
    match = _WRITER_NAME.match(name)
    if match is None or process_alive(int(match["pid"])):
        return None
    path = os.path.join(directory, name)
    target = os.path.join(directory, match["root"] + (match["ext"] or ""))
    if match["mark"] == ASIDE and not os.path.lexists(target):
        os.replace(path, target)
        return f"restored {target} (its replacement was cut short)"
    if os.path.isdir(path) and not os.path.islink(path):
        shutil.rmtree(path)
    else:
        os.remove(path)
    return f"removed {path} (left by process {match['pid']}, which is gone)"


def remove_stale_temporaries(folder: str) -> list[str]:
    """Clear what killed writers of this host left under ``folder``; return what was done.

    Temporary files and folders of processes that are gone are removed, a folder set aside by an
    ``atomic_folder`` replacement that was cut short is put back; a live writer's are left alone.
    """
    done = []
    for directory, dirs, files in os.walk(folder):
        for name in sorted(dirs + files):
            action = _clear_stale(directory, name)
            if action:
                done.append(action)
                if name in dirs:
                    dirs.remove(name)
    return done


def recover_folder(folder: str) -> list[str]:
    """``remove_stale_temporaries`` for the leftovers of one folder's replacement (``<folder>.tmp-...``, ``.old-...``)."""
    parent, base = os.path.split(os.path.abspath(folder.rstrip(os.sep)))
    if not os.path.isdir(parent):
        return []
    names = [n for n in sorted(os.listdir(parent)) if (m := _WRITER_NAME.match(n)) and m["root"] == base and not m["ext"]]
    return [action for name in names if (action := _clear_stale(parent, name))]


@contextlib.contextmanager
def atomic_write(path: str) -> Iterator[str]:
    """Yield a temporary path to write; on success it is renamed to ``path``, on failure removed.

    A reader never sees a half-written ``path``: it is the old file or the whole new one.
    """
    tmp = temporary_path(path)
    try:
        os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
        yield tmp
        os.replace(tmp, path)
    except UnwritableError:
        raise
    except OSError as err:
        raise UnwritableError(f"cannot write {path}: {err.strerror or err}") from err
    finally:
        if os.path.isfile(tmp):
            os.remove(tmp)


@contextlib.contextmanager
def atomic_folder(folder: str) -> Iterator[str]:
    """Yield a temporary folder to fill; on success it replaces ``folder`` (``replace_folder``), on failure
    it is removed. A reader never sees a half-written folder; what a killed earlier replacement of
    ``folder`` left is cleared (or restored) first."""
    folder = folder.rstrip(os.sep)
    recover_folder(folder)
    tmp = _writer_path(folder, TEMPORARY, keep_extension=False)
    os.makedirs(tmp)
    try:
        yield tmp
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    replace_folder(tmp, folder)


def replace_folder(new: str, folder: str) -> None:
    """Rename ``new`` to ``folder``: an existing ``folder`` is renamed aside first and removed last, so
    that at every moment ``folder`` is the whole old one, the whole new one, or (after a kill between
    the two renames) restorable from the aside copy by ``recover_folder``."""
    aside = None
    if os.path.lexists(folder):
        aside = _writer_path(folder, ASIDE, keep_extension=False)
        os.replace(folder, aside)
    os.replace(new, folder)
    if aside is not None:
        shutil.rmtree(aside)


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
# matplotlib's "magma" colour map as data: its 256 entries as matplotlib's bytes (``cmap(x, bytes=True)``),
# RGB hex, so that pictures made without matplotlib (TensorBoard, predict.py) have its exact colours.
MAGMA_HEX = (
    "00000300000400000601000701010901010b02020d02020f03031104031304041505041706051907051b08061d09071f"
    "0a07220b08240c09260d0a280e0a2a0f0b2c100c2f110c31120d33140d35150e38160e3a170f3c180f3f1a10411b1044"
    "1c10461e10491f114b20114d2211502311522511552611572811592a115c2b115e2d10602f1062301065321067341068"
    "350f6a370f6c390f6e3b0f6f3c0f713e0f72400f73420f74430f75450f76470f774810784a10794b10794d117a4f117b"
    "50127b52127c53137c55137d57147d58157e5a157e5b167e5d177e5e177f60187f61187f63197f651a80661a80681b80"
    "691c806b1c806c1d806e1e816f1e81711f81731f817420817621817721817922817a22817c23817e24817f2481812581"
    "8225818426818526818727818928818a28818c29808d29808f2a80912a80922b80942b80952c80972c7f992d7f9a2d7f"
    "9c2e7f9e2e7e9f2f7ea12f7ea3307ea4307da6317da7317da9327cab337cac337bae347bb0347bb1357ab3357ab53679"
    "b63679b83778b93778bb3877bd3977be3976c03a75c23a75c33b74c53c74c63c73c83d72ca3e72cb3e71cd3f70ce4070"
    "d0416fd1426ed3426dd4436dd6446cd7456bd9466ada4769dc4869dd4968de4a67e04b66e14c66e24d65e44e64e55063"
    "e65162e75262e85461ea5560eb5660ec585fed595fee5b5eee5d5def5e5df0605df1615cf2635cf3655cf3675bf4685b"
    "f56a5bf56c5bf66e5bf6705bf7715bf7735cf8755cf8775cf9795cf97b5df97d5dfa7f5efa805efa825ffb8460fb8660"
    "fb8861fb8a62fc8c63fc8e63fc9064fc9265fc9366fd9567fd9768fd9969fd9b6afd9d6bfd9f6cfda16efda26ffda470"
    "fea671fea873feaa74feac75feae76feaf78feb179feb37bfeb57cfeb77dfeb97ffebb80febc82febe83fec085fec286"
    "fec488fec689fec78bfec98dfecb8efdcd90fdcf92fdd193fdd295fdd497fdd698fdd89afdda9cfddc9dfddd9ffddfa1"
    "fde1a3fce3a5fce5a6fce6a8fce8aafceaacfcecaefceeb0fcf0b1fcf1b3fcf3b5fcf5b7fbf7b9fbf9bbfbfabdfbfcbf"
)
MAGMA = np.frombuffer(bytes.fromhex(MAGMA_HEX), dtype=np.uint8).reshape(-1, 3)  # (256, 3) uint8
DISPARITY_PERCENTILE = 95  # Monodepth2 maps disparities to colours up to this percentile


IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp")  # image files the tools pick up from folders


def save_png(array: np.ndarray, path: str) -> None:
    """Save an RGB (or grey) uint8 image as PNG, atomically."""
    with atomic_write(path) as tmp:
        Image.fromarray(array).save(tmp, format="PNG")


def colormap(values: np.ndarray, vmax: float | None = None) -> np.ndarray:
    """Map values (H, W) in [0, vmax] to magma colours (H, W, 3) uint8; vmax defaults to the 95th percentile.

    The lookup is matplotlib's: entry ``int(t * 256)`` of the 256 for t = values / vmax in [0, 1]
    (1 itself takes the last entry), so the colours equal ``matplotlib.colormaps["magma"](t, bytes=True)``.
    """
    values = np.asarray(values, dtype=np.float64)
    if vmax is None:
        vmax = float(np.percentile(values, DISPARITY_PERCENTILE))
    t = np.clip(values / max(vmax, 1e-8), 0, 1)
    index = np.minimum((t * len(MAGMA)).astype(np.int64), len(MAGMA) - 1)
    return MAGMA[index]


def resize_bilinear(values: np.ndarray, height: int, width: int) -> np.ndarray:
    """A (C, h, w) or (h, w) array resized bilinearly (align_corners False, as evaluation resizes predictions)."""
    if values.shape[-2:] == (height, width):
        return values
    tensor = torch.from_numpy(np.ascontiguousarray(values, dtype=np.float32))
    batch = tensor[None] if tensor.dim() == 3 else tensor[None, None]
    resized = torch.nn.functional.interpolate(batch, size=(height, width), mode="bilinear", align_corners=False)[0]
    return resized.numpy() if tensor.dim() == 3 else resized[0].numpy()
