"""Predict depth for images and videos: ``python predict.py --load_weights_folder W|--exported FILE --image_path PATH...``.

Images (files, or folders read in name order) get, per image: ``<name>_disp.npy`` (the scaled
disparity at the model's input size), ``<name>_depth.npy`` (``--depth_scale`` / disparity: relative
depth for monocular models, metric for stereo-trained ones with 5.4), ``<name>_disp.png`` (the
disparity at the image's size in the magma colour map) and, for models with a segmentation head,
``<name>_seg.png`` (the prediction in the Cityscapes palette blended over the image).

Videos (mp4, mov, mkv ...; needs PyAV: requirements-video.txt), and folders of frames with
``--video``, get one depth video each, ``<name>_depth.mp4``: the colour-mapped disparity at the
frames' size, or side by side with the input and the segmentation overlay (``--panels input depth
seg``), at the video's rate (or ``--fps``); H.264 where the installed FFmpeg has it, else MPEG-4
part 2 (the log says which). The colour map's upper end follows the 95th percentile of the
disparity smoothly over time (no flicker). ``--save_npy`` adds each frame's ``_disp.npy`` and
``_depth.npy`` in ``<name>_frames/``.

Frames are predicted in batches of ``--batch_size`` with a progress bar. ``--exported`` (or
``--onnx``) runs a file written by ``python -m tools.export_model`` (ONNX through onnxruntime,
torch.export or TorchScript, on the CPU) instead of a model folder, with the same outputs. A file in a folder that is not a readable image is skipped; the run ends with one line
naming every skipped file and exit code 2. A path given explicitly that is neither a readable
image nor a video is a one-line error before any work.
"""
from __future__ import annotations

import argparse
import contextlib
import json
import logging
import math
import os
import sys
from dataclasses import dataclass, field
from typing import Iterable, Iterator, Sequence

import numpy as np
import torch
import torchvision.transforms.functional as TF
from PIL import Image, ImageDraw, ImageFont, UnidentifiedImageError
from tqdm import tqdm

import options
import utils
from datasets.cityscapes import segmentation_overlay
from datasets.camera import INTRINSICS_NAMES, Camera, check_camera_fits, read_camera
from datasets.folders import natural_key
from datasets.mono_dataset import RESIZE_FILTER
from datasets.video_files import (RateSampler, VideoWriter, fps_option, frame_rate_tolerance, is_video, probe,
                                  read_frames)
from deploy import depth_graph
from evaluation import camera_height

logger = logging.getLogger(__name__)

OUTPUT_SUFFIXES = ("_disp.png", "_seg.png")  # predict's own pictures, never taken as input
IMAGE_OUTPUTS = ("_disp.npy", "_depth.npy", "_disp.png", "_seg.png")  # what an image's stem gets
PANELS = ("input", "depth", "seg")
VIDEO_SUFFIX = "_depth.mp4"
FRAMES_FOLDER_SUFFIX = "_frames"
FRAMES_FPS = 10.0  # depth video rate of a folder of frames (KITTI's, import_video's default)
COLOUR_SMOOTHING = 0.1  # weight of each new frame in the colour map's running upper end
LISTED_FAILURES = 5  # unreadable files named in the summary line; the rest are counted


@dataclass
class Frame:
    """An input frame: where its outputs go (path prefix), and its RGB pixels."""
    stem: str
    rgb: np.ndarray  # (H, W, 3) uint8
    time: float | None = None  # seconds from a video's first frame (None: a picture, or at a fixed rate)


# -- models ------------------------------------------------------------------------------------
class TorchPredictor:
    """A model folder's networks: images (B, 3, H, W) in [0, 1] -> scaled disparity and segmentation logits."""

    def __init__(self, folder: str, device: torch.device) -> None:
        # The graph export_model.py exports: the PyTorch and exported paths share one definition.
        self.graph, self.spec = depth_graph.load_graph(folder, device, segmentation=None)
        self.device = device
        self.height, self.width = self.spec.height, self.spec.width
        self.has_segmentation = self.spec.semantics

    @torch.no_grad()
    def __call__(self, images: torch.Tensor) -> tuple[np.ndarray, np.ndarray | None]:
        outputs = self.graph(images.to(self.device))
        seg = outputs[1] if self.has_segmentation else None
        return outputs[0][:, 0].cpu().numpy(), None if seg is None else seg.cpu().numpy()


