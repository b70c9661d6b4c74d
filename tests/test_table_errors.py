"""tools.reproduce's tables: the rows a user writes are checked (run-owned options, malformed files) in one
line with exit code 2, a dry run prints shell lines, and an edited record makes its stage run again."""

from __future__ import annotations

import json
import os
import subprocess

import pytest
from helpers import one_line_error

import utils
from utils.files import save_json


def table_error(capsys, tmp_path, content: str | bytes, *names: str) -> str:
    """tools.reproduce --dry_run on a table file: one line naming ``names``; nothing written."""
    from tools import reproduce

    table = tmp_path / "mine.json"
    table.write_bytes(content if isinstance(content, bytes) else content.encode())
    out = tmp_path / "out"
    code = utils.run_cli(
        reproduce.main,
        [str(table), "--data_path", str(tmp_path), "--log_dir", str(out), "--dry_run", "--no_cost"],
    )
    message = one_line_error(capsys, code, *names)
    assert not out.exists()
    return message


def test_dry_run_lines_are_shell_lines_with_spaces_in_paths(tmp_path):
    """--dry_run prints commands a shell runs: the environment assignment is quoted as a value, not a word."""
    from reproduce.runner import Command

    command = Command(
        ("python", "-m", "tools.benchmark", "--data_path", "/a b/data"), (("PYTHONPATH", "/a b/main"),)
    )
    script = tmp_path / "show.sh"
    script.write_text('#!/bin/sh\necho "$PYTHONPATH|$*"\n')
    script.chmod(0o755)
    line = str(command).replace("python -m", str(script), 1)
    out = subprocess.run(["sh", "-c", line], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "/a b/main|tools.benchmark --data_path /a b/data"


@pytest.mark.parametrize(
    "option", ["--seed 7", "--log_dir /elsewhere", "--model_name x", "--seed=7", "--resume"]
)
def test_run_owned_options_in_a_row_are_refused(tmp_path, capsys, option):
    rows = [{"name": "mine", "train": f"--config baseline {option}"}]
    table_error(
        capsys,
        tmp_path,
        json.dumps({"rows": rows}),
        "row 'mine'",
        option.split()[0].split("=")[0],
        "set by the runner",
    )


@pytest.mark.parametrize(
    "content, names",
    [
        (
            '{"name": "../../../x", "rows": [{"name": "a", "train": "--config baseline"}]}',
            ["'../../../x'", "no folders"],
        ),
        ('{"name": "sub/x", "rows": [{"name": "a", "train": "--config baseline"}]}', ["'sub/x'"]),
        (
            '{"rows": [{"name": "a", "train": "--config \'baseline"}]}',
            ["rows[0]", "do not split as a shell line"],
        ),
        ('{"rows": [{"name": ["a", "b"], "train": "--config baseline"}]}', ["rows[0]", "non-empty string"]),
        (
            '{"notes": "one note", "rows": [{"name": "a", "train": "--config baseline"}]}',
            ["notes", "list of strings"],
        ),
        ('{"notes": 3, "rows": [{"name": "a", "train": "--config baseline"}]}', ["notes", "list of strings"]),
        (
            b'{"title": "\xe9t\xe9", "rows": [{"name": "a", "train": "--config baseline"}]}',
            ["mine.json", "not UTF-8"],
        ),
    ],
    ids=[
        "parent_folders",
        "a_folder",
        "unterminated_quote",
        "list_as_name",
        "string_notes",
        "number_notes",
        "not_utf8",
    ],
)
def test_malformed_user_tables_are_one_line(tmp_path, capsys, content, names):
    table_error(capsys, tmp_path, content, *names)


def test_a_record_edited_without_its_metrics_makes_its_stage_run_again(tmp_path, capsys):
    from reproduce import runner, tables

    table = tables.Table("t", "t", (tables.Row("a", ("--config", "baseline")),), eval_split=str(tmp_path))
    settings = runner.Settings(data_path=str(tmp_path), log_dir=str(tmp_path / "runs"), seeds=[0], cost=False)
    (run,) = runner.plan(table, settings)
    os.makedirs(run.folder)
    for stage in run.stages:  # every stage done, with what it wrote ...
        save_json(
            {"command": str(stage.command), **{key: {"metrics": {"abs_rel": 0.1}} for key in stage.outputs}},
            stage.record,
        )
    assert runner.pending([run]) == []
    evaluate = run.stages[-1]
    record = json.load(open(evaluate.record))
    del record["metrics"]  # ... then the evaluation's record is edited by hand
    save_json(record, evaluate.record)
    assert [stage.name for _, stage in runner.pending([run])] == [evaluate.name]
