"""Video files to image sequences for ``--dataset folders``: \
``python -m tools.import_video VIDEO... --out DATA``.

Each video becomes ``DATA/<name>/`` with its frames at ``--fps``, cropped and resized, and
``intrinsics.json`` carried through both; safe to interrupt and rerun. The library is
datasets/video_import.py; docs/own_data.md (step 1) gives the whole account.
"""

from __future__ import annotations

import argparse
import logging
import math
import sys
from typing import Sequence

import options
import utils
from datasets.video_files import fps_option
from datasets.video_import import (
    DEFAULT_FPS,
    JPEG_QUALITY,
    REPEAT_THRESHOLD,
    REPEAT_WIDTH,
    ImportOptions,
    check_names,
    find_videos,
    import_one,
    plan_video,
    summary_line,
)
from deploy.metric.camera_height import camera_height_option
from utils import InputError

logger = logging.getLogger(__name__)

FPS_HELP = (
    "frames per second kept: 10 is KITTI's rate, about 1 m of motion per frame at city speeds (36 km/h), "
    "what the models and their defaults were made for. One camera trained from scratch: at 1 m per "
    "frame the paper's loss diverged in half the runs on synthetic videos; train with train.py's "
    "--photometric_warmup, or import at 30 where the video has 30 distinct frames a second (the import "
    "warns when it repeats frames: then its distinct rate, or --drop_repeats; docs/own_data.md). Lower "
    "it for slow footage (walking), raise it for fast (motorway)"
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0], formatter_class=utils.HelpFormatter)
    parser.add_argument("videos", nargs="+", help="video files, or folders of them")
    parser.add_argument(
        "--out",
        type=options.folder_path,
        required=True,
        help="data folder: one sequence folder per video goes here "
        "(train with --dataset folders --data_path OUT)",
    )
    parser.add_argument(
        "--name", default=None, help="sequence name (one video only; default: the file's name)"
    )
    parser.add_argument("--fps", type=fps_option, default=DEFAULT_FPS, help=FPS_HELP)
    g = parser.add_argument_group("geometry (crop first, then resize; the intrinsics follow both)")
    g.add_argument(
        "--crop",
        type=int,
        nargs=4,
        metavar=("X", "Y", "W", "H"),
        default=None,
        help="keep this box, in pixels of the video as shown (e.g. cut off a dashcam's bonnet)",
    )
    g.add_argument(
        "--width", type=int, default=None, help="resize to this width (alone: keep the aspect ratio)"
    )
    g.add_argument(
        "--height", type=int, default=None, help="resize to this height (alone: keep the aspect ratio)"
    )
    g.add_argument(
        "--ext",
        default="jpg",
        choices=["jpg", "png"],
        help="frame files: JPEG (Monodepth2 trains on JPEG; about 10x smaller) or PNG (lossless)",
    )
    g.add_argument("--jpeg_quality", type=int, default=JPEG_QUALITY, help="JPEG quality")
    g.add_argument(
        "--drop_repeats",
        action="store_true",
        help="leave out kept frames that repeat the previous kept one (videos that show each picture "
        f"several times; mean grey difference below {REPEAT_THRESHOLD} at {REPEAT_WIDTH} px wide): the "
        "sequence holds distinct frames only. Without it, many repeats are a warning",
    )
    g = parser.add_argument_group(
        "camera (intrinsics in pixels of the video as shown, before --crop and resize)"
    )
    g.add_argument(
        "--intrinsics",
        default=None,
        help="JSON (or YAML) file: fx, fy, cx, cy or a 3x3 / 3x4 matrix K; width and height, if given, "
        "must be the video's",
    )
    g.add_argument("--fx", type=float, default=None, help="focal length in pixels (with --fy --cx --cy)")
    g.add_argument("--fy", type=float, default=None)
    g.add_argument("--cx", type=float, default=None)
    g.add_argument("--cy", type=float, default=None)
    g.add_argument(
        "--fov",
        type=float,
        default=None,
        help="no calibration: guess the intrinsics from this horizontal field of view in degrees "
        "(centred principal point, square pixels); marked as guessed",
    )
    g.add_argument(
        "--camera_height",
        type=camera_height_option,
        default=None,
        metavar="METRES",
        help="the camera's height above the road, written into intrinsics.json (metric depth: "
        "evaluate_depth.py --scaling camera_height, docs/metric_depth.md); default: the "
        "--intrinsics file's, if it has one",
    )
    g = parser.add_argument_group("second camera (stereo training, --use_stereo)")
    g.add_argument(
        "--right_videos",
        nargs="+",
        default=None,
        help="the rectified right camera's videos, one per video, in the same order and in step",
    )
    g.add_argument("--baseline", type=float, default=None, help="metres between the two cameras")
    return parser


