"""Checks and split files for ``--dataset folders``: the library of ``tools.prepare_sequences``.

Every sequence is checked as the loader will read it, its motion measured cheaply (grey frames at
STATIC_WIDTH pixels wide), its lines listed and what makes self-supervised training fail named in
warnings. docs/own_data.md (step 3) gives the whole account.
"""

from __future__ import annotations

import logging
import os
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from typing import Sequence

import numpy as np
from PIL import Image
from tqdm import tqdm

import utils
from datasets.camera import camera_warnings
from datasets.folders import ImageSequence, find_sequences, read_sequence
from datasets.video_import import IMPORT_RECORD, REPEAT_THRESHOLD, REPEAT_WARNING
from utils import InputError
from utils.files import atomic_write, check_file_replaceable, read_json, remove_file

logger = logging.getLogger(__name__)

STATIC_WIDTH = 64  # pixels: frames are compared in grey at this width (cheap, and blind to sensor noise)
STATIC_THRESHOLD = 0.01  # mean absolute grey difference below which two frames count as the same view
JUMP_THRESHOLD = 0.2  # ... above which they are hardly the same scene (a cut, dropped frames)
STATIC_WARNING = 0.3  # warn when more than this share of a sequence is near-static
# warn when neighbouring frames differ more than a frame and its copy shifted by one pixel at STATIC_WIDTH:
# then they are as different as unrelated views, and auto-masking rewards any warp (docs/own_data.md: 1.25
# at 1 m per frame, where monocular training from scratch learned only with --photometric_warmup; 0.54 to
# 0.62 at a third of that)
UNRELATED_VIEW_RATIO = 1.0
FEW_TRAINING_ITEMS = 2000  # warn below this (KITTI's eigen_zhou split has 39810)
SPLIT_NAMES = ("train_files.txt", "val_files.txt", "test_files.txt")
REPORT_NAME = "report.json"


@dataclass
class SequenceReport:
    """What the check found in one sequence, and its split lines."""

    sequence: ImageSequence
    motion: np.ndarray  # (N - 1,) difference of frame i + 1 to frame i
    shifted: float = 0.0  # mean difference of a frame to its copy shifted by one pixel at STATIC_WIDTH
    role: str = "train"  # train, val or test
    lines: list[str] = field(default_factory=list)
    dropped_static: int = 0
    warnings: list[str] = field(default_factory=list)

    @property
    def static_share(self) -> float:
        return float((self.motion < STATIC_THRESHOLD).mean()) if len(self.motion) else 0.0

    def as_dict(self) -> dict:
        seq = self.sequence
        K = seq.K
        return {
            "frames": len(seq.frames),
            "width": seq.width,
            "height": seq.height,
            "stereo": bool(seq.right),
            "K_normalised": {
                "fx": float(K[0, 0]),
                "fy": float(K[1, 1]),
                "cx": float(K[0, 2]),
                "cy": float(K[1, 2]),
            },
            "intrinsics_file": seq.camera.source,
            "static_share": self.static_share,
            "jumps": int((self.motion > JUMP_THRESHOLD).sum()),
            "median_motion": float(np.median(self.motion)) if len(self.motion) else None,
            "shifted_difference": self.shifted,
            "role": self.role,
            "lines": len(self.lines),
            "dropped_static": self.dropped_static,
            "warnings": self.warnings,
        }


# -- motion --------------------------------------------------------------------------------------
def small_grey(path: str) -> np.ndarray:
    """A frame in grey at STATIC_WIDTH pixels wide, float in [0, 1] (JPEG decoded at a reduced scale)."""
    try:
        with Image.open(path) as image:
            width, height = image.size
            size = (STATIC_WIDTH, max(1, round(height * STATIC_WIDTH / width)))
            image.draft("L", size)  # JPEG: decode at 1/2..1/8 scale directly
            grey = image.convert("L").resize(size, Image.Resampling.BILINEAR)
    except (
        OSError,
        SyntaxError,
        ValueError,
    ) as err:  # a truncated or damaged frame (UnidentifiedImageError too)
        raise InputError(f"{path}: cannot decode the frame ({err})") from None
    return np.asarray(grey, dtype=np.float32) / utils.UINT8_MAX


