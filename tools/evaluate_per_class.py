"""Depth metrics per semantic class (section C.2 and Fig. 1 of the paper's supplementary material), for one or several models.

``python -m tools.evaluate_per_class --data_path D --eval_split eigen --load_weights_folder A B --names baseline full``
predicts every test frame with each model, applies evaluate_depth's protocol (resize, per-image
median scaling over all valid pixels, clamp, Garg crop for eigen), and pools the valid ground-truth
pixels of each of the 19 Cityscapes classes over the split, using the test frames' segmentation
labels (Cityscapes label-id PNGs in the pseudo-label layout; make them with make_pseudo_labels.py
if your label set lacks the test frames). It prints a table, and writes JSON and a bar chart PNG.
"""
from __future__ import annotations

import argparse
import logging
import os
import sys
from typing import Sequence

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image, ImageDraw, ImageFont

import layers
import options
import splits
import utils
from checkpoints import model_folder
from datasets import CLASS_NAMES, LABEL_TO_TRAIN, KITTIRAWDataset, read_split
from datasets.mono_dataset import LABEL_FILTER
from evaluation.depth import STEREO_SCALE_FACTOR, predict_disparities, split_name, test_loader
from evaluation.ground_truth import ground_truth_file, load_ground_truth

logger = logging.getLogger(__name__)

# Sums kept per class: count, |d|/gt, d²/gt, d², (log gt - log pred)², and the three δ counts.
SUM_FIELDS = 8
CHART_HEIGHT = 420
CHART_BAR_WIDTH = 9
CHART_GAP = 8
CHART_MARGIN = (60, 30, 110, 20)  # left, top, bottom, right
BAR_COLOURS = ((31, 119, 180), (255, 127, 14), (44, 160, 44), (214, 39, 40), (148, 103, 189), (140, 86, 75))


def class_sums(gt: np.ndarray, pred_disp: np.ndarray, train_ids: np.ndarray, num_classes: int, garg_crop: bool,
               median_scaling: bool, scale: float) -> np.ndarray:
    """Per-class error sums (num_classes, SUM_FIELDS) of one image, after evaluate_depth's protocol."""
    gt_t = torch.from_numpy(gt.astype(np.float32))
    disp = F.interpolate(torch.from_numpy(np.ascontiguousarray(pred_disp))[None, None], size=gt.shape,
                         mode="bilinear", align_corners=False)[0, 0]
    depth = (scale / disp).double()
    mask = layers.evaluation_mask(gt_t, garg_crop)
    sums = np.zeros((num_classes, SUM_FIELDS))
    if not mask.any():
        return sums
    if median_scaling:
        depth = depth * (torch.quantile(gt_t[mask].double(), 0.5) / torch.quantile(depth[mask], 0.5))
    depth = depth.clamp(layers.MIN_EVAL_DEPTH, layers.MAX_EVAL_DEPTH)
    ids = torch.from_numpy(train_ids.astype(np.int64))
    g, p, c = gt_t[mask].double(), depth[mask], ids[mask]
    keep = c < num_classes
    g, p, c = g[keep], p[keep], c[keep]
    thresh = torch.maximum(g / p, p / g)
    fields = torch.stack([torch.ones_like(g), (g - p).abs() / g, (g - p) ** 2 / g, (g - p) ** 2,
                          (g.log() - p.log()) ** 2, (thresh < 1.25).double(), (thresh < 1.25 ** 2).double(),
                          (thresh < 1.25 ** 3).double()], 1)
    out = torch.zeros(num_classes, SUM_FIELDS, dtype=torch.float64).index_add_(0, c, fields)
    return out.numpy()


