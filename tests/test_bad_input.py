"""Bad input, as a hostile user gives it: every command answers with one line naming the file, line or
option at fault (exit code 2, no traceback), runs no code from a data file, and leaves what was
already written as it was."""

import json
import os
import shutil
import struct
import subprocess
import sys
import zlib

import numpy as np
import pytest
from PIL import Image

import evaluate_depth
import evaluate_pose
import export_gt_depth
import predict
import train
import utils
from conftest import PROCESS_DEADLINE_S, PROJECT_DIR
from datasets.mono_dataset import open_image
from evaluation import ground_truth
from fileio.atomic import is_temporary
from synthetic.kitti_frames import DATE, DRIVE, make_tiny_kitti
from tools import benchmark, evaluate_per_class, prepare_kitti

PNG_SIGNATURE_BYTES = 8
IHDR_OFFSET = PNG_SIGNATURE_BYTES + 8  # the IHDR chunk's data, after its length and type
GOOD_DISPS = np.full((2, 4, 4), 0.5, np.float32)  # predictions and ground truth of a 2-line test split
GOOD_MAPS = [np.full((4, 4), 2.0, np.float32)] * 2


# ------------------------------------------------------------------------------------------------
# helpers
# ------------------------------------------------------------------------------------------------
@pytest.fixture()
def tiny(tmp_path):
    return make_tiny_kitti(str(tmp_path / "data"), exts=("png",))


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


def files_under(folder) -> dict:
    """Every file below a folder with its bytes: what 'nothing written was changed' compares."""
    found = {}
    for root, _, names in os.walk(folder):
        for name in names:
            path = os.path.join(root, name)
            with open(path, "rb") as f:
                found[os.path.relpath(path, folder)] = f.read()
    return found


def image_path(tiny, frame, camera="02"):
    return os.path.join(tiny.data_path, DRIVE, f"image_{camera}", "data", f"{frame:010d}.png")


def velodyne_path(tiny, frame):
    return os.path.join(tiny.data_path, DRIVE, "velodyne_points", "data", f"{frame:010d}.bin")


def split_folder(tmp_path, train_lines, val_lines=None, name="bad_split"):
    """A custom split folder; ``None`` leaves a file out, a list writes its lines as they are."""
    folder = tmp_path / name
    folder.mkdir()
    for file_name, lines in (("train_files.txt", train_lines), ("val_files.txt", val_lines)):
        if lines is not None:
            (folder / file_name).write_text("".join(line + "\n" for line in lines))
    return str(folder)


def train_args(tiny, tmp_path, *extra):
    return [
        "--data_path",
        tiny.data_path,
        "--split",
        tiny.split_dir,
        "--height",
        "64",
        "--width",
        "192",
        "--batch_size",
        "2",
        "--num_workers",
        "0",
        "--weights_init",
        "scratch",
        "--config",
        "baseline",
        "--log_dir",
        str(tmp_path / "logs"),
        "--max_steps",
        "1",
        "--num_epochs",
        "1",
        *extra,
    ]


def no_run_written(tmp_path):
    assert not os.path.exists(tmp_path / "logs")  # inputs are checked before the run folder exists


def write_test_split(tmp_path, lines, gt_maps=None):
    """A custom test split folder (test_files.txt, and gt_depths.npz of ``gt_maps`` when given)."""
    folder = tmp_path / "test_split"
    folder.mkdir()
    (folder / "test_files.txt").write_text("".join(line + "\n" for line in lines))
    if gt_maps is not None:
        ground_truth.save_ground_truth(gt_maps, str(folder / "gt_depths.npz"))
    return folder


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


class CreatesFile:
    """Pickled, it creates ``path`` when unpickled: the payload of a crafted ground-truth file."""

    def __init__(self, path):
        self.path = str(path)

    def __reduce__(self):
        return (open, (self.path, "w"))


def crafted_ground_truth(path, marker):
    """A gt_depths.npz in Monodepth2's format (an object array under "data") carrying the payload."""
    np.savez_compressed(path, data=np.array([CreatesFile(marker), np.ones((4, 4), np.float32)], dtype=object))


# ------------------------------------------------------------------------------------------------
# 1. a ground-truth file never runs code; a trusted Monodepth2 file is converted once
# ------------------------------------------------------------------------------------------------
def test_the_crafted_payload_runs_when_unpickled(tmp_path):
    """The control of the tests below: the crafted file does run code when NumPy unpickles it."""
    crafted_ground_truth(tmp_path / "gt.npz", tmp_path / "marker")
    with np.load(tmp_path / "gt.npz", allow_pickle=True) as data:
        data["data"]
    assert (tmp_path / "marker").exists()


