"""Helpers of the fault tests: commands run as their command line runs them, the one-line errors they must
print, short training command lines over a tiny drive, and the damage a test does to files."""

from __future__ import annotations

import os
import shutil
import signal
import struct
import subprocess
import sys
import zipfile
import zlib

import numpy as np
import pytest
from PIL import Image

import predict
import train
import utils
from conftest import PROCESS_DEADLINE_S, PROJECT_DIR
from datasets import ground_truth
from datasets.synthetic.kitti_frames import DRIVE, TinyKitti

PNG_SIGNATURE_BYTES = 8


IHDR_OFFSET = PNG_SIGNATURE_BYTES + 8  # the IHDR chunk's data, after its length and type


CORRUPT_BYTES = 4096


RUN_STEPS = 4  # 3 steps per epoch (6 items, batch 2): the resumed half crosses an epoch end and a milestone


TINY_HEIGHT, TINY_WIDTH = 64, 192  # the smallest size the networks take at their strides, KITTI's aspect


def sigint_as_from_a_terminal() -> None:
    """In a child (``preexec_fn``): SIGINT's default disposition, as a command started from a terminal has it
    (a suite run as a background job ignores SIGINT, and its children would inherit that, and keep it)."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def train_args(data, log_dir, *extra: str, height: int = TINY_HEIGHT, width: int = TINY_WIDTH) -> list[str]:
    """A training command line over a tiny drive (a TinyKitti, or a data folder and its split folder): small
    frames, batch 2, no loader processes, random initial weights; ``extra`` comes last, so it may override
    any of these."""
    data_path, split = (data.data_path, data.split_dir) if isinstance(data, TinyKitti) else data
    return [
        *("--data_path", data_path, "--split", split, "--log_dir", str(log_dir)),
        *("--height", str(height), "--width", str(width), "--batch_size", "2", "--num_workers", "0"),
        *("--weights_init", "scratch"),
        *extra,
    ]


def benchmark_args(tiny, *extra: str) -> list[str]:
    """tools/benchmark.py's command line over a tiny drive on the CPU: 64x96 frames, batch 2, no warm-up."""
    return [
        *("--data_path", tiny.data_path, "--split", tiny.split_dir, "--height", "64", "--width", "96"),
        *("--batch_size", "2", "--num_workers", "0", "--warmup", "0", "--device", "cpu"),
        *extra,
    ]


def export_ground_truth_args(tiny, splits_dir, output_dir) -> list[str]:
    """export_gt_depth.py's command line for the eigen split of a splits folder."""
    where = ["--data_path", tiny.data_path, "--splits_dir", str(splits_dir), "--output_dir", str(output_dir)]
    return [*where, "--split", "eigen"]


def per_class_args(tmp_path, split) -> list[str]:
    """tools/evaluate_per_class.py's command line for a test split folder, with a model folder that is not
    there (what it refuses comes before the model is read)."""
    where = ["--data_path", str(tmp_path), "--eval_split", str(split), "--output_dir", str(tmp_path / "out")]
    return [*where, "--load_weights_folder", str(tmp_path / "w"), "--no_chart"]


def one_step_args(tiny, tmp_path, *extra: str) -> list[str]:
    """One step of the baseline into tmp_path/logs: what the bad-input tests give train.py."""
    return train_args(
        tiny, tmp_path / "logs", "--config", "baseline", "--max_steps", "1", "--num_epochs", "1", *extra
    )


def run_args(tiny, log_dir, *extra: str) -> list[str]:
    """A deterministic baseline run of RUN_STEPS steps over two epochs that logs every step and saves every
    second epoch: what the resume and fault tests stop, damage and resume."""
    return train_args(
        tiny,
        log_dir,
        *("--log_frequency", "1", "--num_log_images", "0", "--config", "baseline", "--no_validation"),
        *(
            "--num_epochs",
            "2",
            "--max_steps",
            str(RUN_STEPS),
            "--lr_milestones",
            "1",
            "--save_frequency",
            "2",
        ),
        "--deterministic",
        *extra,
    )


