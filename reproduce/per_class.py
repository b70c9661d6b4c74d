"""Depth errors per semantic class (section C.2 of the paper's supplementary material): pooled sums per class.

Shared by ``tools/evaluate_per_class.py`` (the table and chart over a split) and ``tools/figures.py``
(the frames where a model improves most on thin objects). The protocol is evaluate_depth's: the
disparity resized bilinearly to the ground truth, per-image median scaling over all valid pixels,
clamping, the Garg crop for eigen; then the valid pixels of each class are summed.
"""

from __future__ import annotations

import os

import numpy as np
import torch
from PIL import Image

from datasets import CLASS_NAMES, LABEL_TO_TRAIN, KITTIRAWDataset
from datasets.mono_dataset import LABEL_FILTER
from evaluation.metrics import DEPTH_METRIC_NAMES, evaluated_depths
from utils import MissingFileError

# Sums kept per class: count, |d|/gt, d²/gt, d², (log gt - log pred)², and the three δ counts.
SUM_FIELDS = 8
COUNT, ABS_REL = 0, 1  # fields of the sums
# Thin, small or intricate classes, where the paper's full model improves most (section C.2).
THIN_CLASSES = ("pole", "traffic light", "traffic sign", "person", "rider", "motorcycle")


def class_sums(
    gt: np.ndarray,
    pred_disp: np.ndarray,
    train_ids: np.ndarray,
    num_classes: int,
    garg_crop: bool,
    median_scaling: bool,
    scale: float,
) -> np.ndarray:
    """Per-class error sums (num_classes, SUM_FIELDS) of one image, after evaluate_depth's protocol."""
    sums = np.zeros((num_classes, SUM_FIELDS))
    result = evaluated_depths(
        torch.from_numpy(gt.astype(np.float32)),
        torch.from_numpy(np.ascontiguousarray(pred_disp)),
        garg_crop,
        median_scaling,
        scale,
    )
    if result is None:
        return sums
    mask, g, p, _ = result
    c = torch.from_numpy(train_ids.astype(np.int64))[mask]
    keep = c < num_classes
    g, p, c = g[keep], p[keep], c[keep]
    thresh = torch.maximum(g / p, p / g)
    fields = torch.stack(
        [
            torch.ones_like(g),
            (g - p).abs() / g,
            (g - p) ** 2 / g,
            (g - p) ** 2,
            (g.log() - p.log()) ** 2,
            (thresh < 1.25).double(),
            (thresh < 1.25**2).double(),
            (thresh < 1.25**3).double(),
        ],
        1,
    )
    out = torch.zeros(num_classes, SUM_FIELDS, dtype=torch.float64).index_add_(0, c, fields)
    return out.numpy()


def metrics_from_sums(sums: np.ndarray) -> list[dict | None]:
    """Per-class metrics (``DEPTH_METRIC_NAMES``) from pooled sums; None for classes never seen."""
    rows = []
    for count, abs_rel, sq_rel, sq, sq_log, a1, a2, a3 in sums:
        if count == 0:
            rows.append(None)
            continue
        values = (
            abs_rel / count,
            sq_rel / count,
            np.sqrt(sq / count),
            np.sqrt(sq_log / count),
            a1 / count,
            a2 / count,
            a3 / count,
        )
        rows.append({**dict(zip(DEPTH_METRIC_NAMES, map(float, values))), "pixels": int(count)})
    return rows


def abs_rel_of_classes(sums: np.ndarray, class_ids: list[int]) -> float:
    """AbsRel pooled over the pixels of the given classes (NaN when none of them is in view)."""
    count = sums[class_ids, COUNT].sum()
    return float(sums[class_ids, ABS_REL].sum() / count) if count else float("nan")


def class_ids(names: tuple[str, ...] | list[str]) -> list[int]:
    """Train ids of class names (``datasets.CLASS_NAMES``)."""
    unknown = [n for n in names if n not in CLASS_NAMES]
    if unknown:
        raise ValueError(f"unknown classes {unknown}; the classes are: {', '.join(CLASS_NAMES)}")
    return [CLASS_NAMES.index(n) for n in names]


def load_train_ids(dataset: KITTIRAWDataset, line_index: int, size: tuple[int, int]) -> np.ndarray:
    """Train ids of a test frame's label PNG, resized (nearest) to (H, W)."""
    entry = dataset.entries[line_index]
    path = dataset.label_path(entry.folder, entry.frame_index, entry.side)
    if not os.path.isfile(path):
        raise MissingFileError(
            f"{path}: no segmentation label for test line {line_index + 1} "
            f"(make one with python -m tools.make_pseudo_labels, or give --seg_path)"
        )
    with Image.open(path) as label:
        ids = np.asarray(label.resize((size[1], size[0]), LABEL_FILTER))
    return LABEL_TO_TRAIN[ids]
