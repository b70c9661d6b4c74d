"""Segmentation pseudo-labels for any driving data: \
``python -m tools.make_pseudo_labels --data_path D --split S``.

Labels every frame a split needs (``--sides both`` adds the other camera) or every image below
``--image_dirs`` with a Cityscapes segmentation model (default: SegFormer-B5 fine-tuned on Cityscapes;
or a torch.export / TorchScript file you trust), and writes one label PNG per frame where the loader
reads it (``--seg_path``, default ``<data_path>/segmentation``). Existing labels are skipped (an
interrupted run continues). A summary (counts, class histogram, colour overlays) goes to
``--summary_dir``. ``--authors_labels`` fetches the authors' own pseudo-labels instead (their
segmentation.zip, verified and unpacked into ``--seg_path``). The labelling itself: datasets/pseudo_labels.py.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import time
from typing import Sequence

import torch

import options
import utils
from datasets import DATASETS
from datasets.cityscapes import CLASS_NAMES
from datasets.pseudo_labels import (
    DEFAULT_MODEL,
    PRECISIONS,
    SUMMARY_FOLDER,
    folder_frames,
    label_frames,
    load_segmenter,
    split_files,
    split_frames,
    summary_table,
    write_summary,
)
from utils import run_cli
from utils.files import mark_owned, remove_stale_temporaries

AUTHORS_LABELS = "fsre_segmentation"  # the authors' segmentation.zip in checkpoints/released_models.json
logger = logging.getLogger(__name__)


def _size(value: str) -> tuple[int, int]:
    try:
        height, width = (int(v) for v in value.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected HEIGHTxWIDTH, e.g. 768x2560, got {value!r}") from None
    if height <= 0 or width <= 0:
        raise argparse.ArgumentTypeError(f"sizes must be positive, got {value!r}")
    return height, width


def build_parser() -> argparse.ArgumentParser:
    """Options of the tool."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0], formatter_class=utils.HelpFormatter)
    g = parser.add_argument_group("frames")
    g.add_argument("--data_path", default=None, help="root of the data (KITTI raw layout for --split)")
    g.add_argument(
        "--split",
        nargs="+",
        default=None,
        help="training splits (train + val files), test splits (e.g. eigen), split folders or split files",
    )
    g.add_argument("--splits_dir", default=None, help="folder with local copies of the public split files")
    g.add_argument("--dataset", default="kitti", choices=sorted(DATASETS), help="layout of --data_path")
    g.add_argument(
        "--authors_labels",
        action="store_true",
        help="instead of labelling: download the authors' pseudo-labels (their segmentation.zip, "
        "verified) into --seg_path (docs/released_models.md)",
    )
    g.add_argument("--img_ext", default="png", choices=["png", "jpg"], help="frame file type")
    g.add_argument(
        "--sides",
        default="split",
        choices=["split", "both"],
        help="cameras to label: each line's own, or both",
    )
    g.add_argument(
        "--image_dirs",
        nargs="+",
        default=None,
        help="instead of --split: folders of images (searched recursively); labels mirror their paths "
        "relative to --data_path (else to each folder's parent) below --seg_path",
    )
    g.add_argument("--seg_path", default=None, help="label root; default <data_path>/segmentation")
    g.add_argument(
        "--limit", type=options.positive_int, default=None, help="label at most this many frames in this run"
    )
    g.add_argument("--overwrite", action="store_true", help="relabel frames whose label exists")
    g = parser.add_argument_group("model")
    g.add_argument(
        "--model",
        default=DEFAULT_MODEL,
        help="transformers checkpoint (hub name or folder), or a model file: a torch.export program "
        "(.pt2, with a dynamic batch size, height and width) or TorchScript (.pt/.ts)",
    )
    g.add_argument(
        "--assume_train_id_order",
        action="store_true",
        help="trust that a checkpoint's 19 channels are the Cityscapes train ids, whatever its class names",
    )
    g.add_argument(
        "--resize_to",
        type=_size,
        default=None,
        help="HEIGHTxWIDTH for the transformers processor instead of its own size",
    )
    g.add_argument(
        "--sliding_window",
        action="store_true",
        help="transformers checkpoints: windows of the processor's size (stride 3/4, as mmseg's Cityscapes "
        "test) over the frame at its own size (or --resize_to), instead of resizing the whole frame",
    )
    g.add_argument(
        "--normalize",
        default="none",
        choices=["none", "imagenet"],
        help="model files' input: RGB in [0, 1], or ImageNet-normalised",
    )
    g = parser.add_argument_group("system")
    utils.add_device_option(g)
    g.add_argument("--batch_size", type=options.positive_int, default=8, help="frames per forward pass")
    g.add_argument("--num_workers", type=options.non_negative_int, default=4, help="image-decoding processes")
    g.add_argument(
        "--precision", default="fp32", choices=sorted(PRECISIONS), help="autocast precision (CUDA only)"
    )
    g.add_argument("--summary_dir", default=None, help=f"summary folder; default <seg_path>/{SUMMARY_FOLDER}")
    g.add_argument(
        "--num_overlays",
        type=options.non_negative_int,
        default=4,
        help="colour overlays written to the summary folder",
    )
    return parser


