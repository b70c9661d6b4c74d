"""Nothing the project did not write is replaced, renamed or removed (utils/files.py's marker), and the
demo's folder options and its Ctrl-C before training (issue 30, items 1, 2, 3 and 9)."""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import re
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
from helpers import sigint_as_from_a_terminal

import options
import train
import utils
from reproduce import demo
from training import run_folder, signals
from utils.files import (
    OWNER_MARKER,
    OwnershipError,
    atomic_folder,
    mark_owned,
    owned,
    recover_folder,
    remove_stale_temporaries,
)

# Tiny scenes (one training drive, one held-out drive of 12 frames: 2 test frames), generated once.
SCENES = {"num_drives": 2, "frames_per_drive": 12, "scale": 0.2, "seed": 0, "version": 2}
WAIT_S = 600  # a bound on waiting for a child's condition, never an assertion on time
POLL_S = 0.05


def snapshot(root) -> dict:
    """Every file under ``root`` with its bytes, and every folder (as None)."""
    found = {}
    for directory, dirs, files in os.walk(root):
        for name in dirs:
            found[os.path.relpath(os.path.join(directory, name), root)] = None
        for name in files:
            path = os.path.join(directory, name)
            with open(path, "rb") as f:
                found[os.path.relpath(path, root)] = f.read()
    return found


def users_folder(path) -> None:
    """A folder of someone else's: two files in a subfolder (the issue's trial)."""
    os.makedirs(os.path.join(path, "mine"))
    for name in ("a.txt", "b.txt"):
        with open(os.path.join(path, "mine", name), "w") as f:
            f.write(f"{name} of a user\n")


def dead_pid() -> int:
    """The id of a process of this host that has ended."""
    gone = subprocess.Popen(["true"])
    gone.wait()
    return gone.pid


def leftover_name(base: str, mark: str, pid: int, ext: str = "") -> str:
    return f"{base}{mark}-{utils.HOST}-{pid}-0{ext}"


# ------------------------------------------------------------------------------------------------
# the mechanism: atomic_folder / replace_folder
# ------------------------------------------------------------------------------------------------
def test_a_folder_of_someone_elses_is_refused_and_left_whole(tmp_path):
    folder = tmp_path / "out"
    users_folder(folder)
    before = snapshot(tmp_path)
    with pytest.raises(OwnershipError, match=f"{folder} holds files FSRE-Depth did not write"):
        with atomic_folder(str(folder)) as tmp:
            pytest.fail(f"filling {tmp}: the refusal comes before anything is written")
    assert snapshot(tmp_path) == before  # no temporary, no set-aside copy beside it


def test_a_file_in_the_folders_place_is_refused_not_renamed(tmp_path):
    path = tmp_path / "scenes"
    path.write_text("a user's file\n")
    for _ in range(2):  # the second time: nothing of the first was left to be cleared as a leftover
        with pytest.raises(OwnershipError, match=f"{path} is a file, not a folder"):
            with atomic_folder(str(path)):
                pass
    assert sorted(os.listdir(tmp_path)) == ["scenes"] and path.read_text() == "a user's file\n"
    assert isinstance(OwnershipError("x"), utils.ProjectError)  # run_cli: one line, exit 2


def test_a_link_in_the_folders_place_is_refused(tmp_path):
    target = tmp_path / "real"
    target.mkdir()
    (tmp_path / "link").symlink_to(target)
    with pytest.raises(OwnershipError, match="is a link"):
        with atomic_folder(str(tmp_path / "link")):
            pass
    assert os.path.islink(tmp_path / "link") and os.listdir(target) == []


