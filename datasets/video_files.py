"""Video files in and out, through PyAV (optional: requirements/video.txt), which bundles FFmpeg in its
wheels.

Reading yields RGB frames upright as a player shows them (the display rotation of phone videos is
applied) with their times in seconds; a file that cannot be opened or decoded, holds no video, or
ends before its declared duration (a truncated copy) raises an InputError naming it. ``RateSampler``
keeps frames at a target rate by their times (variable frame rates included). ``VideoWriter``
encodes RGB frames into a video file under a temporary name, renamed when complete: H.264 (libx264)
where the bundled FFmpeg has it, else MPEG-4 part 2.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import math
import os
import re
from dataclasses import dataclass
from fractions import Fraction
from types import ModuleType
from typing import Iterator

import numpy as np

from utils import DependencyError, InputError, MissingFileError
from utils.files import temporary_path

logger = logging.getLogger(__name__)

VIDEO_REQUIREMENTS = "pip install -r requirements/video.txt"
VIDEO_EXTENSIONS = (".mp4", ".mov", ".mkv", ".avi", ".m4v", ".webm")
# a video whose frames end this much (plus two frame periods) before its declared duration is truncated
TRUNCATION_TOLERANCE_S = 0.25
RIGHT_ANGLE = 90
MAX_RATE_DENOMINATOR = 1001  # 30000/1001 and the like: NTSC rates
MAX_FPS = 1000.0  # frame rates asked for (--fps) above this are no camera's (high-speed ones aside)
# encoders tried in order: (codec, pixel format, description); yuv420p plays everywhere
ENCODERS = (("libx264", "yuv420p", "H.264 (libx264)"), ("mpeg4", "yuv420p", "MPEG-4 part 2"))
LOSSLESS_ENCODER = ("libx264rgb", "rgb24", "lossless H.264 RGB (libx264rgb, qp 0)")
DEFAULT_CRF = 18  # libx264 quality: visually lossless
TIMED_TIME_BASE = Fraction(1, 1000)  # frames at their own times: in ms (MPEG-4 part 2 allows < 1/65535)


def import_av(purpose: str) -> ModuleType:
    """PyAV, or a DependencyError that says how to install it."""
    try:
        return importlib.import_module("av")
    except ImportError as err:
        raise DependencyError(f"{purpose} needs PyAV (av): {VIDEO_REQUIREMENTS}") from err


def is_video(path: str) -> bool:
    """Whether a file name has a video extension."""
    return path.lower().endswith(VIDEO_EXTENSIONS)


@dataclass(frozen=True)
class VideoInfo:
    """What a video file declares: its displayed size, mean frame rate, duration and rotation."""

    path: str
    width: int
    height: int
    fps: float | None
    duration: float | None  # seconds
    rotation: int  # degrees counter-clockwise that a player turns the stored frames by

    @property
    def expected_frames(self) -> int | None:
        """Frames the declared duration and rate make (None when either is unknown)."""
        if self.fps is None or self.duration is None:
            return None
        return max(1, round(self.duration * self.fps))


def _fail(path: str, err: Exception) -> InputError:
    text = re.sub(r"^\[Errno -?\d+\] ", "", str(err).replace(f": '{path}'", "").strip()) or type(err).__name__
    return InputError(f"{path}: cannot decode the video ({text})")


def _open(av: ModuleType, path: str):
    """(container, its first video stream); one-line errors for missing, unreadable or video-less files."""
    if not os.path.isfile(path):
        raise MissingFileError(f"{path}: no such video file")
    try:
        container = av.open(path)
    except (av.error.FFmpegError, OSError, ValueError) as err:
        raise _fail(path, err) from None
    if not container.streams.video:
        container.close()
        raise InputError(f"{path}: holds no video stream")
    stream = container.streams.video[0]
    stream.thread_type = "AUTO"
    return container, stream


def _rotation(frame) -> int:
    """The frame's display rotation rounded to a right angle (0, 90, 180, 270)."""
    angle = getattr(frame, "rotation", 0) or 0
    return int(round(angle / RIGHT_ANGLE)) * RIGHT_ANGLE % 360


