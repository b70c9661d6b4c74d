"""Video files to image sequences for ``--dataset folders``: \
``python -m tools.import_video VIDEO... --out DATA``.

Each video (mp4, mov, mkv, avi, m4v, webm; or a folder of them) becomes ``DATA/<name>/`` (the file's
name without extension) holding its frames at ``--fps`` (every frame whose time reaches the next tick
of that rate), optionally cropped (``--crop X Y W H``, pixels of the video as shown) and resized
(``--width``/``--height``), as ``0000000000.jpg ...``, and ``intrinsics.json`` in pixels of the
written frames (from ``--intrinsics FILE`` or ``--fx --fy --cx --cy`` in pixels of the video as
shown, carried through the crop and resize; or guessed from ``--fov``). ``--right_videos`` adds a
second, rectified camera (``<name>/right/``) with its ``--baseline`` for stereo training.

Safe to interrupt and rerun: a sequence folder carries ``.incomplete`` until its last file is
written; a rerun with the same arguments skips finished videos and the frames already written,
and refuses a folder written with other settings. Frames and files are written under temporary
names and renamed. A video that cannot be decoded or is truncated is one ``error:`` line (exit 2)
and leaves no folder behind; the other videos are still imported. Kept frames that repeat the previous
one (a video showing each picture several times) are counted and warned about; ``--drop_repeats`` leaves
them out.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import os
import re
import shutil
import sys
from dataclasses import dataclass, replace
from typing import Sequence

import numpy as np
from PIL import Image
from tqdm import tqdm

import utils
from datasets.camera import (
    INTRINSICS_NAMES,
    Camera,
    check_camera_fits,
    cropped_and_resized,
    field_of_view_camera,
    read_camera,
    resized_size,
)
from datasets.folders import FRAME_NAME, INCOMPLETE_MARKER
from datasets.mono_dataset import RESIZE_FILTER
from datasets.video_files import (
    VIDEO_EXTENSIONS,
    RateSampler,
    VideoInfo,
    fps_option,
    frame_rate_tolerance,
    is_video,
    probe,
    read_frames,
)
from utils import InputError, MissingFileError
from utils.files import atomic_write, save_json

logger = logging.getLogger(__name__)

DEFAULT_FPS = 10.0  # KITTI's rate (see --fps)
IMPORT_RECORD = "import.json"  # settings and counts of a finished import
RIGHT_FOLDER = "right"
JPEG_QUALITY = 95
# A repeated frame: a video that shows each picture several times (10 distinct frames a second in a
# 30 fps file) decodes its repeats to within a fraction of a grey level; new content differs by far more.
# Measured on tools.synthetic_video --hold (H.264 crf 14 and a dashcam's bitrate, at 64 px wide in grey):
# repeats at most 0.0008, neighbouring distinct frames at least 0.045 (docs/own_data.md).
REPEAT_WIDTH = 64  # frames are compared in grey at this width (as prepare_sequences measures motion)
REPEAT_THRESHOLD = 0.002  # mean absolute grey difference in [0, 1] (half a grey level) below which a
# kept frame repeats the previous kept one
REPEAT_WARNING = 0.3  # warn when more than this share of the kept frames repeat the previous one
FPS_HELP = (
    "frames per second kept: 10 is KITTI's rate, about 1 m of motion per frame at city speeds (36 km/h), "
    "what the models and their defaults were made for. One camera trained from scratch: import the "
    "training videos at 30 (a third of a metre per frame: at 1 m the paper's monocular recipe did not "
    "learn reliably on synthetic videos, docs/own_data.md), unless the video repeats its frames (the "
    "import warns: then its distinct rate, or --drop_repeats). Lower it for slow footage (walking), raise "
    "it for fast (motorway)"
)


@dataclass(frozen=True)
class Plan:
    """What to write for one video: its sequence folder, the crop, the output size and camera."""

    video: str
    right_video: str | None
    name: str
    folder: str
    crop: tuple[int, int, int, int]  # x, y, width, height in pixels of the video as shown
    width: int
    height: int
    camera: Camera | None

    def settings(self, opts: argparse.Namespace) -> dict:
        """Everything that decides the written files: a rerun must match it to resume or skip."""

        def source(path):
            return None if path is None else {"file": os.path.basename(path), "bytes": os.path.getsize(path)}

        settings = {
            "video": source(self.video),
            "right_video": source(self.right_video),
            "fps": opts.fps,
            "crop": list(self.crop),
            "width": self.width,
            "height": self.height,
            "ext": opts.ext,
            "jpeg_quality": opts.jpeg_quality if opts.ext == "jpg" else None,
            "camera": None if self.camera is None else self.camera.as_dict(),
        }
        if opts.drop_repeats:  # only when set: imports made before the option keep their records
            settings["drop_repeats"] = True
        return settings


# -- what to import ------------------------------------------------------------------------------
def find_videos(paths: Sequence[str]) -> list[str]:
    """Video files named, and those in named folders (name order)."""
    videos = []
    for path in paths:
        if os.path.isdir(path):
            videos += sorted(os.path.join(path, f) for f in os.listdir(path) if is_video(f))
        elif os.path.isfile(path):
            videos.append(path)
        else:
            raise MissingFileError(f"{path}: no such video file or folder")
    if not videos:
        raise MissingFileError(f"no videos ({', '.join(VIDEO_EXTENSIONS)}) in {', '.join(paths)}")
    return videos


def sequence_name(video: str) -> str:
    """A video's sequence name: its file name without extension, whitespace replaced (split lines split on
    it)."""
    return re.sub(r"\s+", "_", os.path.splitext(os.path.basename(video))[0])


def source_camera(opts: argparse.Namespace, info: VideoInfo) -> Camera | None:
    """Intrinsics in pixels of the video as shown: from a file, the command line or a field-of-view guess."""
    if opts.intrinsics:
        if not os.path.isfile(opts.intrinsics):
            raise MissingFileError(f"--intrinsics {opts.intrinsics}: no such file")
        camera = read_camera(opts.intrinsics)
        check_camera_fits(camera, info.width, info.height, info.path)
        return replace(camera, stereo_folder=None, baseline=None)
    if opts.fx is not None:
        camera = Camera(
            opts.fx,
            opts.fy,
            opts.cx,
            opts.cy,
            "the command line (--fx --fy --cx --cy)",
            info.width,
            info.height,
        )
        check_camera_fits(camera, info.width, info.height, info.path)
        return camera
    if opts.fov is not None:
        return field_of_view_camera(opts.fov, info.width, info.height, f"--fov {opts.fov:g}")
    return None


def plan_video(video: str, right_video: str | None, opts: argparse.Namespace) -> Plan:
    """Probe a video (and its right partner) and decide everything before a file is written."""
    info = probe(video)
    if right_video is not None:
        right = probe(right_video)
        if (right.width, right.height) != (info.width, info.height):
            raise InputError(
                f"{right_video}: {right.width}x{right.height} frames, but its left video {video} has "
                f"{info.width}x{info.height}: the two cameras must be rectified to one size"
            )
    crop = tuple(opts.crop) if opts.crop else (0, 0, info.width, info.height)
    x, y, w, h = crop
    if w <= 0 or h <= 0 or x < 0 or y < 0 or x + w > info.width or y + h > info.height:
        raise InputError(
            f"--crop {x} {y} {w} {h} does not fit inside the {info.width}x{info.height} frames of {video}"
        )
    width, height = resized_size(crop, opts.width, opts.height)
    camera = source_camera(opts, info)
    if camera is not None and opts.camera_height is not None:
        camera = replace(camera, camera_height=opts.camera_height)
    if camera is not None:
        baseline = opts.baseline if right_video else None
        camera = replace(
            cropped_and_resized(camera, crop, width, height),
            baseline=baseline,
            stereo_folder=RIGHT_FOLDER if baseline is not None else None,
        )
        check_camera_fits(camera, width, height, f"{video} after --crop")
    name = opts.name or sequence_name(video)
    return Plan(video, right_video, name, os.path.join(opts.out, name), crop, width, height, camera)


# -- writing -------------------------------------------------------------------------------------
def read_json(path: str) -> dict | None:
    try:
        with open(path) as f:
            return json.load(f)
    except (OSError, json.JSONDecodeError):
        return None


def prepare_folder(plan: Plan, settings: dict) -> str:
    """'skip' (finished with these settings), 'resume' or 'new'; refuses a folder that is not this
    import's."""
    marker = os.path.join(plan.folder, INCOMPLETE_MARKER)
    record = os.path.join(plan.folder, IMPORT_RECORD)
    if os.path.exists(marker):
        if read_json(marker) != settings:
            raise InputError(
                f"{plan.folder}: an unfinished import of other settings (see {marker}): rerun it as it "
                f"was, or remove the folder"
            )
        return "resume"
    if os.path.exists(record):
        if (read_json(record) or {}).get("settings") != settings:
            raise InputError(
                f"{plan.folder}: already imported with other settings (see {record}): remove the "
                f"folder or choose another --out or --name"
            )
        return "skip"
    if os.path.exists(plan.folder):
        raise InputError(
            f"{plan.folder}: exists and was not written by import_video: choose another --out or --name"
        )
    save_json(settings, marker)
    return "new"