def test_a_pickled_ground_truth_file_is_refused_without_running_its_code(tmp_path):
    split = write_test_split(tmp_path, [f"{DRIVE} 1 l", f"{DRIVE} 2 l"])
    crafted_ground_truth(split / "gt_depths.npz", tmp_path / "marker")
    np.save(tmp_path / "disps.npy", np.full((2, 32, 96), 0.1, np.float32))
    before = files_under(tmp_path)
    result = run_command(
        ["evaluate_depth.py", "--eval_split", str(split), "--ext_disp_to_eval", str(tmp_path / "disps.npy")]
    )
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert result.stderr.splitlines()[-1] == (
        f"error: {split / 'gt_depths.npz'} holds pickled Python objects (Monodepth2's format), "
        "which are never loaded: they could run code. "
        "If you trust the file, convert it once with `python export_gt_depth.py "
        f"--convert_monodepth2 {split / 'gt_depths.npz'} --output NEW.npz` and pass --gt_depths NEW.npz"
    )
    assert not (tmp_path / "marker").exists()
    assert files_under(tmp_path) == before


def test_evaluate_per_class_refuses_a_pickled_ground_truth_file_too(tmp_path, capsys):
    split = write_test_split(tmp_path, [f"{DRIVE} 1 l", f"{DRIVE} 2 l"])
    crafted_ground_truth(split / "gt_depths.npz", tmp_path / "marker")
    message = command_error(
        capsys,
        evaluate_per_class.main,
        [
            "--data_path",
            str(tmp_path),
            "--eval_split",
            str(split),
            "--load_weights_folder",
            str(tmp_path / "w"),
            "--output_dir",
            str(tmp_path / "out"),
            "--no_chart",
        ],
    )  # the chart (matplotlib) is optional
    assert "holds pickled Python objects" in message and "--convert_monodepth2" in message
    assert not (tmp_path / "marker").exists() and not (tmp_path / "out").exists()


def test_a_trusted_monodepth2_file_is_converted_once_and_then_evaluates(tmp_path, capsys):
    maps = [
        np.full((6, 8), 5.0, np.float32),
        np.full((5, 7), 10.0, np.float32),
    ]  # sizes differ: an object array
    legacy = tmp_path / "monodepth2_gt.npz"
    np.savez_compressed(legacy, data=np.array(maps, dtype=object))
    legacy_bytes = legacy.read_bytes()
    converted = tmp_path / "converted.npz"
    assert export_gt_depth.main(["--convert_monodepth2", str(legacy), "--output", str(converted)]) == 0
    assert legacy.read_bytes() == legacy_bytes
    loaded = ground_truth.load_ground_truth(str(converted))
    assert [m.tolist() for m in loaded] == [m.tolist() for m in maps]
    with np.load(converted, allow_pickle=False) as data:  # plain arrays only
        assert sorted(data.files) == ["depth_0000", "depth_0001"]
    # the converted file evaluates: a prediction of the right depth up to scale gives no error
    split = write_test_split(tmp_path, [f"{DRIVE} 1 l", f"{DRIVE} 2 l"])
    np.save(tmp_path / "disps.npy", np.full((2, 4, 4), 0.5, np.float32))
    assert (
        evaluate_depth.main(
            [
                "--eval_split",
                str(split),
                "--ext_disp_to_eval",
                str(tmp_path / "disps.npy"),
                "--gt_depths",
                str(converted),
                "--output_json",
                str(tmp_path / "m.json"),
            ]
        )
        == 0
    )
    assert json.load(open(tmp_path / "m.json"))["metrics"]["abs_rel"] == pytest.approx(0, abs=1e-6)


def test_the_converter_refuses_to_overwrite_its_input_and_needs_an_output(tmp_path, capsys):
    legacy = tmp_path / "gt_depths.npz"
    np.savez_compressed(legacy, data=np.array([np.ones((2, 2)), np.ones((3, 3))], dtype=object))
    before = files_under(tmp_path)
    assert "must differ from the file converted" in command_error(
        capsys, export_gt_depth.main, ["--convert_monodepth2", str(legacy), "--output", str(legacy)]
    )
    assert (
        option_error(capsys, export_gt_depth.main, ["--convert_monodepth2", str(legacy)])
        == "--convert_monodepth2 needs --output OUT.npz"
    )
    assert files_under(tmp_path) == before


