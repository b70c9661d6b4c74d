"""Speed and memory of every Table 2 configuration, measured side by side with the straightforward path.

    python -m tools.benchmark --data_path kitti_data --split eigen_zhou --device cuda --baseline --amp bf16

Input and training samples/s, peak CUDA memory and inference ms per image, from real files in KITTI's layout
through the training code's own loader and step; ``--baseline`` adds the ``exact`` and ``default`` paths in
the same process, ``--make_data DIR`` writes KITTI-size frames first, ``--encoders`` compares encoders.
docs/performance.md gives the whole account (``--encoders``: docs/encoders.md)."""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import tempfile
from typing import Sequence

import options
import utils
from speed.benchmark import CONFIG_ORDER, PATHS, encoder_table, make_report, measure, table
from trainer import Trainer
from utils import InputError, run_cli
from utils.files import atomic_write
from utils.processes import init_runtime

logger = logging.getLogger("benchmark")

KITTI_WIDTH, KITTI_HEIGHT = 1242, 375
MADE_EDGE_FRAMES = 2  # --make_data's first and last frames have no neighbour: they are not training items


def make_data(root: str, num_frames: int, ext: str) -> tuple[str, str]:
    """A KITTI-size drive (frames, labels, scans, split files) under ``root``: (data_path, split folder)."""
    from datasets.synthetic.kitti_frames import (
        make_tiny_kitti,  # the fixture's writer: real files in KITTI's layout
    )

    tiny = make_tiny_kitti(root, num_frames=num_frames, exts=(ext,), width=KITTI_WIDTH, height=KITTI_HEIGHT)
    return tiny.data_path, tiny.split_dir


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0], formatter_class=utils.HelpFormatter)
    g = parser.add_argument_group("data")
    g.add_argument("--data_path", default=None, help="KITTI data in Monodepth2's layout (or use --make_data)")
    g.add_argument(
        "--split", default="eigen_zhou", help="training split (name or folder), as train.py takes it"
    )
    g.add_argument("--splits_dir", default=None, help="local copies of the split files, as train.py takes it")
    g.add_argument(
        "--make_data",
        metavar="DIR",
        default=None,
        help="write a drive of KITTI-size frames into DIR first and benchmark on it",
    )
    g.add_argument(
        "--make_frames",
        type=options.positive_int,
        default=40,
        help="frames per camera written by --make_data",
    )
    g.add_argument("--img_ext", default="png", choices=["png", "jpg"], help="frame file type")
    g.add_argument(
        "--fast_data_path",
        default=None,
        help="data the fast path reads instead of --data_path, e.g. a tools/prepare_kitti.py cache of it",
    )
    g.add_argument(
        "--fast_img_ext",
        default=None,
        choices=["png", "jpg"],
        help="frame file type of --fast_data_path (default: --img_ext)",
    )
    g = parser.add_argument_group("run")
    g.add_argument(
        "--configs", nargs="+", default=CONFIG_ORDER, choices=CONFIG_ORDER, help="Table 2 configurations"
    )
    g.add_argument(
        "--encoders",
        nargs="+",
        default=None,
        metavar="NAME",
        help="encoders to measure side by side, named as train.py's --encoder (resnet18, "
        "timm:NAME); "
        "default: train.py's default only, in the table of Table 2",
    )
    g.add_argument("--height", type=options.image_side, default=192, help="input height")
    g.add_argument("--width", type=options.image_side, default=640, help="input width")
    g.add_argument("--batch_size", type=options.positive_int, default=12, help="batch size")
    utils.add_device_option(g)
    g.add_argument(
        "--num_workers",
        type=options.non_negative_int,
        default=min(12, options.available_cpus()),
        help="loader processes",
    )
    g.add_argument("--steps", type=options.positive_int, default=10, help="timed training steps")
    g.add_argument(
        "--input_batches",
        type=options.positive_int,
        default=20,
        help="timed batches of the input pipeline alone",
    )
    g.add_argument(
        "--warmup", type=options.non_negative_int, default=2, help="untimed calls before each measurement"
    )
    g.add_argument(
        "--inference_runs", type=options.positive_int, default=50, help="timed inference calls at batch 1"
    )
    g.add_argument("--input_only", action="store_true", help="measure the input pipeline only")
    g.add_argument(
        "--baseline",
        action="store_true",
        help="also run the straightforward path (Monodepth2's loader, unfused losses, fp32) and "
        "train.py's defaults, and report ratios to the straightforward path",
    )
    g.add_argument(
        "--amp", default="off", choices=["off", "bf16", "fp16"], help="autocast on the fast path (CUDA)"
    )
    g.add_argument("--channels_last", action="store_true", help="channels_last on the fast path")
    g.add_argument("--compile", action="store_true", help="torch.compile on the fast path")
    g.add_argument("--output", default="benchmark.json", help="where the JSON report is written")
    return parser


def main(argv: Sequence[str] | None = None) -> dict:
    """Run the benchmark, print the table and write the JSON report; returns the report."""
    utils.setup_logging()
    parser = build_parser()
    args = parser.parse_args(argv)  # the options are checked before --make_data writes anything
    if args.data_path is None and not args.make_data:
        parser.error("give --data_path (KITTI data) or --make_data DIR")
    if args.make_data and args.make_frames < args.batch_size + MADE_EDGE_FRAMES:
        parser.error(
            f"--make_frames {args.make_frames} gives {args.make_frames - MADE_EDGE_FRAMES} training items, "
            f"fewer than one batch (--batch_size {args.batch_size})"
        )
    utils.pick_device(args.device)  # a device that is not there: one line now, not after --make_data
    twice = sorted({name for name in args.encoders or [] if args.encoders.count(name) > 1})
    if twice:  # each encoder's runs share their names: the second would find the first's run folder
        parser.error(f"--encoders lists {', '.join(twice)} more than once: name each encoder once")
    for encoder in args.encoders or []:  # an unknown or unsuitable encoder: one line now
        options.resolve_encoders(
            argparse.Namespace(
                encoder=encoder, num_layers=None, pose_encoder=None, height=args.height, width=args.width
            ),
            parser.error,
            "--encoders",
        )
    if args.make_data:
        args.data_path, args.split = make_data(args.make_data, args.make_frames, args.img_ext)
    for name in ("data_path", "fast_data_path"):  # before minutes of measuring the other paths
        if getattr(args, name) is not None and not os.path.isdir(getattr(args, name)):
            raise InputError(f"--{name} {getattr(args, name)} is not a folder")
    paths = PATHS if args.baseline else ["fast"]
    results = []
    with tempfile.TemporaryDirectory() as log_dir:
        for encoder in args.encoders or [None]:
            for config in args.configs:
                for path in paths:
                    logger.info(
                        "measuring %s on the %s path%s", config, path, f" with {encoder}" if encoder else ""
                    )
                    results.append(measure(Trainer, args, config, path, log_dir, encoder))
    report = make_report(args, results, init_runtime(args.device).device)
    with atomic_write(args.output) as tmp, open(tmp, "w") as f:
        json.dump(report, f, indent=2)
    print(encoder_table(report) if args.encoders else table(report))
    return report


def cli(argv: Sequence[str] | None = None) -> int:
    """Command-line entry: the project's errors (a missing folder, a bad split) print as one line."""
    main(argv)
    return 0


if __name__ == "__main__":
    sys.exit(run_cli(cli))