def check_options(opts: argparse.Namespace, parser: argparse.ArgumentParser) -> None:
    """Refuse option combinations that cannot work, naming the option at fault."""
    if (opts.split is None) == (opts.image_dirs is None):
        parser.error("give either --split (with --data_path) or --image_dirs")
    if opts.split is not None and opts.data_path is None:
        parser.error("--split needs --data_path")
    if opts.seg_path is None and opts.data_path is None:
        parser.error("--image_dirs without --data_path needs --seg_path")


def fetch_authors_labels(opts: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    """``--authors_labels``: download, verify and unpack the authors' segmentation.zip into the label
    folder (checkpoints/released.py), which must not exist yet."""
    from checkpoints import released

    if opts.seg_path is None and opts.data_path is None:
        parser.error("--authors_labels needs --data_path (or --seg_path)")
    utils.setup_logging()
    seg_path = opts.seg_path or os.path.join(opts.data_path, "segmentation")
    released.fetch_data(AUTHORS_LABELS, seg_path)
    logger.info("the authors' pseudo-labels are in %s", seg_path)
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    opts = parser.parse_args(argv)
    if opts.authors_labels:
        return fetch_authors_labels(opts, parser)
    check_options(opts, parser)
    utils.setup_logging()
    device = utils.pick_device(opts.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        parser.error(f"--device {opts.device}: no CUDA device is available (use --device cpu)")
    if device.type != "cuda" and opts.precision != "fp32":
        parser.error(
            f"--precision {opts.precision} needs a CUDA device (autocast runs on CUDA only); "
            f"use --precision fp32 on {device}"
        )
    seg_path = opts.seg_path or os.path.join(opts.data_path, "segmentation")
    summary_dir = opts.summary_dir or os.path.join(seg_path, SUMMARY_FOLDER)
    if opts.split is not None:
        paths = [path for split in opts.split for path in split_files(split, opts.splits_dir)]
        frames = split_frames(opts.data_path, seg_path, paths, opts.dataset, opts.img_ext, opts.sides)
    else:
        frames = folder_frames(opts.image_dirs, seg_path, opts.data_path, exclude=[summary_dir])
    if not os.path.isdir(seg_path) or not os.listdir(seg_path):  # made here: the project's, marked
        try:
            os.makedirs(seg_path, exist_ok=True)
            mark_owned(seg_path)
        except OSError as err:
            raise utils.UnwritableError(f"cannot write --seg_path {seg_path}: {err.strerror or err}") from err
    remove_stale_temporaries(seg_path)  # a killed run's half-written files (only in a marked label root)
    todo = frames if opts.overwrite else [frame for frame in frames if not os.path.isfile(frame.label)]
    skipped = len(frames) - len(todo)
    todo = todo[: opts.limit] if opts.limit is not None else todo
    logger.info(
        "%d frames need labels: %d exist, labelling %d with %s on %s (%s)",
        len(frames),
        skipped,
        len(todo),
        opts.model,
        device,
        opts.precision,
    )
    segmenter = load_segmenter(
        opts.model, device, opts.resize_to, opts.normalize, opts.assume_train_id_order, opts.sliding_window
    )
    os.makedirs(summary_dir, exist_ok=True)
    start = time.perf_counter()
    histogram, overlays = label_frames(
        segmenter,
        todo,
        device,
        opts.batch_size,
        opts.num_workers,
        opts.precision,
        seg_path,
        summary_dir,
        opts.num_overlays,
    )
    seconds = time.perf_counter() - start
    total = max(int(histogram.sum()), 1)
    summary = {
        "model": opts.model,
        "device": str(device),
        "precision": opts.precision,
        "seg_path": seg_path,
        "frames_needed": len(frames),
        "frames_skipped": skipped,
        "frames_labelled": len(todo),
        "seconds": seconds,
        "frames_per_second": len(todo) / seconds if seconds > 0 else 0.0,
        "class_pixels": {name: int(n) for name, n in zip(CLASS_NAMES, histogram)},
        "class_share": {name: float(n) / total for name, n in zip(CLASS_NAMES, histogram)},
        "overlays": overlays,
    }
    path = write_summary(summary, summary_dir)
    print(summary_table(summary))
    logger.info("wrote %s", path)
    return 0


if __name__ == "__main__":
    sys.exit(run_cli(main))
