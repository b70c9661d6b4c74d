"""Files the project did not write, or wrote and then lost to bit rot: a pickle is never unpickled (its code
never runs), a damaged checkpoint or model folder is skipped or named in one line, exit code 2."""

from __future__ import annotations

import glob
import json
import logging
import os

import numpy as np
import pytest
import torch
from helpers import (
    checkpoint,
    command_error,
    copy_run,
    corrupt_inside_largest_tensor,
    file_contents,
    no_run_written,
    one_line_error,
    option_error,
    per_class_args,
    run_args,
    run_command,
    train_error,
    write_image,
    write_split,
    write_test_split,
)

import evaluate_depth
import export_gt_depth
import options
import utils
from checkpoints import files, model_folder
from datasets import ground_truth
from datasets.synthetic.kitti_frames import DRIVE
from model import FSREModel
from tools import evaluate_per_class
from trainer import Trainer


def evaluate_args(tmp_path, folder):
    """evaluate_depth's arguments for a model folder (the model is read before any frame)."""
    with open(tmp_path / "test_files.txt", "w") as f:
        f.write(f"{DRIVE} 1 l\n")
    return ["--data_path", str(tmp_path), "--eval_split", str(tmp_path), "--load_weights_folder", folder]


class Marker:
    """Unpickling this writes a file: proof that a pickle was (or was not) loaded."""

    def __init__(self, path):
        self.path = path

    def __reduce__(self):
        return (open, (self.path, "w"))


class CreatesFile:
    """Pickled, it creates ``path`` when unpickled: the payload of a crafted ground-truth file."""

    def __init__(self, path):
        self.path = str(path)

    def __reduce__(self):
        return (open, (self.path, "w"))


def crafted_ground_truth(path, marker):
    """A gt_depths.npz in Monodepth2's format (an object array under "data") carrying the payload."""
    np.savez_compressed(path, data=np.array([CreatesFile(marker), np.ones((4, 4), np.float32)], dtype=object))


def test_the_crafted_payload_runs_when_unpickled(tmp_path):
    """The control of the tests below: the crafted file does run code when NumPy unpickles it."""
    crafted_ground_truth(tmp_path / "gt.npz", tmp_path / "marker")
    with np.load(tmp_path / "gt.npz", allow_pickle=True) as data:
        data["data"]
    assert (tmp_path / "marker").exists()


@pytest.mark.slow
def test_a_pickled_ground_truth_file_is_refused_without_running_its_code(tmp_path):
    split = write_test_split(tmp_path, [f"{DRIVE} 1 l", f"{DRIVE} 2 l"])
    crafted_ground_truth(split / "gt_depths.npz", tmp_path / "marker")
    np.save(tmp_path / "disps.npy", np.full((2, 32, 96), 0.1, np.float32))
    before = file_contents(tmp_path)
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
    assert file_contents(tmp_path) == before


