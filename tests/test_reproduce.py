"""tools/reproduce.py end to end on synthetic scenes: a user's two-row table is trained, evaluated and
tabulated; the printed commands (--dry_run) are exactly those that run; a row whose results are deleted
is the only one to run again; the Markdown and CSV hold the runs' own numbers."""

from __future__ import annotations

import csv
import json
import os
import shlex
import shutil

import pytest

import utils
from datasets.synthetic import scenes
from evaluation.metrics import DEPTH_METRIC_NAMES
from reproduce import runner, tables
from tools import reproduce
from utils.files import save_json

# Tiny runs: one step of batch 2 at 64x192 from random weights (the point is the plumbing, not the numbers).
TRAIN_ARGS = (
    "--height 64 --width 192 --batch_size 2 --num_epochs 1 --max_steps 1 --num_workers 0 "
    "--weights_init scratch --no_validation --input_check none --log_frequency 1000 --keep_checkpoints 1"
)
ROWS = [
    {"name": "Monodepth2", "train": ["--config", "baseline"]},
    {"name": "w/ semantics", "train": "--config semantics", "reported": {"abs_rel": 0.5}},
]


@pytest.fixture(scope="module")
def table_setup(tmp_path_factory):
    root = tmp_path_factory.mktemp("reproduce")
    data = str(root / "scenes")
    split_dir = scenes.generate(
        data, num_drives=2, frames_per_drive=6, scale=0.1, seed=2, test_stride=1, val_stride=2, workers=1
    )
    table = root / "tiny.json"
    table.write_text(
        json.dumps(
            {
                "name": "tiny",
                "title": "two tiny rows",
                "metrics": ["abs_rel", "rmse", "a1"],
                "evaluate_options": ["--num_workers", "0"],
                "rows": ROWS,
            }
        )
    )
    argv = [
        str(table),
        "--data_path",
        data,
        "--eval_split",
        split_dir,
        "--log_dir",
        str(root / "runs"),
        f"--train_args=--split {split_dir} {TRAIN_ARGS}",
    ]
    return argv, root


def executed_commands(monkeypatch) -> list[str]:
    """Record every stage the runner executes (its command line), then let it run."""
    seen: list[str] = []
    real = runner.execute

    def record(run, stage, *args):
        seen.append(str(stage.command))
        real(run, stage, *args)

    monkeypatch.setattr(runner, "execute", record)
    return seen


