"""Bad training data, as a hostile user gives it: split lines, missing or undecodable frames, labels,
calibration, Velodyne scans and decompression bombs are named in one line (file, line or option; exit code
2) before training starts or by the loader that meets them, and nothing already written is lost."""

import os
import shutil

import numpy as np
import pytest
from helpers import (
    assert_nothing_half_written,
    bomb_png,
    command_error,
    export_ground_truth_args,
    file_contents,
    file_names,
    image_path,
    no_run_written,
    one_step_args,
    run_command,
    train_error,
    trainer_error,
    write_split,
)
from PIL import Image

import export_gt_depth
import train
import utils
from datasets.mono_dataset import open_image
from datasets.synthetic.kitti_frames import DATE, DRIVE, write_label_png
from tools import prepare_kitti


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
    message = command_error(capsys, train.main, one_step_args(tiny, tmp_path, "--split", split))
    assert message == f"{split}/train_files.txt:4: {problem}"  # blank lines are skipped, and counted
    no_run_written(tmp_path)


def test_a_malformed_validation_split_line_is_named_by_file_and_line(tiny, tmp_path, capsys):
    split = split_folder(tmp_path, [f"{DRIVE} 1 l", f"{DRIVE} 2 l"], [f"{DRIVE} 1 l", f"{DRIVE} 2"])
    message = command_error(capsys, train.main, one_step_args(tiny, tmp_path, "--split", split))
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
        one_step_args(tiny, tmp_path, "--split", split, "--input_check", "none"),
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
    message = command_error(capsys, train.main, one_step_args(tiny, tmp_path, "--split", split))
    assert (
        message
        == {
            "folder": f"custom split folder {split} has no train_files.txt",
            "val_folder": f"split file {bad} is a folder",  # was skipped: training without validation
            "binary": f"split file {bad} is not a text file (invalid start byte at byte 0)",
        }[case]
    )
    no_run_written(tmp_path)


def test_a_split_of_another_layout_is_named_by_file_and_line(tiny, tmp_path, capsys):
    message = command_error(capsys, train.main, one_step_args(tiny, tmp_path, "--dataset", "kitti_odom"))
    assert (
        message == f"{tiny.split_dir}/train_files.txt:1: '{DRIVE} 1 l' names folder '{DRIVE}': the odometry "
        f"layout (--dataset kitti_odom) needs a sequence number"
    )
    no_run_written(tmp_path)


def test_a_data_path_that_is_a_file_is_named(tiny, tmp_path, capsys):
    not_a_folder = os.path.join(tiny.split_dir, "train_files.txt")
    assert (
        command_error(capsys, train.main, one_step_args(tiny, tmp_path, "--data_path", not_a_folder))
        == f"--data_path {not_a_folder} is not a folder"
    )
    no_run_written(tmp_path)


def test_a_malformed_split_line_is_named(tiny, tmp_path, capsys):
    split = write_split(tiny, [f"{DRIVE} 1 l", f"{DRIVE} two l"])
    message = train_error(tiny, tmp_path, capsys, "--split", split)
    assert (
        message.strip()
        == f"{split}/train_files.txt:2: frame index 'two' is not an integer in '{DRIVE} two l'"
    )
    no_run_written(tmp_path)


def test_a_split_entry_leaving_the_data_folder_is_named(tiny, tmp_path, capsys):
    split = write_split(tiny, [f"{DRIVE} 1 l", f"{DRIVE} 2 l", "../../etc 5 l"])
    message = train_error(tiny, tmp_path, capsys, "--split", split)
    assert message.startswith(f"{split}/train_files.txt:3: '../../etc 5 l' leads to ")
    assert f"outside the data folder {tiny.data_path}" in message
    no_run_written(tmp_path)


def test_an_empty_validation_split_is_refused_before_training(tiny, tmp_path, capsys):
    open(os.path.join(tiny.split_dir, "val_files.txt"), "w").close()
    message = trainer_error(tiny, tmp_path, capsys, validation=True)
    assert message == (
        f"{tiny.split_dir}/val_files.txt lists no items: validation needs at least one (or train "
        f"with --no_validation)"
    )
    assert not os.path.exists(tmp_path / "fsre")


def test_missing_files_are_listed_with_the_split_lines_that_need_them(tiny, tmp_path, capsys):
    shutil.rmtree(os.path.join(tiny.data_path, DRIVE, "image_03"))
    message = train_error(tiny, tmp_path, capsys)
    assert "7 file(s) needed by" in message and "train_files.txt are missing" in message
    assert f"{image_path(tiny, 1, '03')} (needed by line 2)" in message  # line 2: frame 2, right camera
    assert f"{image_path(tiny, 3, '03')} (needed by line 2, 4)" in message
    assert "... and 2 more" in message
    no_run_written(tmp_path)


@pytest.mark.parametrize("which", ["label", "calibration"])
def test_missing_pseudo_labels_and_calibration_are_reported(tiny, tmp_path, capsys, which):
    path = (
        os.path.join(tiny.data_path, "segmentation", DRIVE, "image_02", "0000000003.png")
        if which == "label"
        else os.path.join(tiny.data_path, DRIVE.split("/")[0], "calib_velo_to_cam.txt")
    )
    os.remove(path)
    message = train_error(tiny, tmp_path, capsys)
    assert f"{path} (needed by line" in message
    no_run_written(tmp_path)


