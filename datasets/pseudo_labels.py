"""Segmentation pseudo-labels for any driving data (``python -m tools.make_pseudo_labels`` runs it).

A Cityscapes-trained model (a Hugging Face ``transformers`` checkpoint, or a torch.export / TorchScript file;
pickles are refused) labels every frame a split needs, or every image below folders; one palette PNG of
Cityscapes label ids per frame, at its size, goes where the loader reads it. docs/data.md
("Segmentation pseudo-labels") gives the whole account."""

from __future__ import annotations

import logging
import os
import pickle
import zipfile
from dataclasses import dataclass
from typing import Callable, Sequence

import numpy as np
import torch
import torch.nn.functional as F
import torchvision.transforms.functional as TF
from PIL import Image
from torch.utils.data import DataLoader, Dataset
from tqdm import tqdm

import splits
import utils
from utils import DependencyError, InputError, MissingFileError
from utils.files import save_json, save_png
from utils.programs import load_program_file

from . import DATASETS
from .cityscapes import (
    CLASS_NAMES,
    LABEL_TO_TRAIN,
    NUM_CLASSES,
    TRAIN_CLASSES,
    TRAIN_TO_LABEL,
    save_label_png,
    segmentation_overlay,
)
from .mono_dataset import label_path_of, parse_split_line, pil_loader, read_split_numbered

logger = logging.getLogger(__name__)
Preprocess = Callable[[Image.Image], torch.Tensor]
Forward = Callable[[torch.Tensor], torch.Tensor]

DEFAULT_MODEL = "nvidia/segformer-b5-finetuned-cityscapes-1024-1024"
TRANSFORMERS_MISSING = (
    "make_pseudo_labels.py needs transformers: pip install -r requirements/pseudo-labels.txt"
)
MODEL_FILE_EXTENSIONS = (
    ".pt2",
    ".pt",
    ".ts",
    ".torchscript",
)  # --model names a file, not a checkpoint: say so
PICKLE_OPCODE_PROTO = (
    b"\x80"  # the first byte of a pickle (protocol 2 and above), also of old torch.save files
)
EXPORT_ADVICE = (
    "save the model as a program: torch.export.save(torch.export.export(model, (images,), dynamic_shapes="
    "...), 'model.pt2') with a dynamic batch size, height and width"
)
SPLIT_FILE_NAMES = ("train_files.txt", "val_files.txt", "test_files.txt")
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
PRECISIONS = {"fp32": None, "fp16": torch.float16, "bf16": torch.bfloat16}
SUMMARY_FOLDER = "pseudo_label_summary"  # default summary folder, inside the label root
SUMMARY_NAME = "summary.json"
DEFAULT_SIDE = "l"  # camera of split lines that name none
SLIDE_STRIDE = (
    0.75  # window stride / window size: mmseg's SegFormer Cityscapes test (1024 windows, stride 768)
)
CITYSCAPES_LABEL_OF_NAME = {name: label_id for name, label_id in TRAIN_CLASSES}


@dataclass(frozen=True)
class Frame:
    """An image to label and where its label goes."""

    image: str
    label: str


# -- which frames ------------------------------------------------------------------------------
def split_files(split: str, splits_dir: str | None = None) -> list[str]:
    """Split files named by ``--split``: a file, a folder's train/val/test files, a training or a test
    split."""
    if os.path.isfile(split):
        return [split]
    if os.path.isdir(split):
        found = [
            os.path.join(split, name)
            for name in SPLIT_FILE_NAMES
            if os.path.isfile(os.path.join(split, name))
        ]
        if not found:
            raise splits.SplitError(
                f"--split {split}: the folder holds none of {', '.join(SPLIT_FILE_NAMES)}"
            )
        return found
    if split in splits.TRAIN_SPLITS:
        return [path for path in splits.training_files(split, splits_dir) if path is not None]
    if split in splits.TEST_SPLIT_FILES:
        return [splits.test_files(split, splits_dir)]
    raise splits.SplitError(
        f"--split {split!r}: not a split file, a split folder, a training split "
        f"({', '.join(splits.TRAIN_SPLITS)}) or a test split ({', '.join(splits.TEST_SPLIT_FILES)})"
    )