# ------------------------------------------------------------------------------------------------
# 2. options that make no sense are refused by the parser, each with its reason
# ------------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "argv, message",
    [
        (
            "--min_depth 50 --max_depth 1",
            "--max_depth (1.0) must exceed --min_depth (50.0): they bound the depths the disparities map to",
        ),
        ("--min_depth -1", "argument --min_depth: must be greater than 0, got -1"),
        ("--min_depth 0", "argument --min_depth: must be greater than 0, got 0"),
        ("--max_depth inf", "argument --max_depth: must be a finite number, got 'inf'"),
        ("--learning_rate 0", "argument --learning_rate: must be greater than 0, got 0"),
        ("--learning_rate=-1e-4", "argument --learning_rate: must be greater than 0, got -1e-4"),
        ("--learning_rate nan", "argument --learning_rate: must be a finite number, got 'nan'"),
        ("--learning_rate fast", "argument --learning_rate: expected a number, got 'fast'"),
        ("--log_frequency 0", "argument --log_frequency: must be at least 1, got 0"),
        ("--save_frequency 0", "argument --save_frequency: must be at least 1, got 0"),
        ("--num_workers -1", "argument --num_workers: must be at least 0, got -1"),
        ("--device foo", "argument --device: expected cpu, cuda, cuda:N or mps, got 'foo'"),
        ("--device cuda:x", "argument --device: expected cpu, cuda, cuda:N or mps, got 'cuda:x'"),
        ("--device meta", "argument --device: expected cpu, cuda, cuda:N or mps, got 'meta'"),
        ("--num_heads 0", "argument --num_heads: must be at least 1, got 0"),
        ("--cma_ratio 0", "argument --cma_ratio: must be at least 1, got 0"),
        ("--num_classes 0", "argument --num_classes: must be at least 1, got 0"),
        (
            "--num_classes 5",
            "--num_classes 5 cannot hold the pseudo-labels' 19 Cityscapes train ids (give at least 19, "
            "or --semantic_weight 0 --sgt_weight 0 to train without labels)",
        ),
        ("--batch_size 0", "argument --batch_size: must be at least 1, got 0"),
        ("--num_epochs 0", "argument --num_epochs: must be at least 1, got 0"),
        ("--max_steps 0", "argument --max_steps: must be at least 1, got 0"),
        ("--lr_gamma 0", "argument --lr_gamma: must be greater than 0, got 0"),
        ("--lr_milestones 5 -1", "argument --lr_milestones: must be at least 1, got -1"),
        ("--seed -1", "argument --seed: must be at least 0, got -1"),
        (
            "--seed 9223372036854775807",
            "argument --seed: must be at most 4611686018427387904, got 9223372036854775807",
        ),
        ("--sgt_margin -0.1", "argument --sgt_margin: must be at least 0, got -0.1"),
        ("--disparity_smoothness -1", "argument --disparity_smoothness: must be at least 0, got -1"),
        ("--semantic_weight -0.3", "argument --semantic_weight: must be at least 0, got -0.3"),
        ("--sgt_weight -1", "argument --sgt_weight: must be at least 0, got -1"),
        ("--num_log_images -1", "argument --num_log_images: must be at least 0, got -1"),
        ("--scales 0 1 1", "--scales lists 1 more than once, got [0, 1, 1]"),
        ("--frame_ids 0 -1 -1", "--frame_ids lists -1 more than once, got [0, -1, -1]"),
        ("--sgt_levels 3 3 2", "--sgt_levels lists 3 more than once, got [3, 3, 2]"),
        (
            "--models_to_load encoder depth",
            "argument --models_to_load: invalid choice: 'depth' (choose from 'encoder', "
            "'decoder', 'pose_encoder', 'pose')",
        ),  # Monodepth2's name: was ignored
    ],
)
def test_training_options_that_make_no_sense_are_refused(tmp_path, capsys, argv, message):
    assert option_error(capsys, train.main, [*argv.split(), "--log_dir", str(tmp_path / "logs")]) == message
    no_run_written(tmp_path)


def test_valid_edge_values_still_parse():
    import options

    opts = options.parse_args(
        [
            "--num_classes",
            "5",
            "--config",
            "baseline",
            "--num_workers",
            "0",
            "--seed",
            "0",
            "--sgt_margin",
            "0",
            "--device",
            "cuda:1",
            "--lr_milestones",
            "--min_depth",
            "0.5",
            "--max_depth",
            "0.6",
            "--learning_rate",
            "1e-9",
        ]
    )
    assert (
        opts.num_classes,
        opts.num_workers,
        opts.seed,
        opts.sgt_margin,
        opts.device,
        opts.lr_milestones,
    ) == (5, 0, 0, 0.0, "cuda:1", [])
    assert (opts.min_depth, opts.max_depth, opts.learning_rate) == (0.5, 0.6, 1e-9)
    defaults = options.parse_args([])
    assert (
        defaults.min_depth,
        defaults.max_depth,
        defaults.learning_rate,
        defaults.num_classes,
        defaults.seed,
        defaults.lr_milestones,
        defaults.lr_gamma,
        defaults.sgt_margin,
    ) == (0.1, 100.0, 1.5e-4, 19, 0, [10, 15], 0.1, 0.3)


def test_an_option_error_from_the_command_line_is_one_line_and_exit_code_2(tmp_path):
    result = run_command(["train.py", "--save_frequency", "0", "--log_dir", str(tmp_path / "logs")])
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert (
        result.stderr.splitlines()[-1]
        == "train.py: error: argument --save_frequency: must be at least 1, got 0"
    )
    no_run_written(tmp_path)


