"""Image sequences of your own (``--dataset folders``): one folder per sequence, frames in name order.

``--data_path`` holds the sequence folders (frames in natural name order, an optional ``right/`` camera), an
``intrinsics.json`` for all of them or one per sequence (datasets/camera.py), ``segmentation/`` and
``splits/``; a split line is ``<sequence> <frame_index> <side>``. K is normalised by each sequence's frame
size, as Monodepth2's KITTI matrix is. Every sequence a split names is checked when the dataset is built;
``entry_problem`` names a line whose neighbours or second camera are missing. docs/own_data.md has it all."""

from __future__ import annotations

import logging
import os
import re
from dataclasses import dataclass
from typing import Sequence

import numpy as np
from PIL import Image, UnidentifiedImageError

from utils import IMAGE_EXTENSIONS, InputError, MissingFileError
from utils.files import is_temporary

from .camera import INTRINSICS_NAMES, Camera, check_camera_fits, read_camera
from .mono_dataset import MonoDataset, SplitEntry

logger = logging.getLogger(__name__)

INCOMPLETE_MARKER = ".incomplete"  # in a sequence folder that tools.import_video has not finished
SEGMENTATION_FOLDER = "segmentation"  # pseudo-labels, below --data_path by default
SPLITS_FOLDER = "splits"  # what tools.prepare_sequences writes
NOT_SEQUENCES = (
    SEGMENTATION_FOLDER,
    SPLITS_FOLDER,
)  # folders of --data_path that hold no frames of their own
FRAME_NAME = "{:010d}"  # frame file names written by tools.import_video (and the synthetic videos)
KITTI_BASELINE_M = 0.54  # KITTI's stereo baseline, which Monodepth2's stereo translation 0.1 stands for


@dataclass(frozen=True)
class ImageSequence:
    """A checked sequence: its frames in order, their size, its camera and its second camera's frames."""

    name: str
    folder: str
    frames: tuple[str, ...]  # paths
    width: int
    height: int
    camera: Camera
    right: tuple[str, ...] = ()  # the second camera's frames, paired by position

    @property
    def K(self) -> np.ndarray:
        return self.camera.normalised(self.width, self.height)

    def frames_of(self, side: str | None) -> tuple[str, ...]:
        """Frames of a split line's side: l (or none) = the sequence's own, r = its second camera."""
        if side == "r":
            if not self.right:
                raise InputError(
                    f"{self.folder}: side r needs a second camera ('stereo' in {self.camera.source})"
                )
            return self.right
        return self.frames


# -- files --------------------------------------------------------------------------------------
def natural_key(name: str) -> list:
    """Sort key of a file name with its digit runs compared as numbers (frame2 before frame10)."""
    return [int(part) if part.isdigit() else part for part in re.split(r"(\d+)", name)]


def list_frames(folder: str) -> list[str]:
    """Paths of the image files directly in ``folder``, in natural name order."""
    names = [
        name
        for name in os.listdir(folder)
        if name.lower().endswith(IMAGE_EXTENSIONS)
        and not is_temporary(name)  # a frame being written, or left half-written by a killed writer
        and os.path.isfile(os.path.join(folder, name))
    ]
    return [os.path.join(folder, name) for name in sorted(names, key=natural_key)]


def image_size(path: str) -> tuple[int, int]:
    """(width, height) from an image file's header; InputError naming the file when it is not an image."""
    try:
        with Image.open(path) as image:
            return image.size
    except FileNotFoundError:
        raise MissingFileError(f"{path}: file not found") from None
    except (OSError, UnidentifiedImageError, SyntaxError, ValueError, Image.DecompressionBombError) as err:
        raise InputError(f"{path}: not a readable image ({err})") from None


def intrinsics_file(data_path: str, name: str) -> str | None:
    """The intrinsics file of a sequence: its own, else the nearest one above it up to ``data_path``."""
    root = os.path.abspath(data_path)
    folder = os.path.abspath(os.path.join(data_path, name))
    while True:
        for file_name in INTRINSICS_NAMES:
            path = os.path.join(folder, file_name)
            if os.path.isfile(path):
                return path
        if folder == root or os.path.dirname(folder) == folder:
            return None
        folder = os.path.dirname(folder)


# -- sequences ----------------------------------------------------------------------------------
def read_sequence(data_path: str, name: str) -> ImageSequence:
    """A sequence folder, checked: complete, with frames of one size and intrinsics that fit them."""
    folder = os.path.join(data_path, name)
    if not os.path.isdir(folder):
        raise MissingFileError(f"{folder}: no such sequence folder")
    if os.path.exists(os.path.join(folder, INCOMPLETE_MARKER)):
        raise InputError(
            f"{folder}: its import did not finish ({INCOMPLETE_MARKER} is there): rerun "
            f"python -m tools.import_video with the same arguments to complete it"
        )
    frames = list_frames(folder)
    if not frames:
        raise InputError(f"{folder}: no frames ({', '.join(IMAGE_EXTENSIONS)}) in the sequence folder")
    width, height = frame_size(frames)
    path = intrinsics_file(data_path, name)
    if path is None:
        raise MissingFileError(
            f"{folder}: no intrinsics: write {os.path.join(folder, INTRINSICS_NAMES[0])} (or "
            f"one for all sequences in {data_path}) with fx, fy, cx, cy in pixels of its "
            f"{width}x{height} frames (docs/own_data.md)"
        )
    camera = read_camera(path)
    check_camera_fits(camera, width, height, folder)
    right: list[str] = []
    if camera.stereo_folder is not None:
        right_folder = os.path.join(folder, camera.stereo_folder)
        if not os.path.isdir(right_folder):
            raise MissingFileError(
                f"{right_folder}: the second camera's folder that {path} names is not there"
            )
        right = list_frames(right_folder)
        if len(right) != len(frames):
            raise InputError(
                f"{right_folder}: {len(right)} frames, but {folder} has {len(frames)}: the two cameras' "
                f"frames pair by position"
            )
        if frame_size(right) != (width, height):
            raise InputError(
                f"{right_folder}: frames of {frame_size(right)[0]}x{frame_size(right)[1]}, but "
                f"{folder} has {width}x{height}: the second camera must be rectified to the same size"
            )
    return ImageSequence(name, folder, tuple(frames), width, height, camera, tuple(right))


