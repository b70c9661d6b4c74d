"""Image sequences of your own (``--dataset folders``): one folder per sequence, frames in name order.

Layout of ``--data_path`` (docs/own_data.md)::

    intrinsics.json              the camera of every sequence (not needed where each sequence has its own)
    <sequence>/                  a folder holding its frames directly (PNG or JPEG; nested names a/b work)
        0000000000.jpg ...       frames in name order (natural: frame2 before frame10), one size per sequence
        intrinsics.json          this sequence's camera (wins over the one above)
        right/...                optional second camera, rectified with the same size and intrinsics
    segmentation/<sequence>/<frame>.png   pseudo-labels (make_pseudo_labels --image_dirs D --data_path D)
    splits/{train,val}_files.txt          python -m tools.prepare_sequences

``intrinsics.json`` holds ``fx``, ``fy``, ``cx``, ``cy`` in pixels of the stored frames, or ``K`` (a
3x3 or 3x4 matrix; a bare matrix also works), and optionally ``width`` and ``height`` (the frame size
they are for: checked), ``stereo`` (``{"folder": "right", "baseline": 0.54}``, metres) and
``guessed`` (true when they come from a field of view, not a calibration). ``.yaml``/``.yml`` files
hold the same keys (needs PyYAML). A split line is ``<sequence> <frame_index> <side>``: the index
counts the sequence's frames in name order from 0; side ``l`` is the sequence's own frames, ``r``
its second camera.

The loader normalises K by each sequence's frame size (fx / W, cx / W, fy / H, cy / H), as
Monodepth2's fixed KITTI matrix is normalised, and the base class scales it to the training size;
the stereo translation is Monodepth2's 0.1 per 0.54 m of baseline, so that 5.4 / disparity is in
metres as for KITTI. Every sequence a split names is checked when the dataset is built: frames
present and of one size (file headers only), intrinsics present and fitting that size, a complete
import. A line whose neighbours (``--frame_ids``) fall outside its sequence, or that needs a second
camera the sequence lacks, is named by ``entry_problem`` (the input check: file and line).
"""
from __future__ import annotations

import json
import logging
import math
import os
import re
from dataclasses import dataclass
from typing import Sequence

import numpy as np
from PIL import Image, UnidentifiedImageError

from utils import IMAGE_EXTENSIONS, DependencyError, InputError, MissingFileError

from .mono_dataset import MonoDataset, SplitEntry

logger = logging.getLogger(__name__)

INTRINSICS_NAMES = ("intrinsics.json", "intrinsics.yaml", "intrinsics.yml")  # looked up in this order
INCOMPLETE_MARKER = ".incomplete"  # in a sequence folder that tools.import_video has not finished
SEGMENTATION_FOLDER = "segmentation"  # pseudo-labels, below --data_path by default
SPLITS_FOLDER = "splits"  # what tools.prepare_sequences writes
NOT_SEQUENCES = (SEGMENTATION_FOLDER, SPLITS_FOLDER)  # folders of --data_path that hold no frames of their own
FRAME_NAME = "{:010d}"  # frame file names written by tools.import_video (and the synthetic videos)
KITTI_BASELINE_M = 0.54  # KITTI's stereo baseline, which Monodepth2's stereo translation 0.1 stands for
PYYAML_MISSING = "intrinsics in YAML need PyYAML: pip install pyyaml (or write them as intrinsics.json)"
# plausibility of intrinsics (warnings, see camera_warnings): the principal point within 10 % of the
# image centre, a horizontal field of view between about 20 and 140 degrees, square pixels within 5 %
CENTRE_TOLERANCE = 0.1
FX_RANGE = (0.18, 2.8)  # fx / W: 2 atan(1 / (2 fx/W)) from about 140 down to 20 degrees
ASPECT_TOLERANCE = 0.05
# what a pinhole camera can be at all (refused outside, see check_camera_fits): fx / W from 0.01 (a field
# of view of about 178 degrees) to 100 (about 0.6 degrees), and the same for fy / H
FOCAL_LIMITS = (0.01, 100.0)