def motion_of(frames: Sequence[str], workers: int) -> tuple[np.ndarray, float]:
    """Mean absolute grey difference of each frame to the one before it, (N - 1,), and the mean difference of
    a frame to its copy shifted by one pixel (what an unrelated view's difference looks like at this
    scale)."""
    if workers > 0:
        with ProcessPoolExecutor(workers) as pool:
            greys = list(pool.map(small_grey, frames, chunksize=16))
    else:
        greys = [small_grey(path) for path in frames]
    motion = np.array([np.abs(b - a).mean() for a, b in zip(greys, greys[1:])], dtype=np.float32)
    shifted = float(np.mean([np.abs(g[:, 1:] - g[:, :-1]).mean() for g in greys])) if greys else 0.0
    return motion, shifted


def pair_motion(motion: np.ndarray, index: int, offset: int) -> float:
    """Photometric difference between frame ``index`` and frame ``index + offset`` (neighbours only, else
    summed)."""
    low, high = sorted((index, index + offset))
    return float(motion[low:high].sum())


# -- lines ---------------------------------------------------------------------------------------
def line_side(sequence: ImageSequence, index: int) -> str:
    """Camera of a frame's line: l, or for a sequence with a second camera l and r in turn."""
    return "r" if sequence.right and index % 2 else "l"


def sequence_lines(report: SequenceReport, frame_ids: Sequence[int], drop_static: bool) -> None:
    """Fill ``report.lines``: each frame whose neighbours exist (every frame for a test sequence)."""
    seq = report.sequence
    offsets = [i for i in frame_ids if i != 0]
    if report.role == "test":
        report.lines = [f"{seq.name} {i} l" for i in range(len(seq.frames))]
        return
    first, last = -min([0, *offsets]), len(seq.frames) - 1 - max([0, *offsets])  # --frame_ids 0: every frame
    for index in range(first, last + 1):
        if drop_static and any(pair_motion(report.motion, index, f) < STATIC_THRESHOLD for f in offsets):
            report.dropped_static += 1
            continue
        report.lines.append(f"{seq.name} {index} {line_side(seq, index)}")


def check_length(sequence: ImageSequence, frame_ids: Sequence[int]) -> None:
    """A sequence must hold at least one frame with every neighbour ``--frame_ids`` asks for."""
    span = max(0, *frame_ids) - min(0, *frame_ids) + 1
    if len(sequence.frames) < span:
        raise InputError(
            f"{sequence.folder}: {len(sequence.frames)} frame(s), but --frame_ids "
            f"{' '.join(map(str, frame_ids))} needs {span} in a row: remove the folder or import more "
            f"of its video"
        )


def pick_validation(names: Sequence[str], fraction: float) -> list[str]:
    """``fraction`` of the sequences (at least one when there are two or more), spread evenly over the
    list."""
    if len(names) < 2 or fraction <= 0:
        return []
    count = min(len(names) - 1, max(1, round(len(names) * fraction)))
    return [names[int((i + 0.5) * len(names) / count)] for i in range(count)]


def imported_repeats(folder: str) -> float:
    """The share of an imported sequence's frames that repeat the previous one, from import_video's record
    (0 for frames from elsewhere, and for imports that left the repeats out): identical frames alone
    cannot tell a video that repeats pictures from a camera standing still."""
    record = read_json(os.path.join(folder, IMPORT_RECORD))
    try:
        if record.get("settings", {}).get("drop_repeats"):
            return 0.0
        return record.get("repeated_frames", 0) / max(1, record["frames"])
    except (KeyError, TypeError, AttributeError):  # no record, or not one that import_video wrote
        return 0.0