@pytest.mark.parametrize(
    "check", [[], ["--input_check", "full", "--num_workers", "1"]], ids=["sample", "full"]
)
def test_an_image_that_does_not_decode_is_named(tiny, tmp_path, capsys, check):
    with open(image_path(tiny, 3), "wb") as f:
        f.write(b"\x89PNG\r\n\x1a\n truncated")
    message = train_error(tiny, tmp_path, capsys, *check)
    assert message.startswith(f"{image_path(tiny, 3)}: cannot decode the image")
    assert message.endswith("train_files.txt:3)")
    no_run_written(tmp_path)


@pytest.mark.slow
def test_an_image_that_fails_inside_a_loader_process_is_named(tiny, tmp_path, capsys, in_process):
    with open(image_path(tiny, 3), "wb") as f:
        f.write(b"not an image")
    message = train_error(
        tiny,
        tmp_path,
        capsys,
        "--input_check",
        "none",
        "--num_workers",
        "1",
        "--max_steps",
        "3",
        "--config",
        "baseline",
        "--no_validation",
    )
    assert (
        message.strip() == f"{image_path(tiny, 3)}: cannot decode the image (cannot identify image file "
        f"'{image_path(tiny, 3)}')"
    )
    run = str(tmp_path / "logs" / "fsre")
    assert_nothing_half_written(run)
    assert not [f for f in file_names(run) if f.startswith(("models/weights", "checkpoints"))]


def test_an_image_of_unexpected_size_is_named(tiny, tmp_path, capsys):
    Image.new("RGB", (tiny.width + 10, tiny.height)).save(image_path(tiny, 0))  # frame 1's previous frame
    message = train_error(tiny, tmp_path, capsys)
    assert message.startswith(
        f"{image_path(tiny, 0)}: image of unexpected size {tiny.width + 10}x{tiny.height} "
        f"(width x height); the item's target frame {image_path(tiny, 1)} is {tiny.width}x{tiny.height}"
    )
    assert message.endswith("train_files.txt:1)")
    no_run_written(tmp_path)


def test_label_ids_outside_the_cityscapes_table_are_named(tiny, tmp_path, capsys):
    path = os.path.join(tiny.data_path, "segmentation", DRIVE, "image_02", "0000000001.png")
    write_label_png(path, np.full((tiny.height, tiny.width), 40, np.uint8))
    message = train_error(tiny, tmp_path, capsys)
    assert f"{path}: label ids [40] lie outside the Cityscapes table (0..33)" in message
    no_run_written(tmp_path)


@pytest.mark.parametrize("size, what", [(1001, "truncated or not a scan"), (0, "empty")])
def test_a_damaged_velodyne_scan_of_the_validation_split_stops_training_before_it_starts(
    tiny, tmp_path, capsys, size, what
):
    scan = velodyne_path(tiny, 2)  # validation line 2; the sampled decode would not see a size problem alone
    data = open(scan, "rb").read()
    with open(scan, "wb") as f:
        f.write(data[:size])
    message = command_error(capsys, train.main, one_step_args(tiny, tmp_path))
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
    message = command_error(capsys, train.main, one_step_args(tiny, tmp_path))
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
    argv = export_ground_truth_args(tiny, splits_dir, out)
    assert export_gt_depth.main(argv) == 0
    before = file_contents(out)
    scan = velodyne_path(tiny, 3)
    data = open(scan, "rb").read()
    with open(scan, "wb") as f:
        f.write(data[:-3])
    message = command_error(capsys, export_gt_depth.main, argv)
    assert (
        message == f"{scan}: a Velodyne scan holds records of 16 bytes (4 float32), this file has "
        f"{len(data) - 3} bytes (truncated or not a scan) (needed by {splits_dir}/eigen/test_files.txt:2)"
    )
    assert file_contents(out) == before
    os.remove(scan)
    assert (
        command_error(capsys, export_gt_depth.main, argv)
        == f"{scan}: Velodyne scan not found (needed by {splits_dir}/eigen/test_files.txt:2)"
    )
    assert file_contents(out) == before


@pytest.mark.parametrize(
    "side, limit",
    [(20000, 2 * Image.MAX_IMAGE_PIXELS), (10000, Image.MAX_IMAGE_PIXELS)],
    ids=["error", "warning"],
)
def test_a_decompression_bomb_in_training_is_named_by_the_input_check(tiny, tmp_path, capsys, side, limit):
    bomb_png(image_path(tiny, 3), side)
    message = command_error(capsys, train.main, one_step_args(tiny, tmp_path))
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
        one_step_args(
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


@pytest.mark.slow
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
    before = file_contents(tiny.data_path)
    cache = os.path.join(tiny.data_path, "cache")
    assert (
        command_error(capsys, prepare_kitti.main, ["--data_path", tiny.data_path, "--output_path", cache])
        == f"--output_path {cache} and --data_path {tiny.data_path} must not lie inside one another "
        f"(a later run would cache the cache)"
    )
    assert file_contents(tiny.data_path) == before


def test_prepare_kitti_does_not_hide_a_programming_error(tiny, tmp_path, monkeypatch):
    def broken(*args, **kwargs):
        raise ValueError("a bug, not bad input")

    monkeypatch.setattr(prepare_kitti, "prepare", broken)
    with pytest.raises(ValueError, match="a bug, not bad input"):
        utils.run_cli(
            prepare_kitti.main, ["--data_path", tiny.data_path, "--output_path", str(tmp_path / "cache")]
        )
