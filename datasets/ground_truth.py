"""Ground-truth depth of a test split: exported once from the Velodyne scans or the depth benchmark's maps,
read by evaluation."""

from __future__ import annotations

import logging
import os
import pickle
import zipfile
from typing import Sequence

import numpy as np
from tqdm import tqdm

import splits
import utils
from datasets import parse_split_line
from datasets.kitti_dataset import DEPTH_PNG_SCALE
from datasets.kitti_utils import generate_depth_map, velodyne_path
from datasets.mono_dataset import open_image, read_split_numbered
from utils.files import atomic_write

logger = logging.getLogger(__name__)
GT_SPLITS = ("eigen", "eigen_benchmark")
GT_FILE = "gt_depths.npz"
GT_KEY_PREFIX = "depth_"  # this project's keys: depth_0000, depth_0001, ... in test-file order
MONODEPTH2_KEY = "data"  # Monodepth2's key: one array of all maps (an object array when their sizes differ)
GT_CAMERA = 2  # the Eigen test frames are all from the left colour camera


def ground_truth_path(split: str, output_dir: str | None = None) -> str:
    """Where the exported ground truth of a split lives."""
    return os.path.join(output_dir or os.path.join(splits.SPLITS_DIR, split), GT_FILE)


def ground_truth_file(gt_depths: str | None, eval_split: str) -> str:
    """The ground truth an evaluation reads: ``--gt_depths``, else the custom split folder's, else the named
    split's."""
    if gt_depths:
        return gt_depths
    return os.path.join(eval_split, GT_FILE) if os.path.isdir(eval_split) else ground_truth_path(eval_split)


def velodyne_ground_truth(data_path: str, folder: str, frame_index: int) -> np.ndarray:
    """Sparse depth (375x1242-ish) of a KITTI raw frame from its Velodyne scan."""
    calib_dir = os.path.join(data_path, folder.split("/")[0])
    return generate_depth_map(
        calib_dir, velodyne_path(data_path, folder, frame_index), GT_CAMERA, vel_depth=True
    )


def benchmark_ground_truth(data_path: str, folder: str, frame_index: int) -> np.ndarray:
    """Annotated depth of a KITTI raw frame from the depth benchmark's PNG."""
    path = os.path.join(
        data_path, folder, "proj_depth", "groundtruth", f"image_0{GT_CAMERA}", f"{frame_index:010d}.png"
    )
    return np.asarray(open_image(path)).astype(np.float32) / DEPTH_PNG_SCALE


def save_ground_truth(maps: Sequence[np.ndarray], path: str) -> None:
    """Write maps as this project's file: one float32 array per test line (``depth_0000`` ...), no pickled
    objects."""
    arrays = {f"{GT_KEY_PREFIX}{i:04d}": np.asarray(m, dtype=np.float32) for i, m in enumerate(maps)}
    with atomic_write(path) as tmp:
        np.savez_compressed(tmp, **arrays)


def export(data_path: str, split: str, test_file: str, output_path: str) -> int:
    """Write the ground truth of every line of ``test_file`` to ``output_path``; return the count."""
    if not os.path.isdir(data_path):
        raise utils.MissingFileError(f"--data_path {data_path} is not a folder")
    read = velodyne_ground_truth if split == "eigen" else benchmark_ground_truth
    numbered = read_split_numbered(test_file, need_side=True, need_lines=True)
    maps = []
    for number, line in tqdm(numbered, desc=f"ground truth of {split}", unit="frame"):
        entry = parse_split_line(line, f"{test_file}:{number}")
        try:
            maps.append(read(data_path, entry.folder, entry.frame_index))
        except utils.InputError as err:
            raise type(err)(f"{err} (needed by {test_file}:{number})") from None
    save_ground_truth(maps, output_path)
    return len(maps)


def _checked_maps(path: str, maps: Sequence, what: str) -> list[np.ndarray]:
    """The maps of a ground-truth file, each a 2-D array of numbers (InputError naming ``what`` otherwise)."""
    for i, depth in enumerate(maps):
        if not isinstance(depth, np.ndarray) or depth.ndim != 2 or depth.dtype.kind not in "fiu":
            raise utils.InputError(
                f"{path}: {what} {i} is not a 2-D map of depths "
                f"(got {type(depth).__name__} of shape {getattr(depth, 'shape', None)})"
            )
    return list(maps)