def warnings_of(report: SequenceReport) -> list[str]:
    """What in a sequence may make training fail: missing or implausible calibration, repeated or static
    frames, jumps, neighbours as different as unrelated views."""
    seq = report.sequence
    problems = camera_warnings(seq.camera, seq.width, seq.height)
    repeats = imported_repeats(seq.folder)
    if repeats > REPEAT_WARNING:  # a video showing each picture several times, imported above its rate
        problems.append(
            f"{repeats:.0%} of its frames repeat the previous one (import_video found them; difference < "
            f"{REPEAT_THRESHOLD}): the video shows each picture several times, and a repeated neighbour "
            f"makes auto-masking mask out nearly the whole target (--drop_static would leave out nearly "
            f"every line): import it at its distinct rate (import_video's warning names it) or with "
            f"import_video --drop_repeats"
        )
    elif report.static_share > STATIC_WARNING:
        problems.append(
            f"{report.static_share:.0%} of its frames are near-static (difference to the previous frame "
            f"< {STATIC_THRESHOLD}): a camera standing still teaches no depth; --drop_static leaves them out"
        )
    jumps = np.flatnonzero(report.motion > JUMP_THRESHOLD) + 1
    if len(jumps):
        shown = ", ".join(map(str, jumps[:5])) + (" ..." if len(jumps) > 5 else "")
        problems.append(
            f"{len(jumps)} very large jump(s) between frames (difference > {JUMP_THRESHOLD}; at frame "
            f"{shown}): cuts, dropped frames, or motion too fast for the frame rate (import at a "
            f"higher --fps)"
        )
    moving = report.motion[report.motion >= STATIC_THRESHOLD]
    if len(moving) and report.shifted > 0 and np.median(moving) > UNRELATED_VIEW_RATIO * report.shifted:
        problems.append(
            f"neighbouring frames differ more than a frame and its copy shifted by one pixel at "
            f"{STATIC_WIDTH} wide (median {np.median(moving):.3f} against {report.shifted:.3f}): as much "
            f"as unrelated views, on which auto-masking rewards wrong warps and monocular training from "
            f"scratch with the paper's loss diverged in half the runs (docs/own_data.md): train with "
            f"--photometric_warmup STEPS (about one epoch's steps), or import at a higher --fps where the "
            f"video has more distinct frames (import_video warns when it repeats them)"
        )
    return problems


# -- output --------------------------------------------------------------------------------------
def report_table(reports: Sequence[SequenceReport]) -> str:
    """The per-sequence table that the command prints."""
    header = (
        f"{'sequence':<20}{'frames':>7}  {'size':<10}{'cams':>4}{'fx/W':>7}{'fy/H':>7}{'cx/W':>6}{'cy/H':>6}"
        f"{'static':>8}{'jumps':>6}  {'split':<6}{'lines':>6}"
    )
    rows = [header]
    for report in reports:
        d = report.as_dict()
        K = d["K_normalised"]
        size, cams = f"{d['width']}x{d['height']}", 2 if d["stereo"] else 1
        rows.append(
            f"{report.sequence.name:<20}{d['frames']:>7}  {size:<10}{cams:>4}{K['fx']:>7.3f}{K['fy']:>7.3f}"
            f"{K['cx']:>6.3f}{K['cy']:>6.3f}{d['static_share']:>8.1%}{d['jumps']:>6}  {d['role']:<6}"
            f"{d['lines']:>6}"
        )
    return "\n".join(rows)


def write_lines(path: str, lines: Sequence[str]) -> None:
    """One split file, a line per item, atomically."""
    with atomic_write(path) as tmp, open(tmp, "w") as f:
        f.write("".join(line + "\n" for line in lines))