def remove_temporary_files(folder: str) -> None:
    """Delete the temporary files (``*.tmp.<ext>``) that a killed run left in a folder."""
    for name in os.listdir(folder):
        if ".tmp." in name:
            os.remove(os.path.join(folder, name))


def frame_writer(opts: argparse.Namespace, plan: Plan):
    """A function (RGB frame, path) -> None: crop, resize and save atomically."""
    x, y, w, h = plan.crop

    def write(rgb: np.ndarray, path: str) -> None:
        image = Image.fromarray(rgb[y : y + h, x : x + w])
        if (w, h) != (plan.width, plan.height):
            image = image.resize((plan.width, plan.height), RESIZE_FILTER)
        try:
            with atomic_write(path) as tmp:
                if opts.ext == "jpg":
                    image.save(tmp, format="JPEG", quality=opts.jpeg_quality)
                else:
                    image.save(tmp, format="PNG")
        except (
            OSError
        ) as err:  # a full or read-only disk: the folder stays marked incomplete, a rerun resumes
            message = (
                str(err)
                if isinstance(err, utils.ProjectError)
                else f"cannot write {path}: {err.strerror or err}"
            )
            raise utils.ProjectError(message) from None  # not an InputError: import_one keeps the folder

    return write


def grey_thumbnail(rgb: np.ndarray) -> np.ndarray:
    """A frame in grey at REPEAT_WIDTH pixels wide, float in [0, 1]: cheap, and blind to codec noise."""
    image = Image.fromarray(rgb).convert("L")
    height = max(1, round(image.height * REPEAT_WIDTH / image.width))
    return np.asarray(image.resize((REPEAT_WIDTH, height), Image.BILINEAR), dtype=np.float32) / 255


