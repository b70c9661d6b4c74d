"""Runs that survive: exact resume after a real SIGTERM, atomic checkpoints, skipped non-finite steps,
and one clear error (exit code 2, the culprit named, nothing half-written) for each kind of bad input."""

import glob
import os
import shutil
import signal
import subprocess
import sys

import numpy as np
import pytest
import torch
from PIL import Image
from tb_reader import read_run

import evaluate_depth
import layers
import options
import train
import utils
from checkpoints import model_folder, training_state
from conftest import PROCESS_DEADLINE_S, PROJECT_DIR
from fileio.atomic import atomic_write
from model import FSREModel
from runtime.processes import init_runtime
from synthetic.kitti_frames import DRIVE, make_tiny_kitti, write_label_png
from trainer import Trainer
from training import resume, signals

STEPS = 4  # 3 steps per epoch (6 items, batch 2): the resumed half crosses an epoch end and a milestone


def run_args(tiny, log_dir, *extra):
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
        "--weights_init",
        "scratch",
        "--log_dir",
        str(log_dir),
        "--log_frequency",
        "1",
        "--num_log_images",
        "0",
        "--config",
        "baseline",
        "--no_validation",
        "--num_epochs",
        "2",
        "--max_steps",
        str(STEPS),
        "--lr_milestones",
        "1",
        "--save_frequency",
        "2",
        "--deterministic",
        *extra,
    ]


def start(args, torchrun=(), script="train.py", **popen):
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
    _, stderr = process.communicate(timeout=PROCESS_DEADLINE_S)
    return process.returncode, stderr


def files_under(folder):
    return sorted(
        os.path.relpath(os.path.join(root, f), folder) for root, _, names in os.walk(folder) for f in names
    )


def assert_nothing_half_written(folder):
    leftovers = [f for f in files_under(folder) if ".tmp" in f] if os.path.isdir(folder) else []
    assert leftovers == []


@pytest.fixture()
def tiny(tmp_path):
    return make_tiny_kitti(str(tmp_path / "data"), exts=("png",))


@pytest.fixture()
def in_process():
    """Training in this process: one thread (two oversubscribe a busy 2-core machine), settings restored."""
    threads, deterministic = torch.get_num_threads(), torch.are_deterministic_algorithms_enabled()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
    torch.use_deterministic_algorithms(deterministic)