def test_a_new_empty_or_marked_folder_is_replaced_and_the_new_one_is_marked(tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    for folder in (tmp_path / "new", empty):
        with atomic_folder(str(folder)) as tmp:
            (tmp_path / "x").write_text("")  # beside: not part of the folder
            with open(os.path.join(tmp, "a.txt"), "w") as f:
                f.write("first")
        assert owned(str(folder)) and sorted(os.listdir(folder)) == sorted([OWNER_MARKER, "a.txt"])
        with atomic_folder(str(folder)) as tmp:  # the project's own: replaced
            with open(os.path.join(tmp, "b.txt"), "w") as f:
                f.write("second")
        assert sorted(os.listdir(folder)) == sorted([OWNER_MARKER, "b.txt"])
    assert sorted(os.listdir(tmp_path)) == ["empty", "new", "x"]


def legacy_model_folder(folder) -> None:
    """A model folder as older versions wrote it: no marker, every file listed in checksums.sha256."""
    os.makedirs(folder)
    lines = []
    for name in ("encoder.pth", "decoder.pth", "opt.json"):
        data = f"{name} bytes".encode()
        (folder / name).write_bytes(data)
        lines.append(f"{hashlib.sha256(data).hexdigest()}  {name}\n")
    (folder / "checksums.sha256").write_text("".join(lines))


@pytest.mark.parametrize(
    "change", [None, "an extra file", "a changed file", "a subfolder", "a user's manifest"]
)
def test_an_older_versions_model_folder_is_replaced_only_when_its_checksums_prove_it(tmp_path, change):
    folder = tmp_path / "weights_3"
    legacy_model_folder(folder)
    if change == "an extra file":
        (folder / "notes.txt").write_text("mine")
    elif change == "a changed file":
        (folder / "opt.json").write_text("edited")
    elif change == "a subfolder":
        (folder / "more").mkdir()
    elif change == "a user's manifest":  # sha256sum's listing of a user's own files
        for path in folder.iterdir():
            path.rename(folder / path.name.replace(".pth", ".dat").replace("opt.json", "notes.txt"))
        (folder / "checksums.sha256").write_text(
            "".join(
                f"{hashlib.sha256(p.read_bytes()).hexdigest()}  {p.name}\n"
                for p in sorted(folder.iterdir())
                if p.name != "checksums.sha256"
            )
        )
    before = snapshot(tmp_path)
    if change is None:
        with atomic_folder(str(folder)) as tmp:
            with open(os.path.join(tmp, "encoder.pth"), "w") as f:
                f.write("new")
        assert (folder / "encoder.pth").read_text() == "new" and os.listdir(tmp_path) == ["weights_3"]
    else:
        with pytest.raises(OwnershipError, match="did not write"):
            with atomic_folder(str(folder)):
                pass
        assert snapshot(tmp_path) == before


# ------------------------------------------------------------------------------------------------
# leftovers: removed only when the name and a marker prove them the project's
# ------------------------------------------------------------------------------------------------
def test_files_named_like_leftovers_are_removed_only_in_a_marked_folder(tmp_path):
    pid = dead_pid()
    for marked in (False, True):
        folder = tmp_path / f"marked_{marked}"
        folder.mkdir()
        if marked:
            mark_owned(str(folder))
        temporary = folder / leftover_name("a", ".tmp", pid, ".png")
        aside = folder / leftover_name("notes", ".old", pid, ".txt")  # the project never sets a file aside
        for path in (temporary, aside):
            path.write_text("a user's file")
        done = remove_stale_temporaries(str(folder))
        assert done == ([f"removed {temporary} (left by process {pid}, which is gone)"] if marked else [])
        assert temporary.exists() != marked and aside.read_text() == "a user's file"
        assert not (folder / "notes.txt").exists()  # never renamed into place either


def test_a_set_aside_folder_is_restored_only_with_its_marker(tmp_path):
    pid = dead_pid()
    users = tmp_path / leftover_name("weights_1", ".old", pid)
    users_folder(users)
    ours = tmp_path / leftover_name("weights_2", ".old", pid)
    ours.mkdir()
    mark_owned(str(ours))
    stale = tmp_path / leftover_name("weights_2", ".tmp", pid)  # the new copy being filled
    stale.mkdir()
    (stale / "a.txt").write_text("half")
    foreign_tmp = tmp_path / leftover_name("weights_1", ".tmp", pid)
    users_folder(foreign_tmp)
    for name in ("weights_1", "weights_2"):
        recover_folder(str(tmp_path / name))
    assert sorted(os.listdir(tmp_path)) == sorted(
        [users.name, foreign_tmp.name, stale.name, "weights_2"]
    )  # the unmarked half-written one stays too: nothing proves it the project's
    assert sorted(os.listdir(tmp_path / "weights_2")) == [OWNER_MARKER]
    assert sorted(os.listdir(users / "mine")) == ["a.txt", "b.txt"]


# ------------------------------------------------------------------------------------------------
# the run folder
# ------------------------------------------------------------------------------------------------
def run_opts(**kwargs) -> argparse.Namespace:
    return argparse.Namespace(**{"overwrite": False, "resume": None, **kwargs})


def no_resume(*args) -> None:
    pytest.fail("no --resume here")


def test_a_new_run_folder_is_marked_and_overwrite_moves_aside_only_what_runs_write(tmp_path):
    run = tmp_path / "fsre"
    run_folder.claim(str(run), run_opts(), no_resume).release()
    assert owned(str(run))
    (run / "models").mkdir()
    (run / "models" / "opt.json").write_text("{}")
    (run / "notes.txt").write_text("a user's notes, put there later")
    run_folder.claim(str(run), run_opts(overwrite=True), no_resume).release()
    (aside,) = [p for p in os.listdir(tmp_path) if p.startswith("fsre.replaced-")]
    assert sorted(os.listdir(tmp_path / aside)) == sorted([OWNER_MARKER, "models"])
    assert (run / "notes.txt").read_text() == "a user's notes, put there later"  # not renamed


def test_leftovers_in_a_run_folder_with_foreign_entries_are_left(tmp_path):
    run = tmp_path / "fsre"
    users_folder(run)
    temporary = run / "mine" / leftover_name("a", ".tmp", dead_pid(), ".txt")
    temporary.write_text("a user's file")
    run_folder.claim(str(run), run_opts(), no_resume).release()
    assert not owned(str(run)) and temporary.read_text() == "a user's file"


def test_an_older_versions_run_folder_is_adopted(tmp_path):
    run = tmp_path / "fsre"
    os.makedirs(run / "checkpoints")
    temporary = run / "checkpoints" / leftover_name("step_00000001", ".tmp", dead_pid(), ".pth")
    temporary.write_text("half")
    run_folder.claim(str(run), run_opts(), no_resume).release()
    assert owned(str(run)) and not temporary.exists()


# ------------------------------------------------------------------------------------------------
# the demo's folder (items 1, 2, 3)
# ------------------------------------------------------------------------------------------------
@pytest.fixture
def fake_scenes(monkeypatch):
    """Scenes generated instantly (a file each), so that a wrong replacement shows at once."""

    def generate(folder, **settings):
        with open(os.path.join(folder, "scene.txt"), "w") as f:
            f.write(repr(sorted(settings.items())))

    monkeypatch.setattr(demo.synthetic_scenes, "generate", generate)


def demo_cli(capsys, *argv) -> tuple[int, str]:
    code = utils.run_cli(train.main, ["--demo", *argv])
    return code, capsys.readouterr().err


@pytest.mark.parametrize("how", ["--demo_data", "FSRE_DEMO_DATA"])
def test_the_demo_refuses_a_folder_it_did_not_make(tmp_path, capsys, monkeypatch, fake_scenes, how):
    data = tmp_path / "data"
    users_folder(data)
    if how == "FSRE_DEMO_DATA":  # the variant's folder under it is someone else's
        users_folder(data / demo.CACHE_FOLDERS["mono"])
        monkeypatch.setenv("FSRE_DEMO_DATA", str(data))
        argv = []
    else:
        argv = ["--demo_data", str(data)]
    before = snapshot(tmp_path)
    code, err = demo_cli(capsys, *argv, "--log_dir", str(tmp_path / "runs"))
    last = err.splitlines()[-1]
    assert code == utils.EXIT_ERROR and last.startswith("error: ") and "did not write" in last
    assert "Traceback" not in err and "generating" not in err
    assert snapshot(tmp_path) == before


def test_the_demo_refuses_a_file_as_its_folder_twice(tmp_path, capsys, fake_scenes):
    path = tmp_path / "scenes"
    path.write_text("a user's file\n")
    for _ in range(2):
        code, err = demo_cli(capsys, "--demo_data", str(path), "--log_dir", str(tmp_path / "runs"))
        assert code == utils.EXIT_ERROR and "Traceback" not in err and "generating" not in err
        assert err.splitlines()[-1] == (
            f"error: {path} is a file, not a folder: it is left as it is; "
            "give the path of a new or empty folder"
        )
    assert os.listdir(tmp_path) == ["scenes"] and path.read_text() == "a user's file\n"


def test_an_empty_demo_data_is_an_option_error(capsys):
    with pytest.raises(SystemExit) as stop:
        options.parse_args(["--demo", "--demo_data", ""])
    assert stop.value.code == utils.EXIT_ERROR
    assert "--demo_data: an empty path" in capsys.readouterr().err


def test_each_variant_has_its_own_folder_under_fsre_demo_data(tmp_path, monkeypatch):
    monkeypatch.setenv("FSRE_DEMO_DATA", str(tmp_path))
    folders = {variant: demo.default_data_dir(variant) for variant in demo.DEMO_SCENES}
    assert folders == {v: str(tmp_path / demo.CACHE_FOLDERS[v]) for v in demo.DEMO_SCENES}
    assert len(set(folders.values())) == len(folders)
    monkeypatch.setenv("FSRE_DEMO_DATA", "")  # as shells treat it: unset
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    assert demo.default_data_dir("mono") == str(tmp_path / "cache" / "fsre_depth" / "synthetic_kitti_mono")


def test_a_folder_with_the_other_variants_scenes_is_refused_not_replaced(tmp_path, fake_scenes):
    data = str(tmp_path / "data")
    demo.ensure_scenes(data, {**demo.DEMO_SCENES["stereo"], "version": 0})  # an older version's
    demo.ensure_scenes(data, demo.DEMO_SCENES["stereo"])  # the demo's own older scenes: replaced
    with open(os.path.join(data, demo.COMPLETE_MARKER)) as f:
        assert json.load(f) == demo.DEMO_SCENES["stereo"]
    before = snapshot(tmp_path)
    with pytest.raises(utils.InputError, match="holds the stereo demo's scenes"):
        demo.ensure_scenes(data, demo.DEMO_SCENES["mono"])
    assert snapshot(tmp_path) == before


def test_scenes_of_an_earlier_version_without_the_marker_are_left(tmp_path, fake_scenes):
    data = tmp_path / "data"
    data.mkdir()
    (data / demo.COMPLETE_MARKER).write_text('{"version": 1}')
    (data / "2000_01_01").mkdir()
    before = snapshot(tmp_path)
    with pytest.raises(utils.InputError, match="earlier version of the demo.*remove the folder yourself"):
        demo.ensure_scenes(str(data), demo.DEMO_SCENES["mono"])
    assert snapshot(tmp_path) == before


# ------------------------------------------------------------------------------------------------
# Ctrl-C during the demo's first evaluation (item 9): a real process, a real SIGINT
# ------------------------------------------------------------------------------------------------
CHILD = """
import faulthandler, os, signal, sys, time
faulthandler.register(signal.SIGUSR1, all_threads=True)  # the test asks for the stacks of a child that hangs
sys.path.insert(0, {root!r})
import train, utils
from reproduce import demo
demo.DEMO_SCENES = {{"mono": {scenes!r}, "stereo": {scenes!r}}}
evaluate = demo.evaluate

def evaluate_or_wait(folder, data_dir, split_dir):
    if os.environ.get("READY_FILE"):  # the first evaluation waits here for the test's SIGINT
        open(os.environ["READY_FILE"], "w").close()
        while True:
            time.sleep(0.05)
    return evaluate(folder, data_dir, split_dir)

demo.evaluate = evaluate_or_wait
sys.exit(utils.run_cli(train.main, sys.argv[1:]))
"""


@pytest.fixture(scope="module")
def tiny_scenes(tmp_path_factory):
    data_dir = str(tmp_path_factory.mktemp("ownership") / "scenes")
    demo.ensure_scenes(data_dir, SCENES)
    return data_dir


def test_ctrl_c_in_the_demos_first_evaluation_has_one_clean_way_back(tiny_scenes, tmp_path):
    runs = tmp_path / "runs"
    argv = ["--demo", "--demo_variant", "stereo", "--demo_data", tiny_scenes, "--log_dir", str(runs)]
    argv += ["--config", "baseline", "--num_workers", "0", "--max_steps", "1"]
    argv += ["--num_epochs", "1", "--no_validation"]
    script = tmp_path / "child.py"
    script.write_text(CHILD.format(root=utils.PROJECT_DIR, scenes=SCENES))
    ready = tmp_path / "ready"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "READY_FILE": str(ready)}
    child = subprocess.Popen(
        [sys.executable, str(script), *argv],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        preexec_fn=sigint_as_from_a_terminal,  # also in a suite run as a background job
    )
    try:
        deadline = time.monotonic() + WAIT_S
        while not ready.exists() and child.poll() is None and time.monotonic() < deadline:
            time.sleep(POLL_S)
        assert ready.exists(), child.communicate()[1]
        child.send_signal(signal.SIGINT)
        try:
            out, err = child.communicate(timeout=WAIT_S)
        except subprocess.TimeoutExpired:
            child.send_signal(signal.SIGUSR1)  # its threads' stacks, for the failure's message
            time.sleep(1)
            child.kill()
            pytest.fail("the child did not end after SIGINT; its stacks:\n" + child.communicate()[1][-6000:])
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()
    assert child.returncode == 128 + signal.SIGINT and "Traceback" not in err, err
    run = runs / "demo_stereo"
    assert (
        f"stopped by SIGINT; before training began; nothing of the run was kept in {run}: run the same "
        "command again to start it" in err
    )
    assert not run.exists()  # nothing half-made for a rerun to trip on
    del env["READY_FILE"]
    again = subprocess.run([sys.executable, str(script), *argv], env=env, capture_output=True, text=True)
    assert again.returncode == 0, again.stderr
    assert sorted(os.listdir(runs)) == ["demo_stereo"]  # the same run's folder, not demo_stereo_2
    assert os.path.isdir(run / "models" / demo.UNTRAINED_FOLDER) and "abs_rel" in again.stdout
    # a finished demo given --resume (the advice once training has begun) evaluates its weights again
    resumed = subprocess.run(
        [sys.executable, str(script), *argv, "--resume"], env=env, capture_output=True, text=True
    )
    assert resumed.returncode == 0 and "nothing left to train" in resumed.stderr, resumed.stderr
    assert again.stdout.splitlines()[-4:] == resumed.stdout.splitlines()[-4:]  # the same table and paths


