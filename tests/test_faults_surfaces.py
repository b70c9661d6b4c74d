"""Issue 23: the promises of issue 15 (nothing written is lost, nothing hangs on a user's number, one line
and exit 2 for bad input) kept on the later surfaces: tables, videos, predict and figures."""
from __future__ import annotations

import json
import os
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


# ------------------------------------------------------------------------------------------------
# 2. numbers no camera has are refused before anything loops on them
# ------------------------------------------------------------------------------------------------
def write_sequence(folder, count: int = 4, size=(48, 16), intrinsics: dict | bytes | None = None) -> None:
    """A sequence folder of ``count`` random PNG frames and, when given, its intrinsics.json."""
    rng = np.random.default_rng(0)
    os.makedirs(folder, exist_ok=True)
    for i in range(count):
        Image.fromarray(rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)).save(
            os.path.join(folder, f"{i:010d}.png"))
    if intrinsics is not None:
        data = intrinsics if isinstance(intrinsics, bytes) else json.dumps(intrinsics).encode()
        with open(os.path.join(folder, "intrinsics.json"), "wb") as f:
            f.write(data)


@pytest.mark.parametrize("intrinsics, words", [
    ({"fx": 1e308, "fy": 1e308, "cx": 24, "cy": 8}, ["intrinsics.json", "fx 1e+308", "0.01..100"]),
    ({"fx": 1e-3, "fy": 1e-3, "cx": 24, "cy": 8}, ["intrinsics.json", "fx 0.001", "0.01..100"]),
    (b'{"fx": 30, "fy": 30, "cx": 24, "cy": 8, "note": "\xe9t\xe9"}', ["intrinsics.json", "not UTF-8"]),
])
def test_intrinsics_no_camera_has_are_one_line_in_prepare_sequences_and_train(tmp_path, capsys, intrinsics, words):
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


