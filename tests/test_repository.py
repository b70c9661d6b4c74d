"""The repository's promises: CI runs the README's test command; no third-party split file is tracked;
no import cycle between the top-level packages."""

import ast
import glob
import os
import re
import subprocess

import pytest

import conftest
import splits
from conftest import PROJECT_DIR

PYTEST = "python -m pytest"
FAST_SELECTION = '-m "not slow"'  # the fast subset: pytest.ini's ``slow`` marker left out


def readme_test_commands() -> list[str]:
    """Every test command the README gives, in its order."""
    text = open(os.path.join(PROJECT_DIR, "README.md")).read()
    commands = [command.strip() for command in re.findall(rf"^({PYTEST}[^\n#]*)", text, flags=re.M)]
    assert commands, "the README gives no test command"
    return commands


def readme_test_command() -> str:
    """The README's full test command: the one that selects no marker (what CI runs)."""
    full = [command for command in readme_test_commands() if " -m " not in command[len(PYTEST) :]]
    assert len(full) == 1, f"the README gives {len(full)} test commands that select no marker: {full}"
    return full[0]


def ci_commands():
    """.ci/run's lines that do something (comments, echo lines and blank lines left out)."""
    lines = [line.strip() for line in open(os.path.join(PROJECT_DIR, ".ci", "run"))]
    return [line for line in lines if line and not line.startswith(("#", "echo "))]


def test_ci_runs_the_readme_test_command_with_requirements_txt_only_first():
    lines = ci_commands()
    readme = lines.index(readme_test_command())  # verbatim
    installs = [i for i, line in enumerate(lines) if "pip install" in line]
    assert [lines[i] for i in installs if i < readme] == ["python -m pip install --quiet -r requirements.txt"]


def test_the_readmes_other_test_command_is_the_full_one_without_the_slow_tests():
    full = readme_test_command()
    others = [command for command in readme_test_commands() if command != full]
    assert all(command == f"{full} {FAST_SELECTION}" for command in others), others
    registered = open(os.path.join(PROJECT_DIR, "pytest.ini")).read()
    assert re.search(r"^\s+slow: ", registered, flags=re.M), "pytest.ini registers no slow marker"


def test_ci_checks_the_style_with_the_ruff_that_requirements_dev_installs():
    lines = ci_commands()
    assert "ruff format --check ." in lines and "ruff check ." in lines
    assert lines.index("ruff check .") > lines.index("for extra in requirements/*.txt; do")
    with open(os.path.join(PROJECT_DIR, "requirements/dev.txt")) as f:
        assert any(line.startswith("ruff") for line in f)
    with open(os.path.join(PROJECT_DIR, "pyproject.toml")) as f:
        assert "line-length = 110" in f.read()


def test_ci_runs_no_project_code_before_requirements_txt_is_installed():
    # the split check once ran first and failed in a fresh venv with "No module named 'numpy'"
    lines = ci_commands()
    first_install = lines.index("python -m pip install --quiet -r requirements.txt")
    before = [line for line in lines[:first_install] if re.search(r"\bpython -m (?!venv|pip)", line)]
    assert before == []
    assert any("python -m splits --check" in line for line in lines[first_install:])


def test_ci_removes_its_virtual_environments_however_it_ends(tmp_path):
    # the set-up lines of .ci/run, up to the venv's creation, then a failing command: the trap must still
    # remove the temporary folder (each run left two torch venvs behind and filled the disk)
    lines = ci_commands()
    setup = lines[: next(i for i, line in enumerate(lines) if line.startswith("python3 -m venv")) + 1]
    script = "\n".join(["set -euo pipefail", *setup[1:]]).replace("python3 -m venv", "mkdir -p")
    scratch = tmp_path / "tmp"
    scratch.mkdir()
    result = subprocess.run(
        ["bash", "-c", script + '\ntest -d "$venv"\necho "$venv"\nfalse'],
        env={**os.environ, "TMPDIR": str(scratch)},
        capture_output=True,
        text=True,
    )
    assert result.returncode == 1 and result.stdout.strip().startswith(str(scratch))
    assert list(scratch.iterdir()) == []


