"""Test helpers: the released checkpoints' key layouts (tests/data), small random batches, skipping tests
whose GPU or optional package is missing, a clean logging state per test, and the shared fixtures: a tiny
drive, training in this process, a tiny trained run, random-weight model folders and synthetic scenes.
Helpers that run commands and damage files are in tests/helpers.py."""

from __future__ import annotations

import glob
import importlib.util
import logging
import os
import re

import pytest
import torch

from datasets.synthetic.kitti_frames import TinyKitti, make_tiny_kitti

PROJECT_DIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# key, shape and dtype of every tensor in the authors' and Monodepth2's released model files, one file each
CHECKPOINT_KEYS_DIR = os.path.join(PROJECT_DIR, "tests", "data", "checkpoint_keys")

# Tests wait for conditions (a line, a file, an exit), never for a fixed time; this deadline only ends a wait
# that would otherwise hang the suite, and is far beyond what a loaded 2-core machine needs.
PROCESS_DEADLINE_S = 1800

torch.set_num_threads(min(2, torch.get_num_threads()))


# Optional packages. ``@pytest.mark.needs("av")`` (or ``require("av")`` in a fixture) skips a test when the
# package is missing, naming the requirements file that installs it; with FSRE_TEST_OPTIONAL=1 (CI's second
# stage, after installing every requirements/*.txt) a missing package fails the test instead, so nothing skips
# there unnoticed.
STRICT_OPTIONAL_ENV = "FSRE_TEST_OPTIONAL"
MODULE_OF_DISTRIBUTION = {"pyyaml": "yaml"}  # where the import name differs from the distribution's


def optional_requirement_files() -> dict[str, str]:
    """Import name -> the optional requirements file that installs it, read from the requirements/*.txt
    files."""
    files = {}
    for path in sorted(glob.glob(os.path.join(PROJECT_DIR, "requirements/*.txt"))):
        for line in open(path):
            match = re.match(r"\s*([A-Za-z0-9_.-]+)", line.split("#")[0])
            if match and not line.lstrip().startswith("-"):
                name = match.group(1).lower()
                files.setdefault(
                    MODULE_OF_DISTRIBUTION.get(name, name.replace("-", "_")),
                    os.path.relpath(path, PROJECT_DIR),
                )
    return files


def missing_reason(module: str) -> str | None:
    """Why a test that imports ``module`` cannot run here, or None when it can."""
    source = optional_requirement_files().get(module)
    if source is None:
        raise ValueError(f"{module} is in no requirements/*.txt: add it to the optional feature's file")
    return (
        None if importlib.util.find_spec(module) is not None else f"needs {module} (pip install -r {source})"
    )


_running = {}  # the test being set up: require() checks that it declares what it needs


def require(*modules: str) -> None:
    """Skip the running test (or fail it under FSRE_TEST_OPTIONAL=1) unless every module imports."""
    item = _running.get("item")
    declared = (
        {name for marker in item.iter_markers("needs") for name in marker.args} if item else set(modules)
    )
    if not set(modules) <= declared:  # CI's second stage selects the tests to run by their marker
        pytest.fail(
            f"{item.nodeid} needs {', '.join(sorted(set(modules) - declared))}: mark it "
            f"@pytest.mark.needs(...)"
        )
    for module in modules:
        reason = missing_reason(module)
        if reason is not None:
            if os.environ.get(STRICT_OPTIONAL_ENV) == "1":
                pytest.fail(f"{reason}, but {STRICT_OPTIONAL_ENV}=1 says every optional package is installed")
            pytest.skip(reason)


def pytest_collection_modifyitems(config, items):
    gpu_skip = None if torch.cuda.is_available() else pytest.mark.skip(reason="needs a CUDA device")
    for item in items:
        if gpu_skip is not None and "gpu" in item.keywords:
            item.add_marker(gpu_skip)


def pytest_runtest_setup(item):
    _running["item"] = item
    for marker in item.iter_markers("needs"):
        require(*marker.args)


@pytest.fixture(autouse=True)
def isolated_logging():
    """Give every test the root logger it started with: a command run in a test (utils.setup_logging) points
    it at that test's captured stderr, which is closed once the test ends."""
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    yield
    root.handlers[:] = handlers
    root.setLevel(level)