class ExportedPredictor:
    """An exported file (.onnx, .pt2, .pt) on the CPU, as a TorchPredictor (size and input type from its metadata)."""

    def __init__(self, path: str) -> None:
        self.graph = depth_graph.load_exported(path)
        meta = self.graph.metadata
        self.height, self.width = int(meta["height"]), int(meta["width"])
        self.input_type = meta["input_type"]
        self.outputs = self.graph.output_names
        self.has_segmentation = depth_graph.OUTPUT_SEG in self.outputs

    def __call__(self, images: torch.Tensor) -> tuple[np.ndarray, np.ndarray | None]:
        if self.input_type == "uint8":  # exact: the images came from 8-bit pictures
            images = (images * utils.UINT8_MAX).round().to(torch.uint8)
        outputs = dict(zip(self.outputs, self.graph(images)))
        return outputs[depth_graph.OUTPUT_DISP][:, 0], outputs.get(depth_graph.OUTPUT_SEG)


def load_predictor(opts: argparse.Namespace, device: torch.device):
    """The model to predict with, from whichever source the options name (one place for every format)."""
    if opts.exported:
        return ExportedPredictor(opts.exported)
    try:
        return TorchPredictor(opts.load_weights_folder, device)
    except json.JSONDecodeError as err:
        raise utils.InputError(f"{opts.load_weights_folder}: its opt.json is not valid JSON ({err})") from None


# -- inputs ------------------------------------------------------------------------------------
def read_rgb(path: str) -> np.ndarray:
    """An image file as RGB uint8; InputError naming it when it is not a readable image (decompression bombs too)."""
    try:
        with Image.open(path) as image:
            return np.asarray(image.convert("RGB"))
    except FileNotFoundError:
        raise utils.MissingFileError(f"{path}: no such file") from None
    except (OSError, UnidentifiedImageError, SyntaxError, ValueError, Image.DecompressionBombError) as err:
        raise utils.InputError(f"{path}: not a readable image ({err})") from None


def check_explicit(path: str) -> None:
    """A path named on the command line must be a readable image's header or a video (one-line error otherwise)."""
    if is_video(path):
        probe(path)
        return
    try:
        with Image.open(path) as image:
            image.size
    except (OSError, UnidentifiedImageError, SyntaxError, ValueError, Image.DecompressionBombError) as err:
        raise utils.InputError(f"{path}: neither a readable image ({', '.join(utils.IMAGE_EXTENSIONS)}) nor a "
                               f"video ({err})") from None


def folder_images(folder: str) -> list[str]:
    """Image files in a folder in (natural) name order, without predict's own outputs."""
    names = [f for f in os.listdir(folder) if f.lower().endswith(utils.IMAGE_EXTENSIONS)
             and not f.endswith(OUTPUT_SUFFIXES) and os.path.isfile(os.path.join(folder, f))]
    return [os.path.join(folder, f) for f in sorted(names, key=natural_key)]


def output_stem(path: str, output_dir: str | None) -> str:
    """Path prefix of an input's outputs: beside it (Monodepth2's habit) or in ``output_dir``."""
    name = os.path.splitext(os.path.basename(os.path.normpath(path)))[0]
    return os.path.join(output_dir or os.path.dirname(os.path.abspath(path)), name)


def image_frames(paths: Iterable[str], output_dir: str | None, failures: list[str]) -> Iterator[Frame]:
    """Frames of image files; unreadable ones are reported in ``failures`` and skipped."""
    for path in paths:
        try:
            yield Frame(output_stem(path, output_dir), read_rgb(path))
        except utils.InputError as err:
            logger.warning("skipping %s", err)
            failures.append(str(err))


