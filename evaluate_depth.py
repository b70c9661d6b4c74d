"""Evaluate depth on a KITTI test split with Monodepth2's protocol (see evaluation/depth.py).

``python evaluate_depth.py --data_path D --load_weights_folder W --eval_split eigen`` loads a model
folder of this project, of the authors or of Monodepth2 (recognised from its keys; ``--model NAME``: a
released one, ``--list_models``), predicts the disparity of every test frame, compares it with the
ground truth that export_gt_depth.py wrote,
prints Monodepth2's table and writes the metrics as JSON.
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
import sys
from typing import Sequence

import options
import utils
from checkpoints import released
from datasets import DATASETS
from deploy.metric import camera_height
from evaluation import depth as evaluation_depth
from evaluation.depth import PREFERRED_WORKERS, SCALINGS, EvaluationOptions, evaluate


def build_parser() -> argparse.ArgumentParser:
    """Evaluation options (their defaults: EvaluationOptions')."""
    parser = argparse.ArgumentParser(
        description=evaluation_depth.__doc__.split("\n")[0], formatter_class=utils.HelpFormatter
    )
    parser.add_argument(
        "--data_path", help="KITTI raw root (for benchmark: the test_depth_prediction_anonymous folder)"
    )
    parser.add_argument(
        "--load_weights_folder", help="model folder (this project's, the authors' or Monodepth2's)"
    )
    parser.add_argument(
        "--eval_split",
        help="eigen, eigen_benchmark, benchmark, or a folder with test_files.txt (and gt_depths.npz)",
    )
    parser.add_argument("--splits_dir", help="local copy of the split files (default: download)")
    parser.add_argument("--gt_depths", help="ground-truth file (default: splits/<split>/gt_depths.npz)")
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--eval_mono", action="store_true", help="median scaling per image (the default)")
    mode.add_argument("--eval_stereo", action="store_true", help="no median scaling; depths x 5.4")
    parser.add_argument("--disable_median_scaling", action="store_true", help="no per-image median scaling")
    parser.add_argument(
        "--pred_depth_scale_factor", type=options.positive_float, help="multiply predicted depths"
    )
    parser.add_argument(
        "--scaling",
        choices=SCALINGS,
        help="mono models: median: each image scaled by its ground truth's median ratio "
        "(Monodepth2's protocol); camera_height: each image scaled by the model's own "
        "road plane and --camera_height, no ground truth used (docs/metric_depth.md); "
        "reports the ratio of that scale to the median one",
    )
    parser.add_argument(
        "--camera_height",
        type=camera_height.camera_height_option,
        metavar="METRES",
        help="--scaling camera_height: the camera's height above the road (KITTI: 1.65); "
        "default with --dataset folders: each sequence's camera_height "
        "(intrinsics.json)",
    )
    camera_height.add_ground_options(parser)
    parser.add_argument(
        "--garg_crop",
        action=argparse.BooleanOptionalAction,
        help="Garg crop and 1e-3 < gt < 80 (default: on for eigen, off otherwise)",
    )
    parser.add_argument(
        "--post_process", action="store_true", help="average with the flipped image's prediction"
    )
    parser.add_argument(
        "--save_pred_disps", action="store_true", help="save disparities as disps_<split>_split.npy"
    )
    parser.add_argument("--ext_disp_to_eval", help="evaluate disparities from this .npy file")
    parser.add_argument(
        "--eval_eigen_to_benchmark",
        action="store_true",
        help="the --ext_disp_to_eval file is in eigen order: pick the eigen_benchmark frames",
    )
    parser.add_argument("--no_eval", action="store_true", help="only predict (and save)")
    parser.add_argument(
        "--output_json",
        help="metrics file (default: <folder>/metrics_<split>.json; with --scaling camera_height "
        "<folder>/metrics_<split>_camera_height.json, beside the median-scaled one)",
    )
    parser.add_argument("--img_ext", choices=["png", "jpg"], help="frame file type")
    parser.add_argument(
        "--dataset",
        choices=sorted(DATASETS),
        help="layout of --data_path (folders: your own sequences, docs/own_data.md)",
    )
    parser.add_argument("--batch_size", type=options.positive_int, help="images per forward pass")
    parser.add_argument(
        "--num_workers",
        type=options.non_negative_int,
        help=f"data-loading processes (default: {PREFERRED_WORKERS}, at most the CPUs this process may use)",
    )
    utils.add_device_option(parser)
    parser.set_defaults(**dataclasses.asdict(EvaluationOptions()))
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    released.add_model_option(parser, parser)  # --model NAME: a released model, fetched once
    opts = parser.parse_args(argv)
    utils.setup_logging()
    hint = released.entry(opts.model).info.get("eval", "") if opts.model else ""
    if "--eval_stereo" in hint and not opts.eval_stereo:
        logging.getLogger(__name__).warning(
            "%s is evaluated with %s (its publisher's protocol)", opts.model, hint
        )
    released.resolve_model_option(opts)
    evaluate(opts)
    return 0


if __name__ == "__main__":
    sys.exit(utils.run_cli(main))