# ------------------------------------------------------------------------------------------------
# exact resume
# ------------------------------------------------------------------------------------------------
def test_run_stopped_by_sigterm_restarted_by_torchrun_and_resumed_ends_bit_identical(tiny, tmp_path):
    whole_dir, split_dir = tmp_path / "whole", tmp_path / "split"
    # the uninterrupted run passes --resume too: with no checkpoint yet it starts fresh
    whole = start(run_args(tiny, whole_dir, "--num_workers", "0", "--resume"))
    # SIGTERM as step 2 begins (a test-only callback, tests/signal_at_step.py): the worker finishes the step,
    # saves and exits with 143; torchrun restarts it and it resumes, with a data-loading process (item
    # augmentation does not depend on who loads it)
    torchrun = ("-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "1", "--max-restarts", "1")
    code, stderr = finish(
        start(
            [str(STEPS // 2), *run_args(tiny, split_dir, "--num_workers", "1", "--resume")],
            torchrun,
            script="tests/signal_at_step.py",
        )
    )
    assert code == 0, stderr[-3000:]
    assert "received SIGTERM" in stderr and "stopped by SIGTERM" in stderr and "Traceback" not in stderr
    assert "failed (exitcode: 143)" in stderr  # 128 + SIGTERM: torchrun sees a failure and restarts
    assert "saved the training state (epoch 0, batch 2, step 2)" in stderr
    assert "resumed from" in stderr and "epoch 0, batch 2 of the epoch, step 2" in stderr
    code, whole_err = finish(whole)
    assert code == 0, whole_err[-3000:]
    assert "no checkpoint" in whole_err and "resumed" not in whole_err

    final = f"step_{STEPS:08d}.pth"
    a = training_state.load_checkpoint(str(whole_dir / "fsre" / "checkpoints" / final))
    b = training_state.load_checkpoint(str(split_dir / "fsre" / "checkpoints" / final))
    assert (
        (a["epoch"], a["step"]) == (b["epoch"], b["step"]) == (1, STEPS)
    )  # epoch 1 ended part-way by the budget
    for name in a["networks"]:
        for key, value in a["networks"][name].items():
            assert torch.equal(value, b["networks"][name][key]), f"{name}.{key}"
    for index, state in a["optimizer"]["state"].items():
        for key, value in state.items():
            assert torch.equal(value, b["optimizer"]["state"][index][key]), f"adam {index} {key}"
    assert a["scheduler"]["last_epoch"] == b["scheduler"]["last_epoch"] == 1
    whole_scalars, _ = read_run(str(whole_dir / "fsre" / "train"))
    split_scalars, _ = read_run(
        str(split_dir / "fsre" / "train")
    )  # two event files: before and after the stop
    assert len(whole_scalars["loss"]) == STEPS
    for tag in ("loss", "photometric/0", "learning_rate"):
        assert sorted(split_scalars[tag]) == whole_scalars[tag], tag
    assert_nothing_half_written(str(split_dir))


# ------------------------------------------------------------------------------------------------
# checkpoint files
# ------------------------------------------------------------------------------------------------
def test_a_failed_checkpoint_write_leaves_the_previous_one_loadable(tmp_path, monkeypatch):
    folder = str(tmp_path / "checkpoints")
    state = {"networks": {"w": torch.arange(6.0)}, "step": 1, "run_id": "a"}
    training_state.save_checkpoint(folder, 1, state, keep=3)

    def disk_full(obj, f, *args, **kwargs):
        f.write(b"PK\x03\x04 half a file")
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(training_state.torch, "save", disk_full)
    with pytest.raises(OSError, match="No space left"):
        training_state.save_checkpoint(folder, 2, {**state, "step": 2}, keep=3)
    monkeypatch.undo()
    assert os.listdir(folder) == ["step_00000001.pth"]  # no temporary file, no half-written step 2
    path, loaded = training_state.latest_checkpoint(folder)
    assert path.endswith("step_00000001.pth") and torch.equal(loaded["networks"]["w"], torch.arange(6.0))

    # a damaged newest file (written by something else) is skipped for the newest one that loads
    with open(os.path.join(folder, "step_00000005.pth"), "wb") as f:
        f.write(b"garbage")
    assert training_state.latest_checkpoint(folder)[0].endswith("step_00000001.pth")


def test_a_failed_model_folder_write_leaves_no_folder(tmp_path, monkeypatch):
    opts = options.parse_args(["--weights_init", "scratch", "--config", "baseline"])
    networks = {"pose": FSREModel(opts).pose}
    writes = []

    def disk_full_on_second_file(obj, path, *args, **kwargs):
        writes.append(path)
        if len(writes) == 2:
            raise OSError(28, "No space left on device")
        return torch_save(obj, path, *args, **kwargs)

    torch_save = torch.save
    monkeypatch.setattr(model_folder.torch, "save", disk_full_on_second_file)
    with pytest.raises(OSError, match="No space left"):
        model_folder.save_model_folder(
            str(tmp_path / "weights_0"), networks, opts, torch.optim.Adam(networks["pose"].parameters())
        )
    assert os.listdir(tmp_path) == []


def test_only_the_newest_checkpoints_are_kept(tmp_path):
    folder = str(tmp_path / "checkpoints")
    for step in (3, 6, 9, 12, 15):
        training_state.save_checkpoint(folder, step, {"networks": {}, "step": step, "run_id": "a"}, keep=2)
    assert sorted(os.listdir(folder)) == ["step_00000012.pth", "step_00000015.pth"]


# ------------------------------------------------------------------------------------------------
# non-finite losses
# ------------------------------------------------------------------------------------------------
def poison(trainer, monkeypatch, nan_loss=(), nan_grid=(), nan_gradient=()):
    """On the given steps make NaN: the total loss; one coordinate of a sampling grid (the warped image and
    the loss stay finite: grid_sample clamps it to the border); one gradient. Count the optimizer's real
    steps."""
    nan = float("nan")
    forward, project_3d = trainer.forward, layers.project_3d
    steps_taken = []

    def forward_with_nan_loss(batch, with_outputs=True):
        outputs, losses = forward(batch, with_outputs)
        if trainer.step in nan_loss:
            losses["loss"] = losses["loss"] * nan
        return outputs, losses

    def project_3d_with_nan(*args, **kwargs):
        grid = project_3d(*args, **kwargs)
        if trainer.step in nan_grid:
            grid = grid.clone()
            grid[0, 0, 0, 0] = nan
        return grid

    trainer.forward = forward_with_nan_loss
    monkeypatch.setattr(layers, "project_3d", project_3d_with_nan)
    next(trainer.model.parameters()).register_hook(
        lambda grad: grad * nan if trainer.step in nan_gradient else grad
    )
    trainer.optimizer.register_step_pre_hook(lambda *_: steps_taken.append(trainer.step))
    return steps_taken


def test_non_finite_steps_are_skipped_and_too_many_in_a_row_stop_with_the_last_good_state(
    tiny, tmp_path, in_process, monkeypatch
):
    opts = options.parse_args(
        run_args(tiny, tmp_path, "--num_workers", "0", "--max_steps", "6", "--max_nonfinite_steps", "2")
    )
    trainer = Trainer(opts)
    # a NaN grid with a finite loss must not reach the backward pass: on the CPU it would crash the process
    steps_taken = poison(trainer, monkeypatch, nan_loss={1}, nan_grid={3}, nan_gradient={4})
    with pytest.raises(
        utils.TrainingError, match=r"not finite for 2 steps in a row \(steps 3\.\.4.*step_00000005"
    ):
        trainer.train()
    assert steps_taken == [0, 2]  # step 1 skipped alone; steps 3 and 4 in a row end the run
    scalars, _ = read_run(str(tmp_path / "fsre" / "train"))
    assert [v for _, v in scalars["nonfinite_steps"]] == [0, 1, 1, 2, 3]
    state = training_state.load_checkpoint(str(tmp_path / "fsre" / "checkpoints" / "step_00000005.pth"))
    assert (state["epoch"], state["batch_in_epoch"], state["nonfinite_total"]) == (1, 2, 3)
    for name, net in trainer.models.items():  # the weights after step 2, the last good one
        for key, value in net.state_dict().items():
            assert torch.equal(state["networks"][name][key], value) and torch.isfinite(value.float()).all()
    assert all(s["step"] == 2 for s in state["optimizer"]["state"].values())  # Adam stepped twice


# ------------------------------------------------------------------------------------------------
# bad inputs: one clear error, exit code 2, no half-written output
# ------------------------------------------------------------------------------------------------
def image_path(tiny, frame, camera="02"):
    return os.path.join(tiny.data_path, DRIVE, f"image_{camera}", "data", f"{frame:010d}.png")


def write_split(tiny, lines):
    split = os.path.join(os.path.dirname(tiny.split_dir), "bad_split")
    os.makedirs(split, exist_ok=True)
    for name in ("train_files.txt", "val_files.txt"):
        with open(os.path.join(split, name), "w") as f:
            f.write("\n".join(lines) + "\n")
    return split


def train_error(tiny, tmp_path, capsys, *extra):
    """Run train.py's main as the command line does; return its stderr after asserting exit code 2."""
    args = [
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
        "--log_dir",
        str(tmp_path / "logs"),
        "--max_steps",
        "1",
        "--num_epochs",
        "1",
        *extra,
    ]
    capsys.readouterr()
    assert utils.run_cli(train.main, args) == utils.EXIT_ERROR
    err = capsys.readouterr().err
    assert "Traceback" not in err
    return err.split("error: ", 1)[1].strip()


def no_run_written(tmp_path):
    assert not os.path.exists(tmp_path / "logs" / "fsre")  # inputs are checked before the run folder exists


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
    assert not [f for f in files_under(run) if f.startswith(("models/weights", "checkpoints"))]


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


@pytest.mark.parametrize("option", ["--height", "--width"])
def test_a_size_that_is_not_a_multiple_of_32_names_the_option(tiny, tmp_path, capsys, option):
    with pytest.raises(SystemExit) as exit_info:
        utils.run_cli(
            train.main, ["--data_path", tiny.data_path, option, "100", "--log_dir", str(tmp_path / "logs")]
        )
    assert exit_info.value.code == 2
    assert f"argument {option}: must be a positive multiple of 32" in capsys.readouterr().err
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


# ------------------------------------------------------------------------------------------------
# the pieces of a resume
# ------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("replicas", [1, 2])
def test_a_resumed_epoch_yields_the_rest_of_the_same_order_with_the_same_item_seeds(replicas):
    items = list(range(10))
    samplers = [resume.ResumableSampler(items, replicas, rank, seed=3) for rank in range(replicas)]
    for sampler in samplers:
        sampler.set_epoch(1)
    whole = [list(sampler) for sampler in samplers]
    assert sorted(i for shard in whole for i, _ in shard) == items  # every item once per epoch
    for sampler, full in zip(samplers, whole):
        sampler.skip = 2
        assert list(sampler) == full[2:] and len(sampler) == len(full) - 2
    seeds = samplers[0].item_seeds()
    assert all(seeds[i] == seed for i, seed in whole[0])  # a function of (seed, epoch, index)
    samplers[0].skip = 0
    samplers[0].set_epoch(2)
    assert [i for i, _ in samplers[0]] != [i for i, _ in whole[0]]
    assert (samplers[0].item_seeds() != seeds).all()  # new augmentation draws every epoch


def test_sigint_sets_the_stop_flag_and_a_second_one_interrupts():
    # signal.raise_signal delivers to this thread and runs the Python handler before it returns; os.kill on
    # the process may be delivered to another thread, and the handler then runs some time later (under load,
    # later than the next line)
    # as in a run started from a terminal, however the suite was started (a background job ignores SIGINT)
    before = signal.signal(signal.SIGINT, signal.default_int_handler)
    stop = signals.StopSignal().install()
    try:
        signal.raise_signal(signal.SIGINT)
        assert stop.signum == signal.SIGINT  # no KeyboardInterrupt: the step finishes and the state is saved
        signal.raise_signal(signal.SIGTERM)  # a repeated SIGTERM is ignored while the state is saved
        assert stop.signum == signal.SIGINT
        with pytest.raises(KeyboardInterrupt):
            signal.raise_signal(signal.SIGINT)
    finally:
        stop.uninstall()
        assert signal.getsignal(signal.SIGINT) is signal.default_int_handler
        signal.signal(signal.SIGINT, before)


def test_a_stop_signal_ignored_when_the_run_starts_stays_ignored():
    before = signal.signal(signal.SIGINT, signal.SIG_IGN)  # nohup, or a background job of a shell
    try:
        stop = signals.StopSignal().install()
        signal.raise_signal(signal.SIGINT)
        assert not stop.received
        stop.uninstall()
        assert signal.getsignal(signal.SIGINT) is signal.SIG_IGN
    finally:
        signal.signal(signal.SIGINT, before)


def test_atomic_write_keeps_the_old_file_when_writing_fails(tmp_path):
    path = tmp_path / "sub" / "metrics.json"
    with atomic_write(str(path)) as tmp:
        assert tmp.endswith(".json") and ".tmp-" in tmp and os.path.dirname(tmp) == str(path.parent)
        with open(tmp, "w") as f:
            f.write("old")
    with pytest.raises(OSError):
        with atomic_write(str(path)) as tmp:
            with open(tmp, "w") as f:
                f.write("half")
            raise OSError("disk full")
    assert path.read_text() == "old" and os.listdir(path.parent) == ["metrics.json"]


@pytest.mark.skipif(torch.cuda.is_available(), reason="the message for a machine without CUDA")
def test_a_cuda_device_on_a_machine_without_one_is_a_clear_error():
    with pytest.raises(utils.InputError, match="--device cuda:1: no CUDA device is available here"):
        init_runtime("cuda:1")
    assert init_runtime("cpu").device.type == "cpu"
