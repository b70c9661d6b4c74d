"""Synthetic drives as 30 fps videos with intrinsics and ground truth: \
``python -m tools.synthetic_video --out DIR``.

Writes what datasets/synthetic/video.py describes: ``drive_01.mp4`` ... (``--stereo``: and
``drive_01_right.mp4``), ``intrinsics.json`` in pixels, ``drive_01_depth.npz`` (dense depth of the frames a
10 fps import keeps) and ``segmentation/`` (their true labels). Then, as with a video of your own:
``python -m tools.import_video DIR --out DATA --intrinsics DIR/intrinsics.json`` (docs/own_data.md).
"""

from __future__ import annotations

import argparse
import logging
import sys
from typing import Sequence

import options
import utils
from datasets.synthetic import scenes
from datasets.synthetic.video import CODECS, SUBFRAMES, VIDEO_FPS, generate_videos

logger = logging.getLogger(__name__)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0], formatter_class=utils.HelpFormatter)
    parser.add_argument("--out", type=options.folder_path, required=True, help="output folder")
    parser.add_argument("--drives", type=options.positive_int, default=3, help="drives (one video each)")
    parser.add_argument(
        "--frames",
        type=options.positive_int,
        default=60,
        help="frames per drive at 10 fps, about 1 m apart "
        f"(the video has 3 (frames - 1) + 1 at {VIDEO_FPS} fps)",
    )
    parser.add_argument(
        "--scale",
        type=options.positive_float,
        default=0.25,
        help="frame size as a fraction of KITTI's 1242x375",
    )
    parser.add_argument(
        "--seed",
        type=options.non_negative_int,
        default=0,
        help="the output is a deterministic function of it",
    )
    parser.add_argument(
        "--stereo", action="store_true", help="also write the right camera's video (0.54 m baseline)"
    )
    parser.add_argument(
        "--lossless",
        action="store_true",
        help="lossless H.264 RGB (bit-exact frames; plays in FFmpeg-based players, not in browsers)",
    )
    parser.add_argument(
        "--codec",
        default=None,
        help=f"encoding, one of {', '.join(CODECS)} (default: H.264 at crf 18; h264-dashcam: "
        "12 Mbit/s at 1080p scaled to the frame size; h265: libx265 at crf 28)",
    )
    parser.add_argument(
        "--hold",
        action="store_true",
        help=f"show each 10 fps frame {SUBFRAMES} times (10 distinct frames a second, as some dashcams "
        "record) instead of interpolating the poses",
    )
    parser.add_argument(
        "--workers",
        type=options.positive_int,
        default=None,
        help="rendering processes (default: one per CPU)",
    )
    opts = parser.parse_args(argv)
    if opts.lossless and opts.codec is not None:
        parser.error("--lossless is --codec lossless: give one of them")
    utils.setup_logging()
    width = 2 * max(16, round(scenes.KITTI_WIDTH * opts.scale / 2))  # H.264 frames have even sides
    height = 2 * max(8, round(scenes.KITTI_HEIGHT * opts.scale / 2))
    videos = generate_videos(
        opts.out,
        opts.drives,
        opts.frames,
        width,
        height,
        opts.seed,
        opts.stereo,
        opts.lossless,
        workers=opts.workers,
        codec=opts.codec,
        hold=opts.hold,
    )
    logger.info("wrote %d videos of %dx%d at %d fps to %s", len(videos), width, height, VIDEO_FPS, opts.out)
    return 0


if __name__ == "__main__":
    sys.exit(utils.run_cli(main))