def test_ctrl_c_while_generating_the_scenes_keeps_nothing_and_says_run_it_again(tmp_path, monkeypatch):
    def interrupted(folder, **settings):
        (tmp_path / "generating").write_text(folder)
        raise KeyboardInterrupt

    monkeypatch.setattr(demo.synthetic_scenes, "generate", interrupted)
    data = tmp_path / "data"
    with pytest.raises(signals.Interrupted, match="run the same command again") as stopped:
        demo.run(["--demo", "--log_dir", str(tmp_path / "runs")], str(data))
    assert stopped.value.exit_code == 128 + signal.SIGINT
    assert sorted(os.listdir(tmp_path)) == ["generating"]  # no scenes, no temporary folder, no run


def test_ctrl_c_while_evaluating_the_trained_model_says_resume(tiny_scenes, tmp_path, monkeypatch):
    evaluate, calls = demo.evaluate, []

    def second_call_interrupted(folder, data_dir, split_dir):
        calls.append(folder)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return evaluate(folder, data_dir, split_dir)

    monkeypatch.setattr(demo, "DEMO_SCENES", {"mono": SCENES, "stereo": SCENES})
    monkeypatch.setattr(demo, "evaluate", second_call_interrupted)
    argv = ["--demo", "--demo_variant", "stereo", "--log_dir", str(tmp_path), "--config", "baseline"]
    argv += ["--num_workers", "0", "--max_steps", "1", "--num_epochs", "1", "--no_validation"]
    with pytest.raises(signals.Interrupted) as stopped:
        demo.run(argv, tiny_scenes)
    run = tmp_path / "demo_stereo"
    assert str(stopped.value) == (
        f"stopped by SIGINT; while evaluating the trained model; the run is saved in {run}: run the same "
        "command with --resume to continue it (it evaluates the trained model again)"
    )
    assert calls[1] == str(run / "models" / "weights_0") and os.path.isdir(calls[1])


