"""The synthetic KITTI generator: its files read back through the project's own loaders, and its
ground truth (Velodyne, dense depth, OXTS poses, stereo and temporal views) agrees with itself."""

from __future__ import annotations

import os

import numpy as np
import pytest
import torch
from PIL import Image

import layers
from datasets import KITTIDepthDataset, KITTIRAWDataset, read_split
from datasets.ground_truth import load_ground_truth
from datasets.kitti_dataset import DEPTH_PNG_SCALE
from datasets.kitti_utils import camera_poses_from_oxts, generate_depth_map, read_oxts_packet
from datasets.synthetic import scenes as synth

FRAMES = 6
SCALE = 0.2  # 248x75


@pytest.fixture(scope="module")
def synthetic(tmp_path_factory):
    out = str(tmp_path_factory.mktemp("synthetic"))
    split_dir = synth.generate(
        out,
        num_drives=2,
        frames_per_drive=FRAMES,
        scale=SCALE,
        seed=3,
        test_stride=1,
        val_stride=2,
        workers=2,
    )
    drive = synth.build_drive(f"{synth.DATE}_drive_0001_sync", FRAMES, 3 * 1000)
    return out, split_dir, drive


def drive_dir(out: str, k: int = 1) -> str:
    date = synth.DATE
    return os.path.join(out, date, f"{date}_drive_{k:04d}_sync")


def read_depth_png(path: str) -> np.ndarray:
    return np.asarray(Image.open(path)).astype(np.float64) / DEPTH_PNG_SCALE


@pytest.mark.slow
def test_layout_and_splits(synthetic):
    out, split_dir, _ = synthetic
    folder = drive_dir(out)
    for sub in (
        "image_02/data",
        "image_03/data",
        "velodyne_points/data",
        "oxts/data",
        "proj_depth/groundtruth/image_02",
        "proj_depth/groundtruth/image_03",
    ):
        assert len(os.listdir(os.path.join(folder, sub))) == FRAMES, sub
    for name in ("calib_cam_to_cam.txt", "calib_velo_to_cam.txt", "calib_imu_to_velo.txt"):
        assert os.path.isfile(os.path.join(out, synth.DATE, name))
    train, val, test = (
        read_split(os.path.join(split_dir, f"{s}_files.txt")) for s in ("train", "val", "test")
    )
    # drive 1 trains and validates (inner frames 1..4, every 2nd validates), drive 2 is held out for testing
    assert len(train) == 2 and len(val) == 2 and len(test) == FRAMES - 2
    assert all("drive_0002" in line for line in test) and not any(
        "drive_0002" in line for line in train + val
    )
    assert len(load_ground_truth(os.path.join(split_dir, "gt_depths.npz"))) == len(test)
    assert not [f for _, _, files in os.walk(out) for f in files if ".tmp" in f]


def test_deterministic(synthetic, tmp_path):
    out, _, _ = synthetic
    camera = synth.Camera(round(synth.KITTI_WIDTH * SCALE), round(synth.KITTI_HEIGHT * SCALE))
    drive = synth.build_drive("again", FRAMES, 3 * 1000)
    rgb, depth, _ = synth.render(camera, drive.poses[2], drive.world)
    written = np.asarray(Image.open(os.path.join(drive_dir(out), "image_02", "data", "0000000002.png")))
    np.testing.assert_array_equal(rgb, written)
    written_depth = read_depth_png(
        os.path.join(drive_dir(out), "proj_depth", "groundtruth", "image_02", "0000000002.png")
    )
    np.testing.assert_allclose(written_depth, depth, atol=0.5 / DEPTH_PNG_SCALE)


def test_culling_matches_brute_force(synthetic):
    _, _, drive = synthetic
    camera = synth.Camera(120, 40)
    pose = drive.poses[3]
    world = drive.world.near(pose[2, 3])
    grid = camera.rays(1) @ pose[:3, :3].T
    every_ray = [(0, camera.height, 0, camera.width)] * len(world.lo)
    culled = synth.cast_grid(
        pose[:3, 3], grid, world, synth.camera_footprints(pose, camera.K, 1, grid.shape[:2], world)
    )
    brute = synth.cast_grid(pose[:3, 3], grid, world, every_ray)
    for a, b in zip(culled, brute):
        np.testing.assert_array_equal(a, b)
    assert (culled[1] >= 0).mean() > 0.3  # boxes do cover much of the view