def test_ci_then_installs_every_optional_requirements_file_and_runs_their_tests():
    lines = ci_commands()
    readme = lines.index(readme_test_command())
    loop = "\n".join(lines[lines.index("for extra in requirements/*.txt; do") :])
    loop = loop[: loop.index("done") + len("done")]
    installed = subprocess.run(
        ["bash", "-c", 'python() { echo "$@"; }\n' + loop],
        cwd=PROJECT_DIR,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    optional = sorted(f"requirements/{f}" for f in os.listdir(os.path.join(PROJECT_DIR, "requirements")))
    assert "requirements/video.txt" in optional
    assert sorted(re.findall(r"-r (\S+)", installed)) == optional
    assert lines.index("for extra in requirements/*.txt; do") > readme
    assert lines[-1] == f"{conftest.STRICT_OPTIONAL_ENV}=1 python -m pytest -q -m needs"


def test_a_missing_optional_package_skips_naming_its_requirements_file_or_fails_when_ci_says_all_are_there(
    monkeypatch,
):
    with pytest.raises(pytest.fail.Exception, match=r"needs av: mark it @pytest.mark.needs"):
        conftest.require("av")  # this test does not declare it: CI's second stage would not select it
    monkeypatch.setitem(conftest._running, "item", None)  # as from outside a test
    monkeypatch.setattr(conftest.importlib.util, "find_spec", lambda name: None)
    monkeypatch.delenv(conftest.STRICT_OPTIONAL_ENV, raising=False)
    with pytest.raises(pytest.skip.Exception, match=r"^needs av \(pip install -r requirements/video.txt\)$"):
        conftest.require("av")
    monkeypatch.setenv(conftest.STRICT_OPTIONAL_ENV, "1")
    with pytest.raises(
        pytest.fail.Exception, match="needs matplotlib .*requirements/figures.txt.*FSRE_TEST_OPTIONAL"
    ):
        conftest.require("matplotlib")
    monkeypatch.undo()
    monkeypatch.setitem(conftest._running, "item", None)
    with pytest.raises(ValueError, match="numpy is in no requirements/"):  # also when it is installed
        conftest.require("numpy")


def test_no_split_file_is_tracked():
    tracked = subprocess.run(
        ["git", "ls-files"], cwd=PROJECT_DIR, capture_output=True, text=True
    ).stdout.split()
    if not tracked:  # not a git checkout
        return
    published = {info["sha256"] for info in splits.manifest()["files"].values()}
    for path in tracked:
        full = os.path.join(PROJECT_DIR, path)
        if os.path.isfile(full) and os.path.getsize(full) < 5_000_000:
            assert splits.sha256_of(full) not in published, f"{path} is a copy of a published split file"


def runtime_imports(path: str) -> set[str]:
    """Top-level names a file imports, in functions too (``if TYPE_CHECKING:`` blocks, never run, aside)."""
    found = set()

    def visit(node: ast.AST) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.If) and ast.unparse(child.test).endswith("TYPE_CHECKING"):
                for branch in child.orelse:
                    visit_one(branch)
            else:
                visit_one(child)

    def visit_one(node: ast.AST) -> None:
        if isinstance(node, ast.Import):
            found.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.add(node.module.split(".")[0])
        visit(node)

    visit(ast.parse(open(path, encoding="utf-8").read(), path))
    return found


def top_level_units(root: str) -> dict[str, list[str]]:
    """The repository's top-level modules and packages (folders of Python files but tests/): their files."""
    units = {}
    for name in sorted(os.listdir(root)):
        path = os.path.join(root, name)
        if name.endswith(".py"):
            units[name[:-3]] = [path]
        elif os.path.isdir(path) and name != "tests" and not name.startswith("."):
            files = [os.path.join(d, f) for d, _, names in os.walk(path) for f in names if f.endswith(".py")]
            if files:
                units[name] = files
    return units


def import_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One cycle of a directed graph as [a, b, ..., a], or None when it has none (depth-first search)."""
    state: dict[str, str] = {}  # "open" while on the path, "done" after

    def search(node: str, path: list[str]) -> list[str] | None:
        state[node] = "open"
        for succ in sorted(graph[node]):
            if state.get(succ) == "open":
                on_path = path + [node]
                return on_path[on_path.index(succ) :] + [succ]
            if succ not in state and (cycle := search(succ, path + [node])):
                return cycle
        state[node] = "done"
        return None

    for start in sorted(graph):
        if start not in state and (cycle := search(start, [])):
            return cycle
    return None


def test_import_cycle_finds_a_cycle_and_only_a_cycle():
    assert import_cycle({"a": {"b"}, "b": {"c"}, "c": set()}) is None
    assert import_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert import_cycle({"x": {"a"}, "a": {"b"}, "b": {"a"}}) == ["a", "b", "a"]


def test_every_test_the_readme_and_docs_cite_exists():
    """A guarantee in the README names its test: a renamed or moved test must not leave it pointing away."""
    defined = set()
    for path in glob.glob(os.path.join(PROJECT_DIR, "tests", "*.py")):
        with open(path) as f:
            defined |= set(re.findall(r"^def (test_\w+)", f.read(), flags=re.M))
    cited = {}
    for path in [
        os.path.join(PROJECT_DIR, "README.md"),
        *glob.glob(os.path.join(PROJECT_DIR, "docs", "*.md")),
    ]:
        with open(path) as f:
            for name in re.findall(r"`(test_\w+)`", f.read()):
                cited.setdefault(name, os.path.basename(path))
    cited.pop("test_depth_prediction_anonymous", None)  # KITTI's benchmark folder, not a test
    assert {name: doc for name, doc in cited.items() if name not in defined} == {}


MAX_TOP_LEVEL_UNITS = 21  # Monodepth2's names, hubconf.py, and one package per idea (the README's map)


def test_the_top_level_stays_small_and_every_unit_is_in_the_readme_map():
    units = top_level_units(PROJECT_DIR)
    assert len(units) <= MAX_TOP_LEVEL_UNITS, sorted(units)
    with open(os.path.join(PROJECT_DIR, "README.md")) as f:
        readme = f.read()
    code_map = readme[readme.index("## Map of the code") : readme.index("## Training")]
    missing = [u for u in units if not re.search(rf"^{re.escape(u)}(\.py|/)\s", code_map, re.M)]
    assert missing == [], f"not in the README's code map: {missing}"


def test_no_import_cycle_between_top_level_packages_and_modules():
    """Dependencies point one way (e.g. speed/ uses datasets/, never the other way round): a reader can
    take the packages in order, and none needs another that needs it back."""
    units = top_level_units(PROJECT_DIR)
    assert {"utils", "layers", "datasets", "speed", "evaluation", "deploy", "checkpoints"} <= set(units)
    graph = {unit: set() for unit in units}
    for unit, files in units.items():
        for path in files:
            graph[unit] |= (runtime_imports(path) & set(units)) - {unit}
    assert import_cycle(graph) is None, " -> ".join(import_cycle(graph))