def test_fsre_demo_data_naming_a_file_is_one_line(tmp_path, capsys, monkeypatch, fake_scenes):
    path = tmp_path / "cache"
    path.write_text("a user's file\n")
    monkeypatch.setenv("FSRE_DEMO_DATA", str(path))
    code, err = demo_cli(capsys, "--log_dir", str(tmp_path / "runs"))
    assert code == utils.EXIT_ERROR and "Traceback" not in err
    assert err.splitlines()[-1].startswith(f"error: cannot write {path / demo.CACHE_FOLDERS['mono']}: ")
    assert os.listdir(tmp_path) == ["cache"] and path.read_text() == "a user's file\n"


def test_ctrl_c_before_training_with_overwrite_leaves_the_earlier_run_aside_and_nothing_new(
    tiny_scenes, tmp_path, monkeypatch
):
    run = tmp_path / "demo_stereo"
    run_folder.claim(str(run), run_opts(), no_resume).release()
    os.makedirs(run / "models" / demo.UNTRAINED_FOLDER)
    (run / "models" / "opt.json").write_text("{}")
    (run / "notes.txt").write_text("a user's notes")

    def interrupted(folder, data_dir, split_dir):
        raise KeyboardInterrupt

    monkeypatch.setattr(demo, "DEMO_SCENES", {"mono": SCENES, "stereo": SCENES})
    monkeypatch.setattr(demo, "evaluate", interrupted)
    argv = ["--demo", "--demo_variant", "stereo", "--log_dir", str(tmp_path), "--config", "baseline"]
    argv += ["--num_workers", "0", "--max_steps", "1", "--num_epochs", "1", "--no_validation", "--overwrite"]
    with pytest.raises(signals.Interrupted, match="nothing of the run was kept.*run the same command again"):
        demo.run(argv, tiny_scenes)
    assert sorted(os.listdir(run)) == sorted([OWNER_MARKER, "notes.txt"])  # the new run's files are gone
    (aside,) = [p for p in os.listdir(tmp_path) if p.startswith("demo_stereo.replaced-")]
    assert sorted(os.listdir(tmp_path / aside / "models")) == sorted(["opt.json", demo.UNTRAINED_FOLDER])


