"""What predict.py writes: each image's arrays and pictures, and depth videos (relative, or in metres
with a colour bar), each file under a temporary name and renamed."""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
from typing import Iterable, Iterator, Sequence

import numpy as np
from PIL import Image, ImageDraw, ImageFont

import utils
from datasets.cityscapes import segmentation_overlay
from datasets.video_files import VideoWriter
from utils.colormap import DISPARITY_PERCENTILE, colormap, resize_bilinear
from utils.files import atomic_folder, save_array, save_json, save_png

from .metric.camera_height import ScaleEstimate, smoothed
from .metric.prediction import SCALE_SUFFIX, MetricDepth, predict_metric_image
from .predictors import FRAMES_FOLDER_SUFFIX, Frame, folder_images, image_frames, output_stem, predicted

logger = logging.getLogger(__name__)

IMAGE_OUTPUTS = ("_disp.npy", "_depth.npy", "_disp.png", "_seg.png")  # what an image's stem gets
PANELS = ("input", "depth", "seg")
VIDEO_SUFFIX = "_depth.mp4"
COLOUR_SMOOTHING = 0.1  # weight of each new frame in the colour map's running upper end
BAR_TICKS_M = (1, 2, 3, 5, 7, 10, 15, 20, 30, 50, 70, 100, 200)  # depths labelled on a video's colour bar
BAR_WIDTH_SHARE = 0.18  # of the frame height: the colour bar panel's width (at least BAR_MIN_WIDTH)
BAR_MIN_WIDTH = 48
BAR_STRIP_SHARE = 0.3  # of the panel's width: the colour strip; the labels take the rest
BAR_MARGIN = 0.05  # of the frame height, above and below the strip
BAR_FONT_SHARE = 0.06  # of the frame height: the labels' size (at least BAR_MIN_FONT)
BAR_MIN_FONT = 9
BAR_BACKGROUND, BAR_TEXT = 32, 235  # grey levels


# -- images ------------------------------------------------------------------------------------
def save_arrays(disp: np.ndarray, stem: str, depth_scale: float) -> None:
    """An image's disparity and its depth (``depth_scale`` / disparity) as ``.npy`` files."""
    save_array(disp, stem + "_disp.npy")
    save_array(depth_scale / disp, stem + "_depth.npy")


def predict(
    predictor,
    image_paths: Sequence[str],
    output_dir: str | None,
    depth_scale: float = 1.0,
    batch_size: int = 8,
    failures: list[str] | None = None,
    metric: MetricDepth | None = None,
) -> list[str]:
    """Write every readable image's outputs; return the path prefixes written (unreadable ones go to
    ``failures``; with ``metric``, _depth.npy in metres: ``predict_metric_image``)."""
    failures = [] if failures is None else failures
    if output_dir:
        os.makedirs(output_dir, exist_ok=True)
    stems = []
    sources = {output_stem(path, output_dir): path for path in image_paths}
    for frame, disp, seg_logits in predicted(
        predictor, image_frames(image_paths, output_dir, failures), batch_size, len(image_paths)
    ):
        height, width = frame.rgb.shape[:2]
        if metric is None:
            save_arrays(disp, frame.stem, depth_scale)
        else:
            source = sources[frame.stem]
            predict_metric_image(metric, metric.camera(source), frame, disp, seg_logits, source)
        save_png(colormap(resize_bilinear(disp, height, width)), frame.stem + "_disp.png")
        if seg_logits is not None:
            overlay = segmentation_overlay(frame.rgb, resize_bilinear(seg_logits, height, width).argmax(0))
            save_png(overlay, frame.stem + "_seg.png")
        stems.append(frame.stem)
    return stems


def check_outputs(opts: argparse.Namespace, images: list[str], folders: list[str], videos: list[str]) -> None:
    """Before any work: --output_dir must be a folder, no two inputs may write one output, no folder may stand
    where an output file goes."""
    if opts.output_dir and os.path.exists(opts.output_dir) and not os.path.isdir(opts.output_dir):
        raise utils.UnwritableError(f"--output_dir {opts.output_dir}: a file is in the way (give a folder)")
    owners: dict[str, str] = {}

    def claim(path: str, source: str, folder: bool = False) -> None:
        key = os.path.abspath(path)
        if owners.setdefault(key, source) != source:
            raise utils.InputError(
                f"{owners[key]} and {source} would both write {path}: give them different "
                f"names or predict them into different --output_dir folders"
            )
        if os.path.exists(path) and os.path.isdir(path) != folder:
            raise utils.UnwritableError(
                f"{path}: a {'file' if folder else 'folder'} is in the way of an output of {source}: move it"
            )

    for path in images + [p for folder in ([] if opts.video else folders) for p in folder_images(folder)]:
        stem = output_stem(path, opts.output_dir)
        for suffix in IMAGE_OUTPUTS:
            claim(stem + suffix, path)
    for source in videos + (folders if opts.video else []):
        stem = output_stem(source, opts.output_dir)
        claim(stem + VIDEO_SUFFIX, source)
        if opts.save_npy:
            claim(stem + FRAMES_FOLDER_SUFFIX, source, folder=True)