def video_frames(path: str, stem: str, fps: float | None) -> Iterator[Frame]:
    """Frames of a video (all, or at ``fps``), named by their position among those kept."""
    sampler = RateSampler(fps, frame_rate_tolerance(probe(path).fps)) if fps else None
    index = 0
    for time, rgb in read_frames(path):
        if sampler is None or sampler.keep(time):
            yield Frame(os.path.join(stem + FRAMES_FOLDER_SUFFIX, f"{index:010d}"), rgb, time)
            index += 1


# -- prediction --------------------------------------------------------------------------------
def predicted(predictor, frames: Iterable[Frame], batch_size: int, total: int | None = None, desc: str = "predicting"
              ) -> Iterator[tuple[Frame, np.ndarray, np.ndarray | None]]:
    """(frame, disparity at the model's size, segmentation logits or None) of every frame, in batches."""
    def run(batch):
        inputs = torch.stack([TF.to_tensor(Image.fromarray(f.rgb).resize((predictor.width, predictor.height),
                                                                         RESIZE_FILTER)) for f in batch])
        disps, seg_logits = predictor(inputs)
        for i, frame in enumerate(batch):
            bar.update()
            yield frame, disps[i], None if seg_logits is None else seg_logits[i]

    with tqdm(total=total, desc=desc, unit="frame", dynamic_ncols=True) as bar:
        batch: list[Frame] = []
        for frame in frames:
            batch.append(frame)
            if len(batch) == batch_size:
                yield from run(batch)
                batch = []
        if batch:
            yield from run(batch)


def save_arrays(disp: np.ndarray, stem: str, depth_scale: float) -> None:
    utils.save_array(disp, stem + "_disp.npy")
    utils.save_array(depth_scale / disp, stem + "_depth.npy")


def predict(predictor, image_paths: Sequence[str], output_dir: str | None, depth_scale: float = 1.0,
            batch_size: int = 8, failures: list[str] | None = None,
            metric: MetricDepth | None = None) -> list[str]:
    """Write every readable image's outputs; return the path prefixes written (unreadable ones go to
    ``failures``; with ``metric``, _depth.npy in metres: ``predict_metric_image``)."""
    failures = [] if failures is None else failures
    if output_dir:
        os.makedirs(output_dir, exist_ok=True)
    stems = []
    sources = {output_stem(path, output_dir): path for path in image_paths}
    for frame, disp, seg_logits in predicted(predictor, image_frames(image_paths, output_dir, failures), batch_size,
                                             len(image_paths)):
        height, width = frame.rgb.shape[:2]
        if metric is None:
            save_arrays(disp, frame.stem, depth_scale)
        else:
            source = sources[frame.stem]
            predict_metric_image(metric, metric.camera(source), frame, disp, seg_logits, source)
        utils.save_png(utils.colormap(utils.resize_bilinear(disp, height, width)), frame.stem + "_disp.png")
        if seg_logits is not None:
            overlay = segmentation_overlay(frame.rgb, utils.resize_bilinear(seg_logits, height, width).argmax(0))
            utils.save_png(overlay, frame.stem + "_seg.png")
        stems.append(frame.stem)
    return stems


class ColourRange:
    """The colour map's upper end over a video: each frame's 95th percentile, smoothed exponentially."""

    def __init__(self, smoothing: float = COLOUR_SMOOTHING) -> None:
        self.smoothing = smoothing
        self.vmax: float | None = None

    def __call__(self, disp: np.ndarray) -> float:
        value = float(np.percentile(disp, utils.DISPARITY_PERCENTILE))
        self.vmax = value if self.vmax is None else (1 - self.smoothing) * self.vmax + self.smoothing * value
        return self.vmax