@pytest.mark.parametrize(
    "main, argv, message",
    [
        (evaluate_depth.main, "--batch_size 0", "argument --batch_size: must be at least 1, got 0"),
        (evaluate_depth.main, "--num_workers -1", "argument --num_workers: must be at least 0, got -1"),
        (
            evaluate_depth.main,
            "--device foo",
            "argument --device: expected cpu, cuda, cuda:N or mps, got 'foo'",
        ),
        (
            evaluate_depth.main,
            "--pred_depth_scale_factor 0",
            "argument --pred_depth_scale_factor: must be greater than 0, got 0",
        ),
        (
            evaluate_pose.main,
            "--data_path d --load_weights_folder w --batch_size 0",
            "argument --batch_size: must be at least 1, got 0",
        ),
        (
            evaluate_pose.main,
            "--data_path d --load_weights_folder w --num_workers -1",
            "argument --num_workers: must be at least 0, got -1",
        ),
        (
            evaluate_pose.main,
            "--data_path d --load_weights_folder w --device gpu",
            "argument --device: expected cpu, cuda, cuda:N or mps, got 'gpu'",
        ),
        (
            predict.main,
            "--exported x.onnx --image_path y --fps 0",
            "argument --fps: a frame rate must lie in (0, 1000] frames per second, got 0",
        ),
        (
            predict.main,
            "--exported x.onnx --image_path y --depth_scale -1",
            "argument --depth_scale: must be greater than 0, got -1",
        ),
        (
            export_gt_depth.main,
            "",
            "give --data_path and --split (or --convert_monodepth2 IN.npz --output OUT.npz)",
        ),
        (
            export_gt_depth.main,
            "--data_path d --split eigen --output x.npz",
            "--output goes with --convert_monodepth2; an export writes to --output_dir",
        ),
        (
            prepare_kitti.main,
            "--data_path d --output_path o --height 0",
            "argument --height: must be at least 1, got 0",
        ),
        (
            prepare_kitti.main,
            "--data_path d --output_path o --num_workers -2",
            "argument --num_workers: must be at least 0, got -2",
        ),
        (benchmark.cli, "--data_path d --batch_size 0", "argument --batch_size: must be at least 1, got 0"),
        (
            benchmark.cli,
            "--data_path d --device foo",
            "argument --device: expected cpu, cuda, cuda:N or mps, got 'foo'",
        ),
    ],
)
def test_options_of_the_other_commands_are_checked_by_their_parsers(
    tmp_path, monkeypatch, capsys, main, argv, message
):
    monkeypatch.chdir(tmp_path)  # relative paths of the arguments: nothing may appear
    assert option_error(capsys, main, argv.split()) == message
    assert os.listdir(tmp_path) == []


@pytest.mark.parametrize(
    "argv, message",
    [
        (
            "--height 60",
            "argument --height: must be a positive multiple of 32 (the encoder downsamples by 32), got 60",
        ),
        (
            "--batch_size 4 --make_frames 5",
            "--make_frames 5 gives 3 training items, fewer than one batch (--batch_size 4)",
        ),
    ],
)
def test_benchmark_checks_its_options_before_make_data_writes_frames(tmp_path, capsys, argv, message):
    made = tmp_path / "made"
    assert option_error(capsys, benchmark.cli, ["--make_data", str(made), *argv.split()]) == message
    assert not made.exists()


# ------------------------------------------------------------------------------------------------
# 3. malformed split lines: file:line, for training, validation and test splits
# ------------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "bad_line, problem",
    [
        (f"{DRIVE} 2", f"expected 'folder frame_index side' (side l or r), got '{DRIVE} 2'"),
        (f"{DRIVE}", f"expected 'folder frame_index side' (side l or r), got '{DRIVE}'"),
        (f"{DRIVE} 2 l extra", f"expected 'folder frame_index side' (side l or r), got '{DRIVE} 2 l extra'"),
        (f"{DRIVE} 2.5 l", f"frame index '2.5' is not an integer in '{DRIVE} 2.5 l'"),
        (f"{DRIVE} 2 left", f"side must be l or r, got 'left' in '{DRIVE} 2 left'"),
    ],
)
def test_a_malformed_training_split_line_is_named_by_file_and_line(tiny, tmp_path, capsys, bad_line, problem):
    split = split_folder(tmp_path, [f"{DRIVE} 1 l", "", "  ", bad_line, f"{DRIVE} 3 l"], [f"{DRIVE} 1 l"])
    message = command_error(capsys, train.main, train_args(tiny, tmp_path, "--split", split))
    assert message == f"{split}/train_files.txt:4: {problem}"  # blank lines are skipped, and counted
    no_run_written(tmp_path)


def test_a_malformed_validation_split_line_is_named_by_file_and_line(tiny, tmp_path, capsys):
    split = split_folder(tmp_path, [f"{DRIVE} 1 l", f"{DRIVE} 2 l"], [f"{DRIVE} 1 l", f"{DRIVE} 2"])
    message = command_error(capsys, train.main, train_args(tiny, tmp_path, "--split", split))
    assert (
        message
        == f"{split}/val_files.txt:2: expected 'folder frame_index side' (side l or r), got '{DRIVE} 2'"
    )
    no_run_written(tmp_path)


def test_a_line_without_a_side_is_named_by_the_loader_when_the_input_check_is_off(tiny, tmp_path, capsys):
    split = split_folder(tmp_path, [f"{DRIVE} 1 l", f"{DRIVE} 2"])
    message = command_error(
        capsys,
        train.main,
        train_args(tiny, tmp_path, "--split", split, "--input_check", "none"),
        during_epoch=True,
    )
    assert (
        message
        == f"split line 2 ('{DRIVE} 2') names no side: expected 'folder frame_index side' (side l or r)"
    )