# -- depth videos ------------------------------------------------------------------------------
class ColourRange:
    """The colour map's upper end over a video: each frame's 95th percentile, smoothed exponentially."""

    def __init__(self, smoothing: float = COLOUR_SMOOTHING) -> None:
        self.smoothing = smoothing
        self.vmax: float | None = None

    def __call__(self, disp: np.ndarray) -> float:
        value = float(np.percentile(disp, DISPARITY_PERCENTILE))
        self.vmax = value if self.vmax is None else (1 - self.smoothing) * self.vmax + self.smoothing * value
        return self.vmax


def video_picture(
    frame: Frame, disp: np.ndarray, seg_logits: np.ndarray | None, panels: Sequence[str], vmax: float
) -> np.ndarray:
    """One frame of the depth video: the panels side by side at the frame's size."""
    height, width = frame.rgb.shape[:2]
    pictures = []
    for panel in panels:
        if panel == "input":
            pictures.append(frame.rgb)
        elif panel == "depth":
            pictures.append(colormap(resize_bilinear(disp, height, width), vmax))
        elif seg_logits is not None:
            pictures.append(
                segmentation_overlay(frame.rgb, resize_bilinear(seg_logits, height, width).argmax(0))
            )
    return np.concatenate(pictures, axis=1)


@contextlib.contextmanager
def depth_video_files(
    video_path: str, fps: float, save_npy: bool
) -> Iterator[tuple[VideoWriter, str | None]]:
    """The depth video's writer and, with ``save_npy``, the folder for each frame's arrays (``<stem>_frames``:
    filled under a temporary name, renamed after the video)."""
    with contextlib.ExitStack() as stack:
        arrays = None
        if save_npy:
            folder = video_path[: -len(VIDEO_SUFFIX)] + FRAMES_FOLDER_SUFFIX
            arrays = stack.enter_context(atomic_folder(folder))
        yield stack.enter_context(VideoWriter(video_path, fps)), arrays


def frame_rate_text(fps: float, timed: bool) -> str:
    """How a depth video's frames are timed, for the log."""
    return "the video's own frame times" if timed else f"{fps:.3g} fps"


def predict_video(
    predictor,
    frames: Iterable[Frame],
    video_path: str,
    fps: float,
    panels: Sequence[str],
    batch_size: int,
    depth_scale: float,
    save_npy: bool,
    total: int | None = None,
    timed: bool = False,
    metric: MetricDepth | None = None,
    source: str | None = None,
) -> int:
    """Write the depth video of a frame sequence (and each frame's arrays with ``save_npy``, in a folder that
    appears whole or not at all); return its frame count. ``timed``: each frame plays at its own time (a
    video's, variable frame rates included), else at ``fps``. With ``metric``: in metres
    (``predict_video_metric``), ``source`` the input of the frames."""
    if metric is not None:
        return predict_video_metric(
            predictor, frames, video_path, fps, panels, batch_size, save_npy, total, metric, source, timed
        )
    colour_range = ColourRange()
    with depth_video_files(video_path, fps, save_npy) as (writer, arrays):
        logger.info(
            "writing %s: %s at %s, panels %s",
            video_path,
            writer.description,
            frame_rate_text(fps, timed),
            " ".join(panels),
        )
        for frame, disp, seg_logits in predicted(
            predictor, frames, batch_size, total, os.path.basename(video_path)
        ):
            writer.write(
                video_picture(frame, disp, seg_logits, panels, colour_range(disp)),
                frame.time if timed else None,
            )
            if arrays is not None:
                save_arrays(disp, os.path.join(arrays, os.path.basename(frame.stem)), depth_scale)
        return writer.frames