def video_picture(frame: Frame, disp: np.ndarray, seg_logits: np.ndarray | None, panels: Sequence[str],
                  vmax: float) -> np.ndarray:
    """One frame of the depth video: the panels side by side at the frame's size."""
    height, width = frame.rgb.shape[:2]
    pictures = []
    for panel in panels:
        if panel == "input":
            pictures.append(frame.rgb)
        elif panel == "depth":
            pictures.append(utils.colormap(utils.resize_bilinear(disp, height, width), vmax))
        elif seg_logits is not None:
            pictures.append(segmentation_overlay(frame.rgb, utils.resize_bilinear(seg_logits, height, width).argmax(0)))
    return np.concatenate(pictures, axis=1)


def predict_video(predictor, frames: Iterable[Frame], video_path: str, fps: float, panels: Sequence[str],
                  batch_size: int, depth_scale: float, save_npy: bool, total: int | None = None,
                  timed: bool = False, metric: MetricDepth | None = None, source: str | None = None) -> int:
    """Write the depth video of a frame sequence (and each frame's arrays with ``save_npy``, in a folder that
    appears whole or not at all); return its frame count. ``timed``: each frame plays at its own time (a
    video's, variable frame rates included), else at ``fps``. With ``metric``: in metres
    (``predict_video_metric``), ``source`` the input of the frames."""
    if metric is not None:
        return predict_video_metric(predictor, frames, video_path, fps, panels, batch_size, save_npy, total,
                                    metric, source, timed)
    colour_range = ColourRange()
    with contextlib.ExitStack() as stack:
        arrays = None
        if save_npy:  # <stem>_frames/<n>_*.npy: written into a temporary folder, renamed after the video
            folder = video_path[: -len(VIDEO_SUFFIX)] + FRAMES_FOLDER_SUFFIX
            arrays = stack.enter_context(utils.atomic_folder(folder))
        writer = stack.enter_context(VideoWriter(video_path, fps))
        logger.info("writing %s: %s at %s, panels %s", video_path, writer.description,
                    "the video's own frame times" if timed else f"{fps:.3g} fps", " ".join(panels))
        for frame, disp, seg_logits in predicted(predictor, frames, batch_size, total,
                                                 os.path.basename(video_path)):
            writer.write(video_picture(frame, disp, seg_logits, panels, colour_range(disp)),
                         frame.time if timed else None)
            if arrays is not None:
                save_arrays(disp, os.path.join(arrays, os.path.basename(frame.stem)), depth_scale)
        return writer.frames


# -- metric depth from the camera's height (--camera_height) ------------------------------------
SCALE_SUFFIX = "_scale.json"  # beside an image's arrays, or a depth video: the scale and its confidence
BAR_TICKS_M = (1, 2, 3, 5, 7, 10, 15, 20, 30, 50, 70, 100, 200)  # depths labelled on a video's colour bar
BAR_WIDTH_SHARE = 0.18  # of the frame height: the colour bar panel's width (at least BAR_MIN_WIDTH)
BAR_MIN_WIDTH = 48
BAR_STRIP_SHARE = 0.3  # of the panel's width: the colour strip; the labels take the rest
BAR_MARGIN = 0.05  # of the frame height, above and below the strip
BAR_FONT_SHARE = 0.06  # of the frame height: the labels' size (at least BAR_MIN_FONT)
BAR_MIN_FONT = 9
BAR_BACKGROUND, BAR_TEXT = 32, 235  # grey levels


def find_intrinsics(path: str) -> str | None:
    """The intrinsics file of an input: in its folder (a folder input: in it), else in the folder above."""
    folder = path if os.path.isdir(path) else os.path.dirname(os.path.abspath(path))
    for place in (folder, os.path.dirname(os.path.abspath(folder))):
        for name in INTRINSICS_NAMES:
            if os.path.isfile(os.path.join(place, name)):
                return os.path.join(place, name)
    return None


