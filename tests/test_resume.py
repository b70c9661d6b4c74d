"""Resume: a run stopped and resumed ends bit-identical to one that was not, in mid-epoch too; options given
at resume apply or are refused; the state is saved before validation so a failing validation loses
nothing."""

from __future__ import annotations

import json
import os

import pytest
import torch
from helpers import (
    RUN_STEPS,
    assert_nothing_half_written,
    checkpoint,
    copy_run,
    finish,
    run_args,
    start,
    trainer_error,
    validating,
)
from tb_reader import read_run

import options
from checkpoints import training_state
from datasets.synthetic.kitti_frames import DRIVE
from trainer import Trainer
from training import resume


@pytest.mark.slow
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
            [str(RUN_STEPS // 2), *run_args(tiny, split_dir, "--num_workers", "1", "--resume")],
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

    final = f"step_{RUN_STEPS:08d}.pth"
    a = training_state.load_checkpoint(str(whole_dir / "fsre" / "checkpoints" / final))
    b = training_state.load_checkpoint(str(split_dir / "fsre" / "checkpoints" / final))
    assert (
        (a["epoch"], a["step"]) == (b["epoch"], b["step"]) == (1, RUN_STEPS)
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
    assert len(whole_scalars["loss"]) == RUN_STEPS
    for tag in ("loss", "photometric/0", "learning_rate"):
        assert sorted(split_scalars[tag]) == whole_scalars[tag], tag
    assert_nothing_half_written(str(split_dir))


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


@pytest.mark.slow
def test_a_step_budget_that_ends_mid_epoch_is_resumed_mid_epoch(tmp_path):
    import torch
    from tb_reader import read_run

    import options
    from checkpoints import training_state
    from datasets.synthetic.kitti_frames import make_tiny_kitti
    from trainer import Trainer

    tiny = make_tiny_kitti(str(tmp_path / "data"), exts=("png",))
    run = tmp_path / "fsre"

    def train(steps: int) -> None:
        # 3 steps per epoch (6 items, batch 2); --lr_milestones 1: the rate drops tenfold when epoch 0 ends
        args = run_args(tiny, tmp_path, "--num_workers", "0", "--resume", "--max_steps", str(steps))
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


@pytest.mark.slow
def test_a_learning_rate_schedule_given_at_resume_applies_and_is_recorded(tiny_run, tmp_path, in_process):
    tiny, run = copy_run(tiny_run, tmp_path)
    # the run had --learning_rate 1.5e-4 --lr_milestones 1: 1.5e-5 from epoch 1, where it resumes
    trainer = Trainer(
        options.parse_args(
            run_args(
                tiny,
                run.parent,
                "--num_workers",
                "0",
                "--resume",
                "--max_steps",
                "3",
                "--learning_rate",
                "1e-3",
                "--lr_milestones",
                "2",
            )
        )
    )
    trainer.train()
    scalars, _ = read_run(str(run / "train"))
    assert dict(scalars["learning_rate"])[2] == pytest.approx(1e-3)
    saved = json.load(open(run / "models" / "opt.json"))
    assert (saved["learning_rate"], saved["lr_milestones"]) == (1e-3, [2])


@pytest.mark.slow
def test_another_image_size_at_resume_is_refused(tiny_run, tmp_path, in_process, capsys):
    tiny, run = copy_run(tiny_run, tmp_path)
    message = trainer_error(tiny, run.parent, capsys, "--resume", "--height", "96")
    assert message == (
        f"--height 64 -> 96: a resumed run keeps the image size of {checkpoint(run, 2)}; to train at "
        f"another size, start a new run from its weights (--load_weights_folder) with another --model_name"
    )


@pytest.mark.slow
def test_the_state_is_saved_before_validation_so_a_failing_validation_loses_nothing(
    tiny, tmp_path, in_process
):
    scan = os.path.join(tiny.data_path, DRIVE, "velodyne_points", "data", "0000000002.bin")  # validation only
    with open(scan, "r+b") as f:
        f.truncate(10)
    trainer = Trainer(
        options.parse_args(
            validating(
                run_args(tiny, tmp_path, "--num_workers", "0", "--input_check", "none", "--max_steps", "1")
            )
        )
    )
    with pytest.raises(Exception):  # the scan cannot be read
        trainer.train()
    state = training_state.load_checkpoint(checkpoint(tmp_path / "fsre", 1))
    assert (state["epoch"], state["batch_in_epoch"], state["step"]) == (0, 1, 1)  # the budget ended the epoch
