"""Write synthetic driving scenes in KITTI raw's layout: ``python -m tools.synthetic_kitti --out DIR``.

See datasets/synthetic/scenes.py for what is written and how (ray-cast streets, stereo pairs, Velodyne
scans, OXTS packets, dense depth, Cityscapes-id labels, split lists and test ground truth).
"""

from __future__ import annotations

import argparse
import logging
import sys
from typing import Sequence

import options
import utils
from datasets.synthetic.scenes import generate

logger = logging.getLogger(__name__)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0], formatter_class=utils.HelpFormatter)
    parser.add_argument(
        "--out", type=options.folder_path, required=True, help="folder to write (KITTI raw's layout)"
    )
    parser.add_argument(
        "--drives",
        type=options.positive_int,
        default=4,
        help="number of drives (the last --test_drives are held out)",
    )
    parser.add_argument("--frames", type=options.positive_int, default=100, help="frames per drive")
    parser.add_argument(
        "--scale",
        type=options.positive_float,
        default=0.25,
        help="image size as a fraction of KITTI's 1242x375",
    )
    parser.add_argument(
        "--seed", type=options.non_negative_int, default=0, help="the worlds and paths are a function of this"
    )
    parser.add_argument("--img_ext", default="png", choices=["png", "jpg"], help="frame file type")
    parser.add_argument(
        "--supersample",
        type=options.positive_int,
        default=2,
        help="rays per pixel along each axis (anti-aliasing)",
    )
    parser.add_argument(
        "--azimuth_step",
        type=options.positive_float,
        default=0.4,
        help="Velodyne azimuth resolution (degrees)",
    )
    parser.add_argument(
        "--test_drives", type=options.positive_int, default=1, help="held-out drives for the test list"
    )
    parser.add_argument(
        "--test_stride",
        type=options.positive_int,
        default=4,
        help="every n-th frame of a test drive is tested",
    )
    parser.add_argument(
        "--val_stride",
        type=options.positive_int,
        default=10,
        help="every n-th frame of a training drive validates",
    )
    parser.add_argument(
        "--metres_per_frame",
        type=options.positive_float,
        default=1.0,
        help="the car's mean motion between frames (KITTI's: about 1 m at 10 fps)",
    )
    parser.add_argument(
        "--workers", type=options.positive_int, default=None, help="processes (default: all cores)"
    )
    args = parser.parse_args(argv)
    utils.setup_logging()
    split_dir = generate(
        args.out,
        args.drives,
        args.frames,
        args.scale,
        args.seed,
        args.img_ext,
        args.supersample,
        args.azimuth_step,
        args.test_drives,
        args.test_stride,
        args.val_stride,
        args.workers,
        args.metres_per_frame,
    )
    logger.info("wrote %s; split lists and test ground truth in %s", args.out, split_dir)
    return 0


if __name__ == "__main__":
    sys.exit(utils.run_cli(main))