def _array_without_pickle(data: np.lib.npyio.NpzFile, key: str, path: str) -> np.ndarray:
    """One array of an .npz file, read without unpickling; an object array is refused with how to convert
    it."""
    try:
        return data[key]
    except ValueError:  # NumPy refuses object arrays when allow_pickle=False
        raise utils.InputError(
            f"{path} holds pickled Python objects (Monodepth2's format), which are never loaded: "
            "they could run code. If you trust the file, convert it once with "
            "`python export_gt_depth.py --convert_monodepth2 "
            f"{path} --output NEW.npz` and pass --gt_depths NEW.npz"
        ) from None


def _map_keys(files: Sequence[str]) -> list[str]:
    """This project's map keys of an .npz file, in test-file order (``depth_10000`` after ``depth_9999``)."""
    keys = [k for k in files if k.startswith(GT_KEY_PREFIX) and k[len(GT_KEY_PREFIX) :].isdigit()]
    return sorted(keys, key=lambda k: int(k[len(GT_KEY_PREFIX) :]))


def load_ground_truth(path: str, count: int | None = None, test_file: str | None = None) -> list[np.ndarray]:
    """Ground-truth maps in test-file order from this project's file (or a Monodepth2 file without objects).

    Never unpickles: a Monodepth2 file holding an object array is refused with the command that
    converts it once (``convert_monodepth2``). ``count``: the number of lines of ``test_file``, which
    the file must match. A file without any positive depth is refused too.
    """
    if not os.path.isfile(path):
        raise utils.MissingFileError(f"{path} not found: run export_gt_depth.py for this split first")
    not_ours = f"{path} is not a ground-truth file written by export_gt_depth.py"
    try:
        data = np.load(path, allow_pickle=False)
    except (OSError, ValueError, EOFError, zipfile.BadZipFile):
        raise utils.InputError(f"{not_ours} (not an .npz archive)") from None
    if not isinstance(data, np.lib.npyio.NpzFile):
        raise utils.InputError(f"{not_ours} (a single array, not an .npz archive)")
    with data:
        keys = _map_keys(data.files)
        if keys:
            maps = [_array_without_pickle(data, key, path) for key in keys]
        elif (
            MONODEPTH2_KEY in data.files
        ):  # Monodepth2's, safe when its maps share one size: (N, H, W) numbers
            stacked = _array_without_pickle(data, MONODEPTH2_KEY, path)
            if stacked.ndim != 3:
                raise utils.InputError(
                    f"{not_ours} ({MONODEPTH2_KEY!r} has shape {stacked.shape}, expected (N, H, W))"
                )
            maps = list(stacked)
        else:
            raise utils.InputError(
                f"{not_ours} (keys {GT_KEY_PREFIX}0000 ... expected, found "
                f"{', '.join(data.files[:5]) or 'none'})"
            )
    maps = _checked_maps(path, maps, "map")
    if count is not None and len(maps) != count:
        raise utils.InputError(
            f"{path} holds {len(maps)} ground-truth maps but {test_file} lists {count} frames"
        )
    if not any((depth > 0).any() for depth in maps):
        raise utils.InputError(f"{path}: no frame has valid ground truth (every depth is 0)")
    return maps


def convert_monodepth2(source: str, output: str) -> int:
    """Rewrite a trusted Monodepth2 gt_depths.npz (a pickled object array) as this project's file; return the
    count.

    This UNPICKLES ``source``: a crafted file runs code here. Only for files the user trusts.
    """
    if not os.path.isfile(source):
        raise utils.MissingFileError(f"--convert_monodepth2 {source}: file not found")
    if os.path.abspath(output) == os.path.abspath(source):
        raise utils.InputError(
            f"--output {output} must differ from the file converted (which stays as it is)"
        )
    try:
        with np.load(source, allow_pickle=True, fix_imports=True, encoding="latin1") as data:
            if MONODEPTH2_KEY not in data.files:
                raise utils.InputError(
                    f"{source} holds no {MONODEPTH2_KEY!r} array: not Monodepth2's gt_depths.npz "
                    f"(found {', '.join(data.files[:5]) or 'none'})"
                )
            maps = _checked_maps(source, list(data[MONODEPTH2_KEY]), "entry")
    except utils.InputError:
        raise
    except (
        OSError,
        ValueError,
        EOFError,
        zipfile.BadZipFile,
        pickle.UnpicklingError,
        AttributeError,
        ImportError,
    ) as err:
        raise utils.InputError(f"{source} is not Monodepth2's gt_depths.npz ({err})") from None
    save_ground_truth(maps, output)
    return len(maps)
