"""A grid of monocular runs of the paper's recipe on generated dashcam footage (tools/recipe_grid.py).

Per codec: synthetic 30 fps drives, imported at 10 fps and split (the last drive held out); per codec
and seed: ``train.py`` from scratch, evaluated untrained and after every epoch, with the diagnostics read
back from TensorBoard (training/diagnostics.py). Every stage leaves a record and is skipped when rerun, so an
interrupted grid resumes. docs/own_data.md, "Codecs, repeated frames and seeds", gives the whole account."""

from __future__ import annotations

import glob
import json
import logging
import os
import re
import struct
import subprocess
import sys
from dataclasses import dataclass

import numpy as np
from tensorboardX.proto import event_pb2

from training.diagnostics import TRANSLATION_TAG, WARP_WINS_TAG
from utils import InputError, TrainingError
from utils.files import save_json

logger = logging.getLogger(__name__)

TEST_DRIVE = "drive_03"  # the held-out drive (the last of DRIVES)
DRIVES = 3
RECORD = "cell.json"  # a finished run's results
PREPARED = "prepared.json"  # a codec's finished data
UNTRAINED = "untrained"
TRACKED = ("abs_rel", "a1")  # metrics kept per evaluation
# a run "diverged" when its last AbsRel is above the untrained model's times this (no learning kept)
DIVERGED_RATIO = 0.9
ROBUST_MARGIN = 0.15  # the target: every run within 15 % of the lossless run of its seed


@dataclass(frozen=True)
class GridSettings:
    """The data and training settings shared by every cell of a grid."""

    frames: int = 60  # per drive at 10 fps
    scale: float = 0.25  # of KITTI's 1242x375: 310x94 frames
    hold: bool = True  # each scene frame shown three times in the 30 fps video
    height: int = 96
    width: int = 320
    batch_size: int = 4
    epochs: int = 10  # the schedule's length (the 290 steps: 10 epochs of 29)
    steps: int = 87  # steps trained (<= epochs x steps per epoch)
    log_frequency: int = 3
    extra: tuple[str, ...] = ()  # more train.py options (a method change under test)

    def as_dict(self) -> dict:
        return {k: list(v) if isinstance(v, tuple) else v for k, v in self.__dict__.items()}


def codec_folder(out: str, codec: str) -> str:
    return os.path.join(out, re.sub(r"[^A-Za-z0-9_.-]", "_", codec))


def python(*args: str) -> list[str]:
    return [sys.executable, *args]


def run(command: list[str], log_path: str) -> None:
    """Run a project command, its output appended to ``log_path``; a failure names the log."""
    with open(log_path, "a") as log:
        log.write("$ " + " ".join(command) + "\n")
        log.flush()
        done = subprocess.run(command, stdout=log, stderr=subprocess.STDOUT, check=False)
    if done.returncode:
        raise TrainingError(f"{' '.join(command[1:3])} failed (exit {done.returncode}): see {log_path}")


def prepare_codec(out: str, codec: str, settings: GridSettings) -> str:
    """Videos, import and splits of one codec (skipped when done); returns the codec's folder."""
    folder = codec_folder(out, codec)
    record = os.path.join(folder, PREPARED)
    wanted = {"codec": codec, "frames": settings.frames, "scale": settings.scale, "hold": settings.hold}
    if os.path.exists(record):
        with open(record) as f:
            if json.load(f) == wanted:
                return folder
        raise InputError(f"{folder}: prepared with other settings (see {record}): use another --out")
    os.makedirs(folder, exist_ok=True)
    log = os.path.join(folder, "prepare.log")
    videos, data = os.path.join(folder, "videos"), os.path.join(folder, "data")
    hold = ["--hold"] if settings.hold else []
    run(
        python("-m", "tools.synthetic_video", "--out", videos, "--drives", str(DRIVES), "--workers", "1",
               "--frames", str(settings.frames), "--scale", str(settings.scale), "--codec", codec, *hold),
        log,
    )  # fmt: skip
    ext = "png" if codec == "lossless" else "jpg"
    run(
        python("-m", "tools.import_video", videos, "--out", data, "--ext", ext, "--intrinsics",
               os.path.join(videos, "intrinsics.json")),
        log,
    )  # fmt: skip
    run(
        python("-m", "tools.prepare_sequences", "--data_path", data, "--test_sequences", TEST_DRIVE,
               "--val_fraction", "0", "--overwrite"),
        log,
    )  # fmt: skip
    save_json(wanted, record)
    return folder


