"""Synthetic drives as 30 fps video files, as a dashcam would record them, with exact ground truth.

``generate_videos`` (``python -m tools.synthetic_video --out DIR``) renders drives of the synthetic street
(datasets/synthetic/scenes.py) as ``<drive>.mp4`` with ``intrinsics.json``, dense depth and true labels of
the frames a 10 fps import keeps (video frame 3j is sequence frame j). ``hold`` shows each 10 fps frame three
times instead of interpolating the poses; ``codec`` picks the encoding (``CODECS``), for tools/recipe_grid.py.
docs/own_data.md, "Synthetic videos", gives the files and options."""

from __future__ import annotations

import contextlib
import logging
import os
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from typing import Iterator

import numpy as np
from tqdm import tqdm

import utils
from datasets.camera import INTRINSICS_NAMES
from datasets.cityscapes import save_label_png
from datasets.folders import FRAME_NAME
from datasets.synthetic import scenes
from datasets.video_files import DEFAULT_CRF, VideoWriter
from utils.files import atomic_write, save_json

logger = logging.getLogger(__name__)

VIDEO_FPS = 30  # what a dashcam records
SUBFRAMES = 3  # video frames per frame of the 10 fps drive (30 / 10)
RIGHT_SUFFIX = "_right"
DEPTH_SUFFIX = "_depth.npz"
LABELS_FOLDER = "segmentation"
RIGHT_FOLDER = "right"  # as tools.import_video names the second camera
# A dashcam's bitrate per pixel: 12 Mbit/s for 1920x1080 at 30 fps (common 1080p dashcams record 8-16).
DASHCAM_BITS_PER_PIXEL = 12e6 / (1920 * 1080 * 30)
H265_DEFAULT_CRF = 28  # libx265's default quality
MAX_CRF = 51  # x264's and x265's largest crf
CODECS = ("lossless", "h264-crf<N>", "h264-dashcam", "h265")  # the forms of --codec


@dataclass(frozen=True)
class Codec:
    """How a synthetic video is encoded: an FFmpeg encoder and its options."""

    name: str  # as given: lossless, h264-crf14, h264-dashcam, h265
    lossless: bool
    encoder: str | None  # None: VideoWriter's own choice (lossless, or H.264 at ``crf``)
    crf: int | None
    bits_per_pixel: float | None  # a bitrate per pixel and frame (h264-dashcam)

    def options(self, width: int, height: int) -> dict[str, str]:
        """The encoder's options for frames of this size at VIDEO_FPS."""
        if self.bits_per_pixel is not None:
            return {"b": str(round(self.bits_per_pixel * width * height * VIDEO_FPS))}
        if self.encoder == "libx265":
            return {"crf": str(self.crf), "x265-params": "log-level=error"}
        return {"crf": str(self.crf)}


def parse_codec(name: str) -> Codec:
    """A codec spec (lossless, h264-crf<N>, h264-dashcam, h265[-crf<N>]) as a Codec; InputError otherwise."""
    spec = name.strip().lower()
    if spec == "lossless":
        return Codec(name, True, None, None, None)
    if spec == "h264-dashcam":
        return Codec(name, False, "libx264", None, DASHCAM_BITS_PER_PIXEL)
    for prefix, encoder, default in (("h264", "libx264", None), ("h265", "libx265", H265_DEFAULT_CRF)):
        if spec == prefix and default is not None:
            return Codec(name, False, encoder, default, None)
        if spec.startswith(prefix + "-crf") and spec[len(prefix) + 4 :].isdigit():
            crf = int(spec[len(prefix) + 4 :])
            if crf <= MAX_CRF:
                return Codec(name, False, encoder, crf, None)
    raise utils.InputError(
        f"--codec {name}: expected one of {', '.join(CODECS)} (crf 0..{MAX_CRF}, e.g. h264-crf14)"
    )


def drive_name(index: int) -> str:
    return f"drive_{index + 1:02d}"


def heading(poses: np.ndarray) -> np.ndarray:
    """Yaw of camera poses whose rotations turn about the y axis only (scenes.rotation_y's angle)."""
    return np.arctan2(poses[:, 0, 2], poses[:, 0, 0])


def video_poses(poses: np.ndarray, subframes: int = SUBFRAMES) -> np.ndarray:
    """Poses of a drive at ``subframes`` times its rate: position and heading interpolated linearly."""
    steps = np.arange((len(poses) - 1) * subframes + 1) / subframes
    low = np.minimum(np.floor(steps).astype(int), len(poses) - 2)
    frac = (steps - low)[:, None]
    yaw = heading(poses)
    out = np.tile(np.eye(4), (len(steps), 1, 1))
    out[:, :3, :3] = scenes.rotation_y(yaw[low] * (1 - frac[:, 0]) + yaw[low + 1] * frac[:, 0])
    out[:, :3, 3] = poses[low, :3, 3] * (1 - frac) + poses[low + 1, :3, 3] * frac
    return out


def open_writer(path: str, codec: Codec, width: int, height: int) -> VideoWriter:
    """A VideoWriter for ``codec`` (lossless and H.264 at a crf: VideoWriter's own; else its encoder and
    options set)."""
    if codec.lossless:
        return VideoWriter(path, VIDEO_FPS, lossless=True)
    if codec.encoder == "libx264" and codec.crf is not None:  # MPEG-4 part 2 where FFmpeg lacks libx264
        return VideoWriter(path, VIDEO_FPS, crf=codec.crf)
    writer = VideoWriter(path, VIDEO_FPS)
    if writer.codec != "libx264":
        raise utils.DependencyError(f"--codec {codec.name}: the installed FFmpeg has no libx264")
    writer.codec = codec.encoder
    writer.options = codec.options(width, height)
    return writer