@pytest.mark.parametrize("case", ["folder", "binary", "val_folder"])
def test_a_split_file_that_is_a_folder_or_not_text_is_named(tiny, tmp_path, capsys, case):
    good = [f"{DRIVE} 1 l", f"{DRIVE} 2 l"]
    split = split_folder(tmp_path, good, good)
    bad = os.path.join(split, "val_files.txt" if case.startswith("val") else "train_files.txt")
    if case.endswith("folder"):
        os.remove(bad)
        os.mkdir(bad)
    else:
        with open(bad, "wb") as f:
            f.write(b"\xff\xfe\x00 not text\n")
    message = command_error(capsys, train.main, train_args(tiny, tmp_path, "--split", split))
    assert (
        message
        == {
            "folder": f"custom split folder {split} has no train_files.txt",
            "val_folder": f"split file {bad} is a folder",  # was skipped: training without validation
            "binary": f"split file {bad} is not a text file (invalid start byte at byte 0)",
        }[case]
    )
    no_run_written(tmp_path)


def test_an_empty_test_split_is_named_by_evaluation_and_export(tiny, tmp_path, capsys):
    split = write_test_split(tmp_path, [], GOOD_MAPS)
    np.save(tmp_path / "disps.npy", np.zeros((0, 4, 4), np.float32))
    expected = f"split file {split}/test_files.txt lists no frames (it is empty)"
    assert (
        command_error(
            capsys,
            evaluate_depth.main,
            ["--eval_split", str(split), "--ext_disp_to_eval", str(tmp_path / "disps.npy")],
        )
        == expected
    )
    splits_dir = tmp_path / "splits"
    (splits_dir / "eigen").mkdir(parents=True)
    (splits_dir / "eigen" / "test_files.txt").write_text("\n")
    assert (
        command_error(
            capsys,
            export_gt_depth.main,
            [
                "--data_path",
                tiny.data_path,
                "--split",
                "eigen",
                "--splits_dir",
                str(splits_dir),
                "--output_dir",
                str(tmp_path / "gt"),
            ],
        )
        == f"split file {splits_dir}/eigen/test_files.txt lists no frames (it is empty)"
    )
    assert not (tmp_path / "gt").exists()


def test_a_malformed_test_split_line_is_named_by_evaluation_and_export(tiny, tmp_path, capsys):
    split = write_test_split(tmp_path, [f"{DRIVE} 1 l", f"{DRIVE} 2"], [np.ones((4, 4))] * 2)
    np.save(tmp_path / "disps.npy", np.full((2, 4, 4), 0.5, np.float32))
    expected = f"{split}/test_files.txt:2: expected 'folder frame_index side' (side l or r), got '{DRIVE} 2'"
    assert (
        command_error(
            capsys,
            evaluate_depth.main,
            ["--eval_split", str(split), "--ext_disp_to_eval", str(tmp_path / "disps.npy")],
        )
        == expected
    )
    splits_dir = tmp_path / "splits"
    (splits_dir / "eigen").mkdir(parents=True)
    shutil.copy(split / "test_files.txt", splits_dir / "eigen" / "test_files.txt")
    before = files_under(tmp_path)
    message = command_error(
        capsys,
        export_gt_depth.main,
        [
            "--data_path",
            tiny.data_path,
            "--split",
            "eigen",
            "--splits_dir",
            str(splits_dir),
            "--output_dir",
            str(split),
        ],
    )
    assert (
        message == f"{splits_dir}/eigen/test_files.txt:2: expected 'folder frame_index side' (side l or r), "
        f"got '{DRIVE} 2'"
    )
    assert files_under(tmp_path) == before


def test_a_split_of_another_layout_is_named_by_file_and_line(tiny, tmp_path, capsys):
    message = command_error(capsys, train.main, train_args(tiny, tmp_path, "--dataset", "kitti_odom"))
    assert (
        message == f"{tiny.split_dir}/train_files.txt:1: '{DRIVE} 1 l' names folder '{DRIVE}': the odometry "
        f"layout (--dataset kitti_odom) needs a sequence number"
    )
    no_run_written(tmp_path)


def test_a_data_path_that_is_a_file_is_named(tiny, tmp_path, capsys):
    not_a_folder = os.path.join(tiny.split_dir, "train_files.txt")
    assert (
        command_error(capsys, train.main, train_args(tiny, tmp_path, "--data_path", not_a_folder))
        == f"--data_path {not_a_folder} is not a folder"
    )
    no_run_written(tmp_path)


# ------------------------------------------------------------------------------------------------
# 4. truncated or empty Velodyne scans, broken calibration: before training, and in the export
# ------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("size, what", [(1001, "truncated or not a scan"), (0, "empty")])
def test_a_damaged_velodyne_scan_of_the_validation_split_stops_training_before_it_starts(
    tiny, tmp_path, capsys, size, what
):
    scan = velodyne_path(tiny, 2)  # validation line 2; the sampled decode would not see a size problem alone
    data = open(scan, "rb").read()
    with open(scan, "wb") as f:
        f.write(data[:size])
    message = command_error(capsys, train.main, train_args(tiny, tmp_path))
    assert (
        message
        == f"{scan}: a Velodyne scan holds records of 16 bytes (4 float32), this file has {size} bytes "
        f"({what}) (needed by {tiny.split_dir}/val_files.txt:2)"
    )
    no_run_written(tmp_path)


