"""Monocular video dataset: frames, intrinsics, augmentation, pseudo-labels and ground truth per item.

Items use Monodepth2's keys (model.py); resizing, colour jitter (datasets/jitter.py) and flip are the authors'
(docs/fidelity.md, "Data pipeline"). An item index ``(index, seed)`` (``training.resume.ResumableSampler``)
draws the item's augmentation from generators seeded for it alone. Only the ``image_keys`` given are made;
``input_pipeline="fast"`` / ``"fast_workers"`` hands frames over as uint8 through ``load_item``'s one hook,
``datasets.fast_frames.add_uint8_frames``. Unreadable files raise ``InputError`` naming the file."""

from __future__ import annotations

import os
import random
import warnings
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Collection, Iterable, Sequence

import numpy as np
import torch
import torchvision.transforms.functional as TF
from PIL import Image, UnidentifiedImageError
from torch.utils import data

from utils import InputError, MissingFileError

from . import fast_frames
from . import jitter as colour_jitter
from .cityscapes import LABEL_TO_TRAIN, NUM_LABEL_IDS

# KITTI's intrinsics normalised by the image size (Monodepth2's).
KITTI_K = np.array([[0.58, 0, 0.5, 0], [0, 1.92, 0.5, 0], [0, 0, 1, 0], [0, 0, 0, 1]], dtype=np.float32)
FULL_RES_SHAPE = (1242, 375)  # (width, height) of the ground truth handed to validation
STEREO_BASELINE = 0.1  # Monodepth2's stereo translation; 0.54 m in KITTI, hence the 5.4 of --eval_stereo
AUGMENT_PROBABILITY = 0.5  # of the colour jitter and of the flip, each
OTHER_SIDE = {"l": "r", "r": "l"}
RESIZE_FILTER = Image.Resampling.LANCZOS  # frames, every scale from the native size
LABEL_FILTER = Image.Resampling.NEAREST  # pseudo-labels
INPUT_PIPELINES = (
    "exact",
    "fast",
    "fast_workers",
)  # the authors' pipeline, or the fast ones (datasets/fast_frames.py)


@dataclass(frozen=True)
class SplitEntry:
    """One line of a split file: ``folder frame_index side``."""

    folder: str
    frame_index: int
    side: str | None


def parse_split_line(line: str, where: str = "split line", need_side: bool = False) -> SplitEntry:
    """Parse ``folder [frame_index [side]]`` (all three with ``need_side``); ``where`` names the file and line
    in errors."""
    parts = line.split()
    if not parts or len(parts) > 3 or (need_side and len(parts) != 3):
        raise InputError(f"{where}: expected 'folder frame_index side' (side l or r), got {line.strip()!r}")
    try:
        frame_index = int(parts[1]) if len(parts) > 1 else 0
    except ValueError:
        raise InputError(f"{where}: frame index {parts[1]!r} is not an integer in {line.strip()!r}") from None
    side = parts[2] if len(parts) > 2 else None
    if side is not None and side not in OTHER_SIDE:
        raise InputError(f"{where}: side must be l or r, got {side!r} in {line.strip()!r}")
    return SplitEntry(parts[0], frame_index, side)


def read_split_numbered(
    path: str, need_side: bool = False, need_lines: bool = False
) -> list[tuple[int, str]]:
    """(line number, line) of a split file's non-blank lines, each checked by ``parse_split_line``.

    A missing file, a folder, a file that is not text (or, with ``need_lines``, one without a line)
    raises InputError naming it.
    """
    if os.path.isdir(path):
        raise InputError(f"split file {path} is a folder")
    if not os.path.isfile(path):
        raise MissingFileError(f"split file {path} not found")
    try:
        with open(path, encoding="utf-8") as f:
            lines = [line.rstrip("\n") for line in f]
    except UnicodeDecodeError as err:
        raise InputError(f"split file {path} is not a text file ({err.reason} at byte {err.start})") from None
    except OSError as err:
        raise InputError(f"split file {path} cannot be read ({err.strerror})") from None
    kept = []
    for number, line in enumerate(lines, 1):
        if line.strip():
            parse_split_line(line, f"{path}:{number}", need_side)
            kept.append((number, line))
    if need_lines and not kept:
        raise InputError(f"split file {path} lists no frames (it is empty)")
    return kept


