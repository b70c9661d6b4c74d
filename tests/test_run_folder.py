"""The run folder: a run never destroys another run's files, checkpoints rotate within their own run, a write
that fails (a full disk, a folder in the way) is one line and leaves the previous checkpoint loadable, and
a kill at any point of a folder replacement leaves the old or the new folder."""

from __future__ import annotations

import os
import resource
import signal
import subprocess
import threading

import pytest
import torch
from helpers import (
    checkpoint,
    copy_run,
    corrupt_inside_largest_tensor,
    finish,
    run_args,
    start,
    trainer_error,
)

import options
import utils
from checkpoints import model_folder, training_state
from model import FSREModel
from trainer import Trainer
from utils.files import (
    OWNER_MARKER,
    atomic_folder,
    atomic_write,
    is_temporary,
    mark_owned,
    recover_folder,
    remove_stale_temporaries,
    temporary_path,
)


def fill(folder, text):
    os.makedirs(folder, exist_ok=True)
    for name in ("a.txt", "b.txt"):
        with open(os.path.join(folder, name), "w") as f:
            f.write(text)


def contents(folder):
    names = sorted(n for n in os.listdir(folder) if n != OWNER_MARKER)
    return {name: open(os.path.join(folder, name)).read() for name in names}


def limit_file_size(max_bytes: int):
    """preexec_fn: files of the process cannot grow beyond ``max_bytes``; a write past it fails part-way
    (EFBIG, as ENOSPC on a full disk) instead of killing the process (SIGXFSZ ignored)."""

    def limit():
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (max_bytes, max_bytes))

    return limit


@pytest.mark.slow
def test_a_fresh_run_over_a_run_is_refused_and_overwrite_moves_that_run_aside(
    tiny_run, tmp_path, in_process, capsys
):
    tiny, run = copy_run(tiny_run, tmp_path)
    before = sorted(os.listdir(run / "checkpoints"))
    message = trainer_error(tiny, run.parent, capsys)
    assert message.startswith(
        f"{run} already holds a run (checkpoints/step_00000001.pth, checkpoints/"
        f"step_00000002.pth, models/weights_0 and "
    )
    assert message.endswith(
        "continue it with --resume, give another --model_name, or start afresh with --overwrite "
        "(which moves it aside)"
    )
    # resuming from an older checkpoint of the run would write over its later ones
    message = trainer_error(tiny, run.parent, capsys, "--resume", checkpoint(run, 1))
    assert message.startswith(
        f"--resume {checkpoint(run, 1)}: the run in {run} goes further (step_00000002.pth); "
        f"resume into a new folder with another --model_name"
    )
    assert sorted(os.listdir(run / "checkpoints")) == before
    # a checkpoint path that does not exist is said to be missing, whatever the folder holds
    missing = str(run / "checkpoints" / "step_00000099.pth")
    assert trainer_error(tiny, run.parent, capsys, "--resume", missing) == f"--resume {missing}: not found"

    trainer = Trainer(options.parse_args(run_args(tiny, run.parent, "--num_workers", "0", "--overwrite")))
    trainer.close()
    (aside,) = [p for p in os.listdir(run.parent) if p.startswith("fsre.replaced-")]
    assert sorted(os.listdir(run.parent / aside / "checkpoints")) == before
    assert sorted(os.listdir(run.parent / aside / "models")) == ["opt.json", "weights_0"]
    assert not os.path.exists(run / "checkpoints") and os.listdir(run / "models") == ["opt.json"]


def test_rotation_deletes_only_the_runs_own_older_checkpoints(tmp_path):
    folder = str(tmp_path)
    for step, run_id in ((40, "other"), (50, "ours"), (60, "other")):  # another run's; a later one of ours
        training_state.save_checkpoint(folder, step, {"networks": {}, "run_id": run_id}, keep=5)
    for step in (1, 2, 3):
        training_state.save_checkpoint(folder, step, {"networks": {}, "run_id": "ours"}, keep=2)
    assert sorted(os.listdir(folder)) == [f"step_{s:08d}.pth" for s in (2, 3, 40, 50, 60)]


def test_only_the_newest_checkpoints_are_kept(tmp_path):
    folder = str(tmp_path / "checkpoints")
    for step in (3, 6, 9, 12, 15):
        training_state.save_checkpoint(folder, step, {"networks": {}, "step": step, "run_id": "a"}, keep=2)
    assert sorted(os.listdir(folder)) == ["step_00000012.pth", "step_00000015.pth"]


@pytest.mark.slow
def test_resume_with_every_checkpoint_damaged_is_refused_and_deletes_nothing(
    tiny_run, tmp_path, in_process, capsys
):
    tiny, run = copy_run(tiny_run, tmp_path)
    for step in (1, 2):
        corrupt_inside_largest_tensor(checkpoint(run, step))
    before = sorted(os.listdir(run / "checkpoints"))
    message = trainer_error(tiny, run.parent, capsys, "--resume")
    assert message.startswith(
        f"no checkpoint of {run}/checkpoints loads ({checkpoint(run, 2)} is damaged: its content "
        f"differs from the SHA-256 stored in it; {checkpoint(run, 1)} is damaged"
    )
    assert message.endswith(
        "resume from a copy with --resume CHECKPOINT, or start the run again with --overwrite"
    )
    assert sorted(os.listdir(run / "checkpoints")) == before


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


