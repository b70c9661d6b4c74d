"""Qualitative comparison figures (Figs. 2-4 of the paper's supplementary material): \
``python -m tools.figures``.

Predicts the test frames with each model folder (or reads ``--ext_disp`` disparities), picks frames
(``--frames``, or where ``--target`` improves most over ``--reference``) and draws one column per frame:
input, each model's depth, optionally ground truth, errors and labels; writes PNG, PDF, the panels (npz) and
JSON. docs/reproducing.md, "Figures", gives the options and examples."""

from __future__ import annotations

import argparse
import logging
import sys
from typing import Sequence

import numpy as np

import options
import splits
import utils
from checkpoints import model_folder
from datasets import CLASS_NAMES, KITTIRAWDataset, read_split
from datasets.ground_truth import ground_truth_file, load_ground_truth
from evaluation.depth import STEREO_SCALE_FACTOR, load_predictions, predict_disparities, test_loader
from reproduce import arguments, figures, style
from reproduce.per_class import THIN_CLASSES, class_ids
from utils.files import save_json

logger = logging.getLogger(__name__)

SELECT_BY = ("abs_rel", "thin")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0], formatter_class=utils.HelpFormatter)
    arguments.add_model_options(parser, folders_required=False)
    parser.add_argument(
        "--ext_disp",
        action="append",
        default=[],
        metavar="NAME=FILE",
        help="disparities (N, h, w) of another method in test-file order (.npy), a row each",
    )
    parser.add_argument(
        "--frames",
        type=options.non_negative_int,
        nargs="+",
        default=None,
        help="test-file indices (0-based) to show",
    )
    parser.add_argument(
        "--select",
        default="abs_rel",
        choices=SELECT_BY,
        help="without --frames: the frames where --target improves most over --reference, by AbsRel "
        "over the image or over the pixels of --thin_classes",
    )
    parser.add_argument("--reference", default=None, help="model compared against (default: the first)")
    parser.add_argument("--target", default=None, help="model whose improvement is shown (default: the last)")
    parser.add_argument(
        "--num_frames", type=options.positive_int, default=4, help="frames (columns) chosen by --select"
    )
    parser.add_argument(
        "--thin_classes", nargs="+", default=list(THIN_CLASSES), help="classes of --select thin"
    )
    parser.add_argument("--ground_truth", action="store_true", help="add a row of ground truth")
    parser.add_argument("--error", action="store_true", help="add a row of per-pixel AbsRel per model")
    parser.add_argument("--segmentation", action="store_true", help="add a row of the labels over the input")
    parser.add_argument("--output", default="qualitative", help="output path without extension")
    arguments.add_drawing_options(parser)
    arguments.add_prediction_options(parser)
    return parser


def load_sources(
    opts: argparse.Namespace, test_file: str, num_lines: int, parser: argparse.ArgumentParser
) -> list[figures.Source]:
    """The models' predictions (in the order given: folders, then --ext_disp files)."""
    names = arguments.model_names(opts, parser)
    device = utils.pick_device(opts.device)
    sources = []
    for name, folder in zip(names, opts.load_weights_folder):
        encoder, decoder, spec = model_folder.load_depth_model(folder, device)
        loader = test_loader(
            opts.data_path, test_file, spec, False, opts.img_ext, opts.batch_size, opts.num_workers
        )
        sources.append(
            figures.Source(
                name, predict_disparities(encoder, decoder, loader, spec, device, desc=name), folder
            )
        )
    for item in opts.ext_disp:
        name, sep, path = item.partition("=")
        if not sep or not name or not path:
            parser.error(f"--ext_disp takes NAME=FILE, got {item!r}")
        disparities = load_predictions(path, "--ext_disp")
        if len(disparities) != num_lines:
            raise utils.InputError(
                f"--ext_disp {path}: expected ({num_lines}, h, w) disparities for {test_file}, "
                f"got shape {disparities.shape}"
            )
        sources.append(figures.Source(name, disparities.astype(np.float32), path))
    if not sources:
        parser.error("give --load_weights_folder and/or --ext_disp")
    if len({s.name for s in sources}) != len(sources):
        parser.error(f"the rows need distinct names, got {[s.name for s in sources]}")
    return sources