@dataclass
class MetricDepth:
    """--camera_height: the ground settings, each input's camera, and the images left without a scale."""
    ground: camera_height.GroundSettings
    window: int
    intrinsics: str | None  # --intrinsics: one camera for every input
    model_size: tuple[int, int]  # (height, width) of the predicted maps
    depth_range: tuple[float, float] | None  # the model's (min_depth, max_depth), when known
    cameras: dict = field(default_factory=dict)  # intrinsics file -> Camera
    unscaled: list = field(default_factory=list)  # images without a metric scale, with the reason

    def camera(self, path: str) -> Camera:
        """The camera of an input (image, video or folder): --intrinsics, else the file beside it."""
        source = self.intrinsics or find_intrinsics(path)
        if source is None:
            raise utils.MissingFileError(f"--camera_height needs the camera's intrinsics for {path}: give "
                                         f"--intrinsics FILE or put {INTRINSICS_NAMES[0]} (fx, fy, cx, cy in "
                                         f"pixels of the frames) beside it")
        if source not in self.cameras:
            self.cameras[source] = read_camera(source)
        return self.cameras[source]

    def K(self, camera: Camera, frame: Frame, source: str) -> np.ndarray:
        """Intrinsics in pixels of the predicted maps, from the frame's camera (checked against its size;
        ``source``: the input named in the error)."""
        height, width = frame.rgb.shape[:2]
        check_camera_fits(camera, width, height, source)
        return camera_height.intrinsics_matrix(camera.fx, camera.fy, camera.cx, camera.cy, width, height,
                                               self.model_size[1], self.model_size[0])

    def estimate(self, camera: Camera, frame: Frame, disp: np.ndarray, seg_logits: np.ndarray | None,
                 source: str) -> tuple[camera_height.ScaleEstimate | None, str | None]:
        """(the frame's scale estimate, None) or (None, why there is none)."""
        K = self.K(camera, frame, source)
        try:
            return self.ground.estimate(disp, seg_logits, K, depth_range=self.depth_range), None
        except camera_height.GroundNotVisible as err:
            return None, str(err)

    def header(self, camera: Camera) -> dict:
        return {"camera_height_m": self.ground.camera_height, "ground": self.ground.name,
                "intrinsics": camera.source, "depth_units": "metres"}


def metric_setup(opts: argparse.Namespace, predictor, inputs: Sequence[str]) -> MetricDepth | None:
    """The MetricDepth of --camera_height (None without it): every input's intrinsics are found and read
    before any work; a model without a segmentation head needs --ground_from lowest_band."""
    if opts.camera_height is None:
        return None
    settings = camera_height.ground_settings(opts, opts.camera_height)
    if settings.source == "segmentation" and not predictor.has_segmentation:
        raise utils.InputError("--camera_height finds the road with the model's segmentation head, and this "
                               "model has none: give --ground_from lowest_band (the bottom of the image "
                               "taken as road), or use a model with one")
    if opts.intrinsics and not os.path.isfile(opts.intrinsics):
        raise utils.MissingFileError(f"--intrinsics {opts.intrinsics}: no such file")
    metric = MetricDepth(settings, opts.scale_window, opts.intrinsics, (predictor.height, predictor.width),
                         depth_range_of(predictor))
    for path in inputs:
        metric.camera(path)
    return metric


def depth_range_of(predictor) -> tuple[float, float] | None:
    """The model's (min_depth, max_depth): a model folder's, or an exported file's metadata (None without)."""
    if isinstance(predictor, TorchPredictor):
        return predictor.spec.min_depth, predictor.spec.max_depth
    meta = predictor.graph.metadata
    return (float(meta["min_depth"]), float(meta["max_depth"])) if "max_depth" in meta else None