def metrics_from_sums(sums: np.ndarray) -> list[dict | None]:
    """Per-class metrics (``DEPTH_METRIC_NAMES``) from pooled sums; None for classes never seen."""
    rows = []
    for count, abs_rel, sq_rel, sq, sq_log, a1, a2, a3 in sums:
        if count == 0:
            rows.append(None)
            continue
        values = (abs_rel / count, sq_rel / count, np.sqrt(sq / count), np.sqrt(sq_log / count),
                  a1 / count, a2 / count, a3 / count)
        rows.append({**dict(zip(layers.DEPTH_METRIC_NAMES, map(float, values))), "pixels": int(count)})
    return rows


def load_train_ids(dataset: KITTIRAWDataset, line_index: int, size: tuple[int, int]) -> np.ndarray:
    """Train ids of a test frame's label PNG, resized (nearest) to the ground truth's (H, W)."""
    entry = dataset.entries[line_index]
    path = dataset.label_path(entry.folder, entry.frame_index, entry.side)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"{path}: no segmentation label for test line {line_index + 1} "
                                f"(make one with make_pseudo_labels.py, or give --seg_path)")
    with Image.open(path) as label:
        ids = np.asarray(label.resize((size[1], size[0]), LABEL_FILTER))
    return LABEL_TO_TRAIN[ids]


