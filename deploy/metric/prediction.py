"""Metric depth from the camera's height for predict.py (--camera_height): each input's camera, each
frame's scale from the road (camera_height.py), and an image's arrays in metres with its ``_scale.json``."""

from __future__ import annotations

import argparse
import logging
import os
from dataclasses import dataclass, field
from typing import Sequence

import numpy as np
from PIL import Image, UnidentifiedImageError

import utils
from datasets.camera import INTRINSICS_NAMES, Camera, check_camera_fits, read_camera
from datasets.video_files import is_video, probe
from utils.files import remove_file, save_array, save_json

from ..predictors import Frame, depth_range_of, folder_images, listed
from . import camera_height
from .camera_height import ScaleEstimate, ScaleRefusal

logger = logging.getLogger(__name__)

SCALE_SUFFIX = "_scale.json"  # beside an image's arrays, or a depth video: the scale and its confidence


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
            raise utils.MissingFileError(
                f"--camera_height needs the camera's intrinsics for {path}: give "
                f"--intrinsics FILE or put {INTRINSICS_NAMES[0]} (fx, fy, cx, cy in "
                f"pixels of the frames) beside it"
            )
        if source not in self.cameras:
            self.cameras[source] = read_camera(source)
        return self.cameras[source]

    def K(self, camera: Camera, frame: Frame, source: str) -> np.ndarray:
        """Intrinsics in pixels of the predicted maps, from the frame's camera (checked against its size;
        ``source``: the input named in the error)."""
        height, width = frame.rgb.shape[:2]
        check_camera_fits(camera, width, height, source, metric=True)
        return camera_height.intrinsics_matrix(
            camera.fx, camera.fy, camera.cx, camera.cy, width, height, self.model_size[1], self.model_size[0]
        )

    def estimate(
        self, camera: Camera, frame: Frame, disp: np.ndarray, seg_logits: np.ndarray | None, source: str
    ) -> ScaleEstimate | ScaleRefusal:
        """The frame's scale estimate, or why it has none."""
        K = self.K(camera, frame, source)
        return self.ground.frame_scale(disp, seg_logits, K, depth_range=self.depth_range)

    def header(self, camera: Camera) -> dict:
        return {
            "camera_height_m": self.ground.camera_height,
            "ground": self.ground.name,
            "ground_orientation": self.ground.describe_orientation(),
            "intrinsics": camera.source,
            "frame_size": None if camera.width is None else [camera.width, camera.height],
            "depth_units": "metres",
        }


def frame_sizes(path: str) -> dict[tuple[int, int], str]:
    """The (width, height) of an input's frames (an image's, a video's, a folder's images'), each with the
    first file of that size; unreadable images are left to the prediction, which reports them."""
    if is_video(path):
        info = probe(path)
        return {(info.width, info.height): path}
    sizes: dict[tuple[int, int], str] = {}
    for image in folder_images(path) if os.path.isdir(path) else [path]:
        try:
            with Image.open(image) as opened:
                sizes.setdefault(opened.size, image)
        except (OSError, UnidentifiedImageError, SyntaxError, ValueError, Image.DecompressionBombError):
            continue
    return sizes


def check_cameras(metric: MetricDepth, inputs: Sequence[str]) -> None:
    """Before any work: every input's camera checked against the size of each of its frames (the one
    validator, ``check_camera_fits``, for metres); its warnings logged once per camera and size."""
    warned = set()
    for path in inputs:
        camera = metric.camera(path)
        for (width, height), first in frame_sizes(path).items():
            for problem in check_camera_fits(camera, width, height, first, metric=True):
                if (camera.source, width, height, problem) not in warned:
                    warned.add((camera.source, width, height, problem))
                    logger.warning(
                        "%s (for the %dx%d frames of %s): %s", camera.source, width, height, path, problem
                    )


def metric_setup(opts: argparse.Namespace, predictor, inputs: Sequence[str]) -> MetricDepth | None:
    """The MetricDepth of --camera_height (None without it): every input's intrinsics found, read and
    checked against its frames before any work; a model without a segmentation head needs --ground_from
    lowest_band."""
    if opts.camera_height is None:
        return None
    settings = camera_height.ground_settings(opts, opts.camera_height)
    if settings.source == "segmentation" and not predictor.has_segmentation:
        raise utils.InputError(
            "--camera_height finds the road with the model's segmentation head, and this "
            "model has none: give --ground_from lowest_band (the bottom of the image "
            "taken as road), or use a model with one"
        )
    if opts.intrinsics and os.path.isdir(opts.intrinsics):
        raise utils.InputError(
            f"--intrinsics {opts.intrinsics} is a folder: give the intrinsics file in it "
            f"({INTRINSICS_NAMES[0]}), or leave --intrinsics out to use the one beside the inputs"
        )
    if opts.intrinsics and not os.path.isfile(opts.intrinsics):
        raise utils.MissingFileError(f"--intrinsics {opts.intrinsics}: no such file")
    metric = MetricDepth(
        settings,
        opts.scale_window or camera_height.DEFAULT_SMOOTHING_WINDOW,
        opts.intrinsics,
        (predictor.height, predictor.width),
        depth_range_of(predictor),
    )
    check_cameras(metric, inputs)
    return metric


def predict_metric_image(
    metric: MetricDepth,
    camera: Camera,
    frame: Frame,
    disp: np.ndarray,
    seg_logits: np.ndarray | None,
    source: str,
) -> None:
    """An image's ``_disp.npy``, ``_depth.npy`` in metres and ``_scale.json``; without a scale, no
    ``_depth.npy`` and the reason in the JSON and in ``metric.unscaled``."""
    estimate = metric.estimate(camera, frame, disp, seg_logits, source)
    save_array(disp, frame.stem + "_disp.npy")
    record = {**metric.header(camera), "image": source, **estimate.as_dict()}
    if isinstance(estimate, ScaleRefusal):
        logger.warning("%s: no metric scale: %s", source, estimate.reason)
        metric.unscaled.append(f"{source}: {estimate.reason}")
        # an earlier run's is not of this prediction: removed when the project wrote it, else refused
        remove_file(frame.stem + "_depth.npy")
    else:
        save_array((estimate.scale / disp).astype(np.float32), frame.stem + "_depth.npy")
    save_json(record, frame.stem + SCALE_SUFFIX)


def unscaled_message(unscaled: Sequence[str]) -> str:
    """The closing line of a run where inputs (images, videos) got no metric scale (their other outputs are
    written)."""
    return (
        f"{len(unscaled)} input(s) got no metric scale (no _depth.npy written for them): {listed(unscaled)}"
    )
