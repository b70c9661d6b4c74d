"""Issue 23: the promises of issue 15 (nothing written is lost, nothing hangs on a user's number, one line
and exit 2 for bad input) kept on the later surfaces: tables, videos, predict and figures."""
from __future__ import annotations

import json
import os
import queue
import signal
import subprocess
import sys
import threading
import time

import pytest

import utils
from synthetic import scenes

DEADLINE_S = 600  # generous: a condition polled for, never a fixed sleep
# Long enough never to finish on its own: the test stops it by signal once it trains.
LONG_TRAIN_ARGS = ("--height 64 --width 192 --batch_size 2 --num_epochs 50 --num_workers 0 --weights_init scratch "
                   "--no_validation --input_check none --log_frequency 1 --keep_checkpoints 1")


def one_line_error(capsys, code: int, *names: str) -> str:
    """The command's stderr is one ``error:`` line naming every one of ``names``; exit code 2."""
    err = capsys.readouterr().err.strip()
    assert code == utils.EXIT_ERROR, err
    lines = [line for line in err.splitlines() if line.startswith("error:")]
    assert len(lines) == 1 and "Traceback" not in err, err
    for name in names:
        assert str(name) in lines[0], lines[0]
    return lines[0]


# ------------------------------------------------------------------------------------------------
# 1. the runner of tools.reproduce forwards stop signals to train.py and waits for it to save
# ------------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def scene_data(tmp_path_factory):
    root = tmp_path_factory.mktemp("surfaces")
    data = str(root / "scenes")
    split_dir = scenes.generate(data, num_drives=2, frames_per_drive=6, scale=0.1, seed=2, test_stride=1,
                                val_stride=2, workers=1)
    return data, split_dir


class LineReader:
    """A process's stderr, read line by line in a thread, so that a test can wait for a line with a deadline."""

    def __init__(self, stream) -> None:
        self.lines: queue.Queue = queue.Queue()
        self.seen: list[str] = []
        threading.Thread(target=self._read, args=(stream,), daemon=True).start()

    def _read(self, stream) -> None:
        for line in stream:
            self.lines.put(line)
        self.lines.put(None)

    def wait_for(self, text: str) -> None:
        end = time.monotonic() + DEADLINE_S
        while time.monotonic() < end:
            try:
                line = self.lines.get(timeout=1)
            except queue.Empty:
                continue
            if line is None:
                break
            self.seen.append(line)
            if text in line:
                return
        raise AssertionError(f"{text!r} never came; the output was:\n{''.join(self.seen)}")

    def rest(self) -> str:
        while (line := self.lines.get(timeout=DEADLINE_S)) is not None:
            self.seen.append(line)
        return "".join(self.seen)


def start_table(data: str, split_dir: str, root) -> tuple[subprocess.Popen, LineReader, str]:
    """tools.reproduce on a one-row table in its own process group (a terminal's Ctrl-C signals a group)."""
    table = root / "one.json"
    table.write_text(json.dumps({"name": "one", "rows": [{"name": "baseline", "train": "--config baseline"}]}))
    log_dir = str(root / "runs")
    argv = [sys.executable, "-m", "tools.reproduce", str(table), "--data_path", data, "--eval_split", split_dir,
            "--log_dir", log_dir, "--no_cost", f"--train_args=--split {split_dir} {LONG_TRAIN_ARGS}"]
    proc = subprocess.Popen(argv, cwd=utils.PROJECT_DIR, stderr=subprocess.PIPE, text=True, start_new_session=True)
    return proc, LineReader(proc.stderr), log_dir


def run_folder_of(log_dir: str) -> str:
    (name,) = [n for n in os.listdir(log_dir) if n.startswith("config_baseline")]
    return os.path.join(log_dir, name)


@pytest.mark.parametrize("to_group, signum, code", [(True, signal.SIGINT, 130), (False, signal.SIGTERM, 143)],
                         ids=["ctrl_c_to_the_group", "sigterm_to_the_runner_alone"])
def test_a_stopped_table_run_saves_the_training_and_frees_its_folder(scene_data, tmp_path, to_group, signum, code):
    data, split_dir = scene_data
    proc, reader, log_dir = start_table(data, split_dir, tmp_path)
    try:
        reader.wait_for("| step 2/")  # train.py is training
        if to_group:
            os.killpg(proc.pid, signum)
        else:
            os.kill(proc.pid, signum)
        assert proc.wait(DEADLINE_S) == code, reader.rest()
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    output = reader.rest()
    assert "Traceback" not in output, output
    assert "the state is saved after this step" in output
    folder = run_folder_of(log_dir)
    checkpoints = os.listdir(os.path.join(folder, "checkpoints"))
    assert [n for n in checkpoints if n.endswith(".pth")], checkpoints
    utils.RunLock(folder).acquire().release()  # train.py has ended with the runner: the folder is free
    assert not os.path.exists(os.path.join(folder, "reproduce_train.json"))  # the stage is not marked done


def test_dry_run_lines_are_shell_lines_with_spaces_in_paths(tmp_path):
    """--dry_run prints commands a shell runs: the environment assignment is quoted as a value, not a word."""
    from reproduce.runner import Command
    command = Command(("python", "-m", "tools.benchmark", "--data_path", "/a b/data"), (("PYTHONPATH", "/a b/main"),))
    script = tmp_path / "show.sh"
    script.write_text("#!/bin/sh\necho \"$PYTHONPATH|$*\"\n")
    script.chmod(0o755)
    line = str(command).replace("python -m", str(script), 1)
    out = subprocess.run(["sh", "-c", line], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "/a b/main|tools.benchmark --data_path /a b/data"