def bar_chart(results: dict[str, list[dict | None]], metric: str, path: str) -> None:
    """A grouped bar chart (one group per class, one bar per model) drawn with Pillow, saved as PNG."""
    names = list(results)
    left, top, bottom, right = CHART_MARGIN
    group = len(names) * CHART_BAR_WIDTH + CHART_GAP
    width = left + right + group * len(CLASS_NAMES)
    image = Image.new("RGB", (width, CHART_HEIGHT + top + bottom), "white")
    draw = ImageDraw.Draw(image)
    font = ImageFont.load_default()
    values = [row[metric] for rows in results.values() for row in rows if row is not None]
    vmax = max(values) * 1.1 if values else 1.0
    y0 = top + CHART_HEIGHT
    draw.line([(left, top), (left, y0), (width - right, y0)], fill="black")
    for tick in np.linspace(0, vmax, 5):
        y = y0 - tick / vmax * CHART_HEIGHT
        draw.line([(left - 4, y), (left, y)], fill="black")
        draw.text((4, y - 6), f"{tick:.3f}", fill="black", font=font)
    for k, class_name in enumerate(CLASS_NAMES):
        x = left + CHART_GAP // 2 + k * group
        for m, model in enumerate(names):
            row = results[model][k]
            if row is not None:
                h = row[metric] / vmax * CHART_HEIGHT
                draw.rectangle([x + m * CHART_BAR_WIDTH, y0 - h, x + (m + 1) * CHART_BAR_WIDTH - 2, y0],
                               fill=BAR_COLOURS[m % len(BAR_COLOURS)])
        label = Image.new("RGB", (bottom - 10, 12), "white")
        ImageDraw.Draw(label).text((0, 0), class_name, fill="black", font=font)
        image.paste(label.rotate(90, expand=True), (x + group // 2 - 8, y0 + 6))
    for m, model in enumerate(names):
        draw.rectangle([left + 10, top + 4 + 14 * m, left + 20, top + 14 + 14 * m], fill=BAR_COLOURS[m % len(BAR_COLOURS)])
        draw.text((left + 26, top + 2 + 14 * m), model, fill="black", font=font)
    draw.text((left + 10, 6), f"{metric} per class (lower is better)" if metric in ("abs_rel", "sq_rel", "rmse",
              "rmse_log") else f"{metric} per class", fill="black", font=font)
    with utils.atomic_write(path) as tmp:
        image.save(tmp, format="PNG")


def format_table(results: dict[str, list[dict | None]], metric: str) -> str:
    """Classes as rows, models as columns."""
    names = list(results)
    lines = [f"{'class':>14} | " + " | ".join(f"{n[:12]:>12}" for n in names)]
    for k, class_name in enumerate(CLASS_NAMES):
        cells = [f"{results[n][k][metric]:12.4f}" if results[n][k] else f"{'-':>12}" for n in names]
        lines.append(f"{class_name:>14} | " + " | ".join(cells))
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0],
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--data_path", required=True, help="KITTI raw root")
    parser.add_argument("--load_weights_folder", required=True, nargs="+", help="one or several model folders")
    parser.add_argument("--names", nargs="+", default=None, help="a name per model (default: folder names)")
    parser.add_argument("--eval_split", default="eigen", help="eigen, eigen_benchmark or a folder with test_files.txt")
    parser.add_argument("--splits_dir", default=None, help="local copy of the split files (default: download)")
    parser.add_argument("--gt_depths", default=None, help="ground-truth file (default: splits/<split>/gt_depths.npz)")
    parser.add_argument("--seg_path", default=None, help="root of the labels (default: <data_path>/segmentation)")
    parser.add_argument("--eval_stereo", action="store_true", help="no median scaling; depths x 5.4")
    parser.add_argument("--metric", default="abs_rel", choices=layers.DEPTH_METRIC_NAMES, help="metric of the chart")
    parser.add_argument("--output_dir", default=".", help="where the JSON and the chart go")
    parser.add_argument("--img_ext", default="png", choices=["png", "jpg"], help="frame file type")
    parser.add_argument("--batch_size", type=options.positive_int, default=16, help="images per forward pass")
    parser.add_argument("--num_workers", type=options.non_negative_int, default=4, help="data-loading processes")
    utils.add_device_option(parser)
    opts = parser.parse_args(argv)
    utils.setup_logging()
    names = opts.names or [os.path.basename(os.path.normpath(f)) for f in opts.load_weights_folder]
    if len(names) != len(opts.load_weights_folder):
        parser.error(f"--names gives {len(names)} names for {len(opts.load_weights_folder)} folders")
    device = utils.pick_device(opts.device)
    test_file = splits.test_files(opts.eval_split, opts.splits_dir)
    gt_file = ground_truth_file(opts.gt_depths, opts.eval_split)
    lines = read_split(test_file, KITTIRAWDataset.NEEDS_SIDE, need_lines=True)
    gt_depths = load_ground_truth(gt_file, len(lines), test_file)
    labels_dataset = KITTIRAWDataset(opts.data_path, lines, 32, 32, [0], 1, seg_path=opts.seg_path,
                                     load_depth=False)
    train_ids = [load_train_ids(labels_dataset, i, gt.shape) for i, gt in enumerate(gt_depths)]
    garg_crop = opts.eval_split == "eigen"
    results: dict = {}
    for name, folder in zip(names, opts.load_weights_folder):
        encoder, decoder, spec = model_folder.load_depth_model(folder, device)
        loader = test_loader(opts.data_path, test_file, spec, False, opts.img_ext, opts.batch_size, opts.num_workers)
        pred_disps = predict_disparities(encoder, decoder, loader, spec, device, desc=name)
        sums = sum(class_sums(gt, pred, ids, len(CLASS_NAMES), garg_crop, not opts.eval_stereo,
                              STEREO_SCALE_FACTOR if opts.eval_stereo else 1.0)
                   for gt, pred, ids in zip(gt_depths, pred_disps, train_ids))
        results[name] = metrics_from_sums(sums)
    print(format_table(results, opts.metric))
    os.makedirs(opts.output_dir, exist_ok=True)
    stem = os.path.join(opts.output_dir, f"per_class_{split_name(opts.eval_split)}")
    utils.save_json({"split": split_name(opts.eval_split), "classes": list(CLASS_NAMES), "pooling": "pixels",
               "models": {n: dict(zip(CLASS_NAMES, rows)) for n, rows in results.items()}}, stem + ".json")
    bar_chart(results, opts.metric, stem + ".png")
    logger.info("wrote %s.json and %s.png", stem, stem)
    return 0


if __name__ == "__main__":
    sys.exit(utils.run_cli(main))