def split_frames(
    data_path: str,
    seg_path: str,
    split_paths: Sequence[str],
    dataset: str = "kitti",
    img_ext: str = "png",
    sides: str = "split",
) -> list[Frame]:
    """The frames the split files need (frame 0 of each line, as the loader reads), with the loader's label
    paths."""
    # only the dataset's path rules are used: the sizes and frame ids do not matter here
    layout = DATASETS[dataset](
        data_path, [], height=1, width=1, frame_ids=[0], img_ext=img_ext, seg_path=seg_path, load_depth=False
    )
    frames: dict[str, Frame] = {}
    for path in split_paths:
        for number, line in read_split_numbered(path):
            entry = parse_split_line(line, f"{path}:{number}")
            line_side = entry.side or DEFAULT_SIDE
            for side in (line_side,) if sides == "split" else ("l", "r"):
                image = layout.get_image_path(entry.folder, entry.frame_index, side)
                if not os.path.isfile(image):
                    raise MissingFileError(
                        f"{image}: frame of {path}:{number} not found "
                        f"(--data_path {data_path}, --img_ext {img_ext})"
                    )
                label = layout.label_path(entry.folder, entry.frame_index, side)
                frames.setdefault(label, Frame(image, label))
    return list(frames.values())


def folder_frames(
    image_dirs: Sequence[str], seg_path: str, data_path: str | None = None, exclude: Sequence[str] = ()
) -> list[Frame]:
    """Every image below the folders, its label at the same relative path (from ``data_path``, else the
    folder's parent)."""
    excluded = {os.path.abspath(path) for path in (seg_path, *exclude)}
    frames: dict[str, Frame] = {}
    for folder in image_dirs:
        if not os.path.isdir(folder):
            raise MissingFileError(f"--image_dirs {folder}: no such folder")
        base = data_path or os.path.dirname(os.path.abspath(folder))
        for root, dirs, files in os.walk(folder):
            dirs[:] = sorted(d for d in dirs if os.path.abspath(os.path.join(root, d)) not in excluded)
            for name in sorted(files):
                if not name.lower().endswith(utils.IMAGE_EXTENSIONS):
                    continue
                image = os.path.join(root, name)
                if os.path.relpath(os.path.abspath(image), os.path.abspath(base)).startswith(os.pardir):
                    raise InputError(f"{image} is not inside --data_path {data_path}")
                label = label_path_of(os.path.abspath(image), os.path.abspath(base), seg_path)
                if label in frames and frames[label].image != image:
                    raise InputError(f"{image} and {frames[label].image} would share the label {label}")
                frames[label] = Frame(image, label)
    if not frames:
        raise MissingFileError(f"no images ({', '.join(utils.IMAGE_EXTENSIONS)}) in {', '.join(image_dirs)}")
    return list(frames.values())


# -- models ------------------------------------------------------------------------------------
def _normalised_name(name: str) -> str:
    return " ".join(str(name).lower().replace("_", " ").replace("-", " ").split())


def channel_to_label_ids(id2label: dict, source: str, assume_train_id_order: bool = False) -> np.ndarray:
    """Cityscapes label id (uint8) of each output channel, matched by class name; a clear error otherwise."""
    names = [_normalised_name(id2label[key]) for key in sorted(id2label, key=int)]
    if assume_train_id_order and len(names) == NUM_CLASSES:
        return TRAIN_TO_LABEL.copy()
    unknown = [name for name in names if name not in CITYSCAPES_LABEL_OF_NAME]
    if len(names) != NUM_CLASSES or unknown or len(set(names)) != NUM_CLASSES:
        raise InputError(
            f"{source}: its classes ({len(names)}: {', '.join(names)}) are not Cityscapes' "
            f"{NUM_CLASSES} ({', '.join(CLASS_NAMES)})"
            + (f"; unknown: {', '.join(unknown)}" if unknown else "")
            + " (pass --assume_train_id_order if its channels are the train ids in order)"
        )
    return np.array([CITYSCAPES_LABEL_OF_NAME[name] for name in names], dtype=np.uint8)


