"""Bad input to evaluation, prediction and figures: test splits, ground truth, external predictions, poses,
model folders and outputs that would collide are named in one line (exit code 2) before the work, leaving
what was written as it was."""

from __future__ import annotations

import os
import shutil

import numpy as np
import pytest
from helpers import (
    bomb_png,
    command_error,
    export_ground_truth_args,
    file_contents,
    image_path,
    one_line_error,
    per_class_args,
    predict_error,
    write_image,
    write_split,
    write_test_split,
)

import evaluate_depth
import evaluate_pose
import export_gt_depth
import utils
from datasets.synthetic.kitti_frames import DRIVE
from tools import evaluate_per_class
from utils.files import is_temporary

GOOD_DISPS = np.full((2, 4, 4), 0.5, np.float32)  # predictions and ground truth of a 2-line test split


GOOD_MAPS = [np.full((4, 4), 2.0, np.float32)] * 2


def evaluation_error(tmp_path, capsys, gt_maps, disps, *extra, main=evaluate_depth.main):
    """Evaluate ``disps`` (an array saved to disps.npy, or a path) against ``gt_maps`` on a 2-line split; the
    error message, after checking nothing was written."""
    split = write_test_split(tmp_path, [f"{DRIVE} 1 l", f"{DRIVE} 2 l"], gt_maps)
    path = tmp_path / "disps.npy"
    if isinstance(disps, np.ndarray):
        np.save(path, disps)
    before = file_contents(tmp_path)
    message = command_error(
        capsys,
        main,
        ["--eval_split", str(split), "--ext_disp_to_eval", str(path), "--save_pred_disps", *extra],
    )
    assert file_contents(tmp_path) == before
    return message, split


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


def test_an_empty_test_split_is_named_by_evaluation_and_export(tiny, tmp_path, capsys):
    split = write_test_split(tmp_path, [], GOOD_MAPS)
    np.save(tmp_path / "disps.npy", np.zeros((0, 4, 4), np.float32))
    expected = f"split file {split}/test_files.txt lists no frames (it is empty)"
    argv = ["--eval_split", str(split), "--ext_disp_to_eval", str(tmp_path / "disps.npy")]
    assert command_error(capsys, evaluate_depth.main, argv) == expected
    splits_dir = tmp_path / "splits"
    (splits_dir / "eigen").mkdir(parents=True)
    (splits_dir / "eigen" / "test_files.txt").write_text("\n")
    message = command_error(
        capsys, export_gt_depth.main, export_ground_truth_args(tiny, splits_dir, tmp_path / "gt")
    )
    assert message == f"split file {splits_dir}/eigen/test_files.txt lists no frames (it is empty)"
    assert not (tmp_path / "gt").exists()


def test_a_malformed_test_split_line_is_named_by_evaluation_and_export(tiny, tmp_path, capsys):
    split = write_test_split(tmp_path, [f"{DRIVE} 1 l", f"{DRIVE} 2"], [np.ones((4, 4))] * 2)
    np.save(tmp_path / "disps.npy", np.full((2, 4, 4), 0.5, np.float32))
    expected = f"{split}/test_files.txt:2: expected 'folder frame_index side' (side l or r), got '{DRIVE} 2'"
    argv = ["--eval_split", str(split), "--ext_disp_to_eval", str(tmp_path / "disps.npy")]
    assert command_error(capsys, evaluate_depth.main, argv) == expected
    splits_dir = tmp_path / "splits"
    (splits_dir / "eigen").mkdir(parents=True)
    shutil.copy(split / "test_files.txt", splits_dir / "eigen" / "test_files.txt")
    before = file_contents(tmp_path)
    message = command_error(capsys, export_gt_depth.main, export_ground_truth_args(tiny, splits_dir, split))
    assert (
        message == f"{splits_dir}/eigen/test_files.txt:2: expected 'folder frame_index side' (side l or r), "
        f"got '{DRIVE} 2'"
    )
    assert file_contents(tmp_path) == before


@pytest.mark.parametrize("count", [1, 3])
def test_ground_truth_of_the_wrong_length_names_the_file_and_both_counts(tmp_path, capsys, count):
    message, split = evaluation_error(tmp_path, capsys, [np.ones((4, 4), np.float32)] * count, GOOD_DISPS)
    assert (
        message
        == f"{split}/gt_depths.npz holds {count} ground-truth maps but {split}/test_files.txt lists 2 frames"
    )


@pytest.mark.slow
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
    assert message == (
        f"{tmp_path / 'metrics.json'} is a folder: it is left as it is; "
        "move it away yourself, or write into another folder"
    )
    assert os.path.isdir(tmp_path / "metrics.json")
    assert not [name for name in os.listdir(tmp_path) if is_temporary(name)]


def test_evaluate_per_class_refuses_ground_truth_of_the_wrong_length(tmp_path, capsys):
    split = write_test_split(tmp_path, [f"{DRIVE} 1 l", f"{DRIVE} 2 l"], [np.ones((4, 4), np.float32)])
    message = command_error(
        capsys,
        evaluate_per_class.main,
        per_class_args(tmp_path, split),
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


def test_a_prediction_file_of_the_wrong_count_is_named(tiny, tmp_path, capsys):
    split = write_split(tiny, [f"{DRIVE} {i} l" for i in range(1, 6)])
    os.rename(os.path.join(split, "train_files.txt"), os.path.join(split, "test_files.txt"))
    out = tmp_path / "predictions"
    out.mkdir()
    np.save(out / "short.npy", np.ones((3, 64, 192), np.float32))
    code = utils.run_cli(
        evaluate_depth.main,
        [
            "--data_path",
            tiny.data_path,
            "--eval_split",
            split,
            "--ext_disp_to_eval",
            str(out / "short.npy"),
            "--save_pred_disps",
        ],
    )
    assert code == utils.EXIT_ERROR
    assert (
        f"error: {out / 'short.npy'} holds 3 predictions but {split}/test_files.txt lists 5 frames"
        in capsys.readouterr().err
    )
    assert os.listdir(out) == ["short.npy"]


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


@pytest.mark.slow
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
    before = file_contents(folder)
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
    assert file_contents(folder) == before


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
    base = ["--data_path", data, "--eval_split", split_dir, "--num_workers", "0", "--no_chart"]
    base += ["--output_dir", str(tmp_path / "out")]
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


@pytest.mark.slow
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