def command_error(capsys, main, argv, during_epoch: bool = False) -> str:
    """Run a command's main as its command line does; assert exit code 2, no traceback and exactly one
    line ``error: ...`` (the last one) on stderr; return the message.

    ``during_epoch``: the trainer's progress bar of the epoch is left open by an error inside the
    epoch (trainer.py), so the error line may follow the bar's text on its line.
    """
    capsys.readouterr()
    assert utils.run_cli(main, argv) == utils.EXIT_ERROR
    err = capsys.readouterr().err
    assert "Traceback" not in err
    lines = err.splitlines()
    if during_epoch:
        lines = [line.split("sample/s]", 1)[-1] for line in lines]
    errors = [line for line in lines if line.startswith("error: ")]
    assert len(errors) == 1 and errors[0] == [line for line in lines if line.strip()][-1], err
    return errors[0][len("error: ") :]


def option_error(capsys, main, argv) -> str:
    """Run a command's main with options its parser refuses: exit code 2, one ``<prog>: error: ...`` line
    last (after argparse's usage), no traceback; return the message."""
    capsys.readouterr()
    with pytest.raises(SystemExit) as stopped:
        utils.run_cli(main, argv)
    assert stopped.value.code == utils.EXIT_ERROR
    err = capsys.readouterr().err
    assert "Traceback" not in err
    last = err.rstrip("\n").splitlines()[-1]
    assert ": error: " in last and sum(": error: " in line for line in err.splitlines()) == 1, err
    return last.split(": error: ", 1)[1]


def one_line_error(capsys, code: int, *names: str) -> str:
    """The command's stderr is one ``error:`` line naming every one of ``names``; exit code 2."""
    err = capsys.readouterr().err.strip()
    assert code == utils.EXIT_ERROR, err
    lines = [line for line in err.splitlines() if line.startswith("error:")]
    assert len(lines) == 1 and "Traceback" not in err, err
    for name in names:
        assert str(name) in lines[0], lines[0]
    return lines[0]


def run_command(args, **kwargs) -> subprocess.CompletedProcess:
    """A command line in a real process (one thread), from the project's root."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": PROJECT_DIR}
    return subprocess.run(
        [sys.executable, *args],
        cwd=PROJECT_DIR,
        env=env,
        capture_output=True,
        text=True,
        timeout=PROCESS_DEADLINE_S,
        **kwargs,
    )


def start(args, torchrun=(), script="train.py", **popen):
    """A script (train.py) started in a real process (one thread) from the project root, output piped."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": PROJECT_DIR}
    return subprocess.Popen(
        [sys.executable, *torchrun, script, *args],
        cwd=PROJECT_DIR,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        **popen,
    )


def finish(process):
    """Wait for a started process; its exit code and stderr."""
    _, stderr = process.communicate(timeout=PROCESS_DEADLINE_S)
    return process.returncode, stderr


def file_contents(folder) -> dict:
    """Every file below a folder with its bytes: what 'nothing written was changed' compares."""
    found = {}
    for root, _, names in os.walk(folder):
        for name in names:
            path = os.path.join(root, name)
            with open(path, "rb") as f:
                found[os.path.relpath(path, folder)] = f.read()
    return found


def file_names(folder) -> list[str]:
    """Every file below a folder, relative to it, sorted."""
    return sorted(
        os.path.relpath(os.path.join(root, f), folder) for root, _, names in os.walk(folder) for f in names
    )


def assert_nothing_half_written(folder):
    """No temporary file is left below a folder."""
    leftovers = [f for f in file_names(folder) if ".tmp" in f] if os.path.isdir(folder) else []
    assert leftovers == []


def image_path(tiny, frame, camera="02"):
    """A frame's path in a tiny drive."""
    return os.path.join(tiny.data_path, DRIVE, f"image_{camera}", "data", f"{frame:010d}.png")


def no_run_written(tmp_path):
    """Inputs are checked before anything is written: not even the log folder exists."""
    assert not os.path.exists(tmp_path / "logs")


def write_split(tiny, lines):
    """A split folder beside the tiny drive's whose training and validation files hold ``lines``."""
    split = os.path.join(os.path.dirname(tiny.split_dir), "bad_split")
    os.makedirs(split, exist_ok=True)
    for name in ("train_files.txt", "val_files.txt"):
        with open(os.path.join(split, name), "w") as f:
            f.write("\n".join(lines) + "\n")
    return split