def label_path_of(image_path: str, data_path: str, seg_path: str) -> str:
    """Pseudo-label PNG of an image: its path relative to ``data_path`` below ``seg_path``, without
    ``data/``."""
    rel = os.path.relpath(image_path, data_path)
    parts = [part for part in rel.split(os.sep) if part != "data"]
    return os.path.splitext(os.path.join(seg_path, *parts))[0] + ".png"


def read_split(path: str, need_side: bool = False, need_lines: bool = False) -> list[str]:
    """Lines of a split file (blank lines dropped), each checked by ``parse_split_line``."""
    return [line for _, line in read_split_numbered(path, need_side, need_lines)]


def open_image(path: str) -> Image.Image:
    """Decode an image file fully; a missing or undecodable file raises InputError naming it.

    An image larger than Pillow's decompression-bomb limit (``Image.MAX_IMAGE_PIXELS``, which Pillow
    only warns about up to twice that size) is refused before it is decoded.
    """
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(path) as img:
                img.load()
                return img
    except FileNotFoundError:
        raise MissingFileError(f"{path}: file not found") from None
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as err:
        raise InputError(f"{path}: refusing to decode the image ({err})") from None
    except (OSError, UnidentifiedImageError, SyntaxError, ValueError) as err:
        raise InputError(f"{path}: cannot decode the image ({err})") from None


def pil_loader(path: str) -> Image.Image:
    """Open an image file as RGB."""
    return open_image(path).convert("RGB")


@contextmanager
def seeded_random(seed: int):
    """Seed Python's and torch's CPU generators for a block, restoring their states after it.

    Only the CPU generator: item loading draws nothing on a GPU, and ``torch.manual_seed`` would
    also queue a CUDA seeding, formatting a stack trace per call where CUDA is not initialised.
    """
    state = random.getstate()
    with torch.random.fork_rng(devices=[]):
        random.seed(seed)
        torch.default_generator.manual_seed(seed)
        try:
            yield
        finally:
            random.setstate(state)


def all_image_keys(frame_ids: Iterable, num_scales: int) -> frozenset[tuple]:
    """Monodepth2's full set of image keys: plain and jittered, every frame, every scale."""
    return frozenset(
        (name, f, s) for name in ("color", "color_aug") for f in frame_ids for s in range(num_scales)
    )


