"""The training loop's state and plug points: a training state saved in the layout of older versions
resumes, the loop's counters are one object, and the default options never enter the speed path."""

import ast
import glob
import json
import math
import os
import warnings

import pytest
import torch

import options
from checkpoints import training_state
from checkpoints.files import atomic_save
from conftest import PROJECT_DIR
from datasets.synthetic.kitti_frames import make_tiny_kitti
from speed import acceleration, device_inputs
from trainer import Trainer, speed_path_asked
from training import resume
from training.loop_state import ADDED_SINCE, LoopState

# the keys of a training-state checkpoint as every version so far has written them (flat, one level)
CHECKPOINT_KEYS = {
    "networks",
    "optimizer",
    "scheduler",
    "epoch",
    "batch_in_epoch",
    "step",
    "best_val_loss",
    "nonfinite_total",
    "nonfinite_in_row",
    "ended_part_way",
    "rng",
    "options",
    "run_id",
}
SHIFT = 0.25  # added to every saved weight, so that resumed weights tell the checkpoint's from fresh ones


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    return make_tiny_kitti(str(tmp_path_factory.mktemp("kitti")), exts=("png",))


@pytest.fixture()
def one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def loop_args(tiny, log_dir, *extra):
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
        "--no_validation",
        "--input_check",
        "none",
        "--device",
        "cpu",
        "--log_dir",
        str(log_dir),
        *extra,
    ]


def test_loop_state_round_trips_and_older_checkpoints_keep_the_defaults_of_keys_added_since():
    state = LoopState(3, 1, 10, True, 0.5, 4, 2, "abc")
    restored = LoopState()
    restored.load_state_dict({**state.state_dict(), "networks": {}})  # other keys of a checkpoint ignored
    assert restored == state
    assert training_state.RUN_ID_KEY in state.state_dict()
    older = {k: v for k, v in state.state_dict().items() if k not in ADDED_SINCE}
    fresh = LoopState()
    run_id = fresh.run_id
    fresh.load_state_dict(older)
    assert (fresh.step, fresh.ended_part_way, fresh.run_id) == (10, False, run_id)
    with pytest.raises(KeyError, match="nonfinite_total"):
        LoopState().load_state_dict({k: v for k, v in older.items() if k != "nonfinite_total"})
    assert state.after_epoch() == LoopState(4, 0, 10, True, 0.5, 4, 2, "abc") and state.epoch == 3


@pytest.mark.parametrize("oldest", [False, True], ids=["old_layout", "without_keys_added_since"])
def test_a_training_state_in_the_old_layout_resumes(tiny, tmp_path, one_thread, oldest):
    """A checkpoint written with the keys of the old code (by hand here, not by the code under test)
    resumes: weights, optimizer, schedule and every counter come back."""
    opts = options.parse_args(loop_args(tiny, tmp_path))
    trainer = Trainer(opts)
    trainer.close()
    networks = {
        name: {k: v + SHIFT if v.is_floating_point() else v for k, v in net.state_dict().items()}
        for name, net in trainer.models.items()
    }
    with warnings.catch_warnings():  # "scheduler.step() before optimizer.step()": here on purpose
        warnings.simplefilter("ignore")
        trainer.scheduler.step()  # one epoch done: the schedule's state differs from a fresh one's
    old = {
        "networks": networks,
        "optimizer": trainer.optimizer.state_dict(),
        "scheduler": trainer.scheduler.state_dict(),
        "epoch": 1,
        "batch_in_epoch": 2,
        "step": 5,
        "best_val_loss": 0.75,
        "nonfinite_total": 3,
        "nonfinite_in_row": 1,
        "ended_part_way": True,
        "rng": resume.rng_states(),
        "options": json.dumps(vars(opts), sort_keys=True),
        "run_id": "the-old-run",
    }
    assert set(old) == CHECKPOINT_KEYS
    if oldest:
        old = {k: v for k, v in old.items() if k not in ("ended_part_way", "run_id")}
    folder = training_state.checkpoint_dir(trainer.log_path)
    os.makedirs(folder)
    path = training_state.checkpoint_path(folder, 5)
    atomic_save(old, path, with_digest=True)  # as training_state.save_checkpoint writes it

    resumed = Trainer(options.parse_args(loop_args(tiny, tmp_path, "--resume")))
    resumed.close()
    loop = resumed.loop
    assert (loop.epoch, loop.batch_in_epoch, loop.step, loop.best_val_loss) == (1, 2, 5, 0.75)
    assert (loop.nonfinite_total, loop.nonfinite_in_row, resumed.step) == (3, 1, 5)
    if oldest:
        assert loop.ended_part_way is False and loop.run_id not in (None, "the-old-run")
    else:
        assert loop.ended_part_way is True and loop.run_id == "the-old-run"
    assert resumed.last_state == path
    assert resumed.scheduler.state_dict() == trainer.scheduler.state_dict()
    for name, net in resumed.models.items():
        for key, value in net.state_dict().items():
            assert torch.equal(value, networks[name][key]), (name, key)


