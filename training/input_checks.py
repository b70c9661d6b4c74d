"""Checks of a split's files before training starts (``--input_check sample|full|none``), so that bad data
fails in seconds with one clear error (what each mode checks: docs/training.md)."""

from __future__ import annotations

import logging
import os

from torch.utils.data import DataLoader, Dataset

from datasets.kitti_utils import VELODYNE_EXT, check_velodyne_file
from datasets.mono_dataset import MonoDataset, read_split_numbered
from utils import InputError, MissingFileError

logger = logging.getLogger(__name__)

INPUT_CHECKS = ("sample", "full", "none")
SAMPLE_ITEMS = 8  # items decoded by the "sample" check, spread evenly over the split
LISTED_PROBLEMS = 5  # missing files named in the error; the rest are counted


class _ItemCheck(Dataset):
    """Decodes and checks one item per index (for the parallel "full" check)."""

    def __init__(self, dataset: MonoDataset, indices: list[int], where: list[str]) -> None:
        self.dataset, self.indices, self.where = dataset, indices, where

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, i: int) -> int:
        index = self.indices[i]
        try:
            self.dataset.check_item(index)
        except InputError as err:
            raise InputError(f"{err} (needed by {self.where[index]})") from None
        return i


def _inside(path: str, root: str) -> bool:
    root = os.path.normpath(os.path.abspath(root))
    return os.path.commonpath([root, os.path.normpath(os.path.abspath(path))]) == root


def sample_indices(count: int, samples: int = SAMPLE_ITEMS) -> list[int]:
    """``samples`` indices spread evenly over ``range(count)``, first and last included."""
    if count <= samples:
        return list(range(count))
    return sorted({round(i * (count - 1) / (samples - 1)) for i in range(samples)})


def check_split(dataset: MonoDataset, split_file: str, mode: str = "sample", num_workers: int = 0) -> None:
    """Check the files a split needs (see the module's docstring); raise one InputError naming them."""
    if mode == "none":
        return
    if mode not in INPUT_CHECKS:
        raise InputError(f"--input_check must be one of {', '.join(INPUT_CHECKS)}, got {mode!r}")
    if not os.path.isdir(dataset.data_path):
        raise MissingFileError(f"--data_path {dataset.data_path} is not a folder")
    numbered = read_split_numbered(split_file, need_side=dataset.NEEDS_SIDE)
    if len(numbered) != len(dataset):
        raise InputError(
            f"{split_file} lists {len(numbered)} lines but the dataset holds {len(dataset)} items"
        )
    missing: list[tuple[str, int]] = []
    exists: dict[str, bool] = {}  # neighbouring frames and calibration files are shared by many lines
    for index, (number, line) in enumerate(numbered):
        problem = dataset.entry_problem(dataset.entries[index])
        if problem:
            raise InputError(f"{split_file}:{number}: {line.strip()!r} {problem}")
        files = dataset.required_files(index)
        entry = dataset.entries[index]
        label = (
            dataset.label_path(entry.folder, entry.frame_index, entry.side) if dataset.load_labels else None
        )
        for path in files:
            if not _inside(path, dataset.seg_path if path == label else dataset.data_path):
                raise InputError(
                    f"{split_file}:{number}: {line.strip()!r} leads to {os.path.normpath(path)}, "
                    f"outside the data folder {dataset.data_path}"
                )
        for path in files:
            if path not in exists:
                exists[path] = os.path.isfile(path)
                if exists[path] and path.endswith(VELODYNE_EXT):  # cheap: a size check of every scan
                    try:
                        check_velodyne_file(path)
                    except InputError as err:
                        raise InputError(f"{err} (needed by {split_file}:{number})") from None
            if not exists[path]:
                missing.append((path, number))
    if missing:
        by_file: dict[str, list[int]] = {}
        for path, number in missing:
            by_file.setdefault(path, []).append(number)
        lines = [f"{len(by_file)} file(s) needed by {split_file} are missing:"]
        for path, numbers in list(by_file.items())[:LISTED_PROBLEMS]:
            shown = ", ".join(str(n) for n in numbers[:LISTED_PROBLEMS]) + (
                " ..." if len(numbers) > LISTED_PROBLEMS else ""
            )
            lines.append(f"  {path} (needed by line {shown})")
        if len(by_file) > LISTED_PROBLEMS:
            lines.append(f"  ... and {len(by_file) - LISTED_PROBLEMS} more")
        raise InputError("\n".join(lines))

    indices = sample_indices(len(dataset)) if mode == "sample" else list(range(len(dataset)))
    checker = _ItemCheck(dataset, indices, [f"{split_file}:{number}" for number, _ in numbered])
    if mode == "full" and num_workers > 0:
        for _ in DataLoader(checker, batch_size=None, num_workers=num_workers):
            pass
    else:
        for i in range(len(checker)):
            checker[i]
    logger.info(
        "input check (%s) of %s: %d lines, files present, %d item(s) decoded",
        mode,
        split_file,
        len(numbered),
        len(indices),
    )