def right_pose(pose: np.ndarray) -> np.ndarray:
    """The right camera of the rig: STEREO_BASELINE along the left camera's x axis."""
    right = pose.copy()
    right[:3, 3] += pose[:3, :3] @ np.array([scenes.STEREO_BASELINE, 0, 0])
    return right


def render_job(args: tuple) -> tuple:
    """Render one video frame: (left rgb, right rgb or None, depth, label ids; those two only on kept
    frames)."""
    camera, pose, world, stereo, kept, supersample = args
    rgb, depth, label = scenes.render(camera, pose, world, supersample)
    right = right_label = None
    if stereo:
        right, _, right_label = scenes.render(camera, right_pose(pose), world, supersample)
    return rgb, right, (depth, label, right_label) if kept else None


def rendered(jobs: list, workers: int, desc: str) -> Iterator[tuple]:
    """render_job's results in order, in worker processes when ``workers`` > 1."""
    if workers <= 1:
        yield from tqdm(map(render_job, jobs), total=len(jobs), desc=desc, unit="frame")
        return
    with ProcessPoolExecutor(workers) as pool:
        yield from tqdm(pool.map(render_job, jobs, chunksize=4), total=len(jobs), desc=desc, unit="frame")


def write_intrinsics(out: str, camera: scenes.Camera) -> str:
    """intrinsics.json in pixels of the video's frames."""
    K = camera.K
    path = os.path.join(out, INTRINSICS_NAMES[0])
    save_json(
        {
            "fx": K[0, 0],
            "fy": K[1, 1],
            "cx": K[0, 2],
            "cy": K[1, 2],
            "width": camera.width,
            "height": camera.height,
            "camera_height": scenes.CAMERA_HEIGHT,
        },
        path,
    )
    return path


def write_drive(
    out: str,
    name: str,
    drive: scenes.Drive,
    camera: scenes.Camera,
    stereo: bool,
    codec: Codec,
    supersample: int,
    workers: int,
    hold: bool = False,
) -> list[str]:
    """One drive's video(s), ground-truth depth and labels; returns the video paths (``hold``: each drive
    frame rendered once and written SUBFRAMES times)."""
    poses = drive.poses if hold else video_poses(drive.poses)
    repeats = SUBFRAMES if hold else 1
    jobs = [
        (camera, pose, drive.world, stereo, hold or k % SUBFRAMES == 0, supersample)
        for k, pose in enumerate(poses)
    ]
    paths = [os.path.join(out, f"{name}.mp4")] + (
        [os.path.join(out, f"{name}{RIGHT_SUFFIX}.mp4")] if stereo else []
    )
    depths = {}
    label_dir = os.path.join(out, LABELS_FOLDER, name)
    with contextlib.ExitStack() as stack:  # the videos appear complete, or not at all
        writers = [
            stack.enter_context(open_writer(path, codec, camera.width, camera.height)) for path in paths
        ]
        for k, (rgb, right, truth) in enumerate(
            rendered(jobs, workers, f"rendering {name} at {VIDEO_FPS} fps")
        ):
            for _ in range(repeats):
                writers[0].write(rgb)
                if stereo:
                    writers[1].write(right)
            if truth is not None:
                j = k if hold else k // SUBFRAMES
                depth, label, right_label = truth
                depths[f"depth_{j:04d}"] = depth.astype(np.float32)
                save_label_png(os.path.join(label_dir, f"{FRAME_NAME.format(j)}.png"), label)
                if stereo:
                    save_label_png(
                        os.path.join(label_dir, RIGHT_FOLDER, f"{FRAME_NAME.format(j)}.png"), right_label
                    )
    with atomic_write(os.path.join(out, f"{name}{DEPTH_SUFFIX}")) as tmp:
        np.savez_compressed(tmp, **depths)
    return paths


def generate_videos(
    out: str,
    num_drives: int = 3,
    frames: int = 60,
    width: int = 310,
    height: int = 94,
    seed: int = 0,
    stereo: bool = False,
    lossless: bool = False,
    supersample: int = 2,
    workers: int | None = None,
    codec: str | None = None,
    hold: bool = False,
) -> list[str]:
    """Write ``num_drives`` drives of ``frames`` frames at 10 fps (3 (frames - 1) + 1 at 30 fps, ``hold``:
    3 frames each); return the left videos. ``codec`` (parse_codec's forms) overrides ``lossless``."""
    spec = parse_codec(codec if codec is not None else ("lossless" if lossless else f"h264-crf{DEFAULT_CRF}"))
    if frames < 2:
        raise utils.InputError(f"--frames must be at least 2 (frames of the 10 fps drive), got {frames}")
    if width % 2 or height % 2:
        raise utils.InputError(
            f"frames of {width}x{height}: H.264 frames have even sides (the intrinsics would not "
            f"match the padded video)"
        )
    camera = scenes.Camera(width, height)
    os.makedirs(out, exist_ok=True)
    write_intrinsics(out, camera)
    workers = workers or os.cpu_count() or 1
    videos = []
    for k in range(num_drives):
        drive = scenes.build_drive(drive_name(k), frames, seed * 1000 + k)
        videos.append(
            write_drive(out, drive_name(k), drive, camera, stereo, spec, supersample, workers, hold)[0]
        )
    return videos
