"""Video files to sequence folders for ``--dataset folders``: the library of ``tools.import_video``.

Frames kept at a rate, cropped and resized, written atomically into a folder marked ``.incomplete``
until its last file is written, so that a rerun resumes or skips it; repeated pictures are counted.
docs/own_data.md (step 1) gives the whole account.
"""

from __future__ import annotations

import logging
import math
import os
import re
import shutil
from dataclasses import dataclass, fields, replace
from typing import Any, Callable, Iterator, Sequence

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
    frame_rate_tolerance,
    is_video,
    probe,
    read_frames,
)
from utils import InputError, MissingFileError
from utils.files import atomic_write, read_json, remove_stale_temporaries, save_json

logger = logging.getLogger(__name__)

DEFAULT_FPS = 10.0  # KITTI's rate
IMPORT_RECORD = "import.json"  # settings and counts of a finished import
RIGHT_FOLDER = "right"
JPEG_QUALITY = 95
# A repeated frame: a video that shows each picture several times (10 distinct frames a second in a
# 30 fps file) decodes its repeats to within a fraction of a grey level; new content differs by far more.
# Measured on tools.synthetic_video --hold (H.264 crf 14 and a dashcam's bitrate, at 64 px wide in grey):
# repeats at most 0.0008, neighbouring distinct frames at least 0.045 (docs/own_data.md).
REPEAT_WIDTH = 64  # frames are compared in grey at this width (as the sequence checks measure motion)
REPEAT_THRESHOLD = 0.002  # mean absolute grey difference in [0, 1] (half a grey level) below which a
# kept frame repeats the previous kept one
REPEAT_WARNING = 0.3  # warn when more than this share of the kept frames repeat the previous one


@dataclass(frozen=True)
class ImportOptions:
    """What an import writes (the command's options, without the command line)."""

    out: str
    name: str | None = None
    fps: float = DEFAULT_FPS
    crop: tuple[int, int, int, int] | None = None  # x, y, width, height in pixels of the video as shown
    width: int | None = None
    height: int | None = None
    ext: str = "jpg"
    jpeg_quality: int = JPEG_QUALITY
    drop_repeats: bool = False
    intrinsics: str | None = None  # a file, in pixels of the video as shown
    fx: float | None = None
    fy: float | None = None
    cx: float | None = None
    cy: float | None = None
    fov: float | None = None  # degrees, horizontal: a guess where there is no calibration
    camera_height: float | None = None  # metres above the road, written into intrinsics.json
    baseline: float | None = None  # metres to the right camera

    @classmethod
    def from_namespace(cls, namespace: Any) -> "ImportOptions":
        """The options of an argparse namespace that holds (at least) these names."""
        values = {f.name: getattr(namespace, f.name) for f in fields(cls)}
        values["crop"] = None if values["crop"] is None else tuple(values["crop"])
        return cls(**values)

    @property
    def has_intrinsics(self) -> bool:
        """Whether a calibration or a field-of-view guess was given (else no intrinsics.json is written)."""
        return bool(self.intrinsics) or self.fx is not None or self.fov is not None


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

    def settings(self, opts: ImportOptions) -> dict:
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


def check_names(videos: Sequence[str], name: str | None) -> list[str]:
    """The sequence name of each video; refuses two videos that would write one folder."""
    if name and len(videos) > 1:
        raise InputError("--name is for one video; several take their file names")
    names = [name or sequence_name(v) for v in videos]
    clashes = sorted({n for n in names if names.count(n) > 1})
    if clashes:
        raise InputError(
            f"several videos would become the sequence {clashes[0]}: import them with --name or "
            f"into different --out folders"
        )
    return names


def source_camera(opts: ImportOptions, info: VideoInfo) -> Camera | None:
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


def plan_video(video: str, right_video: str | None, opts: ImportOptions) -> Plan:
    """Probe a video (and its right partner) and decide everything before a file is written."""
    info = probe(video)
    if right_video is not None:
        right = probe(right_video)
        if (right.width, right.height) != (info.width, info.height):
            raise InputError(
                f"{right_video}: {right.width}x{right.height} frames, but its left video {video} has "
                f"{info.width}x{info.height}: the two cameras must be rectified to one size"
            )
    crop = opts.crop or (0, 0, info.width, info.height)
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


def frame_writer(opts: ImportOptions, plan: Plan) -> Callable[[np.ndarray, str], None]:
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
        # a full or read-only disk: the folder stays marked incomplete, a rerun resumes
        except OSError as err:
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


def kept_frames(
    plan: Plan, opts: ImportOptions, info: VideoInfo, repeats: RepeatDetector | None = None
) -> Iterator[tuple[int, np.ndarray, np.ndarray | None]]:
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


def import_one(plan: Plan, opts: ImportOptions) -> dict:
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
        # the frames a killed run left half-written: .incomplete with these settings proves the folder ours
        for action in remove_stale_temporaries(plan.folder, files_proven=True):
            logger.info("%s", action)
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
    # the marker holds this import's settings (prepare_folder compared them): that proves it the import's,
    # also when a killed run never got to record it
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


def warn_repeats(plan: Plan, opts: ImportOptions, repeats: int, kept: int, info: VideoInfo) -> None:
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


def summary_line(plan: Plan, record: dict, opts: ImportOptions) -> str:
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
