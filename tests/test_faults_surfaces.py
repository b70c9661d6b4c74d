"""Issue 23: the promises of issue 15 (nothing written is lost, nothing hangs on a user's number, one line
and exit 2 for bad input) kept on the later surfaces: tables, videos, predict and figures."""

from __future__ import annotations

import json
import os
from pathlib import Path
import queue
import resource
import shutil
import signal
import subprocess
import sys
import threading
import time

import numpy as np
import pytest
from PIL import Image

import utils
from conftest import PROCESS_DEADLINE_S
from fileio.atomic import OWNER_MARKER, atomic_folder, save_json
from synthetic import scenes
from training import run_folder

# Long enough never to finish on its own: the test stops it by signal once it trains.
LONG_TRAIN_ARGS = (
    "--height 64 --width 192 --batch_size 2 --num_epochs 50 --num_workers 0 --weights_init scratch "
    "--no_validation --input_check none --log_frequency 1 --keep_checkpoints 1"
)


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
    split_dir = scenes.generate(
        data, num_drives=2, frames_per_drive=6, scale=0.1, seed=2, test_stride=1, val_stride=2, workers=1
    )
    return data, split_dir


class LineReader:
    """A process's stderr, read line by line in a thread: a test can wait for a line with a deadline."""

    def __init__(self, stream) -> None:
        self.lines: queue.Queue = queue.Queue()
        self.seen: list[str] = []
        threading.Thread(target=self._read, args=(stream,), daemon=True).start()

    def _read(self, stream) -> None:
        for line in stream:
            self.lines.put(line)
        self.lines.put(None)

    def wait_for(self, text: str) -> None:
        end = time.monotonic() + PROCESS_DEADLINE_S
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
        while (line := self.lines.get(timeout=PROCESS_DEADLINE_S)) is not None:
            self.seen.append(line)
        return "".join(self.seen)


def start_table(data: str, split_dir: str, root) -> tuple[subprocess.Popen, LineReader, str]:
    """tools.reproduce on a one-row table in its own process group (a terminal's Ctrl-C signals a group)."""
    table = root / "one.json"
    table.write_text(
        json.dumps({"name": "one", "rows": [{"name": "baseline", "train": "--config baseline"}]})
    )
    log_dir = str(root / "runs")
    argv = [
        sys.executable,
        "-m",
        "tools.reproduce",
        str(table),
        "--data_path",
        data,
        "--eval_split",
        split_dir,
        "--log_dir",
        log_dir,
        "--no_cost",
        f"--train_args=--split {split_dir} {LONG_TRAIN_ARGS}",
    ]
    proc = subprocess.Popen(
        argv,
        cwd=utils.PROJECT_DIR,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
        preexec_fn=sigint_as_from_a_terminal,
    )
    return proc, LineReader(proc.stderr), log_dir


