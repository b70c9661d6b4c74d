"""Writes a tiny drive in KITTI raw's layout: real PNG/JPEG frames, calibration, Velodyne scans,
pseudo-labels and split files, for tests that exercise the real loaders."""

from __future__ import annotations

import os
from dataclasses import dataclass

import numpy as np
from PIL import Image

from datasets.cityscapes import label_id_palette

DATE = "2011_09_26"
DRIVE = f"{DATE}/{DATE}_drive_0001_sync"
NATIVE_WIDTH, NATIVE_HEIGHT = 208, 64
FOCAL = 100.0
WALL_DISTANCE = 10.0  # metres: every Velodyne point lies on a wall this far ahead
# Cityscapes label ids written into the pseudo-labels
ROAD, CAR, SKY, UNLABELED = 7, 26, 23, 0


@dataclass
class TinyKitti:
    data_path: str
    split_dir: str
    num_frames: int
    width: int = NATIVE_WIDTH
    height: int = NATIVE_HEIGHT


def _texture(rng: np.random.Generator, height: int, width: int) -> np.ndarray:
    """Smooth random colour texture (H, W, 3) uint8: coarse noise upsampled, so warps can match."""
    coarse = rng.integers(0, 256, (height // 8 + 2, width // 8 + 2, 3), dtype=np.uint8)
    image = Image.fromarray(coarse).resize((width + 16, height + 16), Image.Resampling.BILINEAR)
    return np.asarray(image)


def label_ids(height: int, width: int) -> np.ndarray:
    """Label-id map: sky on top, road bottom-left, car bottom-right, an unlabelled corner."""
    ids = np.full((height, width), ROAD, dtype=np.uint8)
    ids[: height // 3] = SKY
    ids[height // 3 :, width // 2 :] = CAR
    ids[:4, :4] = UNLABELED
    return ids


def write_label_png(path: str, ids: np.ndarray) -> None:
    """Save label ids as a palette PNG, the authors' encoding, unchecked (tests write bad maps too)."""
    image = Image.fromarray(np.asarray(ids, dtype=np.uint8), mode="P")
    image.putpalette(label_id_palette())
    os.makedirs(os.path.dirname(path), exist_ok=True)
    image.save(path)


def write_calibration(date_dir: str, width: int, height: int) -> None:
    """calib_cam_to_cam.txt and calib_velo_to_cam.txt: rectified pinhole, Velodyne axes -> camera axes."""
    os.makedirs(date_dir, exist_ok=True)
    P = f"{FOCAL} 0 {width / 2} 0 0 {FOCAL} {height / 2} 0 0 0 1 0"
    with open(os.path.join(date_dir, "calib_cam_to_cam.txt"), "w") as f:
        f.write("calib_time: 09-Jan-2012 13:57:47\n")
        f.write("R_rect_00: 1 0 0 0 1 0 0 0 1\n")
        for cam in ("02", "03"):
            f.write(f"S_rect_{cam}: {width:.6e} {height:.6e}\n")
            f.write(f"P_rect_{cam}: {P}\n")
    with open(os.path.join(date_dir, "calib_velo_to_cam.txt"), "w") as f:
        f.write("calib_time: 15-Mar-2012 11:37:16\n")
        f.write(
            "R: 0 -1 0 0 0 -1 1 0 0\n"
        )  # velodyne x forward, y left, z up -> camera x right, y down, z forward
        f.write("T: 0 0 0\n")


def wall_scan(rng: np.random.Generator, num_points: int = 4000) -> np.ndarray:
    """Velodyne points (N, 4) on a wall WALL_DISTANCE ahead, plus some behind the sensor."""
    y = rng.uniform(-8, 8, num_points)
    z = rng.uniform(-2, 2, num_points)
    points = np.stack([np.full(num_points, WALL_DISTANCE), y, z, rng.uniform(0, 1, num_points)], 1)
    behind = points[:50].copy()
    behind[:, 0] = -5
    return np.concatenate([points, behind]).astype(np.float32)


def make_tiny_kitti(
    root: str,
    num_frames: int = 8,
    seed: int = 0,
    exts=("png", "jpg"),
    width: int = NATIVE_WIDTH,
    height: int = NATIVE_HEIGHT,
) -> TinyKitti:
    """One drive of ``num_frames`` frames (both cameras) sliding over a texture, with labels and scans."""
    rng = np.random.default_rng(seed)
    data_path = os.path.join(root, "kitti_data")
    write_calibration(os.path.join(data_path, DATE), width, height)
    world = _texture(rng, height, width + 2 * num_frames)
    drive_dir = os.path.join(data_path, DRIVE)
    for i in range(num_frames):
        for cam, shift in (("02", 0), ("03", 3)):
            frame = world[:height, i * 2 + shift : i * 2 + shift + width]
            folder = os.path.join(drive_dir, f"image_{cam}", "data")
            os.makedirs(folder, exist_ok=True)
            for ext in exts:
                Image.fromarray(np.ascontiguousarray(frame)).save(os.path.join(folder, f"{i:010d}.{ext}"))
            write_label_png(
                os.path.join(data_path, "segmentation", DRIVE, f"image_{cam}", f"{i:010d}.png"),
                label_ids(height, width),
            )
        velo_dir = os.path.join(drive_dir, "velodyne_points", "data")
        os.makedirs(velo_dir, exist_ok=True)
        wall_scan(rng).tofile(os.path.join(velo_dir, f"{i:010d}.bin"))

    split_dir = os.path.join(root, "split")
    os.makedirs(split_dir, exist_ok=True)
    inner = list(range(1, num_frames - 1))
    train = [f"{DRIVE} {i} {'l' if i % 2 else 'r'}" for i in inner]
    val = [f"{DRIVE} {i} l" for i in inner[:2]]
    with open(os.path.join(split_dir, "train_files.txt"), "w") as f:
        f.write("\n".join(train) + "\n")
    with open(os.path.join(split_dir, "val_files.txt"), "w") as f:
        f.write("\n".join(val) + "\n")
    return TinyKitti(data_path, split_dir, num_frames, width, height)