def train_arguments(folder: str, seed: int, settings: GridSettings) -> list[str]:
    """train.py's options for one cell (the paper's monocular recipe from scratch)."""
    data = os.path.join(folder, "data")
    return [
        "--dataset", "folders", "--data_path", data, "--split", os.path.join(data, "splits"),
        "--seg_path", os.path.join(folder, "videos", "segmentation"), "--weights_init", "scratch",
        "--height", str(settings.height), "--width", str(settings.width),
        "--batch_size", str(settings.batch_size), "--lr_milestones", "--num_epochs", str(settings.epochs),
        "--max_steps", str(settings.steps), "--save_frequency", "1", "--num_workers", "1",
        "--log_frequency", str(settings.log_frequency), "--log_dir", os.path.join(folder, "runs"),
        "--model_name", f"seed{seed}", "--seed", str(seed), *settings.extra,
    ]  # fmt: skip


def evaluate_arguments(folder: str, weights: str, output_json: str) -> list[str]:
    data = os.path.join(folder, "data")
    return [
        "--dataset", "folders", "--data_path", data, "--eval_split", os.path.join(data, "splits"),
        "--gt_depths", os.path.join(folder, "videos", f"{TEST_DRIVE}_depth.npz"), "--num_workers", "0",
        "--load_weights_folder", weights, "--output_json", output_json,
    ]  # fmt: skip


def save_untrained(folder: str, seed: int, settings: GridSettings, log: str) -> str:
    """The trainer's first weights for this seed (as docs/own_data.md saves them), for the untrained row."""
    target = os.path.join(folder, "runs", f"{UNTRAINED}_seed{seed}")
    if not os.path.isdir(target):
        code = (
            "import sys, options, utils; from model import FSREModel; "
            "from checkpoints.model_folder import save_model_folder; "
            "opts = options.parse_args(sys.argv[2:]); utils.seed_everything(opts.seed); "
            "save_model_folder(sys.argv[1], FSREModel(opts).networks(), opts)"
        )
        run(python("-c", code, target, *train_arguments(folder, seed, settings)), log)
    return target


def evaluate(folder: str, weights: str, log: str) -> dict:
    """Monodepth2's metrics of a model folder on the held-out drive (cached beside it)."""
    output = os.path.join(weights, "grid_metrics.json")
    if not os.path.exists(output):
        run(python("evaluate_depth.py", *evaluate_arguments(folder, weights, output)), log)
    with open(output) as f:
        metrics = json.load(f)["metrics"]
    return {k: metrics[k] for k in TRACKED}


def read_scalars(folder: str) -> dict[str, list[tuple[int, float]]]:
    """Scalars ``{tag: [(step, value)]}`` of the TensorBoard event files in a folder (TFRecord framing)."""
    scalars: dict = {}
    for path in sorted(glob.glob(os.path.join(folder, "events.out.tfevents.*"))):
        with open(path, "rb") as f:
            while header := f.read(8):
                (length,) = struct.unpack("<Q", header)
                f.read(4)  # the length's CRC
                data = f.read(length)
                f.read(4)  # the data's CRC
                if len(data) < length:
                    break  # a file still being written
                event = event_pb2.Event.FromString(data)
                for value in event.summary.value:
                    if value.HasField("simple_value"):
                        scalars.setdefault(value.tag, []).append((int(event.step), value.simple_value))
    return scalars


def summarise(series: list[tuple[int, float]], parts: int = 3) -> list[float]:
    """Means of a logged series over ``parts`` equal stretches of its steps (start, middle, end)."""
    if not series:
        return []
    values = np.array([v for _, v in sorted(series)], dtype=float)
    return [float(chunk.mean()) for chunk in np.array_split(values, min(parts, len(values)))]


