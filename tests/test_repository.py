"""The repository's promises: CI runs the README's test command; no third-party split file is tracked."""
import os
import re
import subprocess

import splits
from conftest import PROJECT_DIR


def readme_test_command():
    text = open(os.path.join(PROJECT_DIR, "README.md")).read()
    commands = re.findall(r"^(python -m pytest[^\n#]*)", text, flags=re.M)
    assert commands, "the README gives no test command"
    return commands[0].strip()


def test_ci_runs_exactly_the_readme_test_command():
    ci = open(os.path.join(PROJECT_DIR, ".ci", "run")).read().splitlines()
    assert readme_test_command() in [line.strip() for line in ci]
    assert any("requirements.txt" in line and "pip install" in line for line in ci)


def test_no_split_file_is_tracked():
    tracked = subprocess.run(["git", "ls-files"], cwd=PROJECT_DIR, capture_output=True, text=True).stdout.split()
    if not tracked:  # not a git checkout
        return
    published = {info["sha256"] for info in splits.manifest()["files"].values()}
    for path in tracked:
        full = os.path.join(PROJECT_DIR, path)
        if os.path.isfile(full) and os.path.getsize(full) < 5_000_000:
            assert splits.sha256_of(full) not in published, f"{path} is a copy of a published split file"