def test_a_calibration_file_without_an_entry_is_named_before_training(tiny, tmp_path, capsys):
    calib = os.path.join(tiny.data_path, DATE, "calib_cam_to_cam.txt")
    lines = [line for line in open(calib) if not line.startswith("P_rect_02")]
    open(calib, "w").writelines(lines)
    message = command_error(capsys, train.main, train_args(tiny, tmp_path))
    assert (
        message
        == f"{calib}: calibration entry 'P_rect_02' is missing (needed by {tiny.split_dir}/val_files.txt:1)"
    )
    no_run_written(tmp_path)


def test_the_ground_truth_export_names_a_truncated_scan_and_keeps_the_previous_file(tiny, tmp_path, capsys):
    splits_dir = tmp_path / "splits"
    (splits_dir / "eigen").mkdir(parents=True)
    (splits_dir / "eigen" / "test_files.txt").write_text(f"{DRIVE} 1 l\n{DRIVE} 3 l\n")
    out = tmp_path / "gt"
    argv = [
        "--data_path",
        tiny.data_path,
        "--split",
        "eigen",
        "--splits_dir",
        str(splits_dir),
        "--output_dir",
        str(out),
    ]
    assert export_gt_depth.main(argv) == 0
    before = files_under(out)
    scan = velodyne_path(tiny, 3)
    data = open(scan, "rb").read()
    with open(scan, "wb") as f:
        f.write(data[:-3])
    message = command_error(capsys, export_gt_depth.main, argv)
    assert (
        message == f"{scan}: a Velodyne scan holds records of 16 bytes (4 float32), this file has "
        f"{len(data) - 3} bytes (truncated or not a scan) (needed by {splits_dir}/eigen/test_files.txt:2)"
    )
    assert files_under(out) == before
    os.remove(scan)
    assert (
        command_error(capsys, export_gt_depth.main, argv)
        == f"{scan}: Velodyne scan not found (needed by {splits_dir}/eigen/test_files.txt:2)"
    )
    assert files_under(out) == before


# ------------------------------------------------------------------------------------------------
# 5. decompression bombs: refused before decoding, by the input check, the loaders and prepare_kitti
# ------------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "side, limit",
    [(20000, 2 * Image.MAX_IMAGE_PIXELS), (10000, Image.MAX_IMAGE_PIXELS)],
    ids=["error", "warning"],
)
def test_a_decompression_bomb_in_training_is_named_by_the_input_check(tiny, tmp_path, capsys, side, limit):
    bomb_png(image_path(tiny, 3), side)
    message = command_error(capsys, train.main, train_args(tiny, tmp_path))
    assert (
        message == f"{image_path(tiny, 3)}: refusing to decode the image (Image size ({side * side} pixels) "
        f"exceeds limit of {limit} pixels, could be decompression bomb DOS attack.) "
        f"(needed by {tiny.split_dir}/train_files.txt:3)"
    )
    no_run_written(tmp_path)


def test_a_decompression_bomb_in_a_loader_process_is_one_line(tiny, tmp_path, capsys):
    bomb_png(image_path(tiny, 3), 20000)
    message = command_error(
        capsys,
        train.main,
        train_args(
            tiny,
            tmp_path,
            "--input_check",
            "none",
            "--num_workers",
            "1",
            "--no_validation",
            "--max_steps",
            "3",
        ),
        during_epoch=True,
    )
    assert message.startswith(
        f"{image_path(tiny, 3)}: refusing to decode the image (Image size (400000000 pixels)"
    )


def test_valid_images_decode_as_before(tiny):
    path = image_path(tiny, 2)
    with Image.open(path) as plain:
        assert np.array_equal(np.asarray(open_image(path)), np.asarray(plain.convert(plain.mode)))


def test_prepare_kitti_names_a_decompression_bomb(tiny, tmp_path, capsys):
    bomb_png(image_path(tiny, 3), 20000)
    message = command_error(
        capsys,
        prepare_kitti.main,
        ["--data_path", tiny.data_path, "--output_path", str(tmp_path / "cache"), "--num_workers", "2"],
    )
    assert message.startswith(
        f"{image_path(tiny, 3)}: refusing to decode the image (Image size (400000000 pixels)"
    )


# ------------------------------------------------------------------------------------------------
# 6. ground truth and external predictions that do not fit
# ------------------------------------------------------------------------------------------------
def evaluation_error(tmp_path, capsys, gt_maps, disps, *extra, main=evaluate_depth.main):
    """Evaluate ``disps`` (an array saved to disps.npy, or a path) against ``gt_maps`` on a 2-line split; the
    error message, after checking nothing was written."""
    split = write_test_split(tmp_path, [f"{DRIVE} 1 l", f"{DRIVE} 2 l"], gt_maps)
    path = tmp_path / "disps.npy"
    if isinstance(disps, np.ndarray):
        np.save(path, disps)
    before = files_under(tmp_path)
    message = command_error(
        capsys,
        main,
        ["--eval_split", str(split), "--ext_disp_to_eval", str(path), "--save_pred_disps", *extra],
    )
    assert files_under(tmp_path) == before
    return message, split