class MonoDataset(data.Dataset):
    """Base class: subclasses say where frames, labels and ground truth are for a split entry."""

    NEEDS_SIDE = True  # split lines must name the camera (l or r): the layout has one folder per camera

    def __init__(
        self,
        data_path: str,
        filenames: Sequence[str],
        height: int,
        width: int,
        frame_ids: Sequence,
        num_scales: int = 4,
        is_train: bool = False,
        img_ext: str = "png",
        load_labels: bool = False,
        seg_path: str | None = None,
        load_depth: bool | None = None,
        input_pipeline: str = "exact",
        image_keys: Collection[tuple] | None = None,
    ) -> None:
        super().__init__()
        if input_pipeline not in INPUT_PIPELINES:
            raise ValueError(f"input_pipeline must be one of {INPUT_PIPELINES}, got {input_pipeline!r}")
        self.input_pipeline = input_pipeline
        self.data_path = data_path
        self.filenames = list(filenames)
        self.entries = [parse_split_line(line, f"split line {n}") for n, line in enumerate(self.filenames, 1)]
        self.height = height
        self.width = width
        self.frame_ids = list(frame_ids)
        self.num_scales = num_scales
        self.is_train = is_train
        self.img_ext = "." + img_ext.lstrip(".")
        self.load_labels = load_labels
        self.seg_path = seg_path or os.path.join(data_path, "segmentation")
        self.K = KITTI_K.copy()
        self.full_res_shape = FULL_RES_SHAPE
        self.load_depth = self.check_depth() if load_depth is None else load_depth
        # the image keys to make (all of them by default, as Monodepth2's loader)
        all_keys = all_image_keys(self.frame_ids, num_scales)
        self.image_keys = all_keys if image_keys is None else frozenset(image_keys)
        if not self.image_keys <= all_keys:
            raise ValueError(
                f"image_keys {sorted(map(str, self.image_keys - all_keys))} name frames or scales "
                f"this dataset does not load (frame_ids {self.frame_ids}, {num_scales} scales)"
            )

    def __len__(self) -> int:
        return len(self.entries)

    # -- layout, overridden per dataset ------------------------------------------------------
    def get_image_path(self, folder: str, frame_index: int, side: str | None) -> str:
        raise NotImplementedError

    def check_depth(self) -> bool:
        """Whether ground-truth depth exists for this data (checked on the first entry)."""
        return False

    def get_depth(self, folder: str, frame_index: int, side: str | None, do_flip: bool) -> np.ndarray:
        raise NotImplementedError

    def label_path(self, folder: str, frame_index: int, side: str | None) -> str:
        """Pseudo-label PNG of a frame: its image path below the label root, without ``data/``."""
        return label_path_of(self.get_image_path(folder, frame_index, side), self.data_path, self.seg_path)

    # -- loading -----------------------------------------------------------------------------
    def entry_problem(self, entry: SplitEntry) -> str | None:
        """Why this layout cannot read a split entry (e.g. no side where it needs one), or None."""
        if self.NEEDS_SIDE and entry.side is None:
            return "names no side: expected 'folder frame_index side' (side l or r)"
        return None

    def entry(self, index: int) -> SplitEntry:
        """The split entry of item ``index``; InputError naming the split line when this layout cannot read
        it.

        (The input check names the file and line first: ``training.input_checks``.)
        """
        entry = self.entries[index]
        problem = self.entry_problem(entry)
        if problem:
            raise InputError(f"split line {index + 1} ({self.filenames[index].strip()!r}) {problem}")
        return entry

    def frame_path(self, entry: SplitEntry, frame_id) -> str:
        """Image file of a frame of an item: a temporal offset, or "s" for the other camera."""
        return self.get_image_path(entry.folder, *self.frame_location(entry, frame_id))

    def required_files(self, index: int) -> list[str]:
        """Every file that loading item ``index`` reads: frames, pseudo-label, ground truth."""
        entry = self.entry(index)
        files = [self.frame_path(entry, i) for i in self.frame_ids]
        if self.load_labels:
            files.append(self.label_path(entry.folder, entry.frame_index, entry.side))
        return files

    def check_item(self, index: int) -> None:
        """Decode every image and the ground truth of an item; check frame sizes and label ids (InputError
        naming the file)."""
        entry = self.entry(index)
        sizes = {
            self.frame_path(entry, i): open_image(self.frame_path(entry, i)).size for i in self.frame_ids
        }
        self.check_frame_sizes(sizes)
        if self.load_labels:
            path = self.label_path(entry.folder, entry.frame_index, entry.side)
            self.check_label_ids(np.asarray(open_image(path)), path)
        if self.load_depth:
            self.get_depth(entry.folder, entry.frame_index, entry.side, False)

    @staticmethod
    def check_frame_sizes(sizes: dict[str, tuple[int, int]]) -> None:
        """The frames of an item must share one size (else warping compares different views)."""
        target_path, target_size = next(iter(sizes.items()))
        for path, size in sizes.items():
            if size != target_size:
                raise InputError(
                    f"{path}: image of unexpected size {size[0]}x{size[1]} (width x height); the item's "
                    f"target frame {target_path} is {target_size[0]}x{target_size[1]}"
                )

    @staticmethod
    def check_label_ids(ids: np.ndarray, path: str) -> None:
        """Pseudo-labels hold Cityscapes label ids 0..33."""
        if ids.ndim != 2:
            raise InputError(f"{path}: a label map must have one channel of label ids, got shape {ids.shape}")
        if ids.size and int(ids.max()) >= NUM_LABEL_IDS:
            bad = np.unique(ids[ids >= NUM_LABEL_IDS])
            raise InputError(
                f"{path}: label ids {bad[:10].tolist()} lie outside the Cityscapes table "
                f"(0..{NUM_LABEL_IDS - 1})"
            )

    def get_color(self, folder: str, frame_index: int, side: str | None, do_flip: bool) -> Image.Image:
        color = pil_loader(self.get_image_path(folder, frame_index, side))
        return color.transpose(Image.Transpose.FLIP_LEFT_RIGHT) if do_flip else color

    def get_labels(self, folder: str, frame_index: int, side: str | None, do_flip: bool) -> torch.Tensor:
        """Train ids (1, H, W) int64 from the Cityscapes label-id PNG, resized with Pillow's nearest."""
        path = self.label_path(folder, frame_index, side)
        label = open_image(path)
        if do_flip:
            label = label.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
        ids = np.asarray(label.resize((self.width, self.height), LABEL_FILTER))
        self.check_label_ids(ids, path)
        return torch.from_numpy(LABEL_TO_TRAIN[ids].astype(np.int64))[None]

    def intrinsics(self, scale: int, do_flip: bool) -> np.ndarray:
        """4x4 intrinsics at a scale, with cx mirrored for a flipped item."""
        K = self.K.copy()
        if do_flip:
            K[0, 2] = 1 - K[0, 2]
        K[0, :] *= self.width // (2**scale)
        K[1, :] *= self.height // (2**scale)
        return K

    def frame_location(self, entry: SplitEntry, frame_id) -> tuple[int, str | None]:
        """(frame index, side) of a frame id of an entry: a temporal offset, or "s" for the other camera."""
        if frame_id == "s":
            return entry.frame_index, OTHER_SIDE[entry.side]
        return entry.frame_index + frame_id, entry.side

    def add_colors(
        self, inputs: dict, entry: SplitEntry, do_flip: bool, jitter: colour_jitter.JitterDraw | None
    ) -> None:
        """The exact pipeline: each scale of ``image_keys`` resized from the native frame (LANCZOS) and,
        for its jittered copy, jittered via PIL."""
        frames = {
            i: self.get_color(entry.folder, *self.frame_location(entry, i), do_flip) for i in self.frame_ids
        }
        self.check_frame_sizes({self.frame_path(entry, i): frame.size for i, frame in frames.items()})
        for i, frame in frames.items():
            for scale in range(self.num_scales):
                plain, jittered = (
                    ("color", i, scale) in self.image_keys,
                    ("color_aug", i, scale) in self.image_keys,
                )
                if not (plain or jittered):
                    continue
                resized = frame.resize((self.width // 2**scale, self.height // 2**scale), RESIZE_FILTER)
                if plain:
                    inputs[("color", i, scale)] = TF.to_tensor(resized)
                if jittered:
                    inputs[("color_aug", i, scale)] = TF.to_tensor(colour_jitter.jitter_pil(resized, jitter))

    def __getitem__(self, index: int | tuple[int, int]) -> dict:
        """An item; ``(index, seed)`` draws its augmentation from generators seeded with ``seed``."""
        if isinstance(index, tuple):
            index, seed = index
            with seeded_random(seed):
                return self.load_item(index)
        return self.load_item(index)

    def load_item(self, index: int) -> dict:
        """Item ``index`` with the augmentation drawn from the current random states."""
        entry = self.entry(index)
        do_color_aug = self.is_train and random.random() > AUGMENT_PROBABILITY
        do_flip = self.is_train and random.random() > AUGMENT_PROBABILITY
        inputs: dict = {}

        for scale in range(self.num_scales):
            K = self.intrinsics(scale, do_flip)
            inputs[("K", scale)] = torch.from_numpy(K)
            inputs[("inv_K", scale)] = torch.from_numpy(np.linalg.pinv(K).astype(np.float32))

        jitter = colour_jitter.draw() if do_color_aug else None
        if self.input_pipeline == "exact":
            self.add_colors(inputs, entry, do_flip, jitter)
        else:  # the opt-in fast path: uint8 frames, finished on the device or in the workers
            fast_frames.add_uint8_frames(
                inputs,
                {i: self.frame_path(entry, i) for i in self.frame_ids},
                self.height,
                self.width,
                do_flip,
                jitter,
                self.image_keys,
                in_workers=self.input_pipeline == "fast_workers",
            )

        if self.load_labels:
            inputs[("seg", 0, 0)] = self.get_labels(entry.folder, entry.frame_index, entry.side, do_flip)
        if self.load_depth:
            depth = self.get_depth(entry.folder, entry.frame_index, entry.side, do_flip)
            inputs["depth_gt"] = torch.from_numpy(depth[None].astype(np.float32))
        if "s" in self.frame_ids:
            stereo_T = np.eye(4, dtype=np.float32)
            baseline_sign = -1 if do_flip else 1
            side_sign = -1 if entry.side == "l" else 1
            stereo_T[0, 3] = side_sign * baseline_sign * STEREO_BASELINE
            inputs["stereo_T"] = torch.from_numpy(stereo_T)
        return inputs