def sigint_as_from_a_terminal() -> None:
    """In the child: SIGINT's default disposition, as a run started from a terminal has it (when the suite
    runs as a background job, SIGINT is ignored and the child would inherit that, and keep it:
    training/signals.py)."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def run_folder_of(log_dir: str) -> str:
    (name,) = [n for n in os.listdir(log_dir) if n.startswith("config_baseline")]
    return os.path.join(log_dir, name)


@pytest.mark.parametrize(
    "to_group, signum, code",
    [(True, signal.SIGINT, 130), (False, signal.SIGTERM, 143)],
    ids=["ctrl_c_to_the_group", "sigterm_to_the_runner_alone"],
)
def test_a_stopped_table_run_saves_the_training_and_frees_its_folder(
    scene_data, tmp_path, to_group, signum, code
):
    data, split_dir = scene_data
    proc, reader, log_dir = start_table(data, split_dir, tmp_path)
    try:
        reader.wait_for("| step 2/")  # train.py is training
        if to_group:
            os.killpg(proc.pid, signum)
        else:
            os.kill(proc.pid, signum)
        assert proc.wait(PROCESS_DEADLINE_S) == code, reader.rest()
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    output = reader.rest()
    assert "Traceback" not in output, output
    assert "the state is saved after this step" in output
    folder = run_folder_of(log_dir)
    checkpoints = os.listdir(os.path.join(folder, "checkpoints"))
    assert [n for n in checkpoints if n.endswith(".pth")], checkpoints
    run_folder.RunLock(folder).acquire().release()  # train.py has ended with the runner: the folder is free
    assert not os.path.exists(os.path.join(folder, "reproduce_train.json"))  # the stage is not marked done


def test_dry_run_lines_are_shell_lines_with_spaces_in_paths(tmp_path):
    """--dry_run prints commands a shell runs: the environment assignment is quoted as a value, not a word."""
    from reproduce.runner import Command

    command = Command(
        ("python", "-m", "tools.benchmark", "--data_path", "/a b/data"), (("PYTHONPATH", "/a b/main"),)
    )
    script = tmp_path / "show.sh"
    script.write_text('#!/bin/sh\necho "$PYTHONPATH|$*"\n')
    script.chmod(0o755)
    line = str(command).replace("python -m", str(script), 1)
    out = subprocess.run(["sh", "-c", line], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "/a b/main|tools.benchmark --data_path /a b/data"


# ------------------------------------------------------------------------------------------------
# 2. numbers no camera has are refused before anything loops on them
# ------------------------------------------------------------------------------------------------
def write_sequence(folder, count: int = 4, size=(48, 16), intrinsics: dict | bytes | None = None) -> None:
    """A sequence folder of ``count`` random PNG frames and, when given, its intrinsics.json."""
    rng = np.random.default_rng(0)
    os.makedirs(folder, exist_ok=True)
    for i in range(count):
        Image.fromarray(rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)).save(
            os.path.join(folder, f"{i:010d}.png")
        )
    if intrinsics is not None:
        data = intrinsics if isinstance(intrinsics, bytes) else json.dumps(intrinsics).encode()
        with open(os.path.join(folder, "intrinsics.json"), "wb") as f:
            f.write(data)


@pytest.mark.parametrize(
    "intrinsics, words",
    [
        ({"fx": 1e308, "fy": 1e308, "cx": 24, "cy": 8}, ["intrinsics.json", "fx 1e+308", "0.01..100"]),
        ({"fx": 1e-3, "fy": 1e-3, "cx": 24, "cy": 8}, ["intrinsics.json", "fx 0.001", "0.01..100"]),
        (b'{"fx": 30, "fy": 30, "cx": 24, "cy": 8, "note": "\xe9t\xe9"}', ["intrinsics.json", "not UTF-8"]),
    ],
)
def test_intrinsics_no_camera_has_are_one_line_in_prepare_sequences_and_train(
    tmp_path, capsys, intrinsics, words
):
    from tools import prepare_sequences

    data = tmp_path / "data"
    write_sequence(data / "a", intrinsics=intrinsics)
    write_sequence(data / "b", intrinsics={"fx": 30, "fy": 30, "cx": 24, "cy": 8})
    one_line_error(capsys, utils.run_cli(prepare_sequences.main, ["--data_path", str(data)]), *words)
    assert not os.path.exists(data / "splits")
    # the training data loader meets the same file (train.py reads its sequences with read_sequence)
    from datasets.folders import read_sequence

    with pytest.raises(utils.InputError, match="intrinsics.json"):
        read_sequence(str(data), "a")


def reference_keep(fps: float, tolerance: float, times) -> list[bool]:
    """RateSampler's rule as a loop over ticks (what it computed before; fine for small numbers)."""
    period, tick, kept = 1 / fps, 0, []
    for time_s in times:
        if time_s < tick * period - tolerance:
            kept.append(False)
            continue
        while tick * period <= time_s + tolerance:
            tick += 1
        kept.append(True)
    return kept


@pytest.mark.parametrize(
    "source_fps, fps", [(30, 10), (29.97, 10), (30, 7.3), (60, 1000), (24, 0.5), (30, 30)]
)
def test_the_rate_sampler_computes_its_next_tick_and_keeps_the_same_frames(source_fps, fps):
    from datasets.video_files import RateSampler, frame_rate_tolerance

    rng = np.random.default_rng(1)
    times = np.cumsum(rng.uniform(0.5, 1.5, 400) / source_fps)  # a variable frame rate around source_fps
    sampler = RateSampler(fps, frame_rate_tolerance(source_fps))
    assert [sampler.keep(t) for t in times] == reference_keep(fps, frame_rate_tolerance(source_fps), times)
    late = RateSampler(fps)
    assert late.keep(0.0) and late.keep(3.6e6)  # an hour-long gap: one computation, not millions of ticks
    assert late.tick == int(3.6e6 * fps) + 1 and not late.keep(3.6e6)


@pytest.mark.parametrize("command", ["predict", "import_video"])
@pytest.mark.parametrize("fps", ["1e300", "1e9", "inf", "nan", "-5"])
def test_rates_no_camera_has_are_refused_by_the_parsers(tmp_path, monkeypatch, capsys, command, fps):
    import predict
    from tools import import_video

    monkeypatch.chdir(tmp_path)
    argv = (
        ["--exported", "m.onnx", "--image_path", "v.mp4"] if command == "predict" else ["v.mp4", "--out", "o"]
    )
    with pytest.raises(SystemExit) as stopped:
        utils.run_cli(predict.main if command == "predict" else import_video.main, argv + ["--fps", fps])
    err = capsys.readouterr().err
    assert stopped.value.code == utils.EXIT_ERROR and "Traceback" not in err
    assert f"argument --fps: a frame rate must lie in (0, 1000] frames per second, got {fps}" in err
    assert os.listdir(tmp_path) == []


