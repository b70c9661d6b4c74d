"""The options that the figure tools share (tools/figures.py, tools/evaluate_per_class.py): one command
style."""

from __future__ import annotations

import argparse
import os

import options
import utils


def add_model_options(parser: argparse.ArgumentParser, folders_required: bool) -> None:
    """Data, models, test split, ground truth and labels, as evaluate_depth.py names them."""
    parser.add_argument("--data_path", required=True, help="KITTI raw root")
    parser.add_argument(
        "--load_weights_folder",
        nargs="+" if folders_required else "*",
        required=folders_required,
        default=[],
        help="model folders (this project's, the authors' or Monodepth2's)",
    )
    parser.add_argument(
        "--names", nargs="+", default=None, help="a name per model folder (default: folder names)"
    )
    parser.add_argument(
        "--eval_split", default="eigen", help="eigen, eigen_benchmark or a folder with test_files.txt"
    )
    parser.add_argument(
        "--splits_dir", default=None, help="local copy of the split files (default: download)"
    )
    parser.add_argument(
        "--gt_depths", default=None, help="ground-truth file (default: splits/<split>/gt_depths.npz)"
    )
    parser.add_argument(
        "--seg_path", default=None, help="root of the labels (default: <data_path>/segmentation)"
    )
    parser.add_argument("--eval_stereo", action="store_true", help="no median scaling; depths x 5.4")


def check_output_dir(path: str) -> None:
    """An output folder must be a folder or absent (checked before minutes of predicting)."""
    if os.path.exists(path) and not os.path.isdir(path):
        raise utils.UnwritableError(f"--output_dir {path}: a file is in the way (give a folder)")


def add_drawing_options(parser: argparse.ArgumentParser) -> None:
    """The size of the figure (a two-column paper's column or text width, or inches)."""
    parser.add_argument(
        "--width", default="text", help="figure width: column, text (of a two-column paper) or inches"
    )


def add_prediction_options(parser: argparse.ArgumentParser) -> None:
    """How the test frames are read and predicted."""
    parser.add_argument("--img_ext", default="png", choices=["png", "jpg"], help="frame file type")
    parser.add_argument("--batch_size", type=options.positive_int, default=16, help="images per forward pass")
    parser.add_argument(
        "--num_workers", type=options.non_negative_int, default=4, help="data-loading processes"
    )
    utils.add_device_option(parser)


def model_names(opts: argparse.Namespace, parser: argparse.ArgumentParser) -> list[str]:
    """A name per model folder: --names, or the folders' own names."""
    names = opts.names or [os.path.basename(os.path.normpath(f)) for f in opts.load_weights_folder]
    if len(names) != len(opts.load_weights_folder):
        parser.error(f"--names gives {len(names)} names for {len(opts.load_weights_folder)} folders")
    repeated = sorted({n for n in names if names.count(n) > 1})
    if repeated:
        parser.error(
            f"two models would be named {repeated[0]!r} (the table, JSON and chart need distinct "
            f"names): give --names" + (" without repeats" if opts.names else "")
        )
    return names