def test_evaluate_per_class_refuses_a_pickled_ground_truth_file_too(tmp_path, capsys):
    split = write_test_split(tmp_path, [f"{DRIVE} 1 l", f"{DRIVE} 2 l"])
    crafted_ground_truth(split / "gt_depths.npz", tmp_path / "marker")
    message = command_error(
        capsys,
        evaluate_per_class.main,
        per_class_args(tmp_path, split),
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
    before = file_contents(tmp_path)
    assert "must differ from the file converted" in command_error(
        capsys, export_gt_depth.main, ["--convert_monodepth2", str(legacy), "--output", str(legacy)]
    )
    assert (
        option_error(capsys, export_gt_depth.main, ["--convert_monodepth2", str(legacy)])
        == "--convert_monodepth2 needs --output OUT.npz"
    )
    assert file_contents(tmp_path) == before


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


@pytest.mark.slow
def test_a_bit_rotted_newest_checkpoint_is_skipped_for_the_newest_good_one(
    tiny_run, tmp_path, in_process, caplog
):
    tiny, run = copy_run(tiny_run, tmp_path)
    corrupt_inside_largest_tensor(checkpoint(run, 2))
    with caplog.at_level(logging.WARNING):
        trainer = Trainer(options.parse_args(run_args(tiny, run.parent, "--num_workers", "0", "--resume")))
    assert (
        f"skipping {checkpoint(run, 2)} is damaged: its content differs from the SHA-256 stored in it"
        in caplog.text
    )
    assert (trainer.loop.step, trainer.loop.epoch, trainer.loop.batch_in_epoch) == (1, 0, 1)
    assert trainer.last_state == checkpoint(run, 1)
    trainer.close()


def test_a_damaged_model_folder_file_is_one_line_and_a_folder_without_checksums_loads(tmp_path, capsys):
    opts = options.parse_args(
        ["--weights_init", "scratch", "--height", "64", "--width", "192", "--config", "baseline"]
    )
    folder = model_folder.save_model_folder(str(tmp_path / "weights_0"), FSREModel(opts).networks(), opts)
    corrupt_inside_largest_tensor(os.path.join(folder, "decoder.pth"))
    assert utils.run_cli(evaluate_depth.main, evaluate_args(tmp_path, folder)) == utils.EXIT_ERROR
    assert capsys.readouterr().err == (
        f"error: {folder}/decoder.pth is damaged: its SHA-256 differs from the one in "
        f"checksums.sha256 beside it\n"
    )
    os.remove(os.path.join(folder, files.CHECKSUM_FILE))  # as the authors' and Monodepth2's released folders
    assert model_folder.inspect_model_folder(folder).num_layers == 18


def test_a_corrupt_opt_json_in_a_weights_folder_is_one_line(tmp_path, capsys):
    opts = options.parse_args(
        ["--weights_init", "scratch", "--height", "64", "--width", "192", "--config", "baseline"]
    )
    folder = model_folder.save_model_folder(str(tmp_path / "weights_0"), FSREModel(opts).networks(), opts)
    path = os.path.join(folder, "opt.json")
    with open(path, "w") as f:
        f.write('{"height": 64, "wid')
    args = evaluate_args(tmp_path, folder)
    assert utils.run_cli(evaluate_depth.main, args) == utils.EXIT_ERROR
    assert f"error: {path} is damaged: its SHA-256 differs" in capsys.readouterr().err
    os.remove(os.path.join(folder, files.CHECKSUM_FILE))
    assert utils.run_cli(evaluate_depth.main, args) == utils.EXIT_ERROR
    assert capsys.readouterr().err.startswith(
        f"error: {path}: not a readable options file (Unterminated string"
    )
    with pytest.raises(utils.InputError, match="not a readable options file"):  # predict's way in (deploy)
        options.load_options(path)


@pytest.mark.slow
def test_a_weights_folder_with_missing_or_misshapen_keys_is_named(tiny, tmp_path, capsys, in_process):
    opts = options.parse_args(["--weights_init", "scratch", "--height", "64", "--width", "192"])
    folder = model_folder.save_model_folder(str(tmp_path / "weights"), FSREModel(opts).networks(), opts)
    decoder = torch.load(os.path.join(folder, "decoder.pth"), weights_only=True)
    del decoder["seg_decoder.decoder.10.conv.weight"]
    decoder["depth_decoder.decoder.0.conv.conv.weight"] = torch.zeros(1, 1, 3, 3)
    torch.save(decoder, os.path.join(folder, "decoder.pth"))
    os.remove(
        os.path.join(folder, "checksums.sha256")
    )  # edited by hand: a folder without checksums, as released ones
    message = train_error(tiny, tmp_path, capsys, "--load_weights_folder", folder)
    assert f"{folder}/decoder.pth does not fit the JointDecoder" in message
    assert "missing (1): seg_decoder.decoder.10.conv.weight" in message
    assert "wrong shape (1): depth_decoder.decoder.0.conv.conv.weight: file (1, 1, 3, 3)" in message
    no_run_written(tmp_path)

    split = write_split(tiny, [f"{DRIVE} {i} l" for i in range(1, 4)])
    os.rename(os.path.join(split, "train_files.txt"), os.path.join(split, "test_files.txt"))
    assert (
        utils.run_cli(
            evaluate_depth.main,
            ["--data_path", tiny.data_path, "--eval_split", split, "--load_weights_folder", folder],
        )
        == utils.EXIT_ERROR
    )
    assert "seg_decoder.decoder.10.conv.weight" in capsys.readouterr().err
    assert not glob.glob(os.path.join(folder, "metrics_*")) and not glob.glob(os.path.join(folder, "*.tmp*"))
