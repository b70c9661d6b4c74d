"""Ground-truth depth of a test split: exported once from the Velodyne scans or the depth benchmark's maps, read by evaluation."""
from __future__ import annotations

import logging
import os

import numpy as np
from PIL import Image
from tqdm import tqdm

import splits
import utils
from datasets import parse_split_line, read_split
from datasets.kitti_dataset import DEPTH_PNG_SCALE
from datasets.kitti_utils import generate_depth_map

logger = logging.getLogger(__name__)
GT_SPLITS = ("eigen", "eigen_benchmark")
GT_FILE = "gt_depths.npz"
GT_CAMERA = 2  # the Eigen test frames are all from the left colour camera


def ground_truth_path(split: str, output_dir: str | None = None) -> str:
    """Where the exported ground truth of a split lives."""
    return os.path.join(output_dir or os.path.join(splits.SPLITS_DIR, split), GT_FILE)


def velodyne_ground_truth(data_path: str, folder: str, frame_index: int) -> np.ndarray:
    """Sparse depth (375x1242-ish) of a KITTI raw frame from its Velodyne scan."""
    calib_dir = os.path.join(data_path, folder.split("/")[0])
    velo = os.path.join(data_path, folder, "velodyne_points", "data", f"{frame_index:010d}.bin")
    return generate_depth_map(calib_dir, velo, GT_CAMERA, vel_depth=True)


def benchmark_ground_truth(data_path: str, folder: str, frame_index: int) -> np.ndarray:
    """Annotated depth of a KITTI raw frame from the depth benchmark's PNG."""
    path = os.path.join(data_path, folder, "proj_depth", "groundtruth", f"image_0{GT_CAMERA}", f"{frame_index:010d}.png")
    with Image.open(path) as image:
        return np.asarray(image).astype(np.float32) / DEPTH_PNG_SCALE


def export(data_path: str, split: str, test_file: str, output_path: str) -> int:
    """Write the ground truth of every line of ``test_file`` to ``output_path``; return the count."""
    read = velodyne_ground_truth if split == "eigen" else benchmark_ground_truth
    lines = read_split(test_file)
    maps = {}
    for i, line in enumerate(tqdm(lines, desc=f"ground truth of {split}", unit="frame")):
        entry = parse_split_line(line, f"{test_file}:{i + 1}")
        maps[f"depth_{i:04d}"] = read(data_path, entry.folder, entry.frame_index).astype(np.float32)
    with utils.atomic_write(output_path) as tmp:
        np.savez_compressed(tmp, **maps)
    return len(maps)


def load_ground_truth(path: str) -> list[np.ndarray]:
    """Ground-truth maps in test-file order, from this project's file or Monodepth2's (key ``data``)."""
    if not os.path.isfile(path):
        raise utils.InputError(f"{path} not found: run export_gt_depth.py for this split first")
    with np.load(path, allow_pickle=False) as data:
        keys = sorted(k for k in data.files if k.startswith("depth_"))
        if keys:
            return [data[k] for k in keys]
    # Monodepth2 stores an object array under "data", which needs pickle: only for files users made.
    logger.info("%s is in Monodepth2's format (a pickled object array)", path)
    with np.load(path, allow_pickle=True, fix_imports=True, encoding="latin1") as data:
        return list(data["data"])