@dataclass
class SplitRequest:
    """Which sequences go where, and what a line needs (the command's options)."""

    data_path: str
    frame_ids: Sequence[int] = (0, -1, 1)
    val_sequences: Sequence[str] | None = None  # None: val_fraction of them
    val_fraction: float = 0.1
    test_sequences: Sequence[str] = ()
    drop_static: bool = False
    seg_path: str | None = None
    workers: int = 2


def check_sequences(request: SplitRequest) -> list[ImageSequence]:
    """Every sequence below ``data_path``, read and checked before a frame is decoded (InputError naming
    the folder at fault)."""
    names = find_sequences(request.data_path, request.seg_path)
    if not names:
        raise InputError(f"--data_path {request.data_path}: no sequence folders (folders of frames) below it")
    unknown = sorted((set(request.val_sequences or []) | set(request.test_sequences)) - set(names))
    if unknown:
        raise InputError(f"no sequence {unknown[0]!r} below {request.data_path} (found: {', '.join(names)})")
    bad = [name for name in names if len(name.split()) != 1]
    if bad:
        raise InputError(
            f"{os.path.join(request.data_path, bad[0])}: a sequence name with whitespace cannot go into a "
            f"split line: rename the folder"
        )
    sequences = [read_sequence(request.data_path, name) for name in names]
    for sequence in sequences:
        check_length(sequence, request.frame_ids)
    return sequences


def report_sequences(request: SplitRequest) -> tuple[list[SequenceReport], dict[str, list[str]]]:
    """Each sequence's report and the lines of each split file (SPLIT_NAMES)."""
    sequences = check_sequences(request)
    names = [sequence.name for sequence in sequences]
    test = set(request.test_sequences)
    candidates = [name for name in names if name not in test]
    val = set(
        request.val_sequences
        if request.val_sequences is not None
        else pick_validation(candidates, request.val_fraction)
    )
    reports = []
    for sequence in tqdm(sequences, desc="measuring motion", unit="sequence"):
        report = SequenceReport(sequence, *motion_of(sequence.frames, request.workers))
        report.role = "test" if sequence.name in test else "val" if sequence.name in val else "train"
        sequence_lines(report, request.frame_ids, request.drop_static)
        report.warnings = warnings_of(report)
        reports.append(report)
    splits = {
        name: [line for r in reports if r.role == role for line in r.lines]
        for name, role in zip(SPLIT_NAMES, ("train", "val", "test"))
    }
    if not splits["train_files.txt"]:
        raise InputError(
            f"no training lines: every sequence below {request.data_path} is held out or too short"
        )
    return reports, splits


def summary(request: SplitRequest, reports: Sequence[SequenceReport], splits: dict[str, list[str]]) -> dict:
    """The contents of REPORT_NAME: the settings, each sequence's report and the line counts."""
    return {
        "data_path": os.path.abspath(request.data_path),
        "frame_ids": list(request.frame_ids),
        "drop_static": request.drop_static,
        "static_threshold": STATIC_THRESHOLD,
        "jump_threshold": JUMP_THRESHOLD,
        "sequences": {r.sequence.name: r.as_dict() for r in reports},
        "lines": {name: len(lines) for name, lines in splits.items()},
    }


def write_splits(out: str, splits: dict[str, list[str]], overwrite: bool) -> None:
    """Write the non-empty split files atomically; refuse to replace different ones without ``overwrite``."""
    if not overwrite:
        for name, lines in splits.items():
            path = os.path.join(out, name)
            if os.path.isfile(path):
                with open(path) as f:
                    if f.read().split("\n")[:-1] != lines:
                        raise InputError(f"{path} exists with other lines: pass --overwrite to replace it")
    for name, lines in splits.items():  # every refusal before the first write: all files or none change
        if lines or overwrite:
            check_file_replaceable(os.path.join(out, name))
    for name, lines in splits.items():
        path = os.path.join(out, name)
        if lines:
            write_lines(path, lines)
        elif os.path.isfile(path) and overwrite:
            remove_file(path)  # an empty split file would be read as a split without items
