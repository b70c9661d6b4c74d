"""Evaluate odometry on KITTI sequence 09 or 10 (Monodepth2's ATE of 5-frame snippets).

``python evaluate_pose.py --data_path D --load_weights_folder W --eval_split odom_9``. Monodepth2's protocol: the absolute trajectory error (ATE) of 5-frame snippets,
each aligned to the ground truth at its first frame and by a least-squares scale."""
from __future__ import annotations

import argparse
import logging
import os
import sys
from typing import Sequence

import numpy as np
import torch
from torch.utils.data import DataLoader
from tqdm import tqdm

import layers
import options
import splits
import utils
from checkpoints import model_folder
from datasets import KITTIOdomDataset, read_split
from fileio.atomic import save_array, save_json

logger = logging.getLogger(__name__)
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
    scale = np.sum(gt_xyz * pred_xyz) / np.sum(pred_xyz ** 2)
    return float(np.sqrt(np.sum((pred_xyz * scale - gt_xyz) ** 2)) / gt_xyz.shape[0])


def local_ground_truth(poses_file: str) -> list[np.ndarray]:
    """Relative ground-truth transforms between consecutive frames, from KITTI's poses/XX.txt."""
    if not os.path.isfile(poses_file):
        raise utils.MissingFileError(f"{poses_file}: ground-truth poses not found (KITTI's odometry poses/ folder "
                                     "belongs in --data_path)")
    try:
        global_poses = np.loadtxt(poses_file, ndmin=2)
    except ValueError as err:
        raise utils.InputError(f"{poses_file}: not a KITTI poses file ({err})") from None
    if global_poses.shape[1] != POSE_VALUES or len(global_poses) < 2:
        raise utils.InputError(f"{poses_file}: expected at least two lines of {POSE_VALUES} numbers (a 3x4 pose "
                               f"each), got shape {global_poses.shape}")
    global_poses = global_poses.reshape(-1, 3, 4)
    global_poses = np.concatenate([global_poses, np.zeros((global_poses.shape[0], 1, 4))], 1)
    global_poses[:, 3, 3] = 1
    return [np.linalg.inv(np.linalg.inv(global_poses[i - 1]) @ global_poses[i]) for i in range(1, len(global_poses))]


def snippet_ates(pred_poses: Sequence[np.ndarray], gt_local: Sequence[np.ndarray]) -> np.ndarray:
    """ATE of every snippet of TRACK_LENGTH frames."""
    return np.array([compute_ate(dump_xyz(gt_local[i:i + TRACK_LENGTH - 1]), dump_xyz(pred_poses[i:i + TRACK_LENGTH - 1]))
                     for i in range(len(gt_local))])


@torch.no_grad()
def predict_poses(folder: str, data_path: str, test_file: str, img_ext: str, batch_size: int, num_workers: int,
                  device: torch.device) -> np.ndarray:
    """Transforms (N, 4, 4) predicted for the consecutive frame pairs of a test file."""
    pose_encoder, pose_decoder, spec = model_folder.load_pose_model(folder, device)
    dataset = KITTIOdomDataset(data_path, read_split(test_file, KITTIOdomDataset.NEEDS_SIDE), spec.height, spec.width,
                               [0, 1], 1, is_train=False, img_ext=img_ext)
    loader = DataLoader(dataset, batch_size, shuffle=False, num_workers=num_workers, drop_last=False)
    poses = []
    for inputs in tqdm(loader, desc="predicting poses", unit="batch"):
        pair = torch.cat([inputs[("color_aug", 0, 0)], inputs[("color_aug", 1, 0)]], 1).to(device)
        axisangle, translation = pose_decoder(pose_encoder(pair))
        poses.append(layers.transformation_from_parameters(axisangle[:, 0], translation[:, 0]).cpu().numpy())
    return np.concatenate(poses)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0],
                                     formatter_class=utils.HelpFormatter)
    parser.add_argument("--data_path", required=True, help="KITTI odometry root (sequences/, poses/)")
    parser.add_argument("--load_weights_folder", required=True, help="model folder with pose_encoder.pth and pose.pth")
    parser.add_argument("--eval_split", default="odom_9", choices=sorted(POSE_SPLITS), help="test sequence")
    parser.add_argument("--splits_dir", default=None, help="local copy of the split files (default: download)")
    parser.add_argument("--img_ext", default="png", choices=["png", "jpg"], help="frame file type")
    parser.add_argument("--batch_size", type=options.positive_int, default=16, help="pairs per forward pass")
    parser.add_argument("--num_workers", type=options.non_negative_int, default=4, help="data-loading processes")
    utils.add_device_option(parser)
    opts = parser.parse_args(argv)
    utils.setup_logging()
    device = utils.pick_device(opts.device)
    if not os.path.isdir(opts.data_path):
        raise utils.MissingFileError(f"--data_path {opts.data_path} is not a folder")
    test_file = splits.test_files(opts.eval_split, opts.splits_dir)
    poses_file = os.path.join(opts.data_path, "poses", f"{POSE_SPLITS[opts.eval_split]:02d}.txt")
    gt_local = local_ground_truth(poses_file)  # checked before predicting
    num_pairs = len(read_split(test_file, KITTIOdomDataset.NEEDS_SIDE, need_lines=True))
    if num_pairs != len(gt_local):
        raise utils.InputError(f"{poses_file} holds {len(gt_local) + 1} poses but {test_file} lists {num_pairs} "
                               f"frame pairs (one pose more than pairs expected)")
    pred = predict_poses(opts.load_weights_folder, opts.data_path, test_file, opts.img_ext, opts.batch_size,
                         opts.num_workers, device)
    ates = snippet_ates(pred, gt_local)
    print(f"\n   Trajectory error: {ates.mean():0.3f}, std: {ates.std():0.3f}\n")
    save_array(pred, os.path.join(opts.load_weights_folder, "poses.npy"))
    save_json({"split": opts.eval_split, "snippets": int(len(ates)), "ate_mean": float(ates.mean()),
               "ate_std": float(ates.std())}, os.path.join(opts.load_weights_folder, f"metrics_{opts.eval_split}.json"))
    logger.info("predictions saved to %s", os.path.join(opts.load_weights_folder, "poses.npy"))
    return 0


if __name__ == "__main__":
    sys.exit(utils.run_cli(main))
