"""Run a table: each row's training runs (one per seed) as subprocesses, then their evaluation, resumably.

A row at a seed is one run, in ``<log_dir>/<run name>`` (its options and their hash: identical options in two
tables share the run), going through the stages ``train``, ``final``, ``evaluate`` and (cost columns)
``benchmark``. A stage is done when its record ``RUN/reproduce_<stage>.json`` holds the very command that
would run now; done stages are skipped. ``plan`` lists the commands, ``run_all`` runs them in that order.
docs/reproducing.md gives each stage's command."""

from __future__ import annotations

import argparse
import functools
import hashlib
import json
import logging
import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from typing import Callable

import options
import utils
from evaluation.depth import split_name
from networks import DEFAULT_ENCODER
from reproduce.tables import Row, Table
from utils import InputError, TrainingError
from utils.files import atomic_folder, read_json, save_json

logger = logging.getLogger(__name__)

FINAL_WEIGHTS = "final_weights"  # RUN/final_weights: hard links of the run's newest weights folder
FINAL_RECORD = "final_weights.json"  # what final_weights was linked from
RECORD = "reproduce_{}.json"  # RUN/reproduce_<stage>.json
WEIGHTS_FOLDER = re.compile(r"^weights_(\d+)(_best)?$")
NAME_LENGTH = 48  # characters of the options kept in a run's folder name
HASH_LENGTH = 8
RUN_OWNED_OPTIONS = ("--log_dir", "--model_name", "--resume", "--seed")  # the runner sets these per run


@dataclass(frozen=True)
class Command:
    """A command line: environment assignments and arguments; ``str()`` is the shell line."""

    argv: tuple[str, ...]
    env: tuple[tuple[str, str], ...] = ()

    def __str__(self) -> str:
        return " ".join([f"{k}={shlex.quote(v)}" for k, v in self.env] + [shlex.join(self.argv)])


@dataclass
class Stage:
    """One command of a run and the record that marks it done."""

    name: str  # train, final, evaluate_<split>, benchmark
    command: Command
    record: str  # path of the record JSON
    outputs: dict = field(default_factory=dict)  # files the command writes (read into the record)
    in_process: Callable[[], object] | None = (
        None  # what the command does, run here instead of in a new process
    )

    def done(self) -> bool:
        """Whether the record exists and holds this very command."""
        record = read_json(self.record)  # None (missing, unreadable, not JSON): the stage runs again
        return (
            isinstance(record, dict)
            and record.get("command") == str(self.command)
            and all(isinstance(record.get(key), dict) for key in self.outputs)
        )  # what it wrote, whole


@dataclass
class Run:
    """A row at a seed: its folder, its training options and its stages."""

    row: Row
    seed: int
    folder: str
    train_options: list[str]
    stages: list[Stage]

    def record(self, stage: str) -> dict | None:
        """The record of a done stage (None when absent)."""
        path = os.path.join(self.folder, RECORD.format(stage))
        if not os.path.isfile(path):
            return None
        with open(path) as f:
            return json.load(f)


@dataclass
class Settings:
    """What every run of a table shares (the reproduce command's options)."""

    data_path: str
    log_dir: str
    seeds: list[int]
    eval_split: str | None = None  # None: the table's own
    splits_dir: str | None = None
    variables: dict = field(default_factory=dict)
    train_args: list[str] = field(default_factory=list)
    evaluate_args: list[str] = field(default_factory=list)
    benchmark_args: list[str] = field(default_factory=list)
    nproc_per_node: int = 1
    cost: bool = True


def project_command(*args: str) -> Command:
    """``python -m <module> ...`` of a project module, runnable from any folder (PYTHONPATH = the project)."""
    return Command((sys.executable, "-m", *args), (("PYTHONPATH", utils.PROJECT_DIR),))


def script_command(script: str, *args: str) -> Command:
    """``python <project>/<script> ...``: a top-level command, runnable from any folder."""
    return Command((sys.executable, os.path.join(utils.PROJECT_DIR, script), *args))