def test_a_checkpoint_written_now_has_the_old_layout(tiny, tmp_path, one_thread):
    """What the loop saves carries exactly the keys that older code reads."""
    trainer = Trainer(options.parse_args(loop_args(tiny, tmp_path, "--max_steps", "1")))
    trainer.train()
    state = training_state.load_checkpoint(trainer.last_state)
    assert set(state) == CHECKPOINT_KEYS
    assert (state["epoch"], state["batch_in_epoch"], state["step"], state["ended_part_way"]) == (
        0,
        1,
        1,
        True,
    )
    assert state["best_val_loss"] == math.inf and state["nonfinite_total"] == 0
    assert state["run_id"] == trainer.loop.run_id


def test_the_default_options_never_enter_the_speed_path(tiny, tmp_path, one_thread, monkeypatch):
    def entered(*args, **kwargs):
        raise AssertionError("the default path entered speed/")

    for owner, name in (
        (acceleration.Acceleration, "__init__"),
        (acceleration.Acceleration, "prepare_inputs"),
        (acceleration, "run_forward_in_autocast"),
        (device_inputs.DeviceInputs, "__init__"),
        (device_inputs.DeviceInputs, "__call__"),
    ):
        monkeypatch.setattr(owner, name, entered)
    trainer = Trainer(options.parse_args(loop_args(tiny, tmp_path, "--max_steps", "2")))
    assert trainer.speed is None and trainer.train_dataset.input_pipeline == "exact"
    trainer.train()
    assert trainer.step == 2 and trainer.loop.nonfinite_total == 0


@pytest.mark.parametrize(
    "speed_option", [("--input_pipeline", "fast"), ("--amp", "bf16"), ("--channels_last",), ("--compile",)]
)
def test_every_speed_option_and_only_these_plug_in_the_speed_path(speed_option):
    """The speed options' group of ``--help``: each one asked for plugs the speed path in."""
    base = ["--weights_init", "scratch"]
    assert not speed_path_asked(options.parse_args(base))
    assert not speed_path_asked(options.parse_args([*base, "--input_images", "all"]))  # the loader's
    assert speed_path_asked(options.parse_args([*base, *speed_option]))


def test_the_fast_pipeline_plugs_in_on_the_cpu(tiny, tmp_path, one_thread):
    trainer = Trainer(options.parse_args(loop_args(tiny, tmp_path, "--input_pipeline", "fast")))
    trainer.close()
    assert trainer.train_dataset.input_pipeline == "fast_workers"
    assert isinstance(trainer.speed, acceleration.Acceleration)
    assert trainer.speed.device_inputs.image_keys == trainer.train_dataset.image_keys


def test_nothing_in_training_imports_the_trainer_or_the_speed_path():
    """training/ is what the loop relies on: it never reaches back into trainer.py, and the default path's
    loaders never import speed/ (the trainer plugs the speed path in)."""
    found = {}
    for path in sorted(glob.glob(os.path.join(PROJECT_DIR, "training", "*.py"))):
        for node in ast.walk(ast.parse(open(path).read())):
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                names = [node.module or ""]
            else:
                continue
            bad = [n for n in names if n == "trainer" or n.split(".")[0] == "speed"]
            if bad:
                found[os.path.basename(path)] = bad
    assert found == {}
