"""Test helpers: the released checkpoints' key layouts (tests/data), small random batches, skipping tests
whose GPU or optional package is missing, and a clean logging state per test."""

from __future__ import annotations

import glob
import importlib.util
import logging
import os
import re

import pytest
import torch

PROJECT_DIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# key, shape and dtype of every tensor in the authors' and Monodepth2's released model files, one file each
CHECKPOINT_KEYS_DIR = os.path.join(PROJECT_DIR, "tests", "data", "checkpoint_keys")

# Tests wait for conditions (a line, a file, an exit), never for a fixed time; this deadline only ends a wait
# that would otherwise hang the suite, and is far beyond what a loaded 2-core machine needs.
PROCESS_DEADLINE_S = 1800

torch.set_num_threads(min(2, torch.get_num_threads()))


# Optional packages. ``@pytest.mark.needs("av")`` (or ``require("av")`` in a fixture) skips a test when the
# package is missing, naming the requirements file that installs it; with FSRE_TEST_OPTIONAL=1 (CI's second
# stage, after installing every requirements-*.txt) a missing package fails the test instead, so nothing skips
# there unnoticed.
STRICT_OPTIONAL_ENV = "FSRE_TEST_OPTIONAL"
MODULE_OF_DISTRIBUTION = {"pyyaml": "yaml"}  # where the import name differs from the distribution's


def optional_requirement_files() -> dict[str, str]:
    """Import name -> the optional requirements file that installs it, read from the requirements-*.txt
    files."""
    files = {}
    for path in sorted(glob.glob(os.path.join(PROJECT_DIR, "requirements-*.txt"))):
        for line in open(path):
            match = re.match(r"\s*([A-Za-z0-9_.-]+)", line.split("#")[0])
            if match and not line.lstrip().startswith("-"):
                name = match.group(1).lower()
                files.setdefault(
                    MODULE_OF_DISTRIBUTION.get(name, name.replace("-", "_")), os.path.basename(path)
                )
    return files


def missing_reason(module: str) -> str | None:
    """Why a test that imports ``module`` cannot run here, or None when it can."""
    source = optional_requirement_files().get(module)
    if source is None:
        raise ValueError(f"{module} is in no requirements-*.txt: add it to the optional feature's file")
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
