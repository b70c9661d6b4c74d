"""Split files and a data check for ``--dataset folders``: \
``python -m tools.prepare_sequences --data_path DATA``.

Checks every sequence folder below ``--data_path`` as the loader will, measures its motion, prints a
table with warnings about what makes self-supervised training fail, and writes
``<data_path>/splits/`` (train, val and test lines, and ``report.json``). The library is
datasets/sequence_checks.py; docs/own_data.md (step 3) gives the whole account.
"""

from __future__ import annotations

import argparse
import os
import sys
from typing import Sequence

import options
import utils
from datasets.folders import SPLITS_FOLDER
from datasets.sequence_checks import (
    FEW_TRAINING_ITEMS,
    REPORT_NAME,
    STATIC_THRESHOLD,
    SplitRequest,
    report_sequences,
    report_table,
    summary,
    write_splits,
)
from utils.files import check_file_replaceable, save_json


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0], formatter_class=utils.HelpFormatter)
    parser.add_argument(
        "--data_path",
        type=options.folder_path,
        required=True,
        help="the folder of sequence folders (import_video's --out)",
    )
    parser.add_argument(
        "--out",
        type=options.folder_path,
        default=None,
        help=f"split folder; default <data_path>/{SPLITS_FOLDER}",
    )
    parser.add_argument(
        "--frame_ids",
        type=int,
        nargs="+",
        default=[0, -1, 1],
        help="the training's --frame_ids: a line needs all these neighbours",
    )
    parser.add_argument(
        "--val_sequences",
        nargs="*",
        default=None,
        help="sequences held out for validation (default: --val_fraction of them)",
    )
    parser.add_argument(
        "--val_fraction",
        type=float,
        default=0.1,
        help="share of the sequences held out for validation, whole (at least one of two or more)",
    )
    parser.add_argument(
        "--test_sequences",
        nargs="*",
        default=[],
        help="sequences for test_files.txt (every frame; e.g. those with ground truth)",
    )
    parser.add_argument(
        "--drop_static",
        action="store_true",
        help=f"leave out frames near-static to a temporal source (difference < {STATIC_THRESHOLD})",
    )
    parser.add_argument(
        "--seg_path",
        default=None,
        help="label folder to leave out when searching for sequences (default <data_path>/segmentation)",
    )
    parser.add_argument("--overwrite", action="store_true", help="replace split files that differ")
    parser.add_argument(
        "--num_workers",
        type=options.non_negative_int,
        default=2,
        help="processes reading frames (0: this one)",
    )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    opts = parser.parse_args(argv)
    if opts.frame_ids[0] != 0:
        parser.error(f"--frame_ids must start with the target frame 0, got {opts.frame_ids}")
    if not 0 <= opts.val_fraction < 1 or opts.num_workers < 0:
        parser.error("--val_fraction must lie in [0, 1) and --num_workers must not be negative")
    utils.setup_logging()
    out = opts.out or os.path.join(opts.data_path, SPLITS_FOLDER)
    request = SplitRequest(
        opts.data_path,
        opts.frame_ids,
        opts.val_sequences,
        opts.val_fraction,
        opts.test_sequences,
        opts.drop_static,
        opts.seg_path,
        opts.num_workers,
    )
    reports, splits = report_sequences(request)
    check_file_replaceable(os.path.join(out, REPORT_NAME))
    write_splits(out, splits, opts.overwrite)
    print(report_table(reports))
    for report in reports:
        for warning in report.warnings:
            print(f"warning: {report.sequence.name}: {warning}")
    if len(splits["train_files.txt"]) < FEW_TRAINING_ITEMS:
        print(
            f"warning: {len(splits['train_files.txt'])} training lines: "
            f"KITTI's eigen_zhou split has 39810; expect a model that fits these scenes only"
        )
    if not splits["val_files.txt"]:
        print("warning: no validation sequence (validation holds out whole sequences: import another video)")
    save_json(summary(request, reports, splits), os.path.join(out, REPORT_NAME))
    written = ", ".join(f"{name} ({len(lines)} lines)" for name, lines in splits.items() if lines)
    print(f"wrote {out}: {written}")
    return 0


if __name__ == "__main__":
    sys.exit(utils.run_cli(main))
