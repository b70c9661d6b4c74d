"""Export the ground truth of a test split: ``python export_gt_depth.py --data_path D --split eigen``.

``eigen``: Velodyne points projected into camera 2 (Monodepth2's protocol); ``eigen_benchmark``: the depth
benchmark's maps; written to ``<splits>/<split>/gt_depths.npz`` (plain arrays). ``--convert_monodepth2
IN.npz --output OUT.npz`` rewrites Monodepth2's pickled file; it unpickles IN.npz: run it only on a file
you trust. The protocol: docs/fidelity.md, "Evaluation"; the conversion: the README's "Evaluation"."""

from __future__ import annotations

import argparse
import logging
import sys
from typing import Sequence

import options
import splits
import utils
from datasets.ground_truth import GT_SPLITS, convert_monodepth2, export, ground_truth_path

logger = logging.getLogger(__name__)


def build_parser() -> argparse.ArgumentParser:
    """Options of the export and of the Monodepth2 conversion."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0], formatter_class=utils.HelpFormatter)
    parser.add_argument("--data_path", default=None, help="root of the KITTI raw data (needed to export)")
    parser.add_argument("--split", default=None, choices=GT_SPLITS, help="test split to export")
    parser.add_argument(
        "--splits_dir", default=None, help="local copy of the split files (default: download)"
    )
    parser.add_argument(
        "--output_dir",
        type=options.folder_path,
        default=None,
        help="folder for gt_depths.npz (default: splits/<split>/)",
    )
    convert = parser.add_argument_group(
        "converting Monodepth2's file",
        "Monodepth2's gt_depths.npz holds a pickled object array; evaluate_depth.py refuses it, "
        "since unpickling a crafted file runs code. "
        "Convert a file you trust once; the result holds plain arrays only.",
    )
    convert.add_argument(
        "--convert_monodepth2",
        metavar="IN.npz",
        default=None,
        help="convert this Monodepth2 gt_depths.npz (UNPICKLES it: only a file you trust)",
    )
    convert.add_argument(
        "--output",
        metavar="OUT.npz",
        default=None,
        help="where the converted file is written (then pass it as --gt_depths, or place it at "
        "splits/<split>/gt_depths.npz)",
    )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.convert_monodepth2 is not None:
        if args.output is None:
            parser.error("--convert_monodepth2 needs --output OUT.npz")
        utils.setup_logging()
        count = convert_monodepth2(args.convert_monodepth2, args.output)
        logger.info("converted %d ground-truth maps of %s to %s", count, args.convert_monodepth2, args.output)
        return 0
    if args.data_path is None or args.split is None:
        parser.error("give --data_path and --split (or --convert_monodepth2 IN.npz --output OUT.npz)")
    if args.output is not None:
        parser.error("--output goes with --convert_monodepth2; an export writes to --output_dir")
    utils.setup_logging()
    output = ground_truth_path(args.split, args.output_dir)
    count = export(args.data_path, args.split, splits.test_files(args.split, args.splits_dir), output)
    logger.info("wrote %d ground-truth maps to %s", count, output)
    return 0


if __name__ == "__main__":
    sys.exit(utils.run_cli(main))