def run_cell(out: str, codec: str, seed: int, settings: GridSettings) -> dict:
    """Train and evaluate one (codec, seed) cell, or read its record when finished."""
    folder = prepare_codec(out, codec, settings)
    record_path = os.path.join(folder, f"seed{seed}_{RECORD}")
    if os.path.exists(record_path):
        with open(record_path) as f:
            record = json.load(f)
        if record["settings"] != settings.as_dict():
            raise InputError(
                f"{record_path}: a run with other settings ({record['settings']}): use another --out"
            )
        return record
    log = os.path.join(folder, f"seed{seed}.log")
    evaluations = [{"step": 0, **evaluate(folder, save_untrained(folder, seed, settings, log), log)}]
    run_dir = os.path.join(folder, "runs", f"seed{seed}")
    run(python("train.py", *train_arguments(folder, seed, settings), "--resume"), log)
    with open(os.path.join(folder, "data", "splits", "train_files.txt")) as f:
        steps_per_epoch = sum(1 for line in f if line.strip()) // settings.batch_size  # drop_last
    for weights in sorted(
        glob.glob(os.path.join(run_dir, "models", "weights_*[0-9]")), key=lambda p: int(p.rsplit("_", 1)[1])
    ):
        epoch = int(weights.rsplit("_", 1)[1])
        step = min((epoch + 1) * steps_per_epoch, settings.steps)
        evaluations.append({"epoch": epoch, "step": step, **evaluate(folder, weights, log)})
    scalars = read_scalars(os.path.join(run_dir, "train"))
    result = {
        "codec": codec,
        "seed": seed,
        "settings": settings.as_dict(),
        "evaluations": evaluations,
        "translation": sorted(scalars.get(TRANSLATION_TAG, [])),
        "warp_wins": sorted(scalars.get(WARP_WINS_TAG, [])),
    }
    save_json(result, record_path)
    return result


def verdict(cell: dict, lossless: dict | None) -> str:
    """'learned', 'diverged' (last AbsRel not clearly below the untrained model's) or 'within 15 %' /
    'off lossless' against the lossless run of the same seed."""
    first, last = cell["evaluations"][0]["abs_rel"], cell["evaluations"][-1]["abs_rel"]
    state = "diverged" if last > DIVERGED_RATIO * first else "learned"
    if lossless is not None and cell is not lossless:
        reference = lossless["evaluations"][-1]["abs_rel"]
        state += ", within 15 %" if last <= (1 + ROBUST_MARGIN) * reference else ", off lossless"
    return state


def markdown(cells: list[dict]) -> str:
    """The grid as a Markdown table: AbsRel per evaluation, the diagnostics at start/middle/end, verdict."""
    lossless = {c["seed"]: c for c in cells if c["codec"] == "lossless"}
    steps = sorted({e["step"] for c in cells for e in c["evaluations"]})
    lines = [
        "| codec | seed | " + " | ".join(f"AbsRel @{s}" for s in steps)
        + " | translation (start/mid/end) | warp wins (start/mid/end) | verdict |",
        "|---|---|" + "---|" * len(steps) + "---|---|---|",
    ]  # fmt: skip
    for cell in cells:
        by_step = {e["step"]: e["abs_rel"] for e in cell["evaluations"]}
        absrel = " | ".join(f"{by_step[s]:.3f}" if s in by_step else "" for s in steps)
        translation = " / ".join(f"{v:.4f}" for v in summarise(cell["translation"]))
        wins = " / ".join(f"{v:.2f}" for v in summarise(cell["warp_wins"]))
        lines.append(
            f"| {cell['codec']} | {cell['seed']} | {absrel} | {translation} | {wins} | "
            f"{verdict(cell, lossless.get(cell['seed']))} |"
        )
    diverged = sum("diverged" in verdict(c, None) for c in cells)
    compared = [
        verdict(c, lossless[c["seed"]]) for c in cells if c["codec"] != "lossless" and c["seed"] in lossless
    ]
    lines.append("")
    lines.append(
        f"{diverged} of {len(cells)} runs diverged (last AbsRel above {DIVERGED_RATIO} x untrained); "
        f"{sum('within' in v for v in compared)} of {len(compared)} ended within "
        f"{ROBUST_MARGIN * 100:.0f} % of the lossless run of their seed."
    )
    return "\n".join(lines) + "\n"


def write_tables(out: str, cells: list[dict]) -> tuple[str, str]:
    """grid.json and grid.md in ``out``."""
    json_path, md_path = os.path.join(out, "grid.json"), os.path.join(out, "grid.md")
    save_json({"cells": cells}, json_path)
    with open(md_path + ".tmp", "w") as f:
        f.write(markdown(cells))
    os.replace(md_path + ".tmp", md_path)
    return json_path, md_path
