"""Training under faults (issue 15): a diverging run, bit rot, a run folder that holds another run,
options changed at resume, errors found at an epoch's end, SIGTERM to the whole process group,
two runs at once, kills in the middle of a folder replacement, failed writes and corrupt files.
Each test fails on the code before the fix."""

import json
import logging
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
import zipfile

import pytest
import test_reliability
import torch
from tb_reader import read_run
from test_reliability import finish, run_args, start

import evaluate_depth
import options
import train
import utils
from checkpoints import files, model_folder, training_state
from conftest import PROCESS_DEADLINE_S
from fileio.atomic import (
    OWNER_MARKER,
    atomic_folder,
    is_temporary,
    mark_owned,
    recover_folder,
    remove_stale_temporaries,
    temporary_path,
)
from model import FSREModel
from synthetic.kitti_frames import DRIVE, make_tiny_kitti
from trainer import Trainer
from training import run_folder, signals

CORRUPT_BYTES = 4096

tiny, in_process = test_reliability.tiny, test_reliability.in_process  # the same fixtures


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """One short run, shared read-only: step_00000001.pth (epoch 0, batch 1), step_00000002.pth (the run
    ends at --max_steps 2, in mid-epoch: epoch 0, batch 2) and models/weights_0."""
    root = tmp_path_factory.mktemp("trained")
    tiny = make_tiny_kitti(str(root / "data"), exts=("png",))
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        Trainer(
            options.parse_args(
                run_args(
                    tiny, root / "logs", "--num_workers", "0", "--max_steps", "2", "--checkpoint_every", "1"
                )
            )
        ).train()
    finally:
        torch.set_num_threads(threads)
        torch.use_deterministic_algorithms(False)
    return tiny, root / "logs"


def copy_run(trained, tmp_path):
    """A copy of the shared run to change (hard links: files are replaced by rename, ``own_copy`` before
    editing)."""
    tiny, logs = trained
    shutil.copytree(logs, tmp_path / "logs", copy_function=os.link)
    return tiny, tmp_path / "logs" / "fsre"


def own_copy(path):
    shutil.copy(path, str(path) + ".copy")
    os.replace(str(path) + ".copy", path)


