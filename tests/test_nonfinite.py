"""Non-finite losses and gradients: such steps are skipped, too many in a row stop the run with exit code 2
naming its last good checkpoint, whose state is the last good one."""

import pytest
import torch
from helpers import checkpoint, finish, run_args, start
from tb_reader import read_run

import layers
import options
import utils
from checkpoints import training_state
from trainer import Trainer


def poison(trainer, monkeypatch, nan_loss=(), nan_grid=(), nan_gradient=()):
    """On the given steps make NaN: the total loss; one coordinate of a sampling grid (the warped image and
    the loss stay finite: grid_sample clamps it to the border); one gradient. Count the optimizer's real
    steps."""
    nan = float("nan")
    forward, project_3d = trainer.forward, layers.project_3d
    steps_taken = []

    def forward_with_nan_loss(batch, with_outputs=True, **kwargs):
        outputs, losses = forward(batch, with_outputs, **kwargs)
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


@pytest.mark.slow
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


@pytest.mark.slow
def test_a_diverging_run_stops_with_exit_2_naming_its_last_good_checkpoint_instead_of_crashing(
    tiny, tmp_path
):
    # --learning_rate 1e6: step 0 throws the weights far, step 1's loss is NaN; its backward through
    # grid_sample would crash the process on the CPU (pytorch/pytorch#24823; before the fix: exit -11)
    code, stderr = finish(
        start(
            run_args(
                tiny,
                tmp_path,
                "--num_workers",
                "0",
                "--learning_rate",
                "1e6",
                "--max_nonfinite_steps",
                "2",
                "--max_steps",
                "6",
            )
        )
    )
    assert code == utils.EXIT_ERROR, stderr[-3000:]
    assert "Traceback" not in stderr
    path = checkpoint(tmp_path / "fsre", 3)
    assert stderr.strip().endswith(
        f"error: the loss, a sampling grid or a gradient was not finite for 2 steps in a "
        f"row (steps 1..2, --max_nonfinite_steps 2); the last good state is saved in {path}"
    )
    state = training_state.load_checkpoint(path)
    assert all(torch.isfinite(v.float()).all() for net in state["networks"].values() for v in net.values())
    assert all(
        s["step"] == 1 for s in state["optimizer"]["state"].values()
    )  # only step 0 updated the weights