def upright(frame) -> np.ndarray:
    """A decoded frame as RGB (H, W, 3) uint8, turned as a player shows it."""
    rgb = frame.to_ndarray(format="rgb24")
    turns = _rotation(frame) // RIGHT_ANGLE
    return np.ascontiguousarray(np.rot90(rgb, turns)) if turns else rgb


# Matroska's per-track DURATION tag: HH:MM:SS.nnnnnnnnn
DURATION_TAG = re.compile(r"^(\d+):(\d{2}):(\d{2}(?:\.\d+)?)$")


def _duration(container, stream) -> float | None:
    """The video stream's own duration: its header's, else its DURATION tag (Matroska), else the file's when
    it holds nothing else (an audio track may run longer than the video: not a truncation)."""
    if stream.duration is not None and stream.time_base is not None:
        return float(stream.duration * stream.time_base)
    tag = DURATION_TAG.match(str(stream.metadata.get("DURATION", "")).strip())
    if tag:
        return int(tag[1]) * 3600 + int(tag[2]) * 60 + float(tag[3])
    if container.duration and len(container.streams) == 1:
        return container.duration / 1_000_000  # AV_TIME_BASE
    return None


def probe(path: str) -> VideoInfo:
    """Open a video and decode its first frame: its size as shown, rate, duration and rotation."""
    av = import_av("reading videos")
    container, stream = _open(av, path)
    with container:
        rate = stream.average_rate or stream.guessed_rate
        try:
            first = next(container.decode(stream), None)
        except (av.error.FFmpegError, OSError, ValueError) as err:
            raise _fail(path, err) from None
        if first is None:
            raise InputError(f"{path}: no frame could be decoded")
        rotation = _rotation(first)
        width, height = (first.height, first.width) if rotation in (90, 270) else (first.width, first.height)
        return VideoInfo(
            path, width, height, float(rate) if rate else None, _duration(container, stream), rotation
        )


def read_frames(path: str) -> Iterator[tuple[float, np.ndarray]]:
    """(time in seconds from the first frame, RGB frame upright) of every frame; InputError when the file is
    damaged."""
    av = import_av("reading videos")
    container, stream = _open(av, path)
    with container:
        rate = stream.average_rate or stream.guessed_rate
        period = 1 / float(rate) if rate else 0.0
        declared = _duration(container, stream)
        start = last = None
        count = 0
        try:
            for frame in container.decode(stream):
                time = frame.time if frame.time is not None else count * period
                start = time if start is None else start
                last = time - start
                count += 1
                yield last, upright(frame)
        except (av.error.FFmpegError, OSError, ValueError) as err:
            raise _fail(path, err) from None
    if count == 0:
        raise InputError(f"{path}: no frame could be decoded")
    if declared is not None and last + period < declared - TRUNCATION_TOLERANCE_S - 2 * period:
        raise InputError(
            f"{path}: the frames end at {last + period:.2f} s but the file declares {declared:.2f} s: "
            f"a truncated or damaged copy?"
        )