def frame_size(frames: Sequence[str]) -> tuple[int, int]:
    """The one (width, height) of a sequence's frames, read from their headers; InputError naming a frame that
    differs."""
    first = image_size(frames[0])
    for path in frames[1:]:
        size = image_size(path)
        if size != first:
            raise InputError(
                f"{path}: a {size[0]}x{size[1]} frame in a sequence of {first[0]}x{first[1]} frames "
                f"(width x height, from {os.path.basename(frames[0])}): "
                "a sequence's frames must share one size"
            )
    return first


def find_sequences(data_path: str, seg_path: str | None = None) -> list[str]:
    """Names (relative paths) of every folder below ``data_path`` that holds frames, in natural order,
    leaving out the label and split folders and every sequence's second camera."""
    if not os.path.isdir(data_path):
        raise MissingFileError(f"--data_path {data_path}: no such folder")
    for name in NOT_SEQUENCES:
        if os.path.isdir(os.path.join(data_path, name)) and list_frames(os.path.join(data_path, name)):
            what = "the split files" if name == SPLITS_FOLDER else "the pseudo-labels"
            raise InputError(
                f"{os.path.join(data_path, name)}: holds frames, but {name!r} is the folder of "
                f"{what}: rename the sequence"
            )
    skip = {os.path.abspath(os.path.join(data_path, name)) for name in NOT_SEQUENCES}
    if seg_path:
        skip.add(os.path.abspath(seg_path))
    names = []
    for root, dirs, _ in os.walk(data_path):
        if root != data_path and list_frames(root):
            name = os.path.relpath(root, data_path).replace(os.sep, "/")
            names.append(name)
            path = intrinsics_file(data_path, name)
            stereo = read_camera(path).stereo_folder if path is not None else None
            if stereo is not None:
                skip.add(os.path.abspath(os.path.join(root, stereo)))
        dirs[:] = sorted(
            (d for d in dirs if os.path.abspath(os.path.join(root, d)) not in skip), key=natural_key
        )
    return names


class FoldersDataset(MonoDataset):
    """Sequences of frames in folders (see the module's docstring), with per-sequence intrinsics."""

    NEEDS_SIDE = False  # a line without a side reads the sequence's own frames (l)

    def __init__(self, data_path: str, filenames: Sequence[str], *args, **kwargs) -> None:
        self.sequences: dict[str, ImageSequence] = {}
        super().__init__(data_path, filenames, *args, **kwargs)
        # every sequence named is read and checked now (InputError naming its file)
        for entry in self.entries:
            self.sequence(entry.folder)

    def entry_problem(self, entry: SplitEntry) -> str | None:
        """Why a split line cannot be read: its neighbours outside the sequence, or a second camera it
        lacks."""
        sequence = self.sequence(entry.folder)
        stereo = "s" in self.frame_ids
        if stereo and entry.side is None:
            return "names no side: stereo training (--use_stereo) needs l or r on every line"
        if (stereo or entry.side == "r") and not sequence.right:
            return (
                f"needs the second camera, but {sequence.folder} has none (no 'stereo' in "
                f"{sequence.camera.source})"
            )
        offsets = [i for i in self.frame_ids if i != "s"]
        first, last = entry.frame_index + min(offsets), entry.frame_index + max(offsets)
        if first < 0 or last >= len(sequence.frames):
            return (
                f"needs frames {first}..{last} (--frame_ids {' '.join(map(str, self.frame_ids))}), but "
                f"{sequence.folder} has frames 0..{len(sequence.frames) - 1}"
            )
        return super().entry_problem(entry)

    def sequence(self, name: str) -> ImageSequence:
        """A sequence, read and checked once."""
        if name not in self.sequences:
            self.sequences[name] = read_sequence(self.data_path, name)
        return self.sequences[name]

    def get_image_path(self, folder: str, frame_index: int, side: str | None) -> str:
        frames = self.sequence(folder).frames_of(side)
        if not 0 <= frame_index < len(frames):
            raise InputError(
                f"{self.sequence(folder).folder}: no frame {frame_index} (it has frames 0..{len(frames) - 1})"
            )
        return frames[frame_index]

    def load_item(self, index: int) -> dict:
        """An item with its sequence's intrinsics and baseline (the base class reads ``self.K``)."""
        sequence = self.sequence(self.entry(index).folder)
        self.K = sequence.K
        inputs = super().load_item(index)
        if "stereo_T" in inputs:
            inputs["stereo_T"][0, 3] *= sequence.camera.baseline / KITTI_BASELINE_M
        return inputs
