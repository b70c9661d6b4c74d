"""Synthetic drives as 30 fps video files, as a dashcam would record them, with exact ground truth.

``generate_videos`` (the command ``python -m tools.synthetic_video --out DIR``) renders drives of
the synthetic street (datasets/synthetic/scenes.py) at 30 fps and writes, in no KITTI layout:

- ``<drive>.mp4``: the drive as H.264 (``lossless``: H.264 RGB at qp 0, bit-exact frames), and
  ``<drive>_right.mp4`` with ``stereo``: the rectified right camera, 0.54 m to the right;
- ``intrinsics.json``: the camera in pixels of the video's frames (fx, fy, cx, cy, width, height) and its
  height above the road (``camera_height``, metres);
- ``<drive>_depth.npz``: dense depth in metres (0: sky) of the frames that a 10 fps import keeps
  (every third: frame 3j of the video is frame j of the sequence), keys ``depth_0000`` ... in frame
  order: the ``gt_depths.npz`` format of ``evaluate_depth.py --gt_depths``;
- ``segmentation/<drive>/[right/]<j:010d>.png``: the true Cityscapes label ids of those frames, in
  the pseudo-labels' layout of an import into ``--dataset folders`` (``--seg_path DIR/segmentation``).

The 30 fps poses interpolate the generator's 10 fps drive (about 1 m per frame): position and
heading linearly, so a third of the motion per video frame, and every third video frame is exactly
a frame of the 10 fps drive.
"""

from __future__ import annotations

import contextlib
import logging
import os
from concurrent.futures import ProcessPoolExecutor
from typing import Iterator

import numpy as np
from tqdm import tqdm

import utils
from datasets.camera import INTRINSICS_NAMES
from datasets.cityscapes import save_label_png
from datasets.folders import FRAME_NAME
from datasets.synthetic import scenes
from datasets.video_files import VideoWriter
from utils.files import atomic_write, save_json

logger = logging.getLogger(__name__)

VIDEO_FPS = 30  # what a dashcam records
SUBFRAMES = 3  # video frames per frame of the 10 fps drive (30 / 10)
RIGHT_SUFFIX = "_right"
DEPTH_SUFFIX = "_depth.npz"
LABELS_FOLDER = "segmentation"
RIGHT_FOLDER = "right"  # as tools.import_video names the second camera


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
    lossless: bool,
    supersample: int,
    workers: int,
) -> list[str]:
    """One drive's video(s), ground-truth depth and labels; returns the video paths."""
    poses = video_poses(drive.poses)
    jobs = [
        (camera, pose, drive.world, stereo, k % SUBFRAMES == 0, supersample) for k, pose in enumerate(poses)
    ]
    paths = [os.path.join(out, f"{name}.mp4")] + (
        [os.path.join(out, f"{name}{RIGHT_SUFFIX}.mp4")] if stereo else []
    )
    depths = {}
    label_dir = os.path.join(out, LABELS_FOLDER, name)
    with contextlib.ExitStack() as stack:  # the videos appear complete, or not at all
        writers = [stack.enter_context(VideoWriter(path, VIDEO_FPS, lossless=lossless)) for path in paths]
        for k, (rgb, right, truth) in enumerate(
            rendered(jobs, workers, f"rendering {name} at {VIDEO_FPS} fps")
        ):
            writers[0].write(rgb)
            if stereo:
                writers[1].write(right)
            if truth is not None:
                j = k // SUBFRAMES
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
) -> list[str]:
    """Write ``num_drives`` drives of ``frames`` frames at 10 fps (3 (frames - 1) + 1 at 30 fps); return the
    left videos."""
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
            write_drive(out, drive_name(k), drive, camera, stereo, lossless, supersample, workers)[0]
        )
    return videos