def fps_option(value: str) -> float:
    """argparse type of ``--fps``: a frame rate in (0, MAX_FPS]."""
    try:
        fps = float(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected frames per second, got {value!r}") from None
    if not (math.isfinite(fps) and 0 < fps <= MAX_FPS):
        raise argparse.ArgumentTypeError(
            f"a frame rate must lie in (0, {MAX_FPS:g}] frames per second, got {value}"
        )
    return fps


class RateSampler:
    """Keeps the first frame at or after each tick of a target rate (ticks 1 / fps apart from the first
    frame).

    ``tolerance`` (half a source frame period) absorbs rounding in the frames' times: a 30 fps video
    at 10 fps keeps exactly every third frame. A source slower than the target keeps every frame.
    """

    def __init__(self, fps: float, tolerance: float = 0.0) -> None:
        self.period = 1 / fps
        self.tolerance = tolerance
        self.tick = 0

    def keep(self, time: float) -> bool:
        """Whether the frame at ``time`` (seconds from the first frame) is kept."""
        if time < self.tick * self.period - self.tolerance:
            return False
        # the next tick after this frame, computed (a loop over ticks would take time / period steps)
        self.tick = max(self.tick + 1, math.floor((time + self.tolerance) / self.period) + 1)
        while (self.tick - 1) * self.period > time + self.tolerance:  # rounding of the division, either way
            self.tick -= 1
        while self.tick * self.period <= time + self.tolerance:
            self.tick += 1
        return True


def encoder(av: ModuleType, lossless: bool = False) -> tuple[str, str, str]:
    """(codec, pixel format, description) of the first encoder the installed FFmpeg has."""
    for name, pix_fmt, description in (LOSSLESS_ENCODER,) if lossless else ENCODERS:
        try:
            av.codec.Codec(name, "w")
        except (av.error.FFmpegError, ValueError):
            continue
        return name, pix_fmt, description
    raise DependencyError(
        f"the installed FFmpeg (PyAV {av.__version__}) has none of the encoders "
        f"{', '.join(e[0] for e in ((LOSSLESS_ENCODER,) if lossless else ENCODERS))}"
    )


class VideoWriter:
    """Encodes RGB frames (H, W, 3) uint8 into ``path`` at ``fps``; the file appears complete or not at all.

    Frames of odd width or height are padded by one edge pixel (4:2:0 video needs even sizes).
    Use as a context manager; ``description`` says which encoder it uses.
    """

    def __init__(self, path: str, fps: float, lossless: bool = False, crf: int = DEFAULT_CRF) -> None:
        self.av = import_av("writing videos")
        self.path = path
        self.tmp = temporary_path(path)
        self.codec, self.pix_fmt, self.description = encoder(self.av, lossless)
        self.rate = Fraction(fps).limit_denominator(MAX_RATE_DENOMINATOR)
        self.options = {"qp": "0"} if lossless else ({"crf": str(crf)} if self.codec == "libx264" else {})
        self.container = None
        self.stream = None
        self.frames = 0
        self.last_pts = -1

    def __enter__(self) -> "VideoWriter":
        os.makedirs(os.path.dirname(os.path.abspath(self.path)), exist_ok=True)
        self.container = self.av.open(self.tmp, "w")
        return self

    def write(self, rgb: np.ndarray, time: float | None = None) -> None:
        """Append a frame; every frame must have the first one's size. ``time`` (seconds, for every frame or
        none): the frame plays then (a variable frame rate kept), else frames play at ``fps``."""
        if self.pix_fmt == "yuv420p" and (rgb.shape[0] % 2 or rgb.shape[1] % 2):
            rgb = np.pad(rgb, ((0, rgb.shape[0] % 2), (0, rgb.shape[1] % 2), (0, 0)), mode="edge")
        if self.stream is None:
            self.stream = self.container.add_stream(self.codec, rate=self.rate)
            self.stream.width, self.stream.height, self.stream.pix_fmt = (
                rgb.shape[1],
                rgb.shape[0],
                self.pix_fmt,
            )
            self.stream.options = self.options
            if time is not None:  # frames carry their own times, in milliseconds
                self.stream.codec_context.time_base = self.stream.time_base = TIMED_TIME_BASE
        elif (rgb.shape[1], rgb.shape[0]) != (self.stream.width, self.stream.height):
            raise InputError(
                f"{self.path}: a {rgb.shape[1]}x{rgb.shape[0]} frame in a video of "
                f"{self.stream.width}x{self.stream.height} frames"
            )
        frame = self.av.VideoFrame.from_ndarray(np.ascontiguousarray(rgb), format="rgb24")
        if time is not None:
            self.last_pts = max(round(time / TIMED_TIME_BASE), self.last_pts + 1)  # strictly increasing
            frame.pts, frame.time_base = self.last_pts, TIMED_TIME_BASE
        for packet in self.stream.encode(frame):
            self.container.mux(packet)
        self.frames += 1

    def __exit__(self, exc_type, exc, tb) -> None:
        try:
            if exc_type is None and self.stream is not None:
                for packet in self.stream.encode():
                    self.container.mux(packet)
            self.container.close()
            if exc_type is None:
                if self.frames == 0:
                    raise InputError(f"{self.path}: no frame to write")
                os.replace(self.tmp, self.path)
        finally:
            if os.path.exists(self.tmp):
                os.remove(self.tmp)


def frame_rate_tolerance(fps: float | None) -> float:
    """Half a frame period of a source rate (0 when the rate is unknown): RateSampler's tolerance."""
    return 0.5 / fps if fps and math.isfinite(fps) and fps > 0 else 0.0