@pytest.mark.slow
def test_table_end_to_end_resume_and_dry_run(table_setup, monkeypatch, capsys):
    argv, root = table_setup
    assert reproduce.main(argv + ["--dry_run"]) == 0
    planned = capsys.readouterr().out.strip().splitlines()
    assert len(planned) == 6 and "train.py" in planned[0] and "--final_weights" in planned[1]
    assert "evaluate_depth.py" in planned[2] and "--config semantics" in planned[3]
    assert not os.path.exists(root / "runs")  # a dry run runs nothing

    ran = executed_commands(monkeypatch)
    assert reproduce.main(argv) == 0
    assert ran == planned  # exactly the printed commands, in that order
    assert "two tiny rows [ours evaluated on synthetic]" in capsys.readouterr().out  # the table is printed
    out_dir = root / "runs" / "tables"
    summary = json.load(open(out_dir / "tiny.json"))
    rows = summary["rows"]
    assert [r["name"] for r in rows] == ["Monodepth2", "w/ semantics"] and all(
        len(r["runs"]) == 1 for r in rows
    )

    # every number of the CSV and the Markdown is the run's own evaluate_depth.py output
    with open(out_dir / "tiny.csv", newline="") as f:
        lines = list(csv.DictReader(f))
    markdown = (out_dir / "tiny.md").read_text()
    for row, line in zip(rows, lines):
        folder = row["runs"][0]["folder"]
        written = json.load(open(os.path.join(folder, "metrics_synthetic.json")))["metrics"]
        assert set(written) == set(DEPTH_METRIC_NAMES)
        for metric in ("abs_rel", "rmse", "a1"):
            assert float(line[metric]) == written[metric] == row["mean"][metric]
            assert f"| {written[metric]:.3f} |" in markdown
        assert line["runs"] == folder and os.path.basename(folder) in markdown
        assert os.path.isdir(os.path.join(folder, "final_weights")) and row["runs"][0]["weights"].endswith(
            "weights_0"
        )
        assert shlex.split(row["runs"][0]["train_command"])[2:4] == [
            "--data_path",
            argv[argv.index("--data_path") + 1],
        ]
    assert float(lines[1]["abs_rel_paper"]) == 0.5
    assert float(lines[1]["abs_rel_delta"]) == pytest.approx(rows[1]["mean"]["abs_rel"] - 0.5)
    assert lines[0]["abs_rel_paper"] == ""
    tex = (out_dir / "tiny.tex").read_text()
    assert r"\toprule" in tex and r"\midrule" in tex and r"\bottomrule" in tex and r"w/ semantics" in tex

    # resume: delete the second row's results; only its evaluation runs again, the first row is untouched
    first, second = rows[0]["runs"][0]["folder"], rows[1]["runs"][0]["folder"]
    kept = {name: os.path.getmtime(os.path.join(first, name)) for name in os.listdir(first)}
    os.remove(os.path.join(second, "metrics_synthetic.json"))
    os.remove(os.path.join(second, runner.RECORD.format("evaluate_synthetic")))
    assert reproduce.main(argv + ["--dry_run"]) == 0
    assert capsys.readouterr().out.strip().splitlines() == [planned[5]]
    ran.clear()
    assert reproduce.main(argv) == 0
    assert ran == [planned[5]]
    capsys.readouterr()
    assert {name: os.path.getmtime(os.path.join(first, name)) for name in os.listdir(first)} == kept
    assert (
        json.load(open(out_dir / "tiny.json"))["rows"][1]["runs"][0]["metrics"]
        == rows[1]["runs"][0]["metrics"]
    )

    # a row deleted altogether (its run folder): its three stages run again, exactly as printed
    shutil.rmtree(second)
    assert reproduce.main(argv + ["--dry_run"]) == 0
    assert capsys.readouterr().out.strip().splitlines() == planned[3:]
    ran.clear()
    assert reproduce.main(argv) == 0
    assert ran == planned[3:]
    capsys.readouterr()
    assert {name: os.path.getmtime(os.path.join(first, name)) for name in os.listdir(first)} == kept
    rerun = json.load(open(out_dir / "tiny.json"))["rows"][1]["runs"][0]
    assert rerun["folder"] == second and os.path.isfile(os.path.join(second, "metrics_synthetic.json"))

    # --metrics chooses the columns shown from the same runs (nothing runs again); the JSON keeps every metric
    ran.clear()
    assert reproduce.main(argv + ["--metrics", "a1", "abs_rel"]) == 0
    assert ran == []
    header = capsys.readouterr().out.split("| Method |")[1].splitlines()[0]
    assert (
        "δ<1.25 ours" in header and "RMSE" not in header and header.index("δ<1.25") < header.index("AbsRel")
    )
    assert set(json.load(open(out_dir / "tiny.json"))["rows"][0]["runs"][0]["metrics"]) == set(
        DEPTH_METRIC_NAMES
    )
    # a record of another command (e.g. other evaluation options) is not a finished stage
    record = os.path.join(first, runner.RECORD.format("evaluate_synthetic"))
    data = json.load(open(record))
    save_json({**data, "command": data["command"] + " --post_process"}, record)
    assert reproduce.main(argv + ["--dry_run"]) == 0
    assert capsys.readouterr().out.strip().splitlines() == [planned[2]]
    # other training options are other runs (other folders): everything would run
    assert reproduce.main(argv[:-1] + [argv[-1] + " --learning_rate 1e-4", "--dry_run"]) == 0
    assert len(set(capsys.readouterr().out.strip().splitlines()) - set(planned)) == 6