@pytest.mark.parametrize("count", [1, 3])
def test_ground_truth_of_the_wrong_length_names_the_file_and_both_counts(tmp_path, capsys, count):
    message, split = evaluation_error(tmp_path, capsys, [np.ones((4, 4), np.float32)] * count, GOOD_DISPS)
    assert (
        message
        == f"{split}/gt_depths.npz holds {count} ground-truth maps but {split}/test_files.txt lists 2 frames"
    )


def test_an_output_blocked_by_a_folder_is_one_line_naming_it(tmp_path, capsys):
    split = write_test_split(
        tmp_path, [f"{DRIVE} 1 l", f"{DRIVE} 2 l"], [np.full((4, 4), 5.0, np.float32)] * 2
    )
    np.save(tmp_path / "disps.npy", GOOD_DISPS)
    (tmp_path / "metrics.json").mkdir()  # where the metrics should go
    message = command_error(
        capsys,
        evaluate_depth.main,
        [
            "--eval_split",
            str(split),
            "--ext_disp_to_eval",
            str(tmp_path / "disps.npy"),
            "--output_json",
            str(tmp_path / "metrics.json"),
        ],
    )
    assert message == f"cannot write {tmp_path / 'metrics.json'}: Is a directory"
    assert not [name for name in os.listdir(tmp_path) if is_temporary(name)]


def test_evaluate_per_class_refuses_ground_truth_of_the_wrong_length(tmp_path, capsys):
    split = write_test_split(tmp_path, [f"{DRIVE} 1 l", f"{DRIVE} 2 l"], [np.ones((4, 4), np.float32)])
    message = command_error(
        capsys,
        evaluate_per_class.main,
        [
            "--data_path",
            str(tmp_path),
            "--eval_split",
            str(split),
            "--load_weights_folder",
            str(tmp_path / "w"),
            "--output_dir",
            str(tmp_path / "out"),
            "--no_chart",
        ],
    )  # today it evaluated the first frame only
    assert (
        message
        == f"{split}/gt_depths.npz holds 1 ground-truth maps but {split}/test_files.txt lists 2 frames"
    )
    assert not (tmp_path / "out").exists()


def test_all_zero_ground_truth_is_one_line(tmp_path, capsys):
    message, split = evaluation_error(tmp_path, capsys, [np.zeros((4, 4), np.float32)] * 2, GOOD_DISPS)
    assert message == f"{split}/gt_depths.npz: no frame has valid ground truth (every depth is 0)"


@pytest.mark.parametrize(
    "disps, problem",
    [
        (
            np.array([np.ones((4, 4)), np.ones((2, 2))], dtype=object),
            "not a plain .npy array of disparities (Object arrays cannot be loaded when allow_pickle=False)",
        ),
        (
            np.ones((4, 4), np.float32),
            "expected float disparities of shape (N, height, width), got float32 of shape (4, 4)",
        ),
        (
            np.ones((2, 4, 4), np.int64),
            "expected float disparities of shape (N, height, width), got int64 of shape (2, 4, 4)",
        ),
        (np.full((2, 4, 4), np.nan, np.float32), "holds non-finite disparities (NaN or infinity)"),
        ("missing", "file not found"),
    ],
    ids=["object", "2d", "int", "nan", "missing"],
)
def test_external_predictions_that_do_not_fit_are_named(tmp_path, capsys, disps, problem):
    message, _ = evaluation_error(tmp_path, capsys, GOOD_MAPS, disps)
    assert message == f"--ext_disp_to_eval {tmp_path / 'disps.npy'}: {problem}"


@pytest.mark.parametrize(
    "content, problem",
    [
        ("text", "{gt} is not a ground-truth file written by export_gt_depth.py (not an .npz archive)"),
        (
            "array",
            "{gt} is not a ground-truth file written by export_gt_depth.py "
            "(a single array, not an .npz archive)",
        ),
        (
            "other_keys",
            "{gt} is not a ground-truth file written by export_gt_depth.py (keys depth_0000 ... expected, "
            "found maps)",
        ),
        ("3d_map", "{gt}: map 0 is not a 2-D map of depths (got ndarray of shape (1, 4, 4))"),
    ],
)
def test_a_ground_truth_file_that_is_not_one_is_named(tmp_path, capsys, content, problem):
    gt = tmp_path / "gt.npz"
    if content == "text":
        gt.write_text("depth_0000 1 2 3\n")
    elif content == "array":
        with open(gt, "wb") as f:
            np.save(f, np.ones((2, 4, 4)))
    elif content == "other_keys":
        np.savez(gt, maps=np.ones((2, 4, 4)))
    else:
        np.savez(gt, depth_0000=np.ones((1, 4, 4)), depth_0001=np.ones((4, 4)))
    message, _ = evaluation_error(tmp_path, capsys, None, GOOD_DISPS, "--gt_depths", str(gt))
    assert message == problem.format(gt=gt)


def test_too_few_predictions_for_eval_eigen_to_benchmark_are_named(tmp_path, capsys):
    splits_dir = tmp_path / "splits"
    (splits_dir / "benchmark").mkdir(parents=True)
    np.save(splits_dir / "benchmark" / "eigen_to_benchmark_ids.npy", np.array([0, 5]))
    message, _ = evaluation_error(
        tmp_path, capsys, GOOD_MAPS, GOOD_DISPS, "--eval_eigen_to_benchmark", "--splits_dir", str(splits_dir)
    )
    assert (
        message
        == f"--eval_eigen_to_benchmark: {tmp_path / 'disps.npy'} holds 2 predictions, too few for the "
        f"eigen split (index 5 is needed)"
    )


