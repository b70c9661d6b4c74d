"""Qualitative comparison figures (Figs. 2-4 of the paper's supplementary material): panels in a grid.

One column per frame; rows: the input, each model's colour-mapped disparity (magma up to its 95th
percentile, Monodepth2's convention), optionally the ground truth (as disparity, same colours), each
model's per-pixel error (AbsRel |d - gt| / gt after evaluate_depth's protocol, saturating at
``ERROR_VMAX``; grey where there is no ground truth) and the segmentation labels over the input.
Every panel is an array of the size of the first model's prediction; ``panel_grid`` returns them all,
``draw_grid`` lays them out at a paper's column or text width. Frames are chosen by hand or where one
model improves most over another, by AbsRel over the image or over the pixels of thin classes.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

import utils
from datasets import KITTIRAWDataset, read_split
from datasets.cityscapes import segmentation_overlay
from evaluation.depth import evaluate_predictions
from evaluation.metrics import DEPTH_METRIC_NAMES, MIN_EVAL_DEPTH, evaluated_depths
from reproduce import style
from reproduce.per_class import abs_rel_of_classes, class_sums, load_train_ids
from utils.colormap import DISPARITY_PERCENTILE, colormap, resize_bilinear
from utils.files import atomic_write

ERROR_VMAX = 0.3  # AbsRel at which the error colours saturate (the same for every model: comparable)
NO_DATA = 128  # grey where a ground-truth or error panel has no ground truth
LABEL_MARGIN_IN = 0.22  # left margin for the row names (two lines of LABEL_FONT_PT)
LABEL_FONT_PT = style.FONT_SIZE_PT - 2  # row names and column titles
MIN_LABEL_PT = 4  # a long row name shrinks down to this size to fit its panel's height
GLYPH_WIDTH_EM = 0.6  # average character width of the default sans-serif font, in font sizes
POINTS_PER_INCH = 72
TITLE_MARGIN_IN = 0.14  # top margin for the column titles
GAP_IN = 0.02  # between panels


@dataclass
class Source:
    """A model's disparities (N, h, w) of the test frames, in test-file order, and where they come from."""

    name: str
    disparities: np.ndarray
    origin: str  # the model folder or the .npy file


def input_images(
    data_path: str, test_file: str, indices: list[int], size: tuple[int, int], img_ext: str
) -> list[np.ndarray]:
    """The test frames as the models saw them (the loader's resize to ``size``), uint8 (h, w, 3)."""
    dataset = KITTIRAWDataset(
        data_path,
        read_split(test_file),
        size[0],
        size[1],
        [0],
        1,
        is_train=False,
        img_ext=img_ext,
        load_depth=False,
    )
    return [
        (dataset[i][("color", 0, 0)].permute(1, 2, 0).numpy() * utils.UINT8_MAX + 0.5).astype(np.uint8)
        for i in indices
    ]