def model_file_kind(path: str) -> str:
    """``export`` (a torch.export .pt2 archive) or ``torchscript``, from the file's contents; anything
    else (a pickle, a ``torch.save`` file, text) raises InputError naming the file, unread."""
    if not zipfile.is_zipfile(path):
        with open(path, "rb") as f:
            if f.read(1) == PICKLE_OPCODE_PROTO:
                raise InputError(
                    f"--model {path}: a pickle, which is never loaded (unpickling can run any code): "
                    f"{EXPORT_ADVICE}"
                )
        raise InputError(f"--model {path}: not a model file (a torch.export .pt2 or TorchScript archive)")
    with zipfile.ZipFile(path) as archive:
        inner = {name.split("/", 1)[-1] for name in archive.namelist()}
    if "archive_format" in inner:
        return "export"
    if "constants.pkl" in inner and any(name.startswith("code/") for name in inner):
        return "torchscript"
    if "data.pkl" in inner:
        raise InputError(
            f"--model {path}: a torch.save file (weights or a pickled module, not a program), which is "
            f"never unpickled: {EXPORT_ADVICE}"
        )
    raise InputError(f"--model {path}: a zip archive that is neither a torch.export program nor TorchScript")


def load_model_file(path: str, device: torch.device) -> torch.nn.Module:
    """A torch.export program (.pt2) or TorchScript file as a module on ``device`` (pickles refused first)."""
    return load_program_file(path, model_file_kind(path), device)


class ProcessorInput:
    """Per-image pre-processing of a ``transformers`` checkpoint (its own image processor), run in loader
    workers."""

    def __init__(self, processor, resize_to: tuple[int, int] | None = None, keep_size: bool = False) -> None:
        self.processor = processor
        if resize_to is not None:
            self.kwargs = {"size": {"height": resize_to[0], "width": resize_to[1]}}
        else:
            self.kwargs = {"do_resize": False} if keep_size else {}

    def __call__(self, image: Image.Image) -> torch.Tensor:
        return self.processor(images=image, return_tensors="pt", **self.kwargs)["pixel_values"][0]


class UnitRangeInput:
    """RGB in [0, 1] at the image's size (optionally ImageNet-normalised), for model files."""

    def __init__(self, normalize: str = "none") -> None:
        self.normalize = normalize

    def __call__(self, image: Image.Image) -> torch.Tensor:
        tensor = TF.to_tensor(image)
        return TF.normalize(tensor, IMAGENET_MEAN, IMAGENET_STD) if self.normalize == "imagenet" else tensor


def window_starts(length: int, window: int, stride: int) -> list[int]:
    """Offsets of windows covering [0, length): one every ``stride``, the last flush with the end."""
    if length <= window:
        return [0]
    return list(range(0, length - window, stride)) + [length - window]


def sliding_window_logits(
    forward: Forward, images: torch.Tensor, window: tuple[int, int], stride_fraction: float = SLIDE_STRIDE
) -> torch.Tensor:
    """Logits at the input's size: each window's logits upsampled bilinearly to it, averaged where windows
    overlap."""
    _, _, height, width = images.shape
    win_h, win_w = min(window[0], height), min(window[1], width)
    total = None
    count = images.new_zeros(1, 1, height, width, dtype=torch.float32)
    for y in window_starts(height, win_h, max(1, round(win_h * stride_fraction))):
        for x in window_starts(width, win_w, max(1, round(win_w * stride_fraction))):
            logits = forward(images[:, :, y : y + win_h, x : x + win_w]).float()
            logits = F.interpolate(logits, size=(win_h, win_w), mode="bilinear", align_corners=False)
            if total is None:
                total = logits.new_zeros(images.shape[0], logits.shape[1], height, width)
            total[:, :, y : y + win_h, x : x + win_w] += logits
            count[:, :, y : y + win_h, x : x + win_w] += 1
    return total / count