# ------------------------------------------------------------------------------------------------
# files: a command that writes into a folder a user named keeps everything it did not write
# ------------------------------------------------------------------------------------------------
REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
USERS_TEXT = "a user's own file\n"


def write_in_process(*lines: str) -> subprocess.CompletedProcess:
    """Run Python ``lines`` in a new process of the project (its records are written at its exit)."""
    return subprocess.run(
        [sys.executable, "-c", "\n".join(lines)], cwd=REPO, capture_output=True, text=True, timeout=WAIT_S
    )


def test_a_write_over_a_users_file_is_refused_before_anything_is_written(tmp_path):
    from utils import files as atomic

    path = tmp_path / "img_disp.png"
    path.write_text(USERS_TEXT)
    before = snapshot(tmp_path)
    message = rf"{re.escape(str(path))} exists and FSRE-Depth did not write it.*move it away yourself"
    with pytest.raises(OwnershipError, match=message):
        atomic.save_json({"a": 1}, str(path))
    with pytest.raises(OwnershipError, match=message):
        with atomic.atomic_write(str(path)) as tmp:
            pytest.fail(f"writing {tmp}: the refusal comes before anything is written")
    atomic.flush_records()
    assert snapshot(tmp_path) == before  # no temporary, no record: nothing was written


def test_the_projects_file_is_replaced_by_a_later_process_and_one_a_user_changed_is_not(tmp_path):
    from utils import files as atomic

    path = str(tmp_path / "metrics.json")
    write = (
        "import sys",
        "from utils.files import save_json",
        "save_json({'run': sys.argv[-1]}, %r)" % path,
    )
    for run in ("first", "second"):  # the second process replaces what the first wrote: its record proves it
        done = write_in_process(*write[:2], write[2].replace("sys.argv[-1]", repr(run)))
        assert done.returncode == 0, done.stderr
        assert json.loads(open(path).read()) == {"run": run}
    record = atomic._read_record(str(tmp_path))
    assert set(record) == {"metrics.json"} and sorted(os.listdir(tmp_path)) == [
        atomic.FILES_RECORD,
        "metrics.json",
    ]
    with open(path, "a") as f:  # the user edits the output: it is theirs now
        f.write("\n")
    edited = open(path).read()
    done = write_in_process(*write[:2], write[2].replace("sys.argv[-1]", "'third'"))
    assert done.returncode != 0 and "FSRE-Depth did not write it (or it was changed since)" in done.stderr
    assert open(path).read() == edited