def predict_metric_image(metric: MetricDepth, camera: Camera, frame: Frame, disp: np.ndarray,
                         seg_logits: np.ndarray | None, source: str) -> None:
    """An image's ``_disp.npy``, ``_depth.npy`` in metres and ``_scale.json``; without a scale, no
    ``_depth.npy`` and the reason in the JSON and in ``metric.unscaled``."""
    estimate, reason = metric.estimate(camera, frame, disp, seg_logits, source)
    utils.save_array(disp, frame.stem + "_disp.npy")
    record = {**metric.header(camera), "image": source}
    if estimate is None:
        record.update(scale=None, reason=reason)
        logger.warning("%s: no metric scale: %s", source, reason)
        metric.unscaled.append(f"{source}: {reason}")
        if os.path.exists(frame.stem + "_depth.npy"):  # an earlier run's: it is not of this prediction
            os.remove(frame.stem + "_depth.npy")
    else:
        record.update(estimate.as_dict())
        utils.save_array((estimate.scale / disp).astype(np.float32), frame.stem + "_depth.npy")
    utils.save_json(record, frame.stem + SCALE_SUFFIX)


def unscaled_message(unscaled: Sequence[str]) -> str:
    """The closing line of a run where images got no metric scale (their other outputs are written)."""
    return (f"{len(unscaled)} image(s) got no metric scale (no _depth.npy written for them): "
            f"{listed(unscaled)}")


def listed(messages: Sequence[str]) -> str:
    """The first LISTED_FAILURES messages joined, and how many more there are."""
    more = len(messages) - LISTED_FAILURES
    return "; ".join(messages[:LISTED_FAILURES]) + (f"; ... and {more} more" if more > 0 else "")


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
    image.paste(Image.fromarray(utils.colormap(values, vmax)), (1, top))
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


def predict_video_metric(predictor, frames: Iterable[Frame], video_path: str, fps: float,
                         panels: Sequence[str], batch_size: int, save_npy: bool, total: int | None,
                         metric: MetricDepth, source: str, timed: bool = False) -> int:
    """The depth video in metres: each frame's scale from its road, smoothed over ``metric.window`` frames
    (a running median; frames without road take their neighbours'), the colours over metric inverse depth
    with a colour bar in metres, ``<name>_scale.json`` with every frame's estimate and scale; return the
    frame count."""
    camera = metric.camera(source)
    colour_range = ColourRange()
    records = []

    def estimated():
        for frame, disp, seg_logits in predicted(predictor, frames, batch_size, total,
                                                 os.path.basename(video_path)):
            estimate, reason = metric.estimate(camera, frame, disp, seg_logits, source)
            picture_seg = seg_logits if "seg" in panels else None
            yield (frame, disp, picture_seg, estimate, reason), None if estimate is None else estimate.scale

    with contextlib.ExitStack() as stack:
        arrays = None
        if save_npy:  # <stem>_frames/<n>_*.npy: written into a temporary folder, renamed after the video
            folder = video_path[: -len(VIDEO_SUFFIX)] + FRAMES_FOLDER_SUFFIX
            arrays = stack.enter_context(utils.atomic_folder(folder))
        writer = stack.enter_context(VideoWriter(video_path, fps))
        logger.info("writing %s: %s at %s, panels %s, metres from a camera height of %g m", video_path,
                    writer.description, "the video's own frame times" if timed else f"{fps:.3g} fps",
                    " ".join(panels), metric.ground.camera_height)
        for (frame, disp, seg_logits, estimate, reason), smooth in camera_height.smoothed(estimated(),
                                                                                          metric.window):
            record = {"frame": len(records), "scale": smooth.scale,
                      "estimates_in_window": smooth.estimates_in_window,
                      "estimate": None if estimate is None else estimate.as_dict()}
            if estimate is None:
                record["reason"] = reason
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
                utils.save_array(disp, stem + "_disp.npy")
                if smooth.scale is not None:
                    utils.save_array((smooth.scale / disp).astype(np.float32), stem + "_depth.npy")
        estimates = [r["estimate"]["scale"] for r in records if r["estimate"] is not None]
        if not estimates:
            first = records[0].get("reason") if records else "no frames"
            raise camera_height.GroundNotVisible(f"{source}: no frame shows enough road for a metric scale "
                                                 f"(the first: {first})")
        summary = {**metric.header(camera), "video": source, "window": metric.window, "frames": len(records),
                   "frames_with_estimate": len(estimates), "median_estimate": float(np.median(estimates)),
                   "per_frame": records}
        utils.save_json(summary, video_path[:-len(VIDEO_SUFFIX)] + SCALE_SUFFIX)
        logger.info("%s: metric scale from the road in %d of %d frames (median %.4g)", source, len(estimates),
                    len(records), summary["median_estimate"])
        return writer.frames


