"""Monodepth2's odometry protocol: the absolute trajectory error (ATE) of 5-frame snippets on KITTI
sequence 09 or 10, each aligned to the ground truth at its first frame and by a least-squares scale
(``python evaluate_pose.py`` runs it)."""

from __future__ import annotations

import os
from typing import Sequence

import numpy as np
import torch
from torch.utils.data import DataLoader
from tqdm import tqdm

import layers
import utils
from checkpoints import model_folder
from datasets import KITTIOdomDataset, read_split

TRACK_LENGTH = 5  # frames per snippet
POSE_SPLITS = {"odom_9": 9, "odom_10": 10}
POSE_VALUES = 12  # a line of KITTI's poses/XX.txt: a 3x4 camera-to-world matrix, row by row


def dump_xyz(source_to_target: Sequence[np.ndarray]) -> np.ndarray:
    """Camera positions along a chain of relative transforms, starting at the origin."""
    cam_to_world = np.eye(4)
    xyzs = [cam_to_world[:3, 3]]
    for transform in source_to_target:
        cam_to_world = cam_to_world @ transform
        xyzs.append(cam_to_world[:3, 3])
    return np.array(xyzs)


def compute_ate(gt_xyz: np.ndarray, pred_xyz: np.ndarray) -> float:
    """ATE of a snippet after aligning its first point and a least-squares scale (SfMLearner's)."""
    pred_xyz = pred_xyz + (gt_xyz[0] - pred_xyz[0])[None, :]
    scale = np.sum(gt_xyz * pred_xyz) / np.sum(pred_xyz**2)
    return float(np.sqrt(np.sum((pred_xyz * scale - gt_xyz) ** 2)) / gt_xyz.shape[0])


def local_ground_truth(poses_file: str) -> list[np.ndarray]:
    """Relative ground-truth transforms between consecutive frames, from KITTI's poses/XX.txt."""
    if not os.path.isfile(poses_file):
        raise utils.MissingFileError(
            f"{poses_file}: ground-truth poses not found (KITTI's odometry poses/ folder "
            "belongs in --data_path)"
        )
    try:
        global_poses = np.loadtxt(poses_file, ndmin=2)
    except ValueError as err:
        raise utils.InputError(f"{poses_file}: not a KITTI poses file ({err})") from None
    if global_poses.shape[1] != POSE_VALUES or len(global_poses) < 2:
        raise utils.InputError(
            f"{poses_file}: expected at least two lines of {POSE_VALUES} numbers (a 3x4 pose "
            f"each), got shape {global_poses.shape}"
        )
    global_poses = global_poses.reshape(-1, 3, 4)
    global_poses = np.concatenate([global_poses, np.zeros((global_poses.shape[0], 1, 4))], 1)
    global_poses[:, 3, 3] = 1
    return [
        np.linalg.inv(np.linalg.inv(global_poses[i - 1]) @ global_poses[i])
        for i in range(1, len(global_poses))
    ]


def checked_ground_truth(data_path: str, eval_split: str, test_file: str) -> list[np.ndarray]:
    """The relative ground-truth transforms of a test split, checked (one pose more than the test file's
    frame pairs) before any prediction."""
    poses_file = os.path.join(data_path, "poses", f"{POSE_SPLITS[eval_split]:02d}.txt")
    gt_local = local_ground_truth(poses_file)
    num_pairs = len(read_split(test_file, KITTIOdomDataset.NEEDS_SIDE, need_lines=True))
    if num_pairs != len(gt_local):
        raise utils.InputError(
            f"{poses_file} holds {len(gt_local) + 1} poses but {test_file} lists {num_pairs} "
            f"frame pairs (one pose more than pairs expected)"
        )
    return gt_local


def snippet_ates(pred_poses: Sequence[np.ndarray], gt_local: Sequence[np.ndarray]) -> np.ndarray:
    """ATE of every snippet of TRACK_LENGTH frames."""
    return np.array(
        [
            compute_ate(
                dump_xyz(gt_local[i : i + TRACK_LENGTH - 1]), dump_xyz(pred_poses[i : i + TRACK_LENGTH - 1])
            )
            for i in range(len(gt_local))
        ]
    )


@torch.no_grad()
def predict_poses(
    folder: str,
    data_path: str,
    test_file: str,
    img_ext: str,
    batch_size: int,
    num_workers: int,
    device: torch.device,
) -> np.ndarray:
    """Transforms (N, 4, 4) predicted for the consecutive frame pairs of a test file."""
    pose_encoder, pose_decoder, spec = model_folder.load_pose_model(folder, device)
    dataset = KITTIOdomDataset(
        data_path,
        read_split(test_file, KITTIOdomDataset.NEEDS_SIDE),
        spec.height,
        spec.width,
        [0, 1],
        1,
        is_train=False,
        img_ext=img_ext,
    )
    loader = DataLoader(dataset, batch_size, shuffle=False, num_workers=num_workers, drop_last=False)
    poses = []
    for inputs in tqdm(loader, desc="predicting poses", unit="batch"):
        pair = torch.cat([inputs[("color_aug", 0, 0)], inputs[("color_aug", 1, 0)]], 1).to(device)
        axisangle, translation = pose_decoder(pose_encoder(pair))
        poses.append(layers.transformation_from_parameters(axisangle[:, 0], translation[:, 0]).cpu().numpy())
    return np.concatenate(poses)