def test_files_anywhere_inside_a_marked_folder_are_the_projects_and_others_are_not(tmp_path):
    from utils import files as atomic

    marked, plain = tmp_path / "run", tmp_path / "plain"
    inside = marked / "models" / "weights_0"
    os.makedirs(inside)
    os.makedirs(plain)
    mark_owned(str(marked))
    for folder in (inside, plain):
        (folder / "poses.npy").write_text(USERS_TEXT)
    atomic.save_json({"ours": True}, str(inside / "poses.npy"))  # a marked folder's files are the project's
    with pytest.raises(OwnershipError, match="poses.npy exists and FSRE-Depth did not write it"):
        atomic.save_json({"ours": True}, str(plain / "poses.npy"))
    atomic.flush_records()
    assert json.loads((inside / "poses.npy").read_text()) == {"ours": True}
    assert (plain / "poses.npy").read_text() == USERS_TEXT
    assert not any(atomic.FILES_RECORD in files for _, _, files in os.walk(tmp_path))  # nothing to record


def test_two_processes_writing_into_one_folder_keep_both_records(tmp_path):
    from utils import files as atomic

    per_process = 3 * atomic.RECORD_BATCH + 5  # several batches each, and a rest written at exit
    script = (
        "import subprocess, sys",
        "from utils.files import save_json",
        "for k in range(%d):" % per_process,
        "    save_json({'k': k}, '%s/' + sys.argv[-1] + '_%%d.json' %% k)" % tmp_path,
    )
    writers = [
        subprocess.Popen([sys.executable, "-c", "\n".join(script), name], cwd=REPO, stderr=subprocess.PIPE)
        for name in ("a", "b")
    ]
    for writer in writers:
        assert writer.wait(timeout=WAIT_S) == 0, writer.stderr.read()
    record = atomic._read_record(str(tmp_path))
    names = {f"{p}_{k}.json" for p in "ab" for k in range(per_process)}
    assert set(record) == names
    assert all(record[name] == atomic._identity(str(tmp_path / name)) for name in names)
    again = write_in_process(*script[1:3], script[3].replace("sys.argv[-1]", "'a'"))  # all replaceable
    assert again.returncode == 0, again.stderr