def predict_video_metric(
    predictor,
    frames: Iterable[Frame],
    video_path: str,
    fps: float,
    panels: Sequence[str],
    batch_size: int,
    save_npy: bool,
    total: int | None,
    metric: MetricDepth,
    source: str,
    timed: bool = False,
) -> int:
    """The depth video in metres: each frame's scale from its road, smoothed over ``metric.window`` frames
    (a running median; frames without road take their neighbours'), the colours over metric inverse depth
    with a colour bar in metres, ``<name>_scale.json`` with every frame's estimate and scale; return the
    frame count."""
    camera = metric.camera(source)
    colour_range = ColourRange()
    records = []

    def estimated():
        for frame, disp, seg_logits in predicted(
            predictor, frames, batch_size, total, os.path.basename(video_path)
        ):
            estimate = metric.estimate(camera, frame, disp, seg_logits, source)
            picture_seg = seg_logits if "seg" in panels else None
            yield (
                (frame, disp, picture_seg, estimate),
                (estimate.scale if isinstance(estimate, ScaleEstimate) else None),
            )

    with depth_video_files(video_path, fps, save_npy) as (writer, arrays):
        logger.info(
            "writing %s: %s at %s, panels %s, metres from a camera height of %g m",
            video_path,
            writer.description,
            frame_rate_text(fps, timed),
            " ".join(panels),
            metric.ground.camera_height,
        )
        for (frame, disp, seg_logits, estimate), smooth in smoothed(estimated(), metric.window):
            found = isinstance(estimate, ScaleEstimate)
            record = {
                "frame": len(records),
                "scale": smooth.scale,
                "estimates_in_window": smooth.estimates_in_window,
                "estimate": estimate.as_dict() if found else None,
            }
            if not found:
                record["reason"] = estimate.reason
            records.append(record)
            if smooth.scale is None:  # no estimate yet: relative colours, a bar that says so
                picture = video_picture(frame, disp, seg_logits, panels, colour_range(disp))
                vmax = None
            else:
                metric_disp = disp / smooth.scale
                vmax = colour_range(metric_disp)
                picture = video_picture(frame, metric_disp, seg_logits, panels, vmax)
            if "depth" in panels:
                picture = np.concatenate([picture, colour_bar(picture.shape[0], vmax)], axis=1)
            writer.write(picture, frame.time if timed else None)
            if arrays is not None:
                stem = os.path.join(arrays, os.path.basename(frame.stem))
                save_array(disp, stem + "_disp.npy")
                if smooth.scale is not None:
                    save_array((smooth.scale / disp).astype(np.float32), stem + "_depth.npy")
        estimates = [r["estimate"]["scale"] for r in records if r["estimate"] is not None]
        summary = {
            **metric.header(camera),
            "video": source,
            "window": metric.window,
            "frames": len(records),
            "frames_with_estimate": len(estimates),
            "median_estimate": float(np.median(estimates)) if estimates else None,
            "per_frame": records,
        }
        if not estimates:  # the video is written in relative colours; the run names it at its end
            first = records[0].get("reason") if records else "no frames"
            summary["reason"] = f"no frame shows enough road for a metric scale (the first: {first})"
            logger.warning("%s: no metric scale: %s", source, summary["reason"])
            metric.unscaled.append(f"{source}: {summary['reason']}")
        save_json(summary, video_path[: -len(VIDEO_SUFFIX)] + SCALE_SUFFIX)
        if estimates:
            logger.info(
                "%s: metric scale from the road in %d of %d frames (median %.4g)",
                source,
                len(estimates),
                len(records),
                summary["median_estimate"],
            )
        return writer.frames


def bar_font(size: int) -> ImageFont.ImageFont:
    """Pillow's built-in font at ``size`` pixels (its fixed bitmap size where FreeType is missing)."""
    try:
        return ImageFont.load_default(size)
    except (TypeError, ImportError, OSError):
        return ImageFont.load_default()


def colour_bar(height: int, vmax: float | None) -> np.ndarray:
    """A panel (height, w, 3) uint8: the depth panel's colours from 0 (bottom) to ``vmax`` inverse metres
    (top), labelled in metres; ``vmax`` None (no scale yet): the panel says so."""
    width = max(BAR_MIN_WIDTH, round(BAR_WIDTH_SHARE * height))
    image = Image.new("RGB", (width, height), (BAR_BACKGROUND,) * 3)
    draw = ImageDraw.Draw(image)
    font = bar_font(max(BAR_MIN_FONT, round(BAR_FONT_SHARE * height)))
    text = (BAR_TEXT,) * 3
    if vmax is None:
        draw.text((2, height // 2), "no scale", fill=text, font=font, anchor="lm")
        return np.asarray(image)
    top, bottom = round(BAR_MARGIN * height), height - 1 - round(BAR_MARGIN * height)
    strip = max(1, round(BAR_STRIP_SHARE * width))
    values = np.linspace(vmax, 0, bottom - top + 1)[:, None].repeat(strip, 1)
    image.paste(Image.fromarray(colormap(values, vmax)), (1, top))
    label_x, last_y = strip + 4, None
    spacing = font.getbbox("0")[3] + 1
    for metres in (1 / vmax,) + tuple(m for m in BAR_TICKS_M if 1 / m < vmax):
        y = round(top + (1 - (1 / metres) / vmax) * (bottom - top))
        if last_y is not None and y - last_y < spacing or y > bottom - spacing // 2:
            continue
        draw.line([(strip + 1, y), (strip + 3, y)], fill=text)
        draw.text((label_x, y), f"{metres:.3g} m", fill=text, font=font, anchor="lm")
        last_y = y
    return np.asarray(image)
