"""Evaluate odometry on KITTI sequence 09 or 10 (Monodepth2's ATE of 5-frame snippets).

``python evaluate_pose.py --data_path D --load_weights_folder W --eval_split odom_9`` prints the mean
and spread of the snippets' ATE (the protocol: evaluation/pose.py) and writes the metrics as JSON and
the predicted poses beside the weights."""

from __future__ import annotations

import argparse
import logging
import os
import sys
from typing import Sequence

import options
import splits
import utils
from evaluation.depth import PREFERRED_WORKERS, default_workers
from evaluation.pose import POSE_SPLITS, checked_ground_truth, predict_poses, snippet_ates
from utils.files import save_array, save_json

logger = logging.getLogger(__name__)


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """The options, with the loader processes resolved (``default_workers``: what the machine has)."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0], formatter_class=utils.HelpFormatter)
    parser.add_argument("--data_path", required=True, help="KITTI odometry root (sequences/, poses/)")
    parser.add_argument(
        "--load_weights_folder", required=True, help="model folder with pose_encoder.pth and pose.pth"
    )
    parser.add_argument("--eval_split", default="odom_9", choices=sorted(POSE_SPLITS), help="test sequence")
    parser.add_argument(
        "--splits_dir", default=None, help="local copy of the split files (default: download)"
    )
    parser.add_argument("--img_ext", default="png", choices=["png", "jpg"], help="frame file type")
    parser.add_argument("--batch_size", type=options.positive_int, default=16, help="pairs per forward pass")
    parser.add_argument(
        "--num_workers",
        type=options.non_negative_int,
        default=None,
        help=f"data-loading processes (default: {PREFERRED_WORKERS}, at most the CPUs this process may use)",
    )
    utils.add_device_option(parser)
    opts = parser.parse_args(argv)
    opts.num_workers = default_workers(opts.num_workers)
    return opts


def main(argv: Sequence[str] | None = None) -> int:
    """Evaluate the pose network on a KITTI odometry sequence and save its predictions beside the weights."""
    opts = parse_args(argv)
    utils.setup_logging()
    device = utils.pick_device(opts.device)
    if not os.path.isdir(opts.data_path):
        raise utils.MissingFileError(f"--data_path {opts.data_path} is not a folder")
    test_file = splits.test_files(opts.eval_split, opts.splits_dir)
    gt_local = checked_ground_truth(opts.data_path, opts.eval_split, test_file)  # before predicting
    pred = predict_poses(
        opts.load_weights_folder,
        opts.data_path,
        test_file,
        opts.img_ext,
        opts.batch_size,
        opts.num_workers,
        device,
    )
    ates = snippet_ates(pred, gt_local)
    print(f"\n   Trajectory error: {ates.mean():0.3f}, std: {ates.std():0.3f}\n")
    save_array(pred, os.path.join(opts.load_weights_folder, "poses.npy"))
    save_json(
        {
            "split": opts.eval_split,
            "snippets": int(len(ates)),
            "ate_mean": float(ates.mean()),
            "ate_std": float(ates.std()),
        },
        os.path.join(opts.load_weights_folder, f"metrics_{opts.eval_split}.json"),
    )
    logger.info("predictions saved to %s", os.path.join(opts.load_weights_folder, "poses.npy"))
    return 0


if __name__ == "__main__":
    sys.exit(utils.run_cli(main))