def corrupt_inside_largest_tensor(path):
    """Overwrite CORRUPT_BYTES in the middle of the largest tensor's bytes (a stored zip entry): the file
    still loads."""
    own_copy(path)
    with zipfile.ZipFile(path) as archive:
        entry = max((i for i in archive.infolist() if "/data/" in i.filename), key=lambda i: i.file_size)
    with open(path, "r+b") as f:
        f.seek(entry.header_offset + 26)
        name_length, extra_length = (int.from_bytes(f.read(2), "little") for _ in range(2))
        f.seek(entry.header_offset + 30 + name_length + extra_length + entry.file_size // 2)
        original = f.read(CORRUPT_BYTES)
        f.seek(-len(original), os.SEEK_CUR)
        f.write(bytes(b ^ 0x5A for b in original))


def evaluate_args(tmp_path, folder):
    """evaluate_depth's arguments for a model folder (the model is read before any frame)."""
    with open(tmp_path / "test_files.txt", "w") as f:
        f.write(f"{DRIVE} 1 l\n")
    return ["--data_path", str(tmp_path), "--eval_split", str(tmp_path), "--load_weights_folder", folder]


def checkpoint(run, step):
    return str(run / "checkpoints" / f"step_{step:08d}.pth")


def validating(args):
    return [arg for arg in args if arg != "--no_validation"]


def trainer_error(tiny, log_dir, capsys, *extra, validation=False):
    """Run train.py's main as the command line does; return its one-line error after asserting exit code 2."""
    args = run_args(tiny, log_dir, "--num_workers", "0", *extra)
    capsys.readouterr()
    assert utils.run_cli(train.main, validating(args) if validation else args) == utils.EXIT_ERROR
    err = capsys.readouterr().err
    assert "Traceback" not in err
    message = err.split("error: ", 1)[1].strip()
    assert "\n" not in message
    return message


# ------------------------------------------------------------------------------------------------
# 1. the non-finite guard comes before the backward pass
# ------------------------------------------------------------------------------------------------
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


# ------------------------------------------------------------------------------------------------
# 2. checksums
# ------------------------------------------------------------------------------------------------
def test_a_bit_rotted_newest_checkpoint_is_skipped_for_the_newest_good_one(
    trained, tmp_path, in_process, caplog
):
    tiny, run = copy_run(trained, tmp_path)
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


# ------------------------------------------------------------------------------------------------
# 3. a run never destroys another run's files
# ------------------------------------------------------------------------------------------------
def test_a_fresh_run_over_a_run_is_refused_and_overwrite_moves_that_run_aside(
    trained, tmp_path, in_process, capsys
):
    tiny, run = copy_run(trained, tmp_path)
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


def test_resume_with_every_checkpoint_damaged_is_refused_and_deletes_nothing(
    trained, tmp_path, in_process, capsys
):
    tiny, run = copy_run(trained, tmp_path)
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


# ------------------------------------------------------------------------------------------------
# 4. options given at resume
# ------------------------------------------------------------------------------------------------
def test_a_learning_rate_schedule_given_at_resume_applies_and_is_recorded(trained, tmp_path, in_process):
    tiny, run = copy_run(trained, tmp_path)
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


def test_another_image_size_at_resume_is_refused(trained, tmp_path, in_process, capsys):
    tiny, run = copy_run(trained, tmp_path)
    message = trainer_error(tiny, run.parent, capsys, "--resume", "--height", "96")
    assert message == (
        f"--height 64 -> 96: a resumed run keeps the image size of {checkpoint(run, 2)}; to train at "
        f"another size, start a new run from its weights (--load_weights_folder) with another --model_name"
    )


# ------------------------------------------------------------------------------------------------
# 5. errors found at an epoch's end
# ------------------------------------------------------------------------------------------------
def test_an_empty_validation_split_is_refused_before_training(tiny, tmp_path, capsys):
    open(os.path.join(tiny.split_dir, "val_files.txt"), "w").close()
    message = trainer_error(tiny, tmp_path, capsys, validation=True)
    assert message == (
        f"{tiny.split_dir}/val_files.txt lists no items: validation needs at least one (or train "
        f"with --no_validation)"
    )
    assert not os.path.exists(tmp_path / "fsre")


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


# ------------------------------------------------------------------------------------------------
# 6 and 7. a second run at once; SIGTERM to the whole process group with loader workers
# ------------------------------------------------------------------------------------------------
def test_a_second_run_is_refused_and_sigterm_to_the_process_group_saves_and_exits_143(
    tiny, tmp_path, in_process, capsys
):
    first = start(
        run_args(tiny, tmp_path, "--num_workers", "2", "--max_steps", "1000", "--num_epochs", "1000"),
        start_new_session=True,
    )  # its own process group, as under systemd or SLURM
    lines = []
    reader = threading.Thread(target=lambda: lines.extend(first.stderr), daemon=True)
    reader.start()

    def wait_for(text):
        while not any(text in line for line in lines) and first.poll() is None:
            time.sleep(0.05)

    wait_for("training fsre")
    message = trainer_error(tiny, tmp_path, capsys)  # the second run: this process
    assert message.startswith(
        f"{tmp_path / 'fsre'} is in use by another run (pid {first.pid} on host {utils.HOST}, since "
    )
    assert message.endswith("wait for it to end, or give another --model_name or --log_dir")
    wait_for("step 2/")
    os.killpg(first.pid, signal.SIGTERM)  # the main process and both loader workers
    first.wait(timeout=PROCESS_DEADLINE_S)
    reader.join()
    text = "".join(lines)
    assert first.returncode == 128 + signal.SIGTERM, text[-3000:]
    assert "Traceback" not in text and "received SIGTERM" in text
    path = text.split("stopped by SIGTERM; the state is saved in ", 1)[1].split(";")[0]
    assert training_state.load_checkpoint(path)["step"] >= 2
    with pytest.raises(
        ProcessLookupError
    ):  # no worker outlives the run: the group empties soon after it ends
        deadline = time.monotonic() + PROCESS_DEADLINE_S
        while time.monotonic() < deadline:
            os.killpg(first.pid, 0)
            time.sleep(0.05)


def test_a_forked_loader_worker_does_not_keep_the_run_lock(tmp_path):
    lock = run_folder.RunLock(str(tmp_path)).acquire()
    ready_read, ready_write = os.pipe()
    child = os.fork()
    if child == 0:  # a loader worker: forked with the lock's file open
        signals.loader_worker_init(0)
        os.write(ready_write, b"x")
        time.sleep(60)
        os._exit(0)
    try:
        os.read(ready_read, 1)
        lock.release()
        run_folder.RunLock(str(tmp_path)).acquire().release()  # the worker still lives; the lock is free
    finally:
        os.kill(child, signal.SIGKILL)
        os.waitpid(child, 0)


LEFT_WORKERS_SCRIPT = """
import sys, torch
from torch.utils.data import DataLoader
from training import run_folder, signals
loader = DataLoader(list(range(8)), batch_size=2, num_workers=2, persistent_workers=True,
                    worker_init_fn=signals.loader_worker_init)
next(iter(loader))  # the workers now live on with the loader, ignoring SIGTERM
if sys.argv[1] == "cleanup":
    signals.stop_workers_at_exit()
print("exiting", flush=True)
"""
HANG_EVIDENCE_S = 10  # an exit that takes this long after the last line is hung (only the no-cleanup case)


@pytest.mark.parametrize("cleanup", [True, False])
def test_loader_workers_left_alive_do_not_hang_the_exit(cleanup):
    # a Trainer not closed (or an exception) leaves persistent workers behind; they ignore SIGTERM, which is
    # all that multiprocessing's exit handler sends before joining them without a timeout
    process = subprocess.Popen(
        [sys.executable, "-c", LEFT_WORKERS_SCRIPT, "cleanup" if cleanup else "none"],
        cwd=utils.PROJECT_DIR,
        stdout=subprocess.PIPE,
        start_new_session=True,
    )
    try:
        # the clock starts when the script says it exits (importing torch may take long on a loaded machine);
        # without the cleanup, HANG_EVIDENCE_S more without an exit is taken as the hang
        assert process.stdout.readline() == b"exiting\n"
        code = process.wait(PROCESS_DEADLINE_S if cleanup else HANG_EVIDENCE_S)
    except subprocess.TimeoutExpired:
        code = None
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
    if cleanup:
        assert code == 0
    else:
        assert code is None  # without the cleanup the exit hangs: the hazard is real


# ------------------------------------------------------------------------------------------------
# 8. temporary names; a kill in the middle of a folder replacement
# ------------------------------------------------------------------------------------------------
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
    assert remove_stale_temporaries(str(tmp_path)) == []  # a folder without the marker: nothing proves them ours
    mark_owned(str(tmp_path))
    assert remove_stale_temporaries(str(tmp_path)) == [
        f"removed {dead} (left by process {gone.pid}, which is gone)"
    ]
    assert sorted(os.listdir(tmp_path)) == sorted([OWNER_MARKER, *(os.path.basename(p) for p in (live, elsewhere))])


def fill(folder, text):
    os.makedirs(folder, exist_ok=True)
    for name in ("a.txt", "b.txt"):
        with open(os.path.join(folder, name), "w") as f:
            f.write(text)


def contents(folder):
    names = sorted(n for n in os.listdir(folder) if n != OWNER_MARKER)
    return {name: open(os.path.join(folder, name)).read() for name in names}


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


# ------------------------------------------------------------------------------------------------
# 9. a run folder that cannot be written
# ------------------------------------------------------------------------------------------------
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