def substitute(row: Row, variables: dict) -> list[str]:
    """A row's training options with its ``{NAME}`` placeholders filled from ``--set NAME=VALUE``."""
    out = []
    for arg in row.train:
        names = re.findall(r"\{(\w+)\}", arg)
        missing = [n for n in names if n not in variables]
        if missing:
            raise InputError(f"row {row.name!r} needs --set {missing[0]}=VALUE")
        out.append(re.sub(r"\{(\w+)\}", lambda m: str(variables[m.group(1)]), arg))
    return out


def run_name(row_options: list[str], train_options: list[str], seed: int) -> str:
    """A readable, unique folder name: the row's options in short, the seed, and a hash of every option and
    the seed."""
    digest = hashlib.sha1(json.dumps([train_options, seed]).encode()).hexdigest()[:HASH_LENGTH]
    words = re.sub(r"[^A-Za-z0-9.]+", "_", " ".join(a.lstrip("-") for a in row_options)).strip("_")
    return f"{words[:NAME_LENGTH].rstrip('_') or 'defaults'}_seed{seed}_{digest}"


def check_train_args(args: list[str], where: str = "--train_args") -> None:
    """Options the runner sets itself cannot be given for every row, nor in a row."""
    for arg in args:
        if arg.split("=")[0] in RUN_OWNED_OPTIONS:
            raise InputError(
                f"{where}: {arg.split('=')[0]} is set by the runner for each run "
                f"(use --seeds / --first_seed and --log_dir of this command)"
            )


def run_arguments(folder: str, seed: int) -> list[str]:
    """The options the runner gives each run: its seed, its folder, and --resume (a crashed run continues)."""
    return [
        "--seed",
        str(seed),
        "--log_dir",
        os.path.dirname(folder),
        "--model_name",
        os.path.basename(folder),
        "--resume",
    ]


def train_command(train_options: list[str], run_args: list[str], nproc_per_node: int) -> Command:
    """train.py for one run (``torch.distributed.run``, i.e. torchrun, for several GPUs)."""
    if nproc_per_node > 1:
        return Command(
            (
                sys.executable,
                "-m",
                "torch.distributed.run",
                "--standalone",
                "--nproc_per_node",
                str(nproc_per_node),
                os.path.join(utils.PROJECT_DIR, "train.py"),
                *train_options,
                *run_args,
            )
        )
    return script_command("train.py", *train_options, *run_args)


def benchmark_command(opts: argparse.Namespace, folder: str, extra: list[str]) -> Command:
    """tools.benchmark for a run's configuration at its size and batch (train.py's default path is read)."""
    args = [
        "--data_path",
        opts.data_path,
        "--split",
        opts.split,
        "--configs",
        opts.config,
        "--height",
        str(opts.height),
        "--width",
        str(opts.width),
        "--batch_size",
        str(opts.batch_size),
        "--img_ext",
        opts.img_ext,
        "--num_workers",
        str(opts.num_workers),
        "--baseline",
        "--output",
        os.path.join(folder, "benchmark.json"),
    ]
    if opts.encoder != DEFAULT_ENCODER:  # a row's --encoder: its cost is that network's
        args += ["--encoders", opts.encoder]
    if opts.splits_dir:
        args += ["--splits_dir", opts.splits_dir]
    if opts.device:
        args += ["--device", opts.device]
    return project_command("tools.benchmark", *args, *extra)