class RepeatDetector:
    """Tells kept frames that repeat the previous kept frame (a video showing each picture several times)."""

    def __init__(self, threshold: float = REPEAT_THRESHOLD) -> None:
        self.threshold = threshold
        self.last: np.ndarray | None = None
        self.repeats = 0

    def is_repeat(self, rgb: np.ndarray) -> bool:
        """Whether ``rgb`` repeats the previous frame given (counted in ``repeats``)."""
        grey = grey_thumbnail(rgb)
        repeat = self.last is not None and float(np.abs(grey - self.last).mean()) < self.threshold
        self.last = grey
        self.repeats += repeat
        return repeat


def kept_frames(plan: Plan, opts: argparse.Namespace, info: VideoInfo, repeats: RepeatDetector | None = None):
    """(index, left frame, right frame or None) of the frames kept at --fps, both videos decoded in step;
    ``repeats`` counts the kept frames that repeat the previous one, and with --drop_repeats they are left
    out (a frame is compared with the previous frame that the rate kept)."""
    sampler = RateSampler(opts.fps, frame_rate_tolerance(info.fps))
    right = read_frames(plan.right_video) if plan.right_video else None
    index = 0
    for time, rgb in read_frames(plan.video):
        partner = None
        if right is not None:
            partner = next(right, None)
            if partner is None:
                raise InputError(
                    f"{plan.right_video}: fewer frames than {plan.video}: the two videos must be "
                    f"recorded in step"
                )
            partner = partner[1]
        if sampler.keep(time):
            if repeats is not None and repeats.is_repeat(rgb) and opts.drop_repeats:
                continue
            yield index, rgb, partner
            index += 1
    if right is not None and next(right, None) is not None:
        raise InputError(
            f"{plan.right_video}: more frames than {plan.video}: the two videos must be recorded in step"
        )


def import_one(plan: Plan, opts: argparse.Namespace) -> dict:
    """Write one video's sequence folder (or skip it when finished); return its import record."""
    settings = plan.settings(opts)
    state = prepare_folder(plan, settings)
    if state == "skip":
        logger.info("%s: already imported into %s, skipping", plan.video, plan.folder)
        return read_json(os.path.join(plan.folder, IMPORT_RECORD))
    info = probe(plan.video)
    if info.fps is not None and info.fps < opts.fps:
        logger.warning(
            "%s: recorded at %.3g fps, below --fps %g: every frame is kept", plan.video, info.fps, opts.fps
        )
    write = frame_writer(opts, plan)
    folders = [plan.folder] + ([os.path.join(plan.folder, RIGHT_FOLDER)] if plan.right_video else [])
    rate = min(1.0, opts.fps / info.fps) if info.fps else 1.0
    expected = None if info.expected_frames is None else math.ceil(info.expected_frames * rate)
    frames = written = 0
    repeats = RepeatDetector()
    try:
        for folder in folders:
            os.makedirs(folder, exist_ok=True)
            remove_temporary_files(folder)  # of a killed run
        with tqdm(total=expected, unit="frame", desc=plan.name, dynamic_ncols=True) as bar:
            for index, left, right in kept_frames(plan, opts, info, repeats):
                for folder, rgb in zip(folders, (left, right)):
                    path = os.path.join(folder, f"{FRAME_NAME.format(index)}.{opts.ext}")
                    if not os.path.exists(path):  # a resumed import keeps what it wrote before
                        write(rgb, path)
                        written += 1
                frames += 1
                bar.update()
    except InputError:
        shutil.rmtree(plan.folder, ignore_errors=True)  # marked incomplete: this import's own folder
        raise
    record = {
        "settings": settings,
        "frames": frames,
        "source_fps": info.fps,
        "source_frames_declared": info.expected_frames,
        "source_size": [info.width, info.height],
        "rotation": info.rotation,
        "repeated_frames": repeats.repeats,
    }
    if plan.camera is not None:
        save_json(plan.camera.as_dict(), os.path.join(plan.folder, INTRINSICS_NAMES[0]))
    save_json(record, os.path.join(plan.folder, IMPORT_RECORD))
    os.remove(os.path.join(plan.folder, INCOMPLETE_MARKER))
    warn_repeats(plan, opts, repeats.repeats, frames + (repeats.repeats if opts.drop_repeats else 0), info)
    logger.info(
        "%s: %d frames, %d files written now%s",
        plan.name,
        frames,
        written,
        " (resumed)" if state == "resume" else "",
    )
    return record