def check_outputs(opts: argparse.Namespace, images: list[str], folders: list[str], videos: list[str]) -> None:
    """Before any work: --output_dir must be a folder, no two inputs may write one output, no folder may stand
    where an output file goes."""
    if opts.output_dir and os.path.exists(opts.output_dir) and not os.path.isdir(opts.output_dir):
        raise utils.UnwritableError(f"--output_dir {opts.output_dir}: a file is in the way (give a folder)")
    owners: dict[str, str] = {}

    def claim(path: str, source: str, folder: bool = False) -> None:
        key = os.path.abspath(path)
        if owners.setdefault(key, source) != source:
            raise utils.InputError(f"{owners[key]} and {source} would both write {path}: give them different "
                                   f"names or predict them into different --output_dir folders")
        if os.path.exists(path) and os.path.isdir(path) != folder:
            raise utils.UnwritableError(f"{path}: a {'file' if folder else 'folder'} is in the way of an "
                                        f"output of {source}: move it")

    for path in images + [p for folder in ([] if opts.video else folders) for p in folder_images(folder)]:
        stem = output_stem(path, opts.output_dir)
        for suffix in IMAGE_OUTPUTS:
            claim(stem + suffix, path)
    for source in videos + (folders if opts.video else []):
        stem = output_stem(source, opts.output_dir)
        claim(stem + VIDEO_SUFFIX, source)
        if opts.save_npy:
            claim(stem + FRAMES_FOLDER_SUFFIX, source, folder=True)