def plan(table: Table, settings: Settings) -> list[Run]:
    """Every run of a table's rows (rows without training options are the paper's only)."""
    check_train_args(settings.train_args)
    eval_split = settings.eval_split or table.eval_split
    split = split_name(eval_split)
    runs = []
    for row in table.rows:
        if row.train is None:
            continue
        row_options = ["--data_path", settings.data_path]
        row_options += ["--splits_dir", settings.splits_dir] if settings.splits_dir else []
        check_train_args(list(row.train), f"row {row.name!r} of {table.name}")
        own = substitute(row, settings.variables) + settings.train_args
        row_options += own
        for k, seed in enumerate(settings.seeds):
            folder = os.path.join(settings.log_dir, run_name(own, row_options, seed))
            run_args = run_arguments(folder, seed)
            opts = options.parse_args(
                row_options + run_args
            )  # bad options fail now, not after hours of other rows
            train = train_command(row_options, run_args, settings.nproc_per_node)
            final = os.path.join(folder, FINAL_WEIGHTS)
            metrics_json = os.path.join(folder, f"metrics_{split}.json")
            evaluate = script_command(
                "evaluate_depth.py",
                "--data_path",
                settings.data_path,
                "--eval_split",
                eval_split,
                "--load_weights_folder",
                final,
                "--output_json",
                metrics_json,
                *(["--splits_dir", settings.splits_dir] if settings.splits_dir else []),
                *table.evaluate_options,
                *settings.evaluate_args,
            )
            stages = [
                Stage("train", train, os.path.join(folder, RECORD.format("train"))),
                Stage(
                    "final",
                    project_command("tools.reproduce", "--final_weights", folder),
                    os.path.join(folder, RECORD.format("final")),
                    {"final": os.path.join(folder, FINAL_RECORD)},
                    in_process=functools.partial(link_final_weights, folder),
                ),
                Stage(
                    f"evaluate_{split}",
                    evaluate,
                    os.path.join(folder, RECORD.format(f"evaluate_{split}")),
                    {"metrics": metrics_json},
                ),
            ]
            if table.cost and settings.cost and k == 0:  # the cost of a configuration is measured once
                stages.append(
                    Stage(
                        "benchmark",
                        benchmark_command(opts, folder, settings.benchmark_args),
                        os.path.join(folder, RECORD.format("benchmark")),
                        {"benchmark": os.path.join(folder, "benchmark.json")},
                    )
                )
            runs.append(Run(row, seed, folder, row_options, stages))
    return runs


def pending(runs: list[Run]) -> list[tuple[Run, Stage]]:
    """The stages still to run, in order; a stage after one that must rerun reruns too."""
    todo = []
    for run in runs:
        redo = False
        for stage in run.stages:
            redo = redo or not stage.done()
            if redo:
                todo.append((run, stage))
    return todo


STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)


class Stopped(utils.ProjectError):
    """The runner was stopped by a signal after its command had ended (saved); exit with 128 + the signal."""

    def __init__(self, signum: int) -> None:
        super().__init__(
            f"stopped by {signal.Signals(signum).name}: the stage under way ended (train.py "
            f"saves its state); run the same command again to resume"
        )
        self.exit_code = 128 + signum


class StopForwarding:
    """While a table runs: SIGTERM and SIGINT are passed on to the stage's command as one SIGTERM, the
    runner waits for it to end (train.py saves its state and exits) and then stops (``Stopped``).

    SIGTERM, not the signal received: Ctrl-C signals the whole process group, so the command has its
    SIGINT already, and a second SIGINT would stop train.py before it saves; a SIGTERM after a first
    stop signal is ignored by it. A signal between stages stops the runner before the next one.
    """

    def __init__(self) -> None:
        self.signum: int | None = None
        self.child: subprocess.Popen | None = None
        self.previous: dict = {}

    def _handle(self, signum: int, frame) -> None:
        first = self.signum is None
        self.signum = self.signum or signum
        logger.warning(
            "received %s: %s",
            signal.Signals(signum).name,
            "waiting for the stage under way to save and end" if self.child else "stopping",
        )
        if first and self.child is not None and self.child.poll() is None:
            self.child.send_signal(signal.SIGTERM)

    def __enter__(self) -> "StopForwarding":
        if threading.current_thread() is not threading.main_thread():
            return self  # handlers can only be set in the main thread; elsewhere signals keep their default
        for signum in STOP_SIGNALS:
            self.previous[signum] = signal.signal(signum, self._handle)
        return self

    def __exit__(self, *exc) -> None:
        for signum, handler in self.previous.items():
            signal.signal(signum, handler)

    def call(self, argv: list[str], env: dict) -> int:
        """Run a command to its end (a stop signal is passed on to it first)."""
        self.child = subprocess.Popen(argv, env=env)
        if self.signum is not None:  # a signal that came while the command was starting
            self.child.send_signal(signal.SIGTERM)
        try:
            return self.child.wait()
        finally:
            self.child = None

    def check(self) -> None:
        """Raise ``Stopped`` when a stop signal came."""
        if self.signum is not None:
            raise Stopped(self.signum)