@dataclass(frozen=True)
class Camera:
    """A sequence's pinhole intrinsics in pixels of its frames, and its optional second camera."""
    fx: float
    fy: float
    cx: float
    cy: float
    source: str  # the file they come from
    width: int | None = None  # the frame size they are for, when the file says
    height: int | None = None
    stereo_folder: str | None = None  # second camera's frames, relative to the sequence folder
    baseline: float | None = None  # metres between the two cameras
    guessed: bool = False  # from a field of view, not a calibration

    def normalised(self, width: int, height: int) -> np.ndarray:
        """4x4 intrinsics normalised by the frame size (Monodepth2's convention for KITTI_K)."""
        return np.array([[self.fx / width, 0, self.cx / width, 0],
                         [0, self.fy / height, self.cy / height, 0],
                         [0, 0, 1, 0],
                         [0, 0, 0, 1]], dtype=np.float32)

    def as_dict(self) -> dict:
        """The JSON form that ``read_camera`` reads back."""
        data = {"fx": self.fx, "fy": self.fy, "cx": self.cx, "cy": self.cy}
        if self.width is not None:
            data.update(width=self.width, height=self.height)
        if self.stereo_folder is not None:
            data["stereo"] = {"folder": self.stereo_folder, "baseline": self.baseline}
        if self.guessed:
            data["guessed"] = True
        return data


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
                raise InputError(f"{self.folder}: side r needs a second camera ('stereo' in {self.camera.source})")
            return self.right
        return self.frames


# -- files --------------------------------------------------------------------------------------
def natural_key(name: str) -> list:
    """Sort key of a file name with its digit runs compared as numbers (frame2 before frame10)."""
    return [int(part) if part.isdigit() else part for part in re.split(r"(\d+)", name)]


def list_frames(folder: str) -> list[str]:
    """Paths of the image files directly in ``folder``, in natural name order."""
    names = [name for name in os.listdir(folder)
             if name.lower().endswith(IMAGE_EXTENSIONS) and os.path.isfile(os.path.join(folder, name))]
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


def _load_mapping(path: str):
    """The parsed contents of a JSON or YAML file; InputError naming it when it does not parse."""
    try:
        with open(path, encoding="utf-8") as f:
            text = f.read()
    except UnicodeDecodeError as err:
        raise InputError(f"{path}: not UTF-8 text (byte {err.start}): write the intrinsics as UTF-8 JSON "
                         f"or YAML") from None
    if path.endswith(".json"):
        try:
            return json.loads(text)
        except json.JSONDecodeError as err:
            raise InputError(f"{path}: not valid JSON ({err})") from None
    try:
        import yaml
    except ImportError as err:
        raise DependencyError(f"{path}: {PYYAML_MISSING}") from err
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as err:
        raise InputError(f"{path}: not valid YAML ({str(err).splitlines()[0]})") from None


def _number(value, what: str, path: str) -> float:
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise InputError(f"{path}: {what} must be a number, got {value!r}") from None
    if not math.isfinite(number):
        raise InputError(f"{path}: {what} must be finite, got {value!r}")
    return number


def parse_camera(data, path: str) -> Camera:
    """A Camera from an intrinsics file's contents (see the module's docstring); InputError naming ``path``."""
    if isinstance(data, list):
        data = {"K": data}
    if not isinstance(data, dict):
        raise InputError(f"{path}: expected fx, fy, cx, cy (pixels) or a 3x3 / 3x4 matrix K, got {type(data).__name__}")
    if "K" in data:
        try:
            K = np.asarray(data["K"], dtype=np.float64)
        except (TypeError, ValueError):
            raise InputError(f"{path}: K must be a 3x3 or 3x4 matrix of numbers") from None
        if K.shape not in ((3, 3), (3, 4)) or not np.isfinite(K).all():
            raise InputError(f"{path}: K must be a 3x3 or 3x4 matrix of finite numbers, got shape {K.shape}")
        if not np.allclose(K[2, :3], (0, 0, 1)) or K[1, 0] != 0:
            raise InputError(f"{path}: K must be [[fx, s, cx], [0, fy, cy], [0, 0, 1]], got {K.tolist()}")
        fx, fy, cx, cy = K[0, 0], K[1, 1], K[0, 2], K[1, 2]
    else:
        missing = [key for key in ("fx", "fy", "cx", "cy") if key not in data]
        if missing:
            raise InputError(f"{path}: missing {', '.join(missing)}: give fx, fy, cx, cy in pixels of the "
                             f"stored frames, or a 3x3 / 3x4 matrix K")
        fx, fy, cx, cy = (_number(data[key], key, path) for key in ("fx", "fy", "cx", "cy"))
    if fx <= 0 or fy <= 0:
        raise InputError(f"{path}: focal lengths must be positive, got fx {fx}, fy {fy}")
    width = height = None
    if "width" in data or "height" in data:
        width, height = (_number(data.get(key), key, path) for key in ("width", "height"))
        if width <= 0 or height <= 0 or width != int(width) or height != int(height):
            raise InputError(f"{path}: width and height must be positive whole numbers of pixels, got {width}, {height}")
        width, height = int(width), int(height)
    stereo_folder = baseline = None
    if data.get("stereo") is not None:
        stereo = data["stereo"]
        if not isinstance(stereo, dict) or "folder" not in stereo or "baseline" not in stereo:
            raise InputError(f"{path}: stereo must be {{\"folder\": ..., \"baseline\": metres}}, got {stereo!r}")
        stereo_folder = str(stereo["folder"])
        if os.path.isabs(stereo_folder) or os.pardir in stereo_folder.replace("\\", "/").split("/"):
            raise InputError(f"{path}: the stereo folder must lie inside the sequence folder, got {stereo_folder!r}")
        if os.path.normpath(stereo_folder) == os.curdir:
            raise InputError(f"{path}: the stereo folder {stereo_folder!r} is the sequence folder itself: "
                             f"the second camera's frames go in a subfolder (e.g. \"right\")")
        baseline = _number(stereo["baseline"], "the stereo baseline", path)
        if baseline <= 0:
            raise InputError(f"{path}: the stereo baseline must be positive (metres), got {baseline}")
    return Camera(float(fx), float(fy), float(cx), float(cy), path, width, height, stereo_folder, baseline,
                  bool(data.get("guessed", False)))