@pytest.mark.slow
def test_a_checkpoint_write_that_fails_part_way_is_one_line_and_the_previous_checkpoint_stays(tmp_path):

    from checkpoints import training_state
    from datasets.synthetic.kitti_frames import make_tiny_kitti

    tiny = make_tiny_kitti(str(tmp_path / "data"), exts=("png",))
    args = run_args(tiny, tmp_path, "--num_workers", "0", "--checkpoint_every", "1")
    first = start([*args, "--max_steps", "1"])
    code, err = finish(first)
    assert code == 0, err
    run = tmp_path / "fsre" / "checkpoints"
    (saved,) = os.listdir(run)
    size = os.path.getsize(run / saved)
    # the resumed run's next checkpoint stops growing half-way: torch's writer then reported "unexpected pos"
    second = start([*args, "--max_steps", "2", "--resume"], preexec_fn=limit_file_size(size // 2))
    code, err = finish(second)
    assert code == utils.EXIT_ERROR and "Traceback" not in err, err
    assert err.strip().splitlines()[-1] == (
        f"error: cannot write {run / 'step_00000002.pth'}: File too large; the last complete training "
        f"state is "
        f"{run / saved}"
    )
    assert os.listdir(run) == [saved]  # no half-written file left, the previous one whole
    assert training_state.load_checkpoint(str(run / saved))["step"] == 1


@pytest.mark.slow
def test_a_full_disk_mid_run_is_one_line_and_the_previous_checkpoint_stays(
    tiny, tmp_path, in_process, capsys, monkeypatch
):
    # a real ENOSPC: from the second checkpoint on, torch.save writes into /dev/full
    torch_save, saves = torch.save, []

    def save_to_full_disk(obj, f, *args, **kwargs):
        saves.append(f)
        if len(saves) == 1:
            return torch_save(obj, f, *args, **kwargs)
        with open("/dev/full", "wb") as full:
            return torch_save(obj, full, *args, **kwargs)

    monkeypatch.setattr(torch, "save", save_to_full_disk)
    run = tmp_path / "fsre"
    message = trainer_error(tiny, tmp_path, capsys, "--checkpoint_every", "1", "--max_steps", "2")
    assert message == (
        f"cannot write {checkpoint(run, 2)}: No space left on device; the last complete training "
        f"state is {checkpoint(run, 1)}"
    )
    assert training_state.load_checkpoint(checkpoint(run, 1))["step"] == 1
    assert os.listdir(run / "checkpoints") == ["step_00000001.pth"]


@pytest.mark.parametrize("obstacle", ["a file where the folder goes", "a read-only folder"])
def test_a_run_folder_that_cannot_be_written_is_one_line(tiny, tmp_path, capsys, obstacle):
    log_dir = tmp_path / "logs"
    if obstacle == "a file where the folder goes":
        log_dir.write_text("")
        reason = "Not a directory"
    else:
        if os.geteuid() == 0:
            pytest.skip("root writes into read-only folders")
        log_dir.mkdir(mode=0o555)
        reason = "Permission denied"
    message = trainer_error(tiny, log_dir, capsys)
    assert message == f"cannot write the run folder {log_dir / 'fsre'}: {reason}"


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


def test_temporary_names_are_unique_per_writer_and_only_dead_writers_leftovers_are_removed(tmp_path):
    names = set()
    threads = [
        threading.Thread(target=lambda: names.add(temporary_path(str(tmp_path / "a.png")))) for _ in range(8)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(names) == 8 and all(n.endswith(".png") and is_temporary(n) for n in names)
    gone = subprocess.Popen(["true"])
    gone.wait()
    dead = temporary_path(str(tmp_path / "a.png"), pid=gone.pid)
    live = temporary_path(str(tmp_path / "b.png"))
    elsewhere = str(tmp_path / f"c.tmp-{utils.HOST}x-{gone.pid}-0.png")  # another host: never judged
    for path in (dead, live, elsewhere):
        open(path, "w").close()
    assert (
        remove_stale_temporaries(str(tmp_path)) == []
    )  # a folder without the marker: nothing proves them ours
    mark_owned(str(tmp_path))
    assert remove_stale_temporaries(str(tmp_path)) == [
        f"removed {dead} (left by process {gone.pid}, which is gone)"
    ]
    assert sorted(os.listdir(tmp_path)) == sorted(
        [OWNER_MARKER, *(os.path.basename(p) for p in (live, elsewhere))]
    )


@pytest.mark.parametrize(
    "kill_at", ["while filling", "after setting the old folder aside", "after renaming the new folder in"]
)
def test_a_kill_at_any_point_of_a_folder_replacement_leaves_the_old_or_the_new_folder(tmp_path, kill_at):
    folder = str(tmp_path / "weights_3")
    with atomic_folder(folder) as tmp:  # the project's own folder (with its marker): replaceable
        fill(tmp, "old")
    child = os.fork()
    if child == 0:  # killed (SIGKILL: no cleanup runs) at the chosen point
        replace, renames = os.replace, []

        def replace_then_maybe_die(src, dst):
            replace(src, dst)
            renames.append(dst)
            if (kill_at, len(renames)) in (
                ("after setting the old folder aside", 1),
                ("after renaming the new folder in", 2),
            ):
                os.kill(os.getpid(), signal.SIGKILL)

        os.replace = replace_then_maybe_die
        with atomic_folder(folder) as tmp:
            fill(tmp, "new")
            if kill_at == "while filling":
                os.kill(os.getpid(), signal.SIGKILL)
        os._exit(0)
    _, status = os.waitpid(child, 0)
    assert os.WIFSIGNALED(status)
    recover_folder(folder)  # what the next write of the folder, or a read of a missing one, does first
    expected = "new" if kill_at == "after renaming the new folder in" else "old"
    assert contents(folder) == {"a.txt": expected, "b.txt": expected}
    assert os.listdir(tmp_path) == ["weights_3"]