def test_velodyne_agrees_with_dense_depth(synthetic):
    out, _, _ = synthetic
    calib_dir = os.path.join(out, synth.DATE)
    for frame in (1, 4):
        velo = os.path.join(drive_dir(out), "velodyne_points", "data", f"{frame:010d}.bin")
        sparse = generate_depth_map(calib_dir, velo, cam=2)  # camera z at pixel round(u) - 1
        dense = read_depth_png(
            os.path.join(drive_dir(out), "proj_depth", "groundtruth", "image_02", f"{frame:010d}.png")
        )
        rows, cols = np.nonzero(sparse)
        rows, cols = rows + 1, cols + 1  # undo Monodepth2's "- 1" to find the pixel the point projects to
        inside = (rows < dense.shape[0]) & (cols < dense.shape[1])
        rows, cols, values = rows[inside], cols[inside], sparse[np.nonzero(sparse)][inside]
        assert len(values) > 500
        reference = dense[rows, cols]
        valid = reference > 0
        assert valid.mean() > 0.97  # LiDAR points never land on the sky
        rel = np.abs(values[valid] - reference[valid]) / reference[valid]
        # a point sits within its pixel, and edges seen from the scanner 0.27 m behind differ: tolerances
        assert np.median(rel) < 0.01 and np.percentile(rel, 90) < 0.05


def test_oxts_poses_agree_with_rendering(synthetic):
    out, _, drive = synthetic
    packets = np.stack(
        [
            read_oxts_packet(os.path.join(drive_dir(out), "oxts", "data", f"{i:010d}.txt"))
            for i in range(FRAMES)
        ]
    )
    from_oxts = camera_poses_from_oxts(os.path.join(out, synth.DATE), packets)
    for i in range(1, FRAMES):
        expected = np.linalg.inv(drive.poses[0]) @ drive.poses[i]
        relative = np.linalg.inv(from_oxts[0]) @ from_oxts[i]
        np.testing.assert_allclose(relative, expected, atol=1e-6)
    step = np.linalg.norm(np.diff(drive.poses[:, :3, 3], axis=0), axis=1)
    assert np.all((step > 0.8) & (step < 1.2))  # about 1 m per frame


def warp_error(
    target: np.ndarray, source: np.ndarray, depth: np.ndarray, target_to_source: np.ndarray, K: np.ndarray
) -> tuple[float, float]:
    """Mean photometric error of the source warped into the target with the true depth and motion, and
    without."""
    h, w = depth.shape
    K4 = torch.eye(4, dtype=torch.float64)[None]
    K4[0, :3, :3] = torch.from_numpy(K)
    img = lambda a: torch.from_numpy(np.array(a)).permute(2, 0, 1)[None].double() / 255  # noqa: E731
    depth_t = torch.from_numpy(depth)[None, None]
    points = layers.backproject_depth(depth_t, torch.linalg.inv(K4))
    coords = layers.project_3d(points, K4, torch.from_numpy(target_to_source)[None], h, w)
    warped = layers.warp(img(source), coords)
    valid = (depth_t > 0) & (coords.abs().amax(-1, keepdim=True).permute(0, 3, 1, 2) < 0.95)
    error = (warped - img(target)).abs().mean(1, keepdim=True)
    identity = (img(source) - img(target)).abs().mean(1, keepdim=True)
    return error[valid].mean().item(), identity[valid].mean().item()


def test_views_are_photometrically_consistent(synthetic):
    """Warping with the true depth and pose reproduces the target: what self-supervision relies on."""
    out, _, drive = synthetic
    folder = drive_dir(out)

    def load(cam, i):
        return np.asarray(Image.open(os.path.join(folder, f"image_{cam}", "data", f"{i:010d}.png")))

    depth = read_depth_png(os.path.join(folder, "proj_depth", "groundtruth", "image_02", "0000000002.png"))
    camera = synth.Camera(depth.shape[1], depth.shape[0])
    temporal = np.linalg.inv(drive.poses[3]) @ drive.poses[2]  # target camera -> next frame's camera
    stereo = np.eye(4)
    stereo[0, 3] = -synth.STEREO_BASELINE  # left camera -> right camera
    for cam, i, motion in (("02", 3, temporal), ("03", 2, stereo)):
        error, identity = warp_error(load("02", 2), load(cam, i), depth, motion, camera.K)
        assert error < 0.04 and error < identity / 3, (cam, error, identity)


def test_loaders_read_the_generated_data(synthetic):
    out, split_dir, _ = synthetic
    lines = read_split(os.path.join(split_dir, "train_files.txt"))
    dataset = KITTIRAWDataset(out, lines, 64, 192, [0, -1, 1], 4, is_train=True, load_labels=True)
    item = dataset[0]
    assert item[("color", 0, 0)].shape == (3, 64, 192)
    labels = item[("seg", 0, 0)]
    assert set(torch.unique(labels).tolist()) <= set(range(19)) | {255}
    assert {0, 2, 10} <= set(torch.unique(labels).tolist())  # road, building and sky are in view
    assert item["depth_gt"].max() > 5  # Velodyne ground truth for validation
    dense = KITTIDepthDataset(out, lines, 64, 192, [0], 1, is_train=False)
    assert dense.check_depth() and (dense[0]["depth_gt"] > 0).float().mean() > 0.5


def test_bad_arguments():
    with pytest.raises(ValueError, match="--test_drives"):
        synth.generate("/nonexistent", num_drives=1)
