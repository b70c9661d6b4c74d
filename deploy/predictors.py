"""The models predict.py runs and the frames it feeds them: a model folder's networks or an exported
file behind one call (images in [0, 1] -> disparity and segmentation logits), image and video inputs
read into frames, and batched prediction."""

from __future__ import annotations

import json
import logging
import os
from dataclasses import dataclass
from typing import Iterable, Iterator, Sequence

import numpy as np
import torch
import torchvision.transforms.functional as TF
from PIL import Image, UnidentifiedImageError
from tqdm import tqdm

import utils
from datasets.folders import natural_key
from datasets.mono_dataset import RESIZE_FILTER
from datasets.video_files import RateSampler, frame_rate_tolerance, is_video, probe, read_frames

from . import depth_graph

logger = logging.getLogger(__name__)

OUTPUT_SUFFIXES = ("_disp.png", "_seg.png")  # predict's own pictures, never taken as input
FRAMES_FOLDER_SUFFIX = "_frames"
LISTED_FAILURES = 5  # unreadable files named in the summary line; the rest are counted


@dataclass
class Frame:
    """An input frame: where its outputs go (path prefix), and its RGB pixels."""

    stem: str
    rgb: np.ndarray  # (H, W, 3) uint8
    time: float | None = None  # seconds from a video's first frame (None: a picture, or at a fixed rate)


# -- models ------------------------------------------------------------------------------------
class TorchPredictor:
    """A model folder's networks: images (B, 3, H, W) in [0, 1] -> scaled disparity and segmentation
    logits."""

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
    """An exported file (.onnx, .pt2, .pt) on the CPU, as a TorchPredictor (size and input type from its
    metadata)."""

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


def load_predictor(
    folder: str | None, exported: str | None, device: torch.device
) -> TorchPredictor | ExportedPredictor:
    """The model to predict with: an exported file, else a model folder (one place for every format)."""
    if exported:
        return ExportedPredictor(exported)
    try:
        return TorchPredictor(folder, device)
    except json.JSONDecodeError as err:
        raise utils.InputError(f"{folder}: its opt.json is not valid JSON ({err})") from None


def depth_range_of(predictor) -> tuple[float, float] | None:
    """The model's (min_depth, max_depth): a model folder's, or an exported file's metadata (None without)."""
    if isinstance(predictor, TorchPredictor):
        return predictor.spec.min_depth, predictor.spec.max_depth
    meta = predictor.graph.metadata
    return (float(meta["min_depth"]), float(meta["max_depth"])) if "max_depth" in meta else None


# -- inputs ------------------------------------------------------------------------------------
def read_rgb(path: str) -> np.ndarray:
    """An image file as RGB uint8; InputError naming it when it is not a readable image (decompression bombs
    too)."""
    try:
        with Image.open(path) as image:
            return np.asarray(image.convert("RGB"))
    except FileNotFoundError:
        raise utils.MissingFileError(f"{path}: no such file") from None
    except (OSError, UnidentifiedImageError, SyntaxError, ValueError, Image.DecompressionBombError) as err:
        raise utils.InputError(f"{path}: not a readable image ({err})") from None


def check_explicit(path: str) -> None:
    """A path named on the command line must be a readable image's header or a video (one-line error
    otherwise)."""
    if is_video(path):
        probe(path)
        return
    try:
        with Image.open(path) as image:
            image.size
    except (OSError, UnidentifiedImageError, SyntaxError, ValueError, Image.DecompressionBombError) as err:
        raise utils.InputError(
            f"{path}: neither a readable image ({', '.join(utils.IMAGE_EXTENSIONS)}) nor a video ({err})"
        ) from None


def folder_images(folder: str) -> list[str]:
    """Image files in a folder in (natural) name order, without predict's own outputs."""
    names = [
        f
        for f in os.listdir(folder)
        if f.lower().endswith(utils.IMAGE_EXTENSIONS)
        and not f.endswith(OUTPUT_SUFFIXES)
        and os.path.isfile(os.path.join(folder, f))
    ]
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


def listed(messages: Sequence[str]) -> str:
    """The first LISTED_FAILURES messages joined, and how many more there are."""
    more = len(messages) - LISTED_FAILURES
    return "; ".join(messages[:LISTED_FAILURES]) + (f"; ... and {more} more" if more > 0 else "")


# -- prediction --------------------------------------------------------------------------------
def predicted(
    predictor, frames: Iterable[Frame], batch_size: int, total: int | None = None, desc: str = "predicting"
) -> Iterator[tuple[Frame, np.ndarray, np.ndarray | None]]:
    """(frame, disparity at the model's size, segmentation logits or None) of every frame, in batches."""

    def run(batch):
        inputs = torch.stack(
            [
                TF.to_tensor(
                    Image.fromarray(f.rgb).resize((predictor.width, predictor.height), RESIZE_FILTER)
                )
                for f in batch
            ]
        )
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