def test_an_earlier_depth_npy_is_removed_only_when_the_project_wrote_it(tmp_path):
    from deploy.metric import prediction as metric_depth
    from deploy.metric.camera_height import ScaleRefusal
    from deploy.predictors import Frame
    from utils import files as atomic

    class NoScale:  # a metric setup whose estimate finds no scale for the image
        unscaled: list = []

        def estimate(self, *args):
            return ScaleRefusal("no road")

        def header(self, camera):
            return {}

    users, ours = tmp_path / "a_depth.npy", tmp_path / "b_depth.npy"
    users.write_text(USERS_TEXT)
    atomic.save_array(np.zeros(2), str(ours))  # an earlier run's, recorded as the project's
    disp = np.ones((2, 2), np.float32)
    metric_depth.predict_metric_image(NoScale(), None, Frame(str(tmp_path / "b"), None), disp, None, "b.png")
    assert not ours.exists()  # an earlier run's _depth.npy is not of this prediction: removed
    with pytest.raises(OwnershipError, match="a_depth.npy exists and FSRE-Depth did not write it"):
        metric_depth.predict_metric_image(
            NoScale(), None, Frame(str(tmp_path / "a"), None), disp, None, "a.png"
        )
    assert users.read_text() == USERS_TEXT


def tiny_model_folder(root) -> str:
    """A random-weight baseline model folder at the smallest size the networks take."""
    import torch

    from checkpoints import model_folder
    from model import FSREModel

    torch.manual_seed(0)
    side = str(options.MIN_IMAGE_SIDE)
    opts = options.parse_args(
        ["--weights_init", "scratch", "--config", "baseline", "--height", side, "--width", side]
    )
    return model_folder.save_model_folder(str(root / "model"), FSREModel(opts).eval().networks(), opts)