# ------------------------------------------------------------------------------------------------
# 3. a disk that fills part-way through a checkpoint
# ------------------------------------------------------------------------------------------------
def limit_file_size(max_bytes: int):
    """preexec_fn: files of the process cannot grow beyond ``max_bytes``; a write past it fails part-way
    (EFBIG, as ENOSPC on a full disk) instead of killing the process (SIGXFSZ ignored)."""

    def limit():
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (max_bytes, max_bytes))

    return limit


def test_a_checkpoint_write_that_fails_part_way_is_one_line_and_the_previous_checkpoint_stays(tmp_path):
    import test_reliability

    from checkpoints import training_state
    from synthetic.kitti_frames import make_tiny_kitti

    tiny = make_tiny_kitti(str(tmp_path / "data"), exts=("png",))
    args = test_reliability.run_args(tiny, tmp_path, "--num_workers", "0", "--checkpoint_every", "1")
    first = test_reliability.start([*args, "--max_steps", "1"])
    code, err = test_reliability.finish(first)
    assert code == 0, err
    run = tmp_path / "fsre" / "checkpoints"
    (saved,) = os.listdir(run)
    size = os.path.getsize(run / saved)
    # the resumed run's next checkpoint stops growing half-way: torch's writer then reported "unexpected pos"
    second = test_reliability.start(
        [*args, "--max_steps", "2", "--resume"], preexec_fn=limit_file_size(size // 2)
    )
    code, err = test_reliability.finish(second)
    assert code == utils.EXIT_ERROR and "Traceback" not in err, err
    assert err.strip().splitlines()[-1] == (
        f"error: cannot write {run / 'step_00000002.pth'}: File too large; the last complete training "
        f"state is "
        f"{run / saved}"
    )
    assert os.listdir(run) == [saved]  # no half-written file left, the previous one whole
    assert training_state.load_checkpoint(str(run / saved))["step"] == 1


# ------------------------------------------------------------------------------------------------
# 5. per-class evaluation and figures: names, outputs and numbers refused before the work
# ------------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def model_folders(tmp_path_factory):
    """Two random-weight baseline model folders that share their base name (weights_0_best)."""
    import torch

    import options
    from checkpoints import model_folder
    from model import FSREModel

    root = tmp_path_factory.mktemp("models")
    opts = options.parse_args(
        ["--config", "baseline", "--height", "64", "--width", "192", "--weights_init", "scratch"]
    )
    torch.manual_seed(0)
    return [
        model_folder.save_model_folder(str(root / run / "weights_0_best"), FSREModel(opts).networks(), opts)
        for run in ("run_a", "run_b")
    ]


def test_evaluate_per_class_refuses_models_of_one_name_and_a_file_as_output_dir(
    scene_data, model_folders, tmp_path, monkeypatch, capsys
):
    from evaluation import depth as evaluation_depth
    from tools import evaluate_per_class

    def no_prediction(*args, **kwargs):
        raise AssertionError("predicted before refusing")

    monkeypatch.setattr(evaluation_depth, "predict_disparities", no_prediction)
    monkeypatch.setattr(evaluate_per_class, "predict_disparities", no_prediction)
    data, split_dir = scene_data
    base = [
        "--data_path",
        data,
        "--eval_split",
        split_dir,
        "--num_workers",
        "0",
        "--no_chart",
        "--output_dir",
        str(tmp_path / "out"),
    ]
    for extra, name in (([], "weights_0_best"), (["--names", "same", "same"], "same")):
        with pytest.raises(SystemExit) as stopped:
            evaluate_per_class.main(base + ["--load_weights_folder", *model_folders, *extra])
        assert stopped.value.code == utils.EXIT_ERROR
        assert f"two models would be named {name!r}" in capsys.readouterr().err
    in_the_way = tmp_path / "a_file"
    in_the_way.write_text("keep me")
    code = utils.run_cli(
        evaluate_per_class.main, base[:-1] + [str(in_the_way), "--load_weights_folder", model_folders[0]]
    )
    one_line_error(capsys, code, str(in_the_way), "a file is in the way")
    assert in_the_way.read_text() == "keep me" and not os.path.exists(tmp_path / "out")


def test_ext_disp_without_pixels_or_with_zero_disparities_is_one_line(scene_data, tmp_path, capsys):
    import evaluate_depth

    data, split_dir = scene_data
    count = len(open(os.path.join(split_dir, "test_files.txt")).read().split("\n")) - 1
    empty, zeros = tmp_path / "empty.npy", tmp_path / "zeros.npy"
    np.save(empty, np.zeros((count, 0, 192), np.float32))
    np.save(zeros, np.zeros((count, 16, 48), np.float32))
    base = ["--data_path", data, "--eval_split", split_dir, "--num_workers", "0"]
    code = utils.run_cli(evaluate_depth.main, base + ["--ext_disp_to_eval", str(empty)])
    one_line_error(capsys, code, str(empty), f"({count}, 0, 192)")
    code = utils.run_cli(evaluate_depth.main, base + ["--ext_disp_to_eval", str(zeros)])
    one_line_error(capsys, code, "prediction 0 (line 1 of the test split)", "not finite")


@pytest.mark.parametrize("width", ["nan", "1e9", "-1", "inf"])
def test_figure_widths_no_page_has_are_one_line(scene_data, tmp_path, capsys, width):
    from tools import figures as figures_tool

    data, split_dir = scene_data
    code = utils.run_cli(
        figures_tool.main,
        ["--data_path", data, "--eval_split", split_dir, "--width", width, "--output", str(tmp_path / "fig")],
    )
    one_line_error(capsys, code, f"--width {width}", "(0, 50]")
    assert os.listdir(tmp_path) == []


@pytest.mark.needs("matplotlib")
def test_figures_refuse_unknown_thin_classes_and_empty_ext_disp(scene_data, tmp_path, capsys):
    from tools import figures as figures_tool

    data, split_dir = scene_data
    base = [
        "--data_path",
        data,
        "--eval_split",
        split_dir,
        "--output",
        str(tmp_path / "fig"),
        "--num_workers",
        "0",
    ]
    with pytest.raises(SystemExit) as stopped:
        figures_tool.main(base + ["--select", "thin", "--thin_classes", "bogus", "pole"])
    assert stopped.value.code == utils.EXIT_ERROR
    assert "--thin_classes: unknown classes ['bogus']" in capsys.readouterr().err
    count = len(open(os.path.join(split_dir, "test_files.txt")).read().split("\n")) - 1
    empty = tmp_path / "empty.npy"
    np.save(empty, np.zeros((count, 0, 192), np.float32))
    code = utils.run_cli(figures_tool.main, base + ["--ext_disp", f"x={empty}", "--frames", "0"])
    one_line_error(capsys, code, str(empty), f"({count}, 0, 192)")


# ------------------------------------------------------------------------------------------------
# 6, 7. a user's table: run-owned options in rows, names that leave --output_dir, malformed files
# ------------------------------------------------------------------------------------------------
def table_error(capsys, tmp_path, content: str | bytes, *names: str) -> str:
    """tools.reproduce --dry_run on a table file: one line naming ``names``; nothing written."""
    from tools import reproduce

    table = tmp_path / "mine.json"
    table.write_bytes(content if isinstance(content, bytes) else content.encode())
    out = tmp_path / "out"
    code = utils.run_cli(
        reproduce.main,
        [str(table), "--data_path", str(tmp_path), "--log_dir", str(out), "--dry_run", "--no_cost"],
    )
    message = one_line_error(capsys, code, *names)
    assert not out.exists()
    return message


@pytest.mark.parametrize(
    "option", ["--seed 7", "--log_dir /elsewhere", "--model_name x", "--seed=7", "--resume"]
)
def test_run_owned_options_in_a_row_are_refused(tmp_path, capsys, option):
    rows = [{"name": "mine", "train": f"--config baseline {option}"}]
    table_error(
        capsys,
        tmp_path,
        json.dumps({"rows": rows}),
        "row 'mine'",
        option.split()[0].split("=")[0],
        "set by the runner",
    )


@pytest.mark.parametrize(
    "content, names",
    [
        (
            '{"name": "../../../x", "rows": [{"name": "a", "train": "--config baseline"}]}',
            ["'../../../x'", "no folders"],
        ),
        ('{"name": "sub/x", "rows": [{"name": "a", "train": "--config baseline"}]}', ["'sub/x'"]),
        (
            '{"rows": [{"name": "a", "train": "--config \'baseline"}]}',
            ["rows[0]", "do not split as a shell line"],
        ),
        ('{"rows": [{"name": ["a", "b"], "train": "--config baseline"}]}', ["rows[0]", "non-empty string"]),
        (
            '{"notes": "one note", "rows": [{"name": "a", "train": "--config baseline"}]}',
            ["notes", "list of strings"],
        ),
        ('{"notes": 3, "rows": [{"name": "a", "train": "--config baseline"}]}', ["notes", "list of strings"]),
        (
            b'{"title": "\xe9t\xe9", "rows": [{"name": "a", "train": "--config baseline"}]}',
            ["mine.json", "not UTF-8"],
        ),
    ],
    ids=[
        "parent_folders",
        "a_folder",
        "unterminated_quote",
        "list_as_name",
        "string_notes",
        "number_notes",
        "not_utf8",
    ],
)
def test_malformed_user_tables_are_one_line(tmp_path, capsys, content, names):
    table_error(capsys, tmp_path, content, *names)


def test_a_record_edited_without_its_metrics_makes_its_stage_run_again(tmp_path, capsys):
    from reproduce import runner, tables

    table = tables.Table("t", "t", (tables.Row("a", ("--config", "baseline")),), eval_split=str(tmp_path))
    settings = runner.Settings(data_path=str(tmp_path), log_dir=str(tmp_path / "runs"), seeds=[0], cost=False)
    (run,) = runner.plan(table, settings)
    os.makedirs(run.folder)
    for stage in run.stages:  # every stage done, with what it wrote ...
        save_json(
            {"command": str(stage.command), **{key: {"metrics": {"abs_rel": 0.1}} for key in stage.outputs}},
            stage.record,
        )
    assert runner.pending([run]) == []
    evaluate = run.stages[-1]
    record = json.load(open(evaluate.record))
    del record["metrics"]  # ... then the evaluation's record is edited by hand
    save_json(record, evaluate.record)
    assert [stage.name for _, stage in runner.pending([run])] == [evaluate.name]


# ------------------------------------------------------------------------------------------------
# 8, 10. sequences named as the project's own folders; a second camera that is the first
# ------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("name", ["splits", "segmentation"])
def test_a_sequence_named_as_a_project_folder_is_refused_not_dropped(tmp_path, capsys, name):
    from tools import prepare_sequences

    data = tmp_path / "data"
    camera = {"fx": 30, "fy": 30, "cx": 24, "cy": 8}
    write_sequence(data / "a", count=6, intrinsics=camera)
    write_sequence(data / name, count=6, intrinsics=camera)
    before = sorted(os.listdir(data / name))
    code = utils.run_cli(prepare_sequences.main, ["--data_path", str(data)])
    one_line_error(capsys, code, str(data / name), "rename the sequence")
    assert sorted(os.listdir(data / name)) == before  # no split file among its frames


def test_a_stereo_folder_that_is_the_sequence_itself_is_refused(tmp_path, capsys):
    from tools import prepare_sequences

    data = tmp_path / "data"
    for folder in (".", "./"):
        write_sequence(
            data / "a",
            count=6,
            intrinsics={"fx": 30, "fy": 30, "cx": 24, "cy": 8, "stereo": {"folder": folder, "baseline": 0.5}},
        )
        code = utils.run_cli(prepare_sequences.main, ["--data_path", str(data)])
        one_line_error(capsys, code, "intrinsics.json", f"stereo folder {folder!r}", "subfolder")


def test_prepare_sequences_takes_frame_ids_0_and_names_a_truncated_jpeg(tmp_path, capsys):
    from tools import prepare_sequences

    data = tmp_path / "data"
    camera = {"fx": 30, "fy": 30, "cx": 24, "cy": 8}
    for name in ("a", "b", "c"):
        write_sequence(data / name, count=5, intrinsics=camera)
    # --frame_ids 0 (stereo-only training, README): every frame of a training sequence is a line
    assert (
        prepare_sequences.main(
            ["--data_path", str(data), "--frame_ids", "0", "--val_sequences", "b", "--test_sequences", "c"]
        )
        == 0
    )
    lines = (data / "splits" / "train_files.txt").read_text().split()
    assert (data / "splits" / "train_files.txt").read_text().splitlines() == [f"a {i} l" for i in range(5)], (
        lines
    )
    # a JPEG cut short after its header: named, no traceback, the splits written before are kept
    shutil.rmtree(data / "c")
    jpeg = data / "c" / "0000000002.jpg"
    write_sequence(data / "c", count=5, intrinsics=camera)
    Image.open(data / "c" / "0000000002.png").save(jpeg, quality=95)
    os.remove(data / "c" / "0000000002.png")
    content = jpeg.read_bytes()
    jpeg.write_bytes(content[: len(content) // 2])
    before = (data / "splits" / "train_files.txt").read_text()
    for workers in ("0", "2"):
        code = utils.run_cli(prepare_sequences.main, ["--data_path", str(data), "--num_workers", workers])
        one_line_error(capsys, code, str(jpeg), "cannot decode")
    assert (data / "splits" / "train_files.txt").read_text() == before


# ------------------------------------------------------------------------------------------------
# 11. a --max_steps stop in mid-epoch is saved as such, and a larger budget finishes that epoch
# ------------------------------------------------------------------------------------------------
def test_a_step_budget_that_ends_mid_epoch_is_resumed_mid_epoch(tmp_path):
    import test_reliability
    import torch
    from tb_reader import read_run

    import options
    from checkpoints import training_state
    from synthetic.kitti_frames import make_tiny_kitti
    from trainer import Trainer

    tiny = make_tiny_kitti(str(tmp_path / "data"), exts=("png",))
    run = tmp_path / "fsre"

    def train(steps: int) -> None:
        # 3 steps per epoch (6 items, batch 2); --lr_milestones 1: the rate drops tenfold when epoch 0 ends
        args = test_reliability.run_args(
            tiny, tmp_path, "--num_workers", "0", "--resume", "--max_steps", str(steps)
        )
        Trainer(options.parse_args(args)).train()

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        train(2)
        state = training_state.load_checkpoint(str(run / "checkpoints" / "step_00000002.pth"))
        assert (state["epoch"], state["batch_in_epoch"], state["step"]) == (0, 2, 2)
        assert state["scheduler"]["last_epoch"] == 0  # no learning-rate step after a partial epoch
        assert os.path.isdir(run / "models" / "weights_0")  # the budget's end still gives a model folder
        mtime = os.path.getmtime(run / "checkpoints" / "step_00000002.pth")
        train(2)  # the same budget again: nothing to train, nothing rewritten
        assert os.path.getmtime(run / "checkpoints" / "step_00000002.pth") == mtime
        train(4)  # a larger budget: the third batch of epoch 0, its end, then a step of epoch 1
        state = training_state.load_checkpoint(str(run / "checkpoints" / "step_00000004.pth"))
        assert (state["epoch"], state["batch_in_epoch"], state["step"]) == (1, 1, 4)
        assert state["scheduler"]["last_epoch"] == 1
    finally:
        torch.set_num_threads(threads)
        torch.use_deterministic_algorithms(False)
    scalars, _ = read_run(str(run / "train"))
    rates = dict(scalars["learning_rate"])
    learning_rate = options.parse_args([]).learning_rate
    assert rates[2] == pytest.approx(learning_rate) and rates[3] == pytest.approx(learning_rate / 10)


# ------------------------------------------------------------------------------------------------
# 4. predict: outputs that would overwrite each other, and what stands in their way, refused up front
# ------------------------------------------------------------------------------------------------
def write_image(path, seed: int = 0, size=(48, 16)) -> None:
    os.makedirs(os.path.dirname(path), exist_ok=True)
    rgb = np.random.default_rng(seed).integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)
    Image.fromarray(rgb).save(path)


def predict_error(capsys, argv, *names) -> str:
    import predict

    return one_line_error(capsys, utils.run_cli(predict.main, argv), *names)


def test_predict_refuses_outputs_that_would_overwrite_each_other_before_any_work(
    model_folders, tmp_path, capsys
):
    folder, one, two, out = tmp_path / "shots", tmp_path / "one", tmp_path / "two", tmp_path / "out"
    write_image(str(folder / "frame.jpg"), 0)
    write_image(str(folder / "frame.png"), 1)
    write_image(str(one / "frame.jpg"), 2)
    write_image(str(two / "frame.jpg"), 3)
    model = ["--load_weights_folder", model_folders[0], "--device", "cpu"]
    # two images of one name in one folder, outputs beside them
    predict_error(
        capsys,
        model + ["--image_path", str(folder)],
        str(folder / "frame.jpg"),
        str(folder / "frame.png"),
        "would both write",
    )
    assert sorted(os.listdir(folder)) == ["frame.jpg", "frame.png"]
    # two folders each holding frame.jpg, into one --output_dir
    predict_error(
        capsys,
        model + ["--image_path", str(one), str(two), "--output_dir", str(out)],
        str(one / "frame.jpg"),
        str(two / "frame.jpg"),
        str(out / "frame_disp"),
    )
    assert not out.exists()
    # --output_dir that is a file; a folder where an output file goes
    out.write_text("keep")
    predict_error(
        capsys, model + ["--image_path", str(one), "--output_dir", str(out)], str(out), "a file is in the way"
    )
    assert out.read_text() == "keep"
    os.makedirs(one / "frame_disp.png")
    predict_error(
        capsys,
        model + ["--image_path", str(one / "frame.jpg")],
        str(one / "frame_disp.png"),
        "a folder is in the way",
    )
    # each on its own: predicted as before
    import predict

    assert predict.main(model + ["--image_path", str(two)]) == 0
    assert sorted(os.listdir(two)) == ["frame.jpg", "frame_depth.npy", "frame_disp.npy", "frame_disp.png"]


@pytest.mark.parametrize(
    "suffix", [pytest.param(".onnx", marks=pytest.mark.needs("onnxruntime")), ".pt2", ".pt"]
)
def test_predict_with_a_junk_exported_file_is_one_line(tmp_path, capsys, suffix):
    junk = tmp_path / f"model{suffix}"
    junk.write_bytes(b"PK\x03\x04 not a model at all" * 10)
    write_image(str(tmp_path / "a.png"))
    predict_error(capsys, ["--exported", str(junk), "--image_path", str(tmp_path / "a.png")], str(junk))
    assert sorted(os.listdir(tmp_path)) == ["a.png", junk.name]


# ------------------------------------------------------------------------------------------------
# 9 and videos: truncation judged by the video stream, frame times kept, nothing half-written
# ------------------------------------------------------------------------------------------------
VIDEO_W, VIDEO_H = 64, 48


def write_video(path, times, audio_s: float = 0.0, codec: str = "mpeg4") -> list[np.ndarray]:
    """A video whose frames (random, returned) play at ``times`` (seconds; a variable rate where they are
    uneven), with a silent audio track of ``audio_s`` seconds when positive."""
    from fractions import Fraction

    import av

    time_base = Fraction(1, 1000)
    rng = np.random.default_rng(len(times))
    frames = [rng.integers(0, 256, (VIDEO_H, VIDEO_W, 3), dtype=np.uint8) for _ in times]
    with av.open(str(path), "w") as container:
        video = container.add_stream(codec, rate=round(len(times) / max(times[-1], 1e-3)))
        video.width, video.height, video.pix_fmt = VIDEO_W, VIDEO_H, "yuv420p"
        video.codec_context.time_base = video.time_base = time_base
        audio = container.add_stream("aac", rate=16000) if audio_s > 0 else None
        for rgb, time_s in zip(frames, times):
            frame = av.VideoFrame.from_ndarray(rgb, format="rgb24")
            frame.pts, frame.time_base = round(time_s * 1000), time_base
            container.mux(video.encode(frame))
        container.mux(video.encode())
        if audio is not None:
            for start in range(0, int(audio_s * 16000), 1024):
                chunk = av.AudioFrame.from_ndarray(
                    np.zeros((1, 1024), np.float32), format="fltp", layout="mono"
                )
                chunk.sample_rate, chunk.pts = 16000, start
                container.mux(audio.encode(chunk))
            container.mux(audio.encode())
    return frames


def frame_times(path) -> list[float]:
    import av

    with av.open(str(path)) as container:
        return [round(float(frame.time), 3) for frame in container.decode(container.streams.video[0])]


@pytest.mark.parametrize("container", ["mkv", "mp4"])
@pytest.mark.needs("av")
def test_a_video_whose_audio_runs_longer_is_imported_and_predicted_whole(
    model_folders, tmp_path, capsys, container
):
    import predict
    from tools import import_video

    video = tmp_path / f"clip.{container}"
    times = [i / 10 for i in range(10)]  # one second of video at 10 fps, two of audio
    write_video(video, times, audio_s=2.0)
    out = tmp_path / "data"
    assert import_video.main([str(video), "--out", str(out), "--fov", "90", "--fps", "10"]) == 0
    assert len([n for n in os.listdir(out / "clip") if n.endswith(".jpg")]) == 10
    assert (
        predict.main(
            [
                "--load_weights_folder",
                model_folders[0],
                "--device",
                "cpu",
                "--image_path",
                str(video),
                "--output_dir",
                str(tmp_path / "pred"),
            ]
        )
        == 0
    )
    assert frame_times(tmp_path / "pred" / "clip_depth.mp4") == pytest.approx(times, abs=1e-3)


@pytest.mark.needs("av")
def test_a_variable_frame_rate_depth_video_keeps_the_frame_times(model_folders, tmp_path):
    import predict

    video = tmp_path / "vfr.mp4"
    times = [0.0, 0.1, 0.2, 0.6, 0.7, 1.2, 1.3, 2.0]  # a nominal rate says little of when these play
    write_video(video, times)
    assert (
        predict.main(
            [
                "--load_weights_folder",
                model_folders[0],
                "--device",
                "cpu",
                "--image_path",
                str(video),
                "--output_dir",
                str(tmp_path / "pred"),
            ]
        )
        == 0
    )
    assert frame_times(tmp_path / "pred" / "vfr_depth.mp4") == pytest.approx(times, abs=1e-3)


@pytest.mark.needs("av")
def test_predict_video_failures_leave_their_outputs_as_they_were(model_folders, tmp_path, capsys):
    from datasets.video_files import VideoWriter

    model = [
        "--load_weights_folder",
        str(tmp_path / "no_model"),
        "--device",
        "cpu",
    ]  # refusals come before it
    video = tmp_path / "clip.mp4"
    write_video(video, [i / 10 for i in range(5)])
    os.makedirs(tmp_path / "clip_depth.mp4")
    predict_error(
        capsys,
        model + ["--image_path", str(video)],
        str(tmp_path / "clip_depth.mp4"),
        "a folder is in the way",
    )
    os.rmdir(tmp_path / "clip_depth.mp4")
    # a truncated video fails once its frames are read: its arrays of this run are not left behind, and
    # those of an earlier run stay
    rng = np.random.default_rng(0)
    whole = tmp_path / "long.mkv"
    with VideoWriter(str(whole), 30) as writer:
        for _ in range(60):
            writer.write(rng.integers(0, 256, (32, 64, 3), dtype=np.uint8))
    truncated = tmp_path / "cut.mkv"
    truncated.write_bytes(whole.read_bytes()[: whole.stat().st_size // 2])
    earlier = tmp_path / "out" / "cut_frames"
    with atomic_folder(str(earlier)) as folder:  # an earlier run's: the project's own, with its marker
        (Path(folder) / "0000000000_disp.npy").write_bytes(b"an earlier run's")
    predict_error(
        capsys,
        [
            "--load_weights_folder",
            model_folders[0],
            "--device",
            "cpu",
            "--image_path",
            str(truncated),
            "--save_npy",
            "--output_dir",
            str(tmp_path / "out"),
        ],
        str(truncated),
        "truncated",
    )
    assert sorted(os.listdir(tmp_path / "out")) == ["cut_frames"]
    assert sorted(os.listdir(earlier)) == sorted([OWNER_MARKER, "0000000000_disp.npy"])
    assert (earlier / "0000000000_disp.npy").read_bytes() == b"an earlier run's"


@pytest.mark.needs("av")
def test_import_video_refuses_focal_lengths_no_camera_has_before_writing(tmp_path, capsys):
    from tools import import_video

    video = tmp_path / "clip.mp4"
    write_video(video, [i / 10 for i in range(5)])
    out = tmp_path / "data"
    code = utils.run_cli(
        import_video.main,
        [str(video), "--out", str(out), "--fx", "1e308", "--fy", "1e308", "--cx", "32", "--cy", "24"],
    )
    one_line_error(capsys, code, "--fx --fy --cx --cy", "fx 1e+308")
    assert not out.exists() or os.listdir(out) == []
    bad = tmp_path / "intrinsics.json"
    bad.write_bytes(b'{"fx": 40, "fy": 40, "cx": 32, "cy": 24, "by": "J\xfcrgen"}')
    code = utils.run_cli(import_video.main, [str(video), "--out", str(out), "--intrinsics", str(bad)])
    one_line_error(capsys, code, str(bad), "not UTF-8")


# ------------------------------------------------------------------------------------------------
# make_pseudo_labels: a checkpoint folder whose weights are a pickle
# ------------------------------------------------------------------------------------------------
class Marker:
    """Unpickling this writes a file: proof that a pickle was (or was not) loaded."""

    def __init__(self, path):
        self.path = path

    def __reduce__(self):
        return (open, (self.path, "w"))


@pytest.mark.needs("transformers")
def test_a_checkpoint_folder_with_pickled_weights_is_one_line_unread(tmp_path, capsys):
    import pickle

    import transformers

    from tools import make_pseudo_labels

    config = transformers.SegformerConfig(
        num_encoder_blocks=1,
        depths=[1],
        sr_ratios=[1],
        hidden_sizes=[8],
        patch_sizes=[3],
        strides=[2],
        num_attention_heads=[1],
        mlp_ratios=[1],
        decoder_hidden_size=8,
        num_labels=19,
    )
    folder = tmp_path / "checkpoint"
    transformers.SegformerForSemanticSegmentation(config).save_pretrained(
        str(folder), safe_serialization=False
    )
    transformers.SegformerImageProcessor().save_pretrained(str(folder))
    marker = tmp_path / "unpickled"
    if (folder / "model.safetensors").exists():  # transformers 5 writes safetensors whatever it is asked
        os.remove(folder / "model.safetensors")
    with open(folder / "pytorch_model.bin", "wb") as f:
        pickle.dump(Marker(str(marker)), f)
    write_image(str(tmp_path / "frames" / "0000000000.png"))
    code = utils.run_cli(
        make_pseudo_labels.main,
        [
            "--image_dirs",
            str(tmp_path / "frames"),
            "--model",
            str(folder),
            "--seg_path",
            str(tmp_path / "labels"),
            "--num_workers",
            "0",
        ],
    )
    one_line_error(capsys, code, f"--model {folder}", "never unpickled")
    assert not marker.exists()