# ------------------------------------------------------------------------------------------------
# 7. prepare_kitti: one line and exit code 2 through run_cli; programming errors are not hidden
# ------------------------------------------------------------------------------------------------
def test_prepare_kitti_reports_bad_input_in_one_line_with_exit_code_2(tmp_path):
    result = run_command(
        [
            "-m",
            "tools.prepare_kitti",
            "--data_path",
            str(tmp_path / "none"),
            "--output_path",
            str(tmp_path / "cache"),
        ]
    )
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert result.stderr.splitlines()[-1] == f"error: --data_path {tmp_path / 'none'} is not a folder"
    assert os.listdir(tmp_path) == []


def test_prepare_kitti_refuses_a_cache_inside_its_data(tiny, tmp_path, capsys):
    before = files_under(tiny.data_path)
    cache = os.path.join(tiny.data_path, "cache")
    assert (
        command_error(capsys, prepare_kitti.main, ["--data_path", tiny.data_path, "--output_path", cache])
        == f"--output_path {cache} and --data_path {tiny.data_path} must not lie inside one another "
        f"(a later run would cache the cache)"
    )
    assert files_under(tiny.data_path) == before


def test_prepare_kitti_does_not_hide_a_programming_error(tiny, tmp_path, monkeypatch):
    def broken(*args, **kwargs):
        raise ValueError("a bug, not bad input")

    monkeypatch.setattr(prepare_kitti, "prepare", broken)
    with pytest.raises(ValueError, match="a bug, not bad input"):
        utils.run_cli(
            prepare_kitti.main, ["--data_path", tiny.data_path, "--output_path", str(tmp_path / "cache")]
        )


# ------------------------------------------------------------------------------------------------
# 8. more of what a hostile user tries
# ------------------------------------------------------------------------------------------------
def write_odometry(tmp_path, poses_text, test_lines):
    """An odometry layout with a poses file and a split folder holding odom/test_files_09.txt."""
    data = tmp_path / "odom"
    (data / "poses").mkdir(parents=True)
    (data / "poses" / "09.txt").write_text(poses_text)
    splits_dir = tmp_path / "splits"
    (splits_dir / "odom").mkdir(parents=True)
    (splits_dir / "odom" / "test_files_09.txt").write_text("".join(line + "\n" for line in test_lines))
    return [
        "--data_path",
        str(data),
        "--splits_dir",
        str(splits_dir),
        "--load_weights_folder",
        str(tmp_path / "w"),
    ]


POSE = " ".join(["1", "0", "0", "0", "0", "1", "0", "0", "0", "0", "1", "0"])


@pytest.mark.parametrize(
    "poses, lines, problem",
    [
        (
            f"{POSE}\n{POSE}\n",
            ["9 0 l", "9 1 l"],
            "{poses} holds 2 poses but {test} lists 2 frame pairs (one pose more than pairs expected)",
        ),
        (
            "1 2 3\n4 5 6\n",
            ["9 0 l"],
            "{poses}: expected at least two lines of 12 numbers (a 3x4 pose each), got shape (2, 3)",
        ),
        ("a b c\n", ["9 0 l"], "{poses}: not a KITTI poses file"),
        (
            None,
            ["9 0 l"],
            "{poses}: ground-truth poses not found (KITTI's odometry poses/ folder belongs in --data_path)",
        ),
    ],
)
def test_evaluate_pose_checks_the_ground_truth_poses_before_predicting(
    tmp_path, capsys, poses, lines, problem
):
    argv = write_odometry(tmp_path, poses or "", lines)
    poses_file = tmp_path / "odom" / "poses" / "09.txt"
    if poses is None:
        os.remove(poses_file)
    message = command_error(capsys, evaluate_pose.main, argv)
    expected = problem.format(poses=poses_file, test=tmp_path / "splits" / "odom" / "test_files_09.txt")
    assert message.startswith(expected)


def test_an_unreadable_image_in_evaluation_is_named(tiny, tmp_path, capsys):
    import options
    from checkpoints import model_folder
    from model import FSREModel

    opts = options.parse_args(
        ["--weights_init", "scratch", "--config", "baseline", "--height", "64", "--width", "192"]
    )
    folder = model_folder.save_model_folder(str(tmp_path / "weights"), FSREModel(opts).networks(), opts)
    split = write_test_split(tmp_path, [f"{DRIVE} 1 l", f"{DRIVE} 2 l"], GOOD_MAPS)
    bomb_png(image_path(tiny, 2), 20000)
    before = files_under(folder)
    message = command_error(
        capsys,
        evaluate_depth.main,
        [
            "--data_path",
            tiny.data_path,
            "--eval_split",
            str(split),
            "--load_weights_folder",
            folder,
            "--num_workers",
            "0",
        ],
    )
    assert message.startswith(f"{image_path(tiny, 2)}: refusing to decode the image")
    assert files_under(folder) == before