class Segmenter:
    """A segmentation model: its per-image input, batched logits (B, C, h, w), and each channel's label id."""

    def __init__(
        self,
        model: torch.nn.Module,
        preprocess: Preprocess,
        channel_to_label: np.ndarray,
        hugging_face: bool,
        name: str,
        window: tuple[int, int] | None = None,
    ) -> None:
        self.model = model
        self.preprocess = preprocess
        self.channel_to_label = channel_to_label
        self.hugging_face = hugging_face
        self.name = name
        self.window = window

    def logits(self, images: torch.Tensor) -> torch.Tensor:
        """Logits of a batch, whole or by sliding windows."""
        if self.window is not None:
            return sliding_window_logits(self.forward, images, self.window)
        return self.forward(images)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """One forward pass; a clear error when a model file fails on the input or its output is not (B, 19,
        h, w)."""
        if self.hugging_face:
            return self.model(pixel_values=images).logits
        try:
            out = self.model(images)
        except torch.OutOfMemoryError:
            raise
        except (AssertionError, RuntimeError) as err:  # e.g. a torch.export guard on the input's shape
            reason = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
            raise InputError(
                f"{self.name}: the model fails on an input of shape {tuple(images.shape)} ({reason}); "
                f"frames come in batches of any size and at their own height and width"
            ) from None
        if (
            not isinstance(out, torch.Tensor)
            or out.dim() != 4
            or out.shape[:2] != (images.shape[0], NUM_CLASSES)
        ):
            shape = tuple(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__
            raise InputError(
                f"{self.name}: a model file must return (B, {NUM_CLASSES}, h, w) train-id logits, "
                f"got {shape} for input {tuple(images.shape)}"
            )
        return out


def load_segmenter(
    model: str,
    device: torch.device,
    resize_to: tuple[int, int] | None = None,
    normalize: str = "none",
    assume_train_id_order: bool = False,
    sliding_window: bool = False,
) -> Segmenter:
    """A model file (torch.export .pt2 or TorchScript) or a ``transformers`` checkpoint (hub name or local
    folder)."""
    if os.path.isfile(model) or model.lower().endswith(MODEL_FILE_EXTENSIONS):
        if not os.path.isfile(model):
            raise MissingFileError(f"--model {model}: no such model file")
        if resize_to is not None or sliding_window:
            raise InputError(
                f"--resize_to and --sliding_window are for transformers checkpoints: the model file "
                f"{model} gets each frame whole at its own size"
            )
        net = load_model_file(model, device)
        return Segmenter(net, UnitRangeInput(normalize), TRAIN_TO_LABEL.copy(), False, model)
    if normalize != "none":
        raise InputError(
            f"--normalize is for model files: the checkpoint {model} normalises with its own processor"
        )
    try:
        from transformers import AutoImageProcessor, AutoModelForSemanticSegmentation
    except ImportError as err:
        raise DependencyError(TRANSFORMERS_MISSING) from err
    try:
        processor = AutoImageProcessor.from_pretrained(model)
        net = AutoModelForSemanticSegmentation.from_pretrained(model).eval().to(device)
    except OSError as err:  # not a checkpoint folder, and no network to fetch a hub name
        raise InputError(f"--model {model}: cannot load the checkpoint ({err})") from None
    # weights that are a pickle of more than tensors: refused, never run
    except pickle.UnpicklingError as err:
        reason = (str(err).strip().splitlines() or ["a pickle"])[0]
        raise InputError(
            f"--model {model}: its weights are a pickle that holds more than tensors, which is never "
            f"unpickled ({reason[:160]}): save the checkpoint with safetensors"
        ) from None
    channel_to_label = channel_to_label_ids(net.config.id2label, model, assume_train_id_order)
    window = None
    if sliding_window:
        size = getattr(processor, "size", None)
        try:
            window = (int(size["height"]), int(size["width"]))
        except (KeyError, TypeError):
            raise InputError(
                f"--sliding_window: the processor of {model} names no fixed height and width "
                f"(its size: {size}) to use as the window"
            ) from None
    return Segmenter(
        net,
        ProcessorInput(processor, resize_to, keep_size=sliding_window),
        channel_to_label,
        True,
        model,
        window,
    )


# -- labelling ---------------------------------------------------------------------------------
class FrameImages(Dataset):
    """Decodes frames and pre-processes them for the model (in DataLoader workers)."""

    def __init__(self, frames: Sequence[Frame], preprocess: Preprocess) -> None:
        self.frames = list(frames)
        self.preprocess = preprocess

    def __len__(self) -> int:
        return len(self.frames)

    def __getitem__(self, index: int) -> tuple[int, torch.Tensor, tuple[int, int]]:
        image = pil_loader(self.frames[index].image)
        return index, self.preprocess(image), (image.height, image.width)


def keep_list(batch: list) -> list:
    """Collate: keep the items as they are (frames of several sizes share a batch)."""
    return batch


def single_thread_worker(_: int) -> None:
    """Loader workers decode one image each: one torch thread apiece."""
    torch.set_num_threads(1)


def save_overlay(frame: Frame, train_ids: np.ndarray, seg_path: str, summary_dir: str) -> str:
    """The frame with its labels blended over it in the Cityscapes palette, as a PNG in the summary folder."""
    image = np.asarray(pil_loader(frame.image), dtype=np.float32)
    overlay = segmentation_overlay(image, train_ids)
    name = os.path.relpath(frame.label, seg_path).replace(os.sep, "_")
    path = os.path.join(summary_dir, "overlay_" + name)
    save_png(overlay, path)
    return path


def same_shape_groups(batch: list) -> list[list]:
    """Split a loader batch into groups of equal input and frame size (one forward pass each)."""
    groups: dict[tuple, list] = {}
    for item in batch:
        groups.setdefault((tuple(item[1].shape), item[2]), []).append(item)
    return list(groups.values())


def label_frames(
    segmenter: Segmenter,
    frames: Sequence[Frame],
    device: torch.device,
    batch_size: int = 8,
    num_workers: int = 4,
    precision: str = "fp32",
    seg_path: str = "",
    summary_dir: str | None = None,
    num_overlays: int = 0,
) -> tuple[np.ndarray, list[str]]:
    """Label the frames; returns the pixels per train id (NUM_CLASSES,) and the overlay paths written."""
    dtype = PRECISIONS[precision]
    loader = DataLoader(
        FrameImages(frames, segmenter.preprocess),
        batch_size=batch_size,
        num_workers=num_workers,
        collate_fn=keep_list,
        worker_init_fn=single_thread_worker,
        pin_memory=device.type == "cuda",
    )
    histogram = np.zeros(NUM_CLASSES, dtype=np.int64)
    overlays: list[str] = []
    with tqdm(total=len(frames), unit="frame", desc="pseudo-labels", dynamic_ncols=True) as bar:
        for batch in loader:
            for group in same_shape_groups(batch):
                images = torch.stack([item[1] for item in group]).to(device, non_blocking=True)
                size = group[0][2]
                with (
                    torch.inference_mode(),
                    torch.autocast(device.type, dtype=dtype, enabled=dtype is not None),
                ):
                    logits = segmenter.logits(images)
                with torch.inference_mode():
                    logits = F.interpolate(logits.float(), size=size, mode="bilinear", align_corners=False)
                    channels = logits.argmax(1).to(torch.uint8).cpu().numpy()
                for (index, _, _), frame_channels in zip(group, channels):
                    label_ids = segmenter.channel_to_label[frame_channels]
                    save_label_png(frames[index].label, label_ids)
                    train_ids = LABEL_TO_TRAIN[label_ids]
                    histogram += np.bincount(train_ids.ravel(), minlength=256)[:NUM_CLASSES]
                    if summary_dir is not None and len(overlays) < num_overlays:
                        overlays.append(save_overlay(frames[index], train_ids, seg_path, summary_dir))
                bar.update(len(group))
    return histogram, overlays


def write_summary(summary: dict, summary_dir: str) -> str:
    """summary.json in the summary folder, written to a temporary name and renamed."""
    path = os.path.join(summary_dir, SUMMARY_NAME)
    save_json(summary, path)
    return path


def summary_table(summary: dict) -> str:
    """The run's counts and class histogram as a text table."""
    lines = [
        f"frames needed {summary['frames_needed']}, already labelled (skipped) {summary['frames_skipped']}, "
        f"labelled now {summary['frames_labelled']} ({summary['frames_per_second']:.3g} frames/s)",
        f"{'class':<15}{'pixels':>14}{'share':>9}",
    ]
    for name in CLASS_NAMES:
        lines.append(f"{name:<15}{summary['class_pixels'][name]:>14d}{summary['class_share'][name]:>9.2%}")
    return "\n".join(lines)