def test_named_tables_plan_the_papers_rows(tmp_path):
    settings = runner.Settings(data_path="/data", log_dir=str(tmp_path), seeds=[0, 1], nproc_per_node=2)
    runs = runner.plan(tables.TABLES["table6"], settings)
    assert [r.row.name for r in runs] == ["l = 0,1", "l = 0,1"] + ["l = 0,1,2"] * 2 + ["l = 0,1,2,3"] * 2 + [
        "l = 0,1,2,3,4"
    ] * 2
    train = runs[0].stages[0].command.argv
    assert train[1:6] == ("-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2")
    assert "--cma_layers" in train and train[
        train.index("--cma_layers") + 1 : train.index("--cma_layers") + 3
    ] == ("0", "1")
    assert runs[0].folder != runs[1].folder and {r.seed for r in runs} == {0, 1}
    # Table 4's row is Table 2's full model (the paper evaluates it without re-training): one run folder
    full_t2 = [r for r in runner.plan(tables.TABLES["table2"], settings) if r.row.name == "full"]
    full_t4 = runner.plan(tables.TABLES["table4"], settings)
    assert [r.folder for r in full_t2] == [r.folder for r in full_t4]
    assert [s.name for s in full_t2[0].stages] == ["train", "final", "evaluate_eigen", "benchmark"]
    assert [s.name for s in full_t4[0].stages] == ["train", "final", "evaluate_eigen_benchmark"]
    assert tables.TABLES["table7"].rows[2].reported == {"abs_rel": 0.108, "sq_rel": 0.755, "a1": 0.882}
    with pytest.raises(utils.InputError, match="--set labels_14=VALUE"):
        runner.plan(tables.TABLES["table5"], settings)
    runs = runner.plan(
        tables.TABLES["table5"], runner.Settings("/data", str(tmp_path), [0], variables={"labels_14": "/l"})
    )
    assert "/l" in runs[1].stages[0].command.argv
    with pytest.raises(utils.InputError, match="--seed is set by the runner"):
        runner.plan(
            tables.TABLES["table6"], runner.Settings("/data", str(tmp_path), [0], train_args=["--seed", "3"])
        )


def test_mean_and_std_over_seeds_and_the_cost_columns(tmp_path):
    from reproduce import report

    table = tables.TABLES["table2"]
    settings = runner.Settings("/data", str(tmp_path), [0, 1])
    runs = [r for r in runner.plan(table, settings) if r.row.name == "full"]
    for run, abs_rel in zip(runs, (0.10, 0.12)):
        metrics = {m: 0.5 for m in DEPTH_METRIC_NAMES}
        metrics["abs_rel"] = abs_rel
        save_json(
            {"command": "x", "metrics": {"metrics": metrics}},
            os.path.join(run.folder, runner.RECORD.format("evaluate_eigen")),
        )
    benchmark = {
        "results": [
            {"path": "exact", "projected_20_epochs_h": 30.0, "peak_memory_gib": 9.0, "inference_ms": 9.0},
            {"path": "default", "projected_20_epochs_h": 20.5, "peak_memory_gib": 8.25, "inference_ms": 7.0},
        ],
        "machine": {"device": "a GPU"},
    }
    save_json(
        {"command": "x", "benchmark": benchmark},
        os.path.join(runs[0].folder, runner.RECORD.format("benchmark")),
    )
    results = report.collect(table, runs, "eigen")
    full = results[-1]
    assert full.mean["abs_rel"] == pytest.approx(0.11) and full.std["abs_rel"] == pytest.approx(0.0141421356)
    assert full.mean["train_hours"] == 20.5 and full.mean["memory_gib"] == 8.25
    assert full.delta("train_hours") == pytest.approx(20.5 - (18 + 20 / 60))
    markdown = report.markdown(table, results)
    assert "| 0.110 ± 0.014 | 0.105 | +0.005 |" in markdown and "9.4 x 2" in markdown
    assert results[0].runs == [] and "| Monodepth2 (baseline) | – |" in markdown