@pytest.mark.parametrize("source_fps, fps", [(30, 10), (29.97, 10), (30, 7.3), (60, 1000), (24, 0.5), (30, 30)])
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
    argv = (["--exported", "m.onnx", "--image_path", "v.mp4"] if command == "predict" else ["v.mp4", "--out", "o"])
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
    second = test_reliability.start([*args, "--max_steps", "2", "--resume"], preexec_fn=limit_file_size(size // 2))
    code, err = test_reliability.finish(second)
    assert code == utils.EXIT_ERROR and "Traceback" not in err, err
    assert err.strip().splitlines()[-1] == (
        f"error: cannot write {run / 'step_00000002.pth'}: File too large; the last complete training state is "
        f"{run / saved}")
    assert os.listdir(run) == [saved]  # no half-written file left, the previous one whole
    assert training_state.load_checkpoint(str(run / saved))["step"] == 1


# ------------------------------------------------------------------------------------------------
# 5. per-class evaluation and figures: names, outputs and numbers refused before the work
# ------------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def model_folders(tmp_path_factory):
    """Two random-weight baseline model folders that share their base name (weights_0_best)."""
    import options
    import torch
    from checkpoints import model_folder
    from model import FSREModel
    root = tmp_path_factory.mktemp("models")
    opts = options.parse_args(["--config", "baseline", "--height", "64", "--width", "192", "--weights_init", "scratch"])
    torch.manual_seed(0)
    return [model_folder.save_model_folder(str(root / run / "weights_0_best"), FSREModel(opts).networks(), opts)
            for run in ("run_a", "run_b")]


def test_evaluate_per_class_refuses_models_of_one_name_and_a_file_as_output_dir(scene_data, model_folders, tmp_path,
                                                                                monkeypatch, capsys):
    from evaluation import depth as evaluation_depth
    from tools import evaluate_per_class

    def no_prediction(*args, **kwargs):
        raise AssertionError("predicted before refusing")

    monkeypatch.setattr(evaluation_depth, "predict_disparities", no_prediction)
    monkeypatch.setattr(evaluate_per_class, "predict_disparities", no_prediction)
    data, split_dir = scene_data
    base = ["--data_path", data, "--eval_split", split_dir, "--num_workers", "0", "--no_chart",
            "--output_dir", str(tmp_path / "out")]
    for extra, name in (([], "weights_0_best"), (["--names", "same", "same"], "same")):
        with pytest.raises(SystemExit) as stopped:
            evaluate_per_class.main(base + ["--load_weights_folder", *model_folders, *extra])
        assert stopped.value.code == utils.EXIT_ERROR
        assert f"two models would be named {name!r}" in capsys.readouterr().err
    in_the_way = tmp_path / "a_file"
    in_the_way.write_text("keep me")
    code = utils.run_cli(evaluate_per_class.main, base[:-1] + [str(in_the_way), "--load_weights_folder",
                                                               model_folders[0]])
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
    code = utils.run_cli(figures_tool.main, ["--data_path", data, "--eval_split", split_dir, "--width", width,
                                             "--output", str(tmp_path / "fig")])
    one_line_error(capsys, code, f"--width {width}", "(0, 50]")
    assert os.listdir(tmp_path) == []


def test_figures_refuse_unknown_thin_classes_and_empty_ext_disp(scene_data, tmp_path, capsys):
    pytest.importorskip("matplotlib", reason="matplotlib is optional (requirements-figures.txt)")
    from tools import figures as figures_tool
    data, split_dir = scene_data
    base = ["--data_path", data, "--eval_split", split_dir, "--output", str(tmp_path / "fig"), "--num_workers", "0"]
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
    code = utils.run_cli(reproduce.main, [str(table), "--data_path", str(tmp_path), "--log_dir", str(out),
                                          "--dry_run", "--no_cost"])
    message = one_line_error(capsys, code, *names)
    assert not out.exists()
    return message


@pytest.mark.parametrize("option", ["--seed 7", "--log_dir /elsewhere", "--model_name x", "--seed=7", "--resume"])
def test_run_owned_options_in_a_row_are_refused(tmp_path, capsys, option):
    rows = [{"name": "mine", "train": f"--config baseline {option}"}]
    table_error(capsys, tmp_path, json.dumps({"rows": rows}), "row 'mine'", option.split()[0].split("=")[0],
                "set by the runner")


@pytest.mark.parametrize("content, names", [
    ('{"name": "../../../x", "rows": [{"name": "a", "train": "--config baseline"}]}', ["'../../../x'", "no folders"]),
    ('{"name": "sub/x", "rows": [{"name": "a", "train": "--config baseline"}]}', ["'sub/x'"]),
    ('{"rows": [{"name": "a", "train": "--config \'baseline"}]}', ["rows[0]", "do not split as a shell line"]),
    ('{"rows": [{"name": ["a", "b"], "train": "--config baseline"}]}', ["rows[0]", "non-empty string"]),
    ('{"notes": "one note", "rows": [{"name": "a", "train": "--config baseline"}]}', ["notes", "list of strings"]),
    ('{"notes": 3, "rows": [{"name": "a", "train": "--config baseline"}]}', ["notes", "list of strings"]),
    (b'{"title": "\xe9t\xe9", "rows": [{"name": "a", "train": "--config baseline"}]}', ["mine.json", "not UTF-8"]),
], ids=["parent_folders", "a_folder", "unterminated_quote", "list_as_name", "string_notes", "number_notes",
        "not_utf8"])
def test_malformed_user_tables_are_one_line(tmp_path, capsys, content, names):
    table_error(capsys, tmp_path, content, *names)


def test_a_record_edited_without_its_metrics_makes_its_stage_run_again(tmp_path, capsys):
    from reproduce import runner, tables
    table = tables.Table("t", "t", (tables.Row("a", ("--config", "baseline")),), eval_split=str(tmp_path))
    settings = runner.Settings(data_path=str(tmp_path), log_dir=str(tmp_path / "runs"), seeds=[0], cost=False)
    (run,) = runner.plan(table, settings)
    os.makedirs(run.folder)
    for stage in run.stages:  # every stage done, with what it wrote ...
        utils.save_json({"command": str(stage.command), **{key: {"metrics": {"abs_rel": 0.1}} for key in stage.outputs}},
                        stage.record)
    assert runner.pending([run]) == []
    evaluate = run.stages[-1]
    record = json.load(open(evaluate.record))
    del record["metrics"]  # ... then the evaluation's record is edited by hand
    utils.save_json(record, evaluate.record)
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
        write_sequence(data / "a", count=6, intrinsics={"fx": 30, "fy": 30, "cx": 24, "cy": 8,
                                                         "stereo": {"folder": folder, "baseline": 0.5}})
        code = utils.run_cli(prepare_sequences.main, ["--data_path", str(data)])
        one_line_error(capsys, code, "intrinsics.json", f"stereo folder {folder!r}", "subfolder")


def test_prepare_sequences_takes_frame_ids_0_and_names_a_truncated_jpeg(tmp_path, capsys):
    from tools import prepare_sequences
    data = tmp_path / "data"
    camera = {"fx": 30, "fy": 30, "cx": 24, "cy": 8}
    for name in ("a", "b", "c"):
        write_sequence(data / name, count=5, intrinsics=camera)
    # --frame_ids 0 (stereo-only training, README): every frame of a training sequence is a line
    assert prepare_sequences.main(["--data_path", str(data), "--frame_ids", "0", "--val_sequences", "b",
                                   "--test_sequences", "c"]) == 0
    lines = (data / "splits" / "train_files.txt").read_text().split()
    assert (data / "splits" / "train_files.txt").read_text().splitlines() == [f"a {i} l" for i in range(5)], lines
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