def warn_repeats(plan: Plan, opts: argparse.Namespace, repeats: int, kept: int, info: VideoInfo) -> None:
    """Warn when many kept frames repeat the previous one: the video shows each picture several times."""
    if kept == 0 or repeats / kept <= REPEAT_WARNING:
        return
    distinct = (kept - repeats) / kept * min(opts.fps, info.fps or opts.fps)
    if opts.drop_repeats:
        logger.warning(
            "%s: %d of %d frames kept at --fps %g repeated the previous one and were left out (about %.3g "
            "distinct frames a second)",
            plan.video,
            repeats,
            kept,
            opts.fps,
            distinct,
        )
        return
    logger.warning(
        "%s: %d of %d frames kept at --fps %g repeat the previous one (the video shows each picture "
        "several times: about %.3g distinct frames a second). A repeated neighbour makes auto-masking "
        "mask out nearly the whole target, so monocular training learns almost nothing from those lines: "
        "import at --fps %.3g, or with --drop_repeats (docs/own_data.md)",
        plan.video,
        repeats,
        kept,
        opts.fps,
        distinct,
        distinct,
    )


# -- command line --------------------------------------------------------------------------------
def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0], formatter_class=utils.HelpFormatter)
    parser.add_argument("videos", nargs="+", help="video files, or folders of them")
    parser.add_argument(
        "--out",
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
        type=float,
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
    if opts.camera_height is not None and not (math.isfinite(opts.camera_height) and opts.camera_height > 0):
        parser.error(f"--camera_height must be positive (metres above the road), got {opts.camera_height}")
    if opts.camera_height is not None and not (opts.intrinsics or opts.fx is not None or opts.fov):
        parser.error(
            "--camera_height goes into intrinsics.json: give the intrinsics too (--intrinsics, "
            "--fx ... or --fov)"
        )


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    opts = parser.parse_args(argv)
    check_options(opts, parser)
    utils.setup_logging()
    videos = find_videos(opts.videos)
    rights = find_videos(opts.right_videos) if opts.right_videos else [None] * len(videos)
    if len(rights) != len(videos):
        parser.error(f"--right_videos names {len(rights)} videos for {len(videos)} left ones")
    if opts.name and len(videos) > 1:
        parser.error("--name is for one video; several take their file names")
    names = [opts.name or sequence_name(v) for v in videos]
    clashes = sorted({n for n in names if names.count(n) > 1})
    if clashes:
        raise InputError(
            f"several videos would become the sequence {clashes[0]}: import them with --name or "
            f"into different --out folders"
        )
    if not (opts.intrinsics or opts.fx is not None or opts.fov):
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


def summary_line(plan: Plan, record: dict, opts: argparse.Namespace) -> str:
    """One line per sequence: frames, size, rate, intrinsics."""
    source = f"{record['source_fps']:.3g} fps" if record.get("source_fps") else "unknown rate"
    camera = plan.camera
    intrinsics = (
        "no intrinsics"
        if camera is None
        else f"fx {camera.fx:.1f} fy {camera.fy:.1f} cx {camera.cx:.1f} cy {camera.cy:.1f}"
        + (" (guessed)" if camera.guessed else "")
    )
    stereo = f", stereo {opts.baseline:g} m" if plan.right_video else ""
    return (
        f"{plan.name}: {record['frames']} frames {plan.width}x{plan.height} at {opts.fps:g} fps "
        f"(video: {source})"
        f", {intrinsics}{stereo} -> {plan.folder}"
    )


if __name__ == "__main__":
    sys.exit(utils.run_cli(main))