def read_camera(path: str) -> Camera:
    """The Camera of an intrinsics file."""
    return parse_camera(_load_mapping(path), path)


def check_camera_fits(camera: Camera, width: int, height: int, folder: str) -> None:
    """Intrinsics must be for the frames' size: the size they name, and a principal point inside the frame."""
    if camera.width is not None and (camera.width, camera.height) != (width, height):
        raise InputError(f"{camera.source}: intrinsics for {camera.width}x{camera.height} frames, but the frames of "
                         f"{folder} are {width}x{height} (width x height): give them in pixels of the stored frames")
    low, high = FOCAL_LIMITS
    if not (low <= camera.fx / width <= high and low <= camera.fy / height <= high):
        raise InputError(f"{camera.source}: focal lengths fx {camera.fx:g}, fy {camera.fy:g} px are no "
                         f"camera's for the {width}x{height} frames of {folder} (fx / width and fy / height must lie in "
                         f"{low:g}..{high:g}): give them in pixels of these frames")
    if not (0 < camera.cx < width and 0 < camera.cy < height):
        raise InputError(f"{camera.source}: the principal point ({camera.cx:g}, {camera.cy:g}) lies outside the "
                         f"{width}x{height} frames of {folder}: intrinsics for another frame size?")


def camera_warnings(camera: Camera, width: int, height: int) -> list[str]:
    """Why intrinsics look implausible for frames of a size (empty when they look fine)."""
    problems = []
    if camera.guessed:
        problems.append("intrinsics guessed from a field of view, not calibrated: depth and pose will be off "
                        "by the guess's error")
    if abs(camera.cx / width - 0.5) > CENTRE_TOLERANCE or abs(camera.cy / height - 0.5) > CENTRE_TOLERANCE:
        problems.append(f"principal point ({camera.cx:g}, {camera.cy:g}) is far from the image centre "
                        f"({width / 2:g}, {height / 2:g}): intrinsics for another size, or of a cropped video?")
    if not FX_RANGE[0] <= camera.fx / width <= FX_RANGE[1]:
        fov = math.degrees(2 * math.atan(width / (2 * camera.fx)))
        problems.append(f"fx {camera.fx:g} px for {width} px wide frames is a {fov:.0f} degree horizontal field "
                        f"of view: are the intrinsics in pixels of these frames?")
    if abs(camera.fx / camera.fy - 1) > ASPECT_TOLERANCE:
        problems.append(f"fx {camera.fx:g} and fy {camera.fy:g} differ by more than {ASPECT_TOLERANCE:.0%}: "
                        f"non-square pixels, or frames resized without the intrinsics?")
    return problems


# -- sequences ----------------------------------------------------------------------------------
def read_sequence(data_path: str, name: str) -> ImageSequence:
    """A sequence folder, checked: complete, with frames of one size and intrinsics that fit them."""
    folder = os.path.join(data_path, name)
    if not os.path.isdir(folder):
        raise MissingFileError(f"{folder}: no such sequence folder")
    if os.path.exists(os.path.join(folder, INCOMPLETE_MARKER)):
        raise InputError(f"{folder}: its import did not finish ({INCOMPLETE_MARKER} is there): rerun "
                         f"python -m tools.import_video with the same arguments to complete it")
    frames = list_frames(folder)
    if not frames:
        raise InputError(f"{folder}: no frames ({', '.join(IMAGE_EXTENSIONS)}) in the sequence folder")
    width, height = frame_size(frames)
    path = intrinsics_file(data_path, name)
    if path is None:
        raise MissingFileError(f"{folder}: no intrinsics: write {os.path.join(folder, INTRINSICS_NAMES[0])} (or "
                               f"one for all sequences in {data_path}) with fx, fy, cx, cy in pixels of its "
                               f"{width}x{height} frames (docs/own_data.md)")
    camera = read_camera(path)
    check_camera_fits(camera, width, height, folder)
    right: list[str] = []
    if camera.stereo_folder is not None:
        right_folder = os.path.join(folder, camera.stereo_folder)
        if not os.path.isdir(right_folder):
            raise MissingFileError(f"{right_folder}: the second camera's folder that {path} names is not there")
        right = list_frames(right_folder)
        if len(right) != len(frames):
            raise InputError(f"{right_folder}: {len(right)} frames, but {folder} has {len(frames)}: the two cameras' "
                             f"frames pair by position")
        if frame_size(right) != (width, height):
            raise InputError(f"{right_folder}: frames of {frame_size(right)[0]}x{frame_size(right)[1]}, but "
                             f"{folder} has {width}x{height}: the second camera must be rectified to the same size")
    return ImageSequence(name, folder, tuple(frames), width, height, camera, tuple(right))