# -- command line ------------------------------------------------------------------------------
def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0],
                                     formatter_class=utils.HelpFormatter)
    model = parser.add_mutually_exclusive_group(required=True)
    model.add_argument("--load_weights_folder", help="model folder (any supported layout)")
    model.add_argument("--exported", "--onnx", dest="exported", metavar="FILE",
                       help="a file written by python -m tools.export_model: .onnx (run by onnxruntime), .pt2 (torch.export) "
                            "or .pt (TorchScript)")
    parser.add_argument("--image_path", required=True, nargs="+", help="images, folders of images, and/or videos")
    parser.add_argument("--output_dir", default=None, help="where outputs go (default: beside each input)")
    parser.add_argument("--depth_scale", type=options.positive_float, default=1.0,
                        help="depth = depth_scale / disparity (5.4 gives metres for stereo-trained models)")
    parser.add_argument("--batch_size", type=options.positive_int, default=8, help="images per forward pass")
    utils.add_device_option(parser)
    g = parser.add_argument_group("depth videos (of video files, and of folders with --video)")
    g.add_argument("--video", action="store_true", help="a folder of frames becomes one depth video")
    g.add_argument("--panels", nargs="+", default=["depth"], choices=PANELS,
                   help="side by side, left to right: the input, the colour-mapped disparity, the segmentation "
                        "overlay (models with a segmentation head)")
    g.add_argument("--fps", type=fps_option, default=None,
                   help=f"rate of the depth video: a video's frames are kept at this rate (default: all, at its own "
                        f"rate); a folder's frames play at it (default {FRAMES_FPS:g})")
    g.add_argument("--save_npy", action="store_true", help="also each frame's _disp.npy and _depth.npy")
    g = parser.add_argument_group("metric depth from the camera's height above the road "
                                  "(docs/metric_depth.md)")
    g.add_argument("--camera_height", type=options.positive_float, default=None, metavar="METRES",
                   help="the camera's height above the road: _depth.npy in metres, scaled per image so that "
                        "the road the model segments lies this far below the camera; <name>_scale.json "
                        "holds the scale and its confidence; depth videos get a colour bar in metres "
                        "(--depth_scale does not apply)")
    g.add_argument("--intrinsics", default=None, metavar="FILE",
                   help="the camera's intrinsics.json (fx, fy, cx, cy in pixels of the input frames; "
                        "docs/own_data.md); default: intrinsics.json in the input's folder or the one above")
    camera_height.add_ground_options(g)
    g.add_argument("--scale_window", type=options.positive_int,
                   default=camera_height.DEFAULT_SMOOTHING_WINDOW,
                   help="videos: the scale is the median of the per-frame estimates over this many frames "
                        "around each (frames without road take their neighbours'); 1: every frame its own")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    opts = parser.parse_args(argv)
    utils.setup_logging()
    images, folders, videos = [], [], []
    for path in opts.image_path:
        if os.path.isdir(path):
            folders.append(path)
        elif not os.path.exists(path):
            raise utils.MissingFileError(f"{path}: no such image, video or folder")
        else:
            check_explicit(path)
            (videos if is_video(path) else images).append(path)
    if opts.video and images:
        parser.error(f"--video makes depth videos of folders of frames and of videos, not of single images ({images[0]})")
    check_outputs(opts, images, folders, videos)
    predictor = load_predictor(opts, utils.pick_device(opts.device))
    if "seg" in opts.panels and not predictor.has_segmentation and (videos or opts.video):
        parser.error("--panels seg needs a model with a segmentation head")
    metric = metric_setup(opts, predictor, images + folders + videos)
    if opts.output_dir:
        os.makedirs(opts.output_dir, exist_ok=True)
    failures: list[str] = []
    for folder in folders if opts.video else []:
        paths = folder_images(folder)
        if not paths:
            raise utils.MissingFileError(f"{folder}: no images ({', '.join(utils.IMAGE_EXTENSIONS)})")
        stem = output_stem(folder, opts.output_dir)
        frames = image_frames(paths, stem + FRAMES_FOLDER_SUFFIX, failures)
        count = predict_video(predictor, frames, stem + VIDEO_SUFFIX,
                              opts.fps or FRAMES_FPS, opts.panels, opts.batch_size, opts.depth_scale, opts.save_npy,
                              len(paths), metric=metric, source=folder)
        logger.info("wrote %s (%d frames)", stem + VIDEO_SUFFIX, count)
    for video in videos:
        stem = output_stem(video, opts.output_dir)
        info = probe(video)
        fps = opts.fps or info.fps or FRAMES_FPS
        total = info.expected_frames
        if total is not None and opts.fps is not None and info.fps:
            total = math.ceil(total * min(1.0, opts.fps / info.fps))
        count = predict_video(predictor, video_frames(video, stem, opts.fps), stem + VIDEO_SUFFIX, fps, opts.panels,
                              opts.batch_size, opts.depth_scale, opts.save_npy, total, timed=opts.fps is None,
                              metric=metric, source=video)
        logger.info("wrote %s (%d frames)", stem + VIDEO_SUFFIX, count)
    paths = images + [p for folder in ([] if opts.video else folders) for p in folder_images(folder)]
    if not paths and not videos and not opts.video:
        raise utils.MissingFileError(f"no images ({', '.join(utils.IMAGE_EXTENSIONS)}) in {', '.join(folders)}")
    if paths:
        stems = predict(predictor, paths, opts.output_dir, opts.depth_scale, opts.batch_size, failures,
                        metric=metric)
        if stems:
            logger.info("wrote predictions for %d images (%s_disp.png ...)", len(stems), stems[0])
    if failures:
        shown = "; ".join(failures[:LISTED_FAILURES]) + (f"; ... and {len(failures) - LISTED_FAILURES} more"
                                                         if len(failures) > LISTED_FAILURES else "")
        raise utils.InputError(f"{len(failures)} file(s) could not be read and were skipped: {shown}")
    if metric is not None and metric.unscaled:
        raise camera_height.GroundNotVisible(unscaled_message(metric.unscaled))
    return 0


if __name__ == "__main__":
    sys.exit(utils.run_cli(main))
