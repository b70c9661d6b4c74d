"""Export the ground truth of a test split: ``python export_gt_depth.py --data_path D --split eigen``.

``eigen``: Velodyne points projected into camera 2 (Monodepth2's protocol: the depth stored is the
point's forward Velodyne coordinate x; pixel = round(projection) - 1; the nearest point of a pixel
stays). ``eigen_benchmark``: the depth benchmark's annotated maps (uint16 PNG / 256). The maps are
written to ``<splits>/<split>/gt_depths.npz`` (one array per test line, keys ``depth_0000`` ...,
no pickled objects), where evaluate_depth.py looks for them.
"""
from __future__ import annotations

import argparse
import logging
import sys
from typing import Sequence

import splits
import utils
from evaluation.ground_truth import GT_SPLITS, export, ground_truth_path

logger = logging.getLogger(__name__)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0],
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--data_path", required=True, help="root of the KITTI raw data")
    parser.add_argument("--split", required=True, choices=GT_SPLITS, help="test split to export")
    parser.add_argument("--splits_dir", default=None, help="local copy of the split files (default: download)")
    parser.add_argument("--output_dir", default=None, help="folder for gt_depths.npz (default: splits/<split>/)")
    args = parser.parse_args(argv)
    utils.setup_logging()
    output = ground_truth_path(args.split, args.output_dir)
    count = export(args.data_path, args.split, splits.test_files(args.split, args.splits_dir), output)
    logger.info("wrote %d ground-truth maps to %s", count, output)
    return 0


if __name__ == "__main__":
    sys.exit(utils.run_cli(main))