def frame_size(frames: Sequence[str]) -> tuple[int, int]:
    """The one (width, height) of a sequence's frames, read from their headers; InputError naming a frame that differs."""
    first = image_size(frames[0])
    for path in frames[1:]:
        size = image_size(path)
        if size != first:
            raise InputError(f"{path}: a {size[0]}x{size[1]} frame in a sequence of {first[0]}x{first[1]} frames "
                             f"(width x height, from {os.path.basename(frames[0])}): a sequence's frames must share one size")
    return first


def find_sequences(data_path: str, seg_path: str | None = None) -> list[str]:
    """Names (relative paths) of every folder below ``data_path`` that holds frames, in natural order,
    leaving out the label and split folders and every sequence's second camera."""
    if not os.path.isdir(data_path):
        raise MissingFileError(f"--data_path {data_path}: no such folder")
    for name in NOT_SEQUENCES:
        if os.path.isdir(os.path.join(data_path, name)) and list_frames(os.path.join(data_path, name)):
            what = "the split files" if name == SPLITS_FOLDER else "the pseudo-labels"
            raise InputError(f"{os.path.join(data_path, name)}: holds frames, but {name!r} is the folder of "
                             f"{what}: rename the sequence")
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
        dirs[:] = sorted((d for d in dirs if os.path.abspath(os.path.join(root, d)) not in skip), key=natural_key)
    return names


class FoldersDataset(MonoDataset):
    """Sequences of frames in folders (see the module's docstring), with per-sequence intrinsics."""

    NEEDS_SIDE = False  # a line without a side reads the sequence's own frames (l)

    def __init__(self, data_path: str, filenames: Sequence[str], *args, **kwargs) -> None:
        self.sequences: dict[str, ImageSequence] = {}
        super().__init__(data_path, filenames, *args, **kwargs)
        for entry in self.entries:  # every sequence named is read and checked now (InputError naming its file)
            self.sequence(entry.folder)

    def entry_problem(self, entry: SplitEntry) -> str | None:
        """Why a split line cannot be read: its neighbours outside the sequence, or a second camera it lacks."""
        sequence = self.sequence(entry.folder)
        stereo = "s" in self.frame_ids
        if stereo and entry.side is None:
            return "names no side: stereo training (--use_stereo) needs l or r on every line"
        if (stereo or entry.side == "r") and not sequence.right:
            return (f"needs the second camera, but {sequence.folder} has none (no 'stereo' in "
                    f"{sequence.camera.source})")
        offsets = [i for i in self.frame_ids if i != "s"]
        first, last = entry.frame_index + min(offsets), entry.frame_index + max(offsets)
        if first < 0 or last >= len(sequence.frames):
            return (f"needs frames {first}..{last} (--frame_ids {' '.join(map(str, self.frame_ids))}), but "
                    f"{sequence.folder} has frames 0..{len(sequence.frames) - 1}")
        return super().entry_problem(entry)

    def sequence(self, name: str) -> ImageSequence:
        """A sequence, read and checked once."""
        if name not in self.sequences:
            self.sequences[name] = read_sequence(self.data_path, name)
        return self.sequences[name]

    def get_image_path(self, folder: str, frame_index: int, side: str | None) -> str:
        frames = self.sequence(folder).frames_of(side)
        if not 0 <= frame_index < len(frames):
            raise InputError(f"{self.sequence(folder).folder}: no frame {frame_index} (it has frames 0..{len(frames) - 1})")
        return frames[frame_index]

    def load_item(self, index: int) -> dict:
        """An item with its sequence's intrinsics and baseline (the base class reads ``self.K``)."""
        sequence = self.sequence(self.entry(index).folder)
        self.K = sequence.K
        inputs = super().load_item(index)
        if "stereo_T" in inputs:
            inputs["stereo_T"][0, 3] *= sequence.camera.baseline / KITTI_BASELINE_M
        return inputs