def read_checkpoint_keys(name: str) -> dict[str, tuple[tuple[int, ...], str]]:
    """Keys, shapes and dtypes of a released checkpoint file, from its listing in
    tests/data/checkpoint_keys."""
    path = os.path.join(CHECKPOINT_KEYS_DIR, name)
    table = {}
    with open(path) as f:
        for line in f:
            key, shape, dtype = line.rstrip("\n").split("\t")
            table[key] = (tuple(int(x) for x in shape.strip("()").split(",") if x.strip()), dtype)
    return table


def make_intrinsics(batch: int, height: int, width: int) -> torch.Tensor:
    """KITTI's normalised intrinsics scaled to a size, (B, 4, 4)."""
    K = torch.tensor(
        [[0.58 * width, 0, 0.5 * width, 0], [0, 1.92 * height, 0.5 * height, 0], [0, 0, 1, 0], [0, 0, 0, 1]],
        dtype=torch.float32,
    )
    return K.expand(batch, 4, 4).clone()


def random_batch(
    batch: int = 2,
    height: int = 96,
    width: int = 320,
    frame_ids=(0, -1, 1),
    num_scales: int = 4,
    num_classes: int = 19,
    seed: int = 0,
) -> dict:
    """A batch with Monodepth2's keys and random content."""
    g = torch.Generator().manual_seed(seed)
    inputs = {}
    for f in frame_ids:
        for s in range(num_scales):
            image = torch.rand(batch, 3, height // 2**s, width // 2**s, generator=g)
            inputs[("color", f, s)] = image
            inputs[("color_aug", f, s)] = image.clone()
    K = make_intrinsics(batch, height, width)
    inputs[("K", 0)] = K
    inputs[("inv_K", 0)] = torch.linalg.inv(K)
    inputs[("seg", 0, 0)] = torch.randint(0, num_classes, (batch, 1, height, width), generator=g)
    return inputs


# ------------------------------------------------------------------------------------------------
# shared fixtures
# ------------------------------------------------------------------------------------------------
@pytest.fixture()
def tiny(tmp_path) -> TinyKitti:
    """A tiny KITTI drive (PNG and JPEG frames, labels, scans, a split) of this test's own, to read or to
    damage."""
    return make_tiny_kitti(str(tmp_path / "data"))


@pytest.fixture()
def in_process():
    """Training in this process: one thread (two oversubscribe a busy 2-core machine), settings restored."""
    threads, deterministic = torch.get_num_threads(), torch.are_deterministic_algorithms_enabled()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
    torch.use_deterministic_algorithms(deterministic)


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory):
    """One short run, shared read-only (``helpers.copy_run`` gives a test a copy to change):
    step_00000001.pth (epoch 0, batch 1), step_00000002.pth (the run ends at --max_steps 2, in mid-epoch:
    epoch 0, batch 2) and models/weights_0; returns the drive and the log folder."""
    from helpers import run_args

    import options
    from trainer import Trainer

    root = tmp_path_factory.mktemp("tiny_run")
    data = make_tiny_kitti(str(root / "data"), exts=("png",))
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        args = run_args(
            data, root / "logs", "--num_workers", "0", "--max_steps", "2", "--checkpoint_every", "1"
        )
        Trainer(options.parse_args(args)).train()
    finally:
        torch.set_num_threads(threads)
        torch.use_deterministic_algorithms(False)
    return data, root / "logs"


@pytest.fixture(scope="session")
def model_folders(tmp_path_factory) -> list[str]:
    """Two random-weight baseline model folders that share their base name (weights_0_best)."""
    import options
    from checkpoints import model_folder
    from model import FSREModel

    root = tmp_path_factory.mktemp("models")
    opts = options.parse_args(
        ["--config", "baseline", "--height", "64", "--width", "192", "--weights_init", "scratch"]
    )
    torch.manual_seed(0)
    return [
        model_folder.save_model_folder(str(root / run / "weights_0_best"), FSREModel(opts).networks(), opts)
        for run in ("run_a", "run_b")
    ]


@pytest.fixture(scope="session")
def scene_data(tmp_path_factory) -> tuple[str, str]:
    """Two small synthetic drives with every split, shared read-only: the data folder and the split folder."""
    from datasets.synthetic import scenes

    root = tmp_path_factory.mktemp("surfaces")
    data = str(root / "scenes")
    split_dir = scenes.generate(
        data, num_drives=2, frames_per_drive=6, scale=0.1, seed=2, test_stride=1, val_stride=2, workers=1
    )
    return data, split_dir