def pick(
    sources: list[figures.Source], name: str | None, default: int, parser: argparse.ArgumentParser
) -> int:
    names = [s.name for s in sources]
    if name is None:
        return default % len(sources)
    if name not in names:
        parser.error(f"no model named {name!r}: the models are {names}")
    return names.index(name)


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    opts = parser.parse_args(argv)
    utils.setup_logging()
    style.width_in(opts.width)
    style.import_pyplot("the figures")  # now, not after minutes of predicting
    test_file = splits.test_files(opts.eval_split, opts.splits_dir)
    lines = read_split(test_file, KITTIRAWDataset.NEEDS_SIDE, need_lines=True)
    num_lines = len(lines)
    bad = [f for f in opts.frames or [] if not 0 <= f < num_lines]
    if bad:
        parser.error(f"--frames {bad}: {test_file} has {num_lines} frames (0..{num_lines - 1})")
    try:
        thin = class_ids(opts.thin_classes) if opts.select == "thin" else []
    except ValueError as err:
        parser.error(f"--thin_classes: {err}")
    sources = load_sources(opts, test_file, num_lines, parser)
    garg_crop, median_scaling = opts.eval_split == "eigen", not opts.eval_stereo
    scale = STEREO_SCALE_FACTOR if opts.eval_stereo else 1.0
    needs_gt = opts.ground_truth or opts.error or opts.frames is None
    gt_depths = (
        load_ground_truth(ground_truth_file(opts.gt_depths, opts.eval_split), num_lines, test_file)
        if needs_gt
        else None
    )

    scores: dict[str, list] = {}
    if opts.frames is not None:
        frames = list(opts.frames)
    else:
        if opts.select == "thin":
            ids = figures.label_maps(
                opts.data_path,
                test_file,
                opts.seg_path,
                list(range(num_lines)),
                [gt.shape for gt in gt_depths],
            )
            per_image = {
                s.name: figures.per_image_class_abs_rel(
                    s.disparities, gt_depths, ids, thin, len(CLASS_NAMES), garg_crop, median_scaling, scale
                )
                for s in sources
            }
        else:
            per_image = {
                s.name: figures.per_image_abs_rel(s.disparities, gt_depths, garg_crop, median_scaling, scale)
                for s in sources
            }
        reference = sources[pick(sources, opts.reference, 0, parser)].name
        target = sources[pick(sources, opts.target, -1, parser)].name
        frames = figures.most_improved(per_image[reference], per_image[target], opts.num_frames)
        if not frames:
            raise utils.InputError(
                f"no frame where both {reference} and {target} can be scored"
                + (f" on {opts.thin_classes}" if thin else "")
            )
        scores = {name: [float(values[f]) for f in frames] for name, values in per_image.items()}
        logger.info("frames where %s improves most over %s (%s): %s", target, reference, opts.select, frames)

    size = sources[0].disparities.shape[1:]
    inputs = figures.input_images(opts.data_path, test_file, frames, size, opts.img_ext)
    labels = (
        figures.label_maps(opts.data_path, test_file, opts.seg_path, frames, [size] * len(frames))
        if opts.segmentation
        else None
    )
    grid = figures.panel_grid(
        sources,
        frames,
        inputs,
        gt_depths,
        labels,
        opts.ground_truth,
        opts.error,
        garg_crop,
        median_scaling,
        scale,
    )
    figure = figures.draw_grid(grid, opts.width)
    paths = style.save_figure(figure, opts.output)
    figures.save_panels(grid, opts.output + "_panels.npz", frames)
    save_json(
        {
            "split": opts.eval_split,
            "frames": frames,
            "lines": [lines[f] for f in frames],
            "rows": grid.row_names,
            "select": None if opts.frames is not None else opts.select,
            "scores": scores,
            "sources": {s.name: s.origin for s in sources},
            "width_in": style.width_in(opts.width),
        },
        opts.output + ".json",
    )
    logger.info("wrote %s, %s_panels.npz and %s.json", ", ".join(paths), opts.output, opts.output)
    return 0


if __name__ == "__main__":
    sys.exit(utils.run_cli(main))
