"""Training from the command line on a tiny KITTI-layout drive: every Table 2 configuration,
checkpoints, TensorBoard files, the learning-rate schedule and two-process DDP on the CPU."""

import math
import os
import subprocess
import sys

import helpers
import pytest
import torch
from tb_reader import read_run

import options
import utils
from checkpoints import model_folder
from conftest import PROCESS_DEADLINE_S, PROJECT_DIR
from datasets.synthetic.kitti_frames import make_tiny_kitti
from model import FSREModel
from trainer import Trainer
from utils.files import OWNER_MARKER

CONFIGS = ["baseline", "semantics", "cma", "sgt", "full"]


def train_args(tiny, log_dir, *extra):
    """Logging every step with one image, keeping one checkpoint."""
    return helpers.train_args(
        tiny, log_dir, "--log_frequency", "1", "--num_log_images", "1", "--keep_checkpoints", "1", *extra
    )


def run_cli(args, env_extra=None, module="train.py"):
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": PROJECT_DIR, **(env_extra or {})}
    result = subprocess.run(
        [sys.executable, module, *args],
        cwd=PROJECT_DIR,
        env=env,
        capture_output=True,
        text=True,
        timeout=PROCESS_DEADLINE_S,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return result


def initial_model(opts):
    utils.seed_everything(opts.seed)  # what the trainer does before building the model
    return FSREModel(opts)


@pytest.mark.slow
@pytest.mark.parametrize("config", CONFIGS)
def test_every_configuration_trains_from_the_command_line(tiny, tmp_path, config):
    args = train_args(
        tiny,
        tmp_path,
        "--config",
        config,
        "--model_name",
        config,
        "--num_epochs",
        "1",
        "--max_steps",
        "2",
        "--no_validation",
    )
    run_cli(args)
    scalars, _ = read_run(str(tmp_path / config / "train"))
    losses = [value for _, value in scalars["loss"]]
    assert len(losses) == 2 and all(math.isfinite(v) for v in losses)
    assert ("semantic" in scalars) == (config != "baseline")
    assert ("sgt/1" in scalars) == (config in ("sgt", "full"))

    opts = options.parse_args(args)
    before = initial_model(opts)
    after = FSREModel(opts)
    model_folder.load_model_folder(str(tmp_path / config / "models" / "weights_0"), after.networks())
    for (name, p0), p1 in zip(before.named_parameters(), after.parameters()):
        assert not torch.equal(p0, p1), f"{name} did not change"


@pytest.mark.slow
def test_checkpoint_loads_back_bit_exactly_and_tensorboard_files_parse(tiny, tmp_path):
    opts = options.parse_args(train_args(tiny, tmp_path, "--num_epochs", "1", "--max_steps", "2"))
    trainer = Trainer(opts)
    assert set(trainer.models) == {"encoder", "decoder", "pose_encoder", "pose"}
    trainer.train()
    folder = tmp_path / "fsre" / "models" / "weights_0_best"  # the only validation so far is the best
    assert sorted(os.listdir(folder)) == [
        OWNER_MARKER,  # the folder is the project's: a later save may replace it (utils/files.py)
        "adam.pth",
        "checksums.sha256",
        "decoder.pth",
        "encoder.pth",
        "model_card.json",  # what the weights are, for a reader without this code (checkpoints/model_card.py)
        "opt.json",
        "pose.pth",
        "pose_encoder.pth",
    ]
    fresh = FSREModel(opts)
    metadata = model_folder.load_model_folder(str(folder), fresh.networks())
    assert metadata == {"height": 64, "width": 192, "epoch": 0, "step": 2}
    for (key, a), b in zip(trainer.model.state_dict().items(), fresh.state_dict().values()):
        assert torch.equal(a, b), key
    assert options.load_options(str(folder / "opt.json")).config == "full"

    scalars, images = read_run(str(tmp_path / "fsre" / "train"))
    assert [step for step, _ in scalars["loss"]] == [0, 1]
    assert scalars["learning_rate"][0][1] == pytest.approx(1.5e-4)
    for tag in (
        "color_0_0/0",
        "color_pred_-1_0/0",
        "disp_0/0",
        "automask_0/0",
        "seg_pred/0",
        "seg_target/0",
        "sgt_boundary_1/0",
    ):
        assert tag in images, tag
    assert images["disp_0/0"][0][1].shape == (64, 192, 3)
    assert images["sgt_boundary_2/0"][0][1].shape[:2] == (16, 48)
    val_scalars, _ = read_run(str(tmp_path / "fsre" / "val"))
    assert math.isfinite(val_scalars["loss"][0][1]) and 0 < val_scalars["de/abs_rel"][0][1] < 1


@pytest.mark.slow
def test_process_batch_returns_outputs_and_the_total_loss(tiny, tmp_path):
    trainer = Trainer(options.parse_args(train_args(tiny, tmp_path, "--no_validation")))
    inputs = next(iter(trainer.train_loader))
    outputs, losses = trainer.process_batch(inputs)
    assert outputs[("disp", 0)].shape == (2, 1, 64, 192)
    expected = sum((losses[f"photometric/{s}"] + 1e-3 * losses[f"smoothness/{s}"]) / 2**s for s in range(4))
    expected = expected + 0.3 * losses["semantic"] + 0.1 * sum(losses[f"sgt/{s}"] / 2**s for s in (3, 2, 1))
    assert losses["loss"].item() == pytest.approx(expected.item(), rel=1e-6)


@pytest.mark.slow
def test_learning_rate_steps_at_the_milestones(tiny, tmp_path):
    opts = options.parse_args(
        train_args(
            tiny,
            tmp_path,
            "--num_epochs",
            "3",
            "--lr_milestones",
            "1",
            "2",
            "--no_validation",
            "--config",
            "baseline",
        )
    )
    trainer = Trainer(opts)
    trainer.train()
    scalars, _ = read_run(str(tmp_path / "fsre" / "train"))
    per_epoch = {step // 3: lr for step, lr in scalars["learning_rate"]}  # 3 steps per epoch
    assert per_epoch == pytest.approx({0: 1.5e-4, 1: 1.5e-5, 2: 1.5e-6})
    assert sorted(os.listdir(tmp_path / "fsre" / "models")) == [
        "opt.json",
        "weights_0",
        "weights_1",
        "weights_2",
    ]


@pytest.mark.slow
def test_two_process_ddp_on_cpu_ends_with_identical_weights_and_only_rank0_writes(tiny, tmp_path):
    log_dir, dump_dir = tmp_path / "logs", tmp_path / "dump"
    dump_dir.mkdir()
    args = train_args(tiny, log_dir, "--num_epochs", "1", "--max_steps", "2")
    torchrun = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2"]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": PROJECT_DIR}
    result = subprocess.run(
        [*torchrun, "tests/ddp_worker.py", str(dump_dir), *args],
        cwd=PROJECT_DIR,
        env=env,
        capture_output=True,
        text=True,
        timeout=PROCESS_DEADLINE_S,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    rank0 = torch.load(dump_dir / "rank0.pt", weights_only=True)
    rank1 = torch.load(dump_dir / "rank1.pt", weights_only=True)
    for key in rank0:
        assert torch.equal(rank0[key], rank1[key]), key
    written = sorted(
        os.path.relpath(os.path.join(root, f), log_dir) for root, _, files in os.walk(log_dir) for f in files
    )
    assert len([w for w in written if w.startswith("fsre/train/events")]) == 1
    assert len([w for w in written if w.startswith("fsre/val/events")]) == 1
    assert [w for w in written if "models" in w] == sorted(
        ["fsre/models/opt.json"]
        + [
            f"fsre/models/weights_0_best/{f}"
            for f in (
                OWNER_MARKER,
                "adam.pth",
                "checksums.sha256",
                "decoder.pth",
                "encoder.pth",
                "model_card.json",
                "opt.json",
                "pose.pth",
                "pose_encoder.pth",
            )
        ]
    )
    fresh = FSREModel(options.parse_args(args))
    model_folder.load_model_folder(str(log_dir / "fsre" / "models" / "weights_0_best"), fresh.networks())
    assert all(torch.equal(v, rank0[k]) for k, v in fresh.state_dict().items())


@pytest.mark.slow
def test_ddp_validation_with_more_processes_than_validation_items(tmp_path):
    """A process whose validation shard is empty still joins the reduction with every loss key."""
    tiny = make_tiny_kitti(
        str(tmp_path / "data"), num_frames=5, exts=("png",)
    )  # 3 training, 2 validation items
    args = train_args(
        tiny,
        tmp_path / "logs",
        "--num_epochs",
        "1",
        "--max_steps",
        "1",
        "--batch_size",
        "3",
        "--config",
        "baseline",
    )
    torchrun = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "3"]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": PROJECT_DIR}
    result = subprocess.run(
        [*torchrun, "train.py", *args],
        cwd=PROJECT_DIR,
        env=env,
        capture_output=True,
        text=True,
        timeout=PROCESS_DEADLINE_S,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert "validation after epoch 0: loss" in result.stderr


def test_batch_must_divide_among_processes():
    with pytest.raises(SystemExit):
        options.parse_args(["--batch_size", "0"])