def execute(run: Run, stage: Stage, stopper: StopForwarding | None = None) -> None:
    """Run one stage's command; on success write its record (command, seconds, what it wrote)."""
    logger.info("%s: %s\n  %s", os.path.basename(run.folder), stage.name, stage.command)
    env = {**os.environ, **dict(stage.command.env)}
    if stage.command.env and os.environ.get("PYTHONPATH"):
        env["PYTHONPATH"] = os.pathsep.join([dict(stage.command.env)["PYTHONPATH"], os.environ["PYTHONPATH"]])
    os.makedirs(run.folder, exist_ok=True)
    start = time.time()
    if stage.in_process is not None:
        stage.in_process()
        code = 0
    elif stopper is not None:
        code = stopper.call(list(stage.command.argv), env=env)
    else:
        code = subprocess.call(list(stage.command.argv), env=env)
    if code != 0 and stopper is not None:
        stopper.check()  # a stage stopped by a signal is not a failure
    if code != 0:
        raise TrainingError(
            f"{stage.name} of {run.folder} failed with exit code {code}: {stage.command}\n"
            f"(fix the cause and run the same command again: finished stages are kept)"
        )
    record = {
        "command": str(stage.command),
        "stage": stage.name,
        "row": run.row.name,
        "seed": run.seed,
        "train_options": run.train_options,
        "seconds": round(time.time() - start, 1),
        "finished": time.strftime("%Y-%m-%d %H:%M:%S"),
    }
    for key, path in stage.outputs.items():
        with open(path) as f:
            record[key] = json.load(f)
    save_json(record, stage.record)


def run_all(runs: list[Run]) -> int:
    """Run every pending stage, one after another; return how many ran."""
    todo = pending(runs)
    done = sum(len(r.stages) for r in runs) - len(todo)
    if done:
        logger.info("%d stage(s) already done (their records hold the same commands): skipped", done)
    with StopForwarding() as stopper:
        for run, stage in todo:
            stopper.check()
            execute(run, stage, stopper)
        stopper.check()
    return len(todo)


# ------------------------------------------------------------------------------------------------
# the "final" stage
# ------------------------------------------------------------------------------------------------
def newest_weights(run_folder: str) -> str:
    """The weights folder of the run's last epoch (``weights_N`` or ``weights_N_best``)."""
    models = os.path.join(run_folder, "models")
    found = [
        (int(m.group(1)), name)
        for name in (os.listdir(models) if os.path.isdir(models) else [])
        if (m := WEIGHTS_FOLDER.match(name)) and os.path.isdir(os.path.join(models, name))
    ]
    if not found:
        raise utils.MissingFileError(f"{models}: no weights_N folder (has the training finished?)")
    return os.path.join(models, max(found)[1])


def link_final_weights(run_folder: str) -> dict:
    """Hard-link the newest weights folder's files into ``RUN/final_weights``; record where they came from."""
    source = newest_weights(run_folder)
    with atomic_folder(os.path.join(run_folder, FINAL_WEIGHTS)) as tmp:
        for name in sorted(os.listdir(source)):
            path = os.path.join(source, name)
            try:
                os.link(path, os.path.join(tmp, name))
            except OSError:  # a file system without hard links
                shutil.copy2(path, os.path.join(tmp, name))
    record = {"source": os.path.relpath(source, run_folder), "files": sorted(os.listdir(source))}
    save_json(record, os.path.join(run_folder, FINAL_RECORD))
    return record
