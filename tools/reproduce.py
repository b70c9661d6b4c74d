"""Reproduce a table of the paper's supplementary material (or your own): ``python -m tools.reproduce TABLE``.

    python -m tools.reproduce table2 --data_path kitti_data            # train, evaluate, benchmark, tabulate
    python -m tools.reproduce table6 --data_path kitti_data --dry_run  # the commands, for a cluster scheduler

TABLE is a named table (``--list``; reproduce/tables.py) or a JSON file of rows; finished stages are skipped,
so the same command resumes. docs/reproducing.md gives the whole account."""

from __future__ import annotations

import argparse
import dataclasses
import logging
import os
import shlex
import sys
from typing import Sequence

import torch

import options
import utils
from evaluation.depth import split_name
from evaluation.metrics import DEPTH_METRIC_NAMES
from reproduce import report, runner, tables

logger = logging.getLogger("reproduce")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0], formatter_class=utils.HelpFormatter)
    parser.add_argument("table", nargs="?", help="table2 .. table7, or a JSON file of rows")
    parser.add_argument(
        "--data_path",
        default=os.path.join(utils.PROJECT_DIR, "kitti_data"),
        help="KITTI raw root (training and evaluation)",
    )
    parser.add_argument(
        "--log_dir",
        type=options.folder_path,
        default=os.path.join(os.path.expanduser("~"), "tmp", "reproduce"),
        help="where the run folders are (runs with the same options are shared between tables)",
    )
    parser.add_argument(
        "--output_dir",
        type=options.folder_path,
        default=None,
        help="where the tables are written (default <log_dir>/tables)",
    )
    parser.add_argument(
        "--eval_split",
        default=None,
        help="evaluate on this split instead of the table's (e.g. a folder with test_files.txt)",
    )
    parser.add_argument(
        "--splits_dir", default=None, help="local copy of the split files (training and evaluation)"
    )
    parser.add_argument(
        "--seeds",
        type=options.positive_int,
        default=1,
        help="runs per row (seeds first_seed, first_seed + 1, ...)",
    )
    parser.add_argument(
        "--first_seed", type=options.non_negative_int, default=0, help="seed of each row's first run"
    )
    parser.add_argument(
        "--set",
        dest="variables",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="fill a row's {NAME} (e.g. table5's --set labels_14=DIR)",
    )
    parser.add_argument(
        "--train_args",
        default="",
        help='train.py options added to every row, one string (write --train_args="--num_epochs 1")',
    )
    parser.add_argument(
        "--evaluate_args", default="", help="evaluate_depth.py options added to every evaluation"
    )
    parser.add_argument(
        "--benchmark_args", default="", help="tools.benchmark options added to every benchmark"
    )
    parser.add_argument("--no_cost", action="store_true", help="skip the benchmark (Table 2's cost columns)")
    parser.add_argument(
        "--metrics",
        nargs="+",
        choices=DEPTH_METRIC_NAMES,
        default=None,
        help="the depth metrics shown, in this order (default: the table's; the JSON keeps all)",
    )
    parser.add_argument(
        "--nproc_per_node",
        type=options.positive_int,
        default=None,
        help="processes per run under torchrun (default: the number of visible GPUs; 1: plain python)",
    )
    parser.add_argument(
        "--dry_run", action="store_true", help="print the commands that would run, run nothing"
    )
    parser.add_argument("--list", action="store_true", help="list the named tables and their rows")
    parser.add_argument(
        "--final_weights",
        metavar="RUN",
        default=None,
        help="(a stage of a run) link RUN's newest weights folder to RUN/final_weights",
    )
    return parser


def parse_variables(items: list[str], parser: argparse.ArgumentParser) -> dict:
    """--set NAME=VALUE pairs."""
    out = {}
    for item in items:
        name, sep, value = item.partition("=")
        if not sep or not name:
            parser.error(f"--set takes NAME=VALUE, got {item!r}")
        out[name] = value
    return out


def list_tables() -> str:
    lines = []
    for table in tables.TABLES.values():
        lines.append(f"{table.name}: {table.title}")
        for row in table.rows:
            lines.append(
                f"    {row.name:<32} " + (" ".join(row.train) if row.train else "(the paper's number only)")
            )
        lines += [f"    needs --set {name}=...: {meaning}" for name, meaning in table.variables.items()]
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    opts = parser.parse_args(argv)
    utils.setup_logging()
    if opts.final_weights:
        record = runner.link_final_weights(opts.final_weights)
        logger.info("%s/%s -> %s", opts.final_weights, runner.FINAL_WEIGHTS, record["source"])
        return 0
    if opts.list:
        print(list_tables())
        return 0
    if not opts.table:
        parser.error("give a table (table2 .. table7 or a JSON file), or --list")
    table = tables.get_table(opts.table)
    if opts.metrics:
        table = dataclasses.replace(table, metrics=tuple(opts.metrics))
    log_dir = os.path.abspath(opts.log_dir)
    gpus = torch.cuda.device_count()
    settings = runner.Settings(
        data_path=os.path.abspath(opts.data_path),
        log_dir=log_dir,
        seeds=list(range(opts.first_seed, opts.first_seed + opts.seeds)),
        eval_split=os.path.abspath(opts.eval_split)
        if opts.eval_split and os.path.isdir(opts.eval_split)
        else opts.eval_split,
        splits_dir=os.path.abspath(opts.splits_dir) if opts.splits_dir else None,
        variables=parse_variables(opts.variables, parser),
        train_args=shlex.split(opts.train_args),
        evaluate_args=shlex.split(opts.evaluate_args),
        benchmark_args=shlex.split(opts.benchmark_args),
        nproc_per_node=opts.nproc_per_node if opts.nproc_per_node is not None else max(gpus, 1),
        cost=not opts.no_cost,
    )
    runs = runner.plan(table, settings)
    if opts.dry_run:
        for _, stage in runner.pending(runs):
            print(stage.command)
        return 0
    try:
        runner.run_all(runs)
    except runner.Stopped as stopped:
        logger.warning("%s", stopped)
        return stopped.exit_code
    eval_split = settings.eval_split or table.eval_split
    if eval_split != table.eval_split:  # the title says where these numbers come from
        table = dataclasses.replace(
            table, title=f"{table.title} [ours evaluated on {split_name(eval_split)}]"
        )
    results = report.collect(table, runs, eval_split)
    paths = report.write_all(table, results, eval_split, opts.output_dir or os.path.join(log_dir, "tables"))
    print(report.markdown(table, results))
    logger.info("wrote %s", ", ".join(paths.values()))
    return 0


if __name__ == "__main__":
    sys.exit(utils.run_cli(main))
