"""Depth metrics per semantic class (section C.2 and Fig. 1 of the paper's supplementary material), for one \
or several models.

``python -m tools.evaluate_per_class --data_path D --eval_split eigen --load_weights_folder A B
--names baseline full``
predicts every test frame with each model, applies evaluate_depth's protocol (resize, per-image
median scaling over all valid pixels, clamp, Garg crop for eigen), and pools the valid ground-truth
pixels of each of the 19 Cityscapes classes over the split, using the test frames' segmentation
labels (Cityscapes label-id PNGs in the pseudo-label layout; make them with python -m tools.make_pseudo_labels
if your label set lacks the test frames). It prints a table, and writes JSON and a bar chart (PNG and
PDF, drawn with matplotlib as the other figures of tools/figures.py; ``--no_chart`` without it).
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from typing import Sequence

import options
import splits
import utils
from checkpoints import model_folder
from datasets import CLASS_NAMES, KITTIRAWDataset, read_split
from datasets.ground_truth import ground_truth_file, load_ground_truth
from evaluation.depth import STEREO_SCALE_FACTOR, predict_disparities, split_name, test_loader
from evaluation.metrics import DEPTH_METRIC_NAMES
from reproduce import arguments, charts, style
from reproduce.per_class import class_sums, load_train_ids, metrics_from_sums  # noqa: F401 (the tool's API too)
from utils.files import save_json

logger = logging.getLogger(__name__)

CELL_WIDTH = 12  # characters of a column of the printed table, at least


def format_table(results: dict[str, list[dict | None]], metric: str) -> str:
    """Classes as rows, models as columns."""
    names = list(results)
    widths = [max(CELL_WIDTH, len(n)) for n in names]  # model names whole
    lines = [f"{'class':>14} | " + " | ".join(f"{n:>{w}}" for n, w in zip(names, widths))]
    for k, class_name in enumerate(CLASS_NAMES):
        cells = [
            f"{results[n][k][metric]:{w}.4f}" if results[n][k] else f"{'-':>{w}}"
            for n, w in zip(names, widths)
        ]
        lines.append(f"{class_name:>14} | " + " | ".join(cells))
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0], formatter_class=utils.HelpFormatter)
    arguments.add_model_options(parser, folders_required=True)
    parser.add_argument("--metric", default="abs_rel", choices=DEPTH_METRIC_NAMES, help="metric of the chart")
    parser.add_argument(
        "--output_dir", type=options.folder_path, default=".", help="where the JSON and the chart go"
    )
    arguments.add_drawing_options(parser)
    parser.add_argument("--no_chart", action="store_true", help="no chart (and no need of matplotlib)")
    arguments.add_prediction_options(parser)
    opts = parser.parse_args(argv)
    utils.setup_logging()
    if not opts.no_chart:  # before minutes of predicting: fail now without matplotlib
        style.width_in(opts.width)
        style.import_pyplot("the per-class chart (or give --no_chart)")
    names = arguments.model_names(opts, parser)
    arguments.check_output_dir(opts.output_dir)
    device = utils.pick_device(opts.device)
    test_file = splits.test_files(opts.eval_split, opts.splits_dir)
    gt_file = ground_truth_file(opts.gt_depths, opts.eval_split)
    lines = read_split(test_file, KITTIRAWDataset.NEEDS_SIDE, need_lines=True)
    gt_depths = load_ground_truth(gt_file, len(lines), test_file)
    labels_dataset = KITTIRAWDataset(
        opts.data_path, lines, 32, 32, [0], 1, seg_path=opts.seg_path, load_depth=False
    )
    train_ids = [load_train_ids(labels_dataset, i, gt.shape) for i, gt in enumerate(gt_depths)]
    garg_crop = opts.eval_split == "eigen"
    results: dict = {}
    for name, folder in zip(names, opts.load_weights_folder):
        encoder, decoder, spec = model_folder.load_depth_model(folder, device)
        loader = test_loader(
            opts.data_path, test_file, spec, False, opts.img_ext, opts.batch_size, opts.num_workers
        )
        pred_disps = predict_disparities(encoder, decoder, loader, spec, device, desc=name)
        sums = sum(
            class_sums(
                gt,
                pred,
                ids,
                len(CLASS_NAMES),
                garg_crop,
                not opts.eval_stereo,
                STEREO_SCALE_FACTOR if opts.eval_stereo else 1.0,
            )
            for gt, pred, ids in zip(gt_depths, pred_disps, train_ids)
        )
        results[name] = metrics_from_sums(sums)
    print(format_table(results, opts.metric))
    os.makedirs(opts.output_dir, exist_ok=True)
    stem = os.path.join(opts.output_dir, f"per_class_{split_name(opts.eval_split)}")
    save_json(
        {
            "split": split_name(opts.eval_split),
            "classes": list(CLASS_NAMES),
            "pooling": "pixels",
            "models": {n: dict(zip(CLASS_NAMES, rows)) for n, rows in results.items()},
        },
        stem + ".json",
    )
    if opts.no_chart:
        logger.info("wrote %s.json", stem)
    else:
        charts.per_class_chart(results, CLASS_NAMES, opts.metric, stem, opts.width)
        logger.info("wrote %s.json, %s.png and %s.pdf", stem, stem, stem)
    return 0


if __name__ == "__main__":
    sys.exit(utils.run_cli(main))