def disparity_panel(disp: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """A prediction, resized to the panel, in magma up to its 95th percentile."""
    return colormap(resize_bilinear(disp, *size))


def scatter_max(values: np.ndarray, valid: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Valid pixels of a (H, W) map placed into an (h, w) grid, the largest value per cell; NaN where none."""
    rows, cols = np.nonzero(valid)
    h, w = size
    cells = (rows * h // valid.shape[0]) * w + cols * w // valid.shape[1]
    out = np.full(h * w, -np.inf)
    np.maximum.at(out, cells, values[rows, cols].astype(np.float64))
    out[np.isinf(out)] = np.nan
    return out.reshape(h, w)


def colour_with_gaps(values: np.ndarray, vmax: float) -> np.ndarray:
    """Colour-map a map with NaN gaps: magma where there are values, grey in the gaps."""
    rgb = colormap(np.nan_to_num(values, nan=0.0), vmax=vmax)
    rgb[np.isnan(values)] = NO_DATA
    return rgb


def ground_truth_panel(gt: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """The ground truth as disparity (1 / depth; the nearest point of a cell), in the predictions' colours."""
    valid = gt > 0
    disp = scatter_max(np.where(valid, 1.0 / np.maximum(gt, MIN_EVAL_DEPTH), 0.0), valid, size)
    finite = disp[np.isfinite(disp)]
    vmax = float(np.percentile(finite, DISPARITY_PERCENTILE)) if finite.size else 1.0
    return colour_with_gaps(disp, vmax)


def error_map(
    gt: np.ndarray, disp: np.ndarray, garg_crop: bool, median_scaling: bool, scale: float
) -> np.ndarray:
    """Per-pixel AbsRel (H, W) of a prediction at the ground truth's size (evaluate_depth's protocol); NaN off
    the mask."""
    error = np.full(gt.shape, np.nan)
    result = evaluated_depths(
        torch.from_numpy(gt.astype(np.float32)),
        torch.from_numpy(np.ascontiguousarray(disp, dtype=np.float32)),
        garg_crop,
        median_scaling,
        scale,
    )
    if result is not None:
        mask, g, p, _ = result
        error[mask.numpy()] = ((p - g).abs() / g).numpy()
    return error


def error_panel(error: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """An error map in the panel (the largest error of a cell), magma up to ``ERROR_VMAX``, grey without
    ground truth."""
    valid = np.isfinite(error)
    return colour_with_gaps(scatter_max(np.nan_to_num(error), valid, size), ERROR_VMAX)


def per_image_abs_rel(
    disparities: np.ndarray, gt_depths: list[np.ndarray], garg_crop: bool, median_scaling: bool, scale: float
) -> np.ndarray:
    """AbsRel of every image (NaN for images without valid ground truth), by evaluate_depth's own function."""
    out = np.full(len(disparities), np.nan)
    for i, (disp, gt) in enumerate(zip(disparities, gt_depths)):
        errors, _ = evaluate_predictions(disp[None], [gt], garg_crop, median_scaling, scale)
        if len(errors):
            out[i] = errors[0][DEPTH_METRIC_NAMES.index("abs_rel")]
    return out


def per_image_class_abs_rel(
    disparities: np.ndarray,
    gt_depths: list[np.ndarray],
    train_ids: list[np.ndarray],
    classes: list[int],
    num_classes: int,
    garg_crop: bool,
    median_scaling: bool,
    scale: float,
) -> np.ndarray:
    """AbsRel of every image over the pixels of ``classes`` (NaN where none is in view), as evaluate_per_class
    pools."""
    return np.array(
        [
            abs_rel_of_classes(
                class_sums(gt, disp, ids, num_classes, garg_crop, median_scaling, scale), classes
            )
            for disp, gt, ids in zip(disparities, gt_depths, train_ids)
        ]
    )


def most_improved(reference: np.ndarray, target: np.ndarray, count: int) -> list[int]:
    """The ``count`` frames where ``target``'s error is lowest relative to ``reference``'s (largest
    reference - target)."""
    gain = reference - target
    order = [
        int(i) for i in np.argsort(-np.nan_to_num(gain, nan=-np.inf), kind="stable") if np.isfinite(gain[i])
    ]
    return order[:count]


@dataclass
class Grid:
    """Panels (rows, columns, h, w, 3) uint8 with their row names and column titles."""

    panels: np.ndarray
    row_names: list[str]
    titles: list[str]


def panel_grid(
    sources: list[Source],
    frames: list[int],
    inputs: list[np.ndarray],
    gt_depths: list | None = None,
    train_ids: list | None = None,
    show_ground_truth: bool = False,
    show_error: bool = False,
    garg_crop: bool = True,
    median_scaling: bool = True,
    scale: float = 1.0,
    titles: list[str] | None = None,
) -> Grid:
    """Every panel of the figure: input, each source, [ground truth], [each source's error], [labels]."""
    size = inputs[0].shape[:2]
    rows: list[tuple[str, list[np.ndarray]]] = [("input", list(inputs))]
    rows += [(s.name, [disparity_panel(s.disparities[f], size) for f in frames]) for s in sources]
    if show_ground_truth:
        rows.append(("ground truth", [ground_truth_panel(gt_depths[f], size) for f in frames]))
    if show_error:
        rows += [
            (
                f"error {s.name}",
                [
                    error_panel(
                        error_map(gt_depths[f], s.disparities[f], garg_crop, median_scaling, scale), size
                    )
                    for f in frames
                ],
            )
            for s in sources
        ]
    if train_ids is not None:
        rows.append(("labels", [segmentation_overlay(image, ids) for image, ids in zip(inputs, train_ids)]))
    panels = np.stack([np.stack(row) for _, row in rows])
    return Grid(panels, [name for name, _ in rows], titles or [f"frame {f}" for f in frames])


def grid_height_in(grid: Grid, width_in: float) -> float:
    """The figure height that keeps each panel's aspect at ``width_in``."""
    num_rows, num_cols, h, w, _ = grid.panels.shape
    panel_w = (width_in - LABEL_MARGIN_IN - GAP_IN * num_cols) / num_cols
    return TITLE_MARGIN_IN + num_rows * (panel_w * h / w + GAP_IN)


def row_label(name: str, height_in: float) -> tuple[str, float]:
    """A row name that fits beside its panel (written upwards): one line, else two split at the middle space,
    in the font size that fits (at most LABEL_FONT_PT, at least MIN_LABEL_PT)."""
    available_pt = height_in * POINTS_PER_INCH
    lines = [name]
    if len(name) * GLYPH_WIDTH_EM * LABEL_FONT_PT > available_pt and " " in name:
        middle = min((i for i, char in enumerate(name) if char == " "), key=lambda i: abs(i - len(name) / 2))
        lines = [name[:middle], name[middle + 1 :]]
    longest = max(len(line) for line in lines)
    size = min(LABEL_FONT_PT, available_pt / (GLYPH_WIDTH_EM * max(longest, 1)))
    return "\n".join(lines), max(size, MIN_LABEL_PT)


def draw_grid(grid: Grid, width: str | float = "text"):
    """A figure of the panels (exact positions: its size is width x grid_height_in); returns it."""
    plt = style.import_pyplot("the figures")
    width_in = style.width_in(width)
    num_rows, num_cols, h, w, _ = grid.panels.shape
    height_in = grid_height_in(grid, width_in)
    figure = plt.figure(figsize=(width_in, height_in))
    panel_w = (width_in - LABEL_MARGIN_IN - GAP_IN * num_cols) / num_cols
    panel_h = panel_w * h / w
    labels = [row_label(name, panel_h) for name in grid.row_names]
    label_size = min(size for _, size in labels)  # one size for every row name
    for r in range(num_rows):
        for c in range(num_cols):
            left = LABEL_MARGIN_IN + c * (panel_w + GAP_IN)
            bottom = height_in - TITLE_MARGIN_IN - (r + 1) * (panel_h + GAP_IN) + GAP_IN
            axes = figure.add_axes(
                (left / width_in, bottom / height_in, panel_w / width_in, panel_h / height_in)
            )
            axes.imshow(grid.panels[r, c], interpolation="nearest", aspect="auto")
            axes.set_xticks([])
            axes.set_yticks([])
            for spine in axes.spines.values():
                spine.set_visible(False)
            if c == 0:
                axes.set_ylabel(labels[r][0], fontsize=label_size, labelpad=2, linespacing=1.0)
            if r == 0:
                axes.set_title(grid.titles[c], fontsize=LABEL_FONT_PT, pad=2)
    return figure


def save_panels(grid: Grid, path: str, frames: list[int]) -> None:
    """The panel arrays beside the figure (``.npz``: panels, row_names, titles, frames), for checking and
    reuse."""
    with atomic_write(path) as tmp:
        np.savez_compressed(
            tmp,
            panels=grid.panels,
            row_names=np.array(grid.row_names),
            titles=np.array(grid.titles),
            frames=np.array(frames),
        )


def label_maps(
    data_path: str, test_file: str, seg_path: str | None, indices: list[int], sizes: list[tuple[int, int]]
) -> list[np.ndarray]:
    """Train ids of the test frames' labels, each at its size (pseudo-label layout under ``seg_path``)."""
    dataset = KITTIRAWDataset(
        data_path, read_split(test_file), 32, 32, [0], 1, seg_path=seg_path, load_depth=False
    )
    return [load_train_ids(dataset, i, size) for i, size in zip(indices, sizes)]
