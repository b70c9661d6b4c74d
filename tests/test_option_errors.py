"""Options that make no sense: every command's parser refuses them with one line naming the option and its
reason (exit code 2, no traceback), before anything is written; valid edge values still parse."""

import os
import subprocess
import sys

import pytest
import torch
from helpers import image_path, no_run_written, option_error, run_command

import evaluate_depth
import evaluate_pose
import export_gt_depth
import predict
import train
import utils
from conftest import PROCESS_DEADLINE_S, PROJECT_DIR
from tools import benchmark, prepare_kitti
from utils.processes import init_runtime


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


@pytest.mark.slow
def test_an_option_error_from_the_command_line_is_one_line_and_exit_code_2(tmp_path):
    result = run_command(["train.py", "--save_frequency", "0", "--log_dir", str(tmp_path / "logs")])
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert (
        result.stderr.splitlines()[-1]
        == "train.py: error: argument --save_frequency: must be at least 1, got 0"
    )
    no_run_written(tmp_path)


@pytest.mark.slow
def test_the_command_line_exits_with_code_2_and_one_line_without_a_traceback(tiny, tmp_path):
    os.remove(image_path(tiny, 4))
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": PROJECT_DIR}
    result = subprocess.run(
        [
            sys.executable,
            "train.py",
            "--data_path",
            tiny.data_path,
            "--split",
            tiny.split_dir,
            "--weights_init",
            "scratch",
            "--log_dir",
            str(tmp_path / "logs"),
            "--height",
            "64",
            "--width",
            "192",
            "--config",
            "baseline",
            "--batch_size",
            "2",
        ],
        cwd=PROJECT_DIR,
        env=env,
        capture_output=True,
        text=True,
        timeout=PROCESS_DEADLINE_S,
    )
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    assert (
        f"error: 1 file(s) needed by {tiny.split_dir}/train_files.txt are missing:\n"
        f"  {image_path(tiny, 4)} (needed by line 3, 5)" in result.stderr
    )
    no_run_written(tmp_path)


@pytest.mark.parametrize("option", ["--height", "--width"])
def test_a_size_that_is_not_a_multiple_of_32_names_the_option(tiny, tmp_path, capsys, option):
    with pytest.raises(SystemExit) as exit_info:
        utils.run_cli(
            train.main, ["--data_path", tiny.data_path, option, "100", "--log_dir", str(tmp_path / "logs")]
        )
    assert exit_info.value.code == 2
    assert f"argument {option}: must be a positive multiple of 32" in capsys.readouterr().err
    no_run_written(tmp_path)


@pytest.mark.skipif(torch.cuda.is_available(), reason="the message for a machine without CUDA")
def test_a_cuda_device_on_a_machine_without_one_is_a_clear_error():
    with pytest.raises(utils.InputError, match="--device cuda:1: no CUDA device is available here"):
        init_runtime("cuda:1")
    assert init_runtime("cpu").device.type == "cpu"


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


@pytest.mark.parametrize(
    "command, argv, option",
    [
        ("train", ["--log_dir", ""], "--log_dir"),
        ("predict", ["--exported", "x.onnx", "--image_path", "y", "--output_dir", ""], "--output_dir"),
        ("export_gt_depth", ["--output_dir", ""], "--output_dir"),
        ("tools.import_video", ["v.mp4", "--out", ""], "--out"),
        ("tools.prepare_sequences", ["--data_path", ""], "--data_path"),
        ("tools.prepare_sequences", ["--data_path", "d", "--out", " "], "--out"),
        ("tools.synthetic_video", ["--out", ""], "--out"),
        ("tools.synthetic_kitti", ["--out", ""], "--out"),
        ("tools.recipe_grid", ["--out", ""], "--out"),
        ("tools.reproduce", ["table2", "--log_dir", ""], "--log_dir"),
        ("tools.reproduce", ["table2", "--output_dir", ""], "--output_dir"),
        ("tools.evaluate_per_class", ["--load_weights_folder", "w", "--output_dir", ""], "--output_dir"),
    ],
)
def test_an_empty_folder_option_is_an_option_error_not_the_current_folder(
    tmp_path, monkeypatch, capsys, command, argv, option
):
    import importlib

    main = importlib.import_module(command).main
    monkeypatch.chdir(tmp_path)  # an empty path once meant this folder: nothing may appear in it
    assert option_error(capsys, main, argv) == f"argument {option}: an empty path: name a folder"
    assert os.listdir(tmp_path) == []