def write_test_split(tmp_path, lines, gt_maps=None):
    """A custom test split folder (test_files.txt, and gt_depths.npz of ``gt_maps`` when given)."""
    folder = tmp_path / "test_split"
    folder.mkdir()
    (folder / "test_files.txt").write_text("".join(line + "\n" for line in lines))
    if gt_maps is not None:
        ground_truth.save_ground_truth(gt_maps, str(folder / "gt_depths.npz"))
    return folder


def write_image(path, seed: int = 0, size=(48, 16)) -> None:
    """A random RGB picture of ``size`` (width, height) at ``path``."""
    os.makedirs(os.path.dirname(path), exist_ok=True)
    rgb = np.random.default_rng(seed).integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)
    Image.fromarray(rgb).save(path)


def predict_error(capsys, argv, *names) -> str:
    """predict.py's one-line error naming every one of ``names``."""
    return one_line_error(capsys, utils.run_cli(predict.main, argv), *names)


def bomb_png(path, side):
    """A small real PNG whose header claims side x side pixels (what a decompression bomb looks like)."""
    Image.new("RGB", (4, 4)).save(path, format="PNG")
    data = bytearray(open(path, "rb").read())
    header = bytearray(data[IHDR_OFFSET : IHDR_OFFSET + 13])
    header[0:8] = struct.pack(">II", side, side)
    data[IHDR_OFFSET : IHDR_OFFSET + 13] = header
    data[IHDR_OFFSET + 13 : IHDR_OFFSET + 17] = struct.pack(">I", zlib.crc32(b"IHDR" + bytes(header)))
    with open(path, "wb") as f:
        f.write(data)


def copy_run(tiny_run, tmp_path):
    """A copy of the shared run to change (hard links: files are replaced by rename, ``own_copy`` before
    editing)."""
    tiny, logs = tiny_run
    shutil.copytree(logs, tmp_path / "logs", copy_function=os.link)
    return tiny, tmp_path / "logs" / "fsre"


def own_copy(path):
    """Replace a hard link by a copy of its own, so that editing it leaves the shared run as it was."""
    shutil.copy(path, str(path) + ".copy")
    os.replace(str(path) + ".copy", path)


def corrupt_inside_largest_tensor(path):
    """Overwrite CORRUPT_BYTES in the middle of the largest tensor's bytes (a stored zip entry): the file
    still loads."""
    own_copy(path)
    with zipfile.ZipFile(path) as archive:
        entry = max((i for i in archive.infolist() if "/data/" in i.filename), key=lambda i: i.file_size)
    with open(path, "r+b") as f:
        f.seek(entry.header_offset + 26)
        name_length, extra_length = (int.from_bytes(f.read(2), "little") for _ in range(2))
        f.seek(entry.header_offset + 30 + name_length + extra_length + entry.file_size // 2)
        original = f.read(CORRUPT_BYTES)
        f.seek(-len(original), os.SEEK_CUR)
        f.write(bytes(b ^ 0x5A for b in original))


def checkpoint(run, step):
    """The path of a run's checkpoint of a step."""
    return str(run / "checkpoints" / f"step_{step:08d}.pth")


def validating(args):
    """The same arguments with validation on."""
    return [arg for arg in args if arg != "--no_validation"]


def trainer_error(tiny, log_dir, capsys, *extra, validation=False):
    """Run train.py's main as the command line does; return its one-line error after asserting exit code 2."""
    args = run_args(tiny, log_dir, "--num_workers", "0", *extra)
    capsys.readouterr()
    assert utils.run_cli(train.main, validating(args) if validation else args) == utils.EXIT_ERROR
    err = capsys.readouterr().err
    assert "Traceback" not in err
    message = err.split("error: ", 1)[1].strip()
    assert "\n" not in message
    return message


def train_error(tiny, tmp_path, capsys, *extra):
    """Run train.py's main (the default model) as the command line does for one step; its error message
    (exit code 2, no traceback), with the lines that may follow it (a list of keys)."""
    args = train_args(tiny, tmp_path / "logs", "--max_steps", "1", "--num_epochs", "1", *extra)
    capsys.readouterr()
    assert utils.run_cli(train.main, args) == utils.EXIT_ERROR
    err = capsys.readouterr().err
    assert "Traceback" not in err
    return err.split("error: ", 1)[1].strip()