def check_options(opts: argparse.Namespace, parser: argparse.ArgumentParser) -> None:
    """Refuse options that cannot work, naming them."""
    if opts.fps <= 0 or not math.isfinite(opts.fps):
        parser.error(f"--fps must be positive, got {opts.fps}")
    if any(v is not None and v <= 0 for v in (opts.width, opts.height)):
        parser.error("--width and --height must be positive")
    if not 1 <= opts.jpeg_quality <= 100:
        parser.error(f"--jpeg_quality must lie in 1..100, got {opts.jpeg_quality}")
    given = [opts.fx, opts.fy, opts.cx, opts.cy]
    if any(v is not None for v in given) and None in given:
        parser.error("give all of --fx --fy --cx --cy, or none")
    if sum(x is not None for x in (opts.intrinsics, opts.fx, opts.fov)) > 1:
        parser.error("give one of --intrinsics, --fx/--fy/--cx/--cy and --fov")
    if opts.fov is not None and not 0 < opts.fov < 180:
        parser.error(f"--fov is a horizontal field of view in degrees between 0 and 180, got {opts.fov}")
    if (opts.right_videos is None) != (opts.baseline is None):
        parser.error("--right_videos and --baseline go together")
    if opts.baseline is not None and opts.baseline <= 0:
        parser.error(f"--baseline must be positive (metres), got {opts.baseline}")
    if opts.camera_height is not None and not (opts.intrinsics or opts.fx is not None or opts.fov):
        parser.error(
            "--camera_height goes into intrinsics.json: give the intrinsics too (--intrinsics, "
            "--fx ... or --fov)"
        )


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    namespace = parser.parse_args(argv)
    check_options(namespace, parser)
    opts = ImportOptions.from_namespace(namespace)
    utils.setup_logging()
    videos = find_videos(namespace.videos)
    rights = find_videos(namespace.right_videos) if namespace.right_videos else [None] * len(videos)
    if len(rights) != len(videos):
        parser.error(f"--right_videos names {len(rights)} videos for {len(videos)} left ones")
    check_names(videos, opts.name)
    if not opts.has_intrinsics:
        logger.warning(
            "no intrinsics given: the frames are written without intrinsics.json, and training refuses "
            "them until it exists. Give --intrinsics FILE or --fx --fy --cx --cy (a calibration), or "
            "--fov DEGREES (a guess from the camera's field of view; see docs/own_data.md)"
        )
    failures, summaries = [], []
    for video, right in zip(videos, rights):
        try:
            plan = plan_video(video, right, opts)
            record = import_one(plan, opts)
        except utils.DependencyError:
            raise
        except (utils.ProjectError, OSError) as err:  # OSError: a folder or file that cannot be written
            message = str(err) if isinstance(err, utils.ProjectError) else f"{video}: {err}"
            if len(videos) > 1:  # one video: its error is the command's one line
                logger.error("%s", message)
            failures.append(message)
            continue
        summaries.append(summary_line(plan, record, opts))
    for line in summaries:
        print(line)
    if failures:
        raise InputError(
            failures[0]
            if len(failures) == 1
            else f"{len(failures)} of {len(videos)} videos failed: " + "; ".join(failures)
        )
    return 0


if __name__ == "__main__":
    sys.exit(utils.run_cli(main))