def test_predict_keeps_a_users_file_in_the_output_folder_and_reruns_over_its_own(tmp_path, capsys):
    from PIL import Image

    import predict

    folder = tiny_model_folder(tmp_path)
    images = tmp_path / "images"
    images.mkdir()
    for name in ("a", "b"):
        Image.fromarray(np.full((70, 90, 3), 100, np.uint8)).save(images / f"{name}.png")
    argv = ["--load_weights_folder", folder, "--image_path", str(images), "--device", "cpu"]
    for _ in range(2):  # beside the images: the second run replaces the first one's outputs
        assert utils.run_cli(predict.main, argv) == 0
    outputs = tmp_path / "outputs"
    outputs.mkdir()
    (outputs / "b_disp.png").write_text(USERS_TEXT)
    code = utils.run_cli(predict.main, argv + ["--output_dir", str(outputs)])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == utils.EXIT_ERROR
    assert "b_disp.png exists and FSRE-Depth did not write it" in err[-1]
    assert (outputs / "b_disp.png").read_text() == USERS_TEXT
    assert not [name for name in os.listdir(outputs) if ".tmp-" in name]


def test_loader_workers_default_to_the_cpus_this_process_may_use(monkeypatch):
    import evaluate_pose

    required = ["--data_path", "d", "--load_weights_folder", "w"]
    monkeypatch.setattr(options, "available_cpus", lambda: 2)
    assert options.parse_args([]).num_workers == 2
    assert evaluate_pose.parse_args(required).num_workers == 2
    assert options.parse_args(["--num_workers", "12"]).num_workers == 12  # given: as given
    assert evaluate_pose.parse_args(required + ["--num_workers", "3"]).num_workers == 3
    monkeypatch.setattr(options, "available_cpus", lambda: 64)
    assert options.parse_args([]).num_workers == options.AUTHORS_WORKERS == 12  # the authors' value
    assert evaluate_pose.parse_args(required).num_workers == 4


def test_a_record_of_outputs_rewritten_by_reruns_is_compacted_at_the_end_of_a_command(tmp_path):
    from utils import files as atomic

    names, reruns = 100, 3
    script = (
        "from utils import files as atomic",
        "atomic.RECORD_COMPACT_BYTES = 1000  # a small record counts as large",
        "for _ in range(%d):" % reruns,
        "    for k in range(%d):" % names,
        "        atomic.save_json({'k': k}, '%s/%%d.json' %% k)" % tmp_path,
    )
    done = write_in_process(*script)
    assert done.returncode == 0, done.stderr
    text = (tmp_path / atomic.FILES_RECORD).read_text()
    assert text.startswith(atomic.RECORD_HEADER) and text.count("\n") == names + 1  # the latest entry of each
    record = atomic._read_record(str(tmp_path))
    assert all(record[f"{k}.json"] == atomic._identity(str(tmp_path / f"{k}.json")) for k in range(names))
    again = write_in_process(*script)  # all still the project's
    assert again.returncode == 0, again.stderr
