"""A table's results, collected from its runs' records, written as Markdown, LaTeX (booktabs), CSV and JSON.

Every number comes from a run folder's records (``RUN/reproduce_evaluate_<split>.json``, which holds
evaluate_depth.py's metrics JSON, and ``RUN/reproduce_benchmark.json``); the JSON output lists those
folders, the commands and the options of every run. Several seeds give mean ± standard deviation
(sample standard deviation, ddof = 1). The paper's number and the difference (ours - paper) stand
beside ours.
"""

from __future__ import annotations

import csv
import io
import math
import os
from dataclasses import dataclass, field

import numpy as np

import utils
from evaluation.depth import split_name
from reproduce.runner import Run
from reproduce.tables import COST_NAMES, METRIC_LABELS, Table
from utils.files import atomic_write, save_json

DIGITS = 3  # the paper prints depth metrics with three decimals
COST_DIGITS = {"train_hours": 2, "memory_gib": 1, "inference_ms": 1}
BENCHMARK_PATH = "default"  # the benchmark's figures of what train.py does without speed options
MISSING = "–"


@dataclass
class RowResult:
    """One row of the output: our mean and spread over seeds, the paper's numbers, the runs behind them."""

    name: str
    train_options: list | None
    reported: dict
    note: str
    runs: list = field(default_factory=list)  # one dict per finished run: folder, seed, metrics, commands
    mean: dict = field(default_factory=dict)
    std: dict = field(default_factory=dict)

    def delta(self, key: str) -> float | None:
        """Ours - paper's, where both exist."""
        if key in self.mean and key in self.reported:
            return self.mean[key] - self.reported[key]
        return None


def benchmark_cost(report: dict) -> dict:
    """Cost columns of a run from its benchmark report: train.py's default path on the machine it names."""
    rows = [r for r in report["results"] if r["path"] == BENCHMARK_PATH] or report["results"]
    row = rows[0]
    return {
        "train_hours": row["projected_20_epochs_h"],
        "memory_gib": row["peak_memory_gib"],
        "gpus": 1,
        "inference_ms": row["inference_ms"],
        "machine": report["machine"]["device"],
    }


def collect(table: Table, runs: list[Run], eval_split: str) -> list[RowResult]:
    """Our results per row from the runs' records (runs not finished yet are left out)."""
    split = split_name(eval_split)
    results = []
    for row in table.rows:
        result = RowResult(row.name, list(row.train) if row.train else None, dict(row.reported), row.note)
        cost = None
        for run in (r for r in runs if r.row is row):
            evaluation = run.record(f"evaluate_{split}")
            if evaluation is None:
                continue
            if not isinstance(evaluation.get("metrics", {}).get("metrics"), dict):
                record = os.path.join(run.folder, f"reproduce_evaluate_{split}.json")
                raise utils.InputError(
                    f"{record}: holds no metrics (edited?): delete it and run the same "
                    f"command to evaluate again"
                )
            train, final = run.record("train"), run.record("final")
            entry = {
                "folder": run.folder,
                "seed": run.seed,
                "train_options": run.train_options,
                "train_command": train["command"] if train else None,
                "train_seconds": train and train["seconds"],
                "weights": final and os.path.join(run.folder, final["final"]["source"]),
                "evaluate_command": evaluation["command"],
                "metrics": evaluation["metrics"]["metrics"],
                "frames": evaluation["metrics"].get("frames"),
            }
            result.runs.append(entry)
            benchmark = run.record("benchmark")
            if benchmark is not None:
                cost = benchmark_cost(benchmark["benchmark"])
                entry["benchmark"] = cost
        if result.runs:
            for key in result.runs[0]["metrics"]:
                values = np.array([r["metrics"][key] for r in result.runs], dtype=np.float64)
                result.mean[key] = float(values.mean())
                result.std[key] = float(values.std(ddof=1)) if len(values) > 1 else 0.0
        if cost is not None:
            result.mean.update({k: cost[k] for k in COST_NAMES if cost[k] is not None})
        results.append(result)
    return results


def columns(table: Table) -> list[str]:
    """The quantities shown: the table's metrics, then the cost columns (Table 2)."""
    return list(table.metrics) + (["train_hours", "memory_gib", "inference_ms"] if table.cost else [])


def number(key: str, value: float | None, signed: bool = False) -> str:
    """A cell's number with the paper's precision."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return MISSING
    digits = COST_DIGITS.get(key, DIGITS)
    return f"{value:+.{digits}f}" if signed else f"{value:.{digits}f}"


def ours_cell(result: RowResult, key: str, plus_minus: str = "±") -> str:
    """Our mean (± std over seeds when there are several)."""
    if key not in result.mean:
        return MISSING
    text = number(key, result.mean[key])
    if len(result.runs) > 1 and key in result.std and key not in COST_NAMES:
        text += f" {plus_minus} {number(key, result.std[key])}"
    return text


def paper_cell(result: RowResult, key: str) -> str:
    """The paper's number (memory with its GPU count, as the paper writes it)."""
    value = result.reported.get(key)
    text = number(key, value)
    if key == "memory_gib" and value is not None and result.reported.get("gpus", 1) > 1:
        text += f" x {result.reported['gpus']}"
    return text


def header_label(key: str) -> str:
    return METRIC_LABELS.get(key, key)


def markdown(table: Table, results: list[RowResult]) -> str:
    """A Markdown table: per quantity ours, the paper's and the difference; the run folders last."""
    keys = columns(table)
    head = (
        ["Method"]
        + [f"{header_label(k)} {what}" for k in keys for what in ("ours", "paper", "Δ")]
        + ["seeds", "runs"]
    )
    lines = [f"**{table.title}**", "", "| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in results:
        cells = [r.name + (" †" if r.note else "")]
        for k in keys:
            cells += [ours_cell(r, k), paper_cell(r, k), number(k, r.delta(k), signed=True)]
        cells += [
            str(len(r.runs)) if r.train_options else "paper only",
            ", ".join(f"`{os.path.basename(run['folder'])}`" for run in r.runs) or MISSING,
        ]
        lines.append("| " + " | ".join(cells) + " |")
    lines += (
        [""] + [f"† {r.name}: {r.note}" for r in results if r.note] + [f"- {note}" for note in table.notes]
    )
    return "\n".join(lines) + "\n"


LATEX_SPECIAL = {
    "&": r"\&",
    "%": r"\%",
    "$": r"\$",
    "#": r"\#",
    "_": r"\_",
    "{": r"\{",
    "}": r"\}",
    "~": r"\textasciitilde{}",
    "^": r"\^{}",
    "\\": r"\textbackslash{}",
}
LATEX_LABELS = {"a1": r"$\delta<1.25$", "a2": r"$\delta<1.25^2$", "a3": r"$\delta<1.25^3$"}


def latex_escape(text: str) -> str:
    return "".join(LATEX_SPECIAL.get(c, c) for c in text).replace("±", r"$\pm$").replace("–", "--")


def latex(table: Table, results: list[RowResult]) -> str:
    """A booktabs table: a column group per quantity (ours, paper, Δ)."""
    keys = columns(table)
    lines = [r"% " + latex_escape(table.title), r"\begin{tabular}{l" + " rrr" * len(keys) + "}", r"\toprule"]
    lines.append(
        "Method & "
        + " & ".join(
            rf"\multicolumn{{3}}{{c}}{{{LATEX_LABELS.get(k, latex_escape(header_label(k)))}}}" for k in keys
        )
        + r" \\"
    )
    lines.append(" ".join(rf"\cmidrule(lr){{{2 + 3 * i}-{4 + 3 * i}}}" for i in range(len(keys))))
    lines.append(" & " + " & ".join(["ours & paper & $\\Delta$"] * len(keys)) + r" \\")
    lines.append(r"\midrule")
    for r in results:
        cells = [latex_escape(r.name)]
        for k in keys:
            cells += [
                latex_escape(ours_cell(r, k)),
                latex_escape(paper_cell(r, k)),
                latex_escape(number(k, r.delta(k), signed=True)),
            ]
        lines.append(" & ".join(cells) + r" \\")
    lines += [r"\bottomrule", r"\end{tabular}"]
    return "\n".join(lines) + "\n"


def csv_text(table: Table, results: list[RowResult]) -> str:
    """One line per row: ours (mean, std), the paper's, the difference, per quantity; seeds and run
    folders."""
    keys = columns(table)
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(
        ["row"]
        + [f"{k}{suffix}" for k in keys for suffix in ("", "_std", "_paper", "_delta")]
        + ["seeds", "runs"]
    )
    for r in results:
        cells = [r.name]
        for k in keys:
            d = r.delta(k)
            cells += [r.mean.get(k, ""), r.std.get(k, ""), r.reported.get(k, ""), "" if d is None else d]
        cells += [len(r.runs), ";".join(run["folder"] for run in r.runs)]
        writer.writerow(cells)
    return out.getvalue()


def json_report(table: Table, results: list[RowResult], eval_split: str) -> dict:
    """Everything behind the table: every run's options, commands, folders and metrics."""
    return {
        "table": table.name,
        "title": table.title,
        "eval_split": eval_split,
        "columns": columns(table),
        "notes": list(table.notes),
        "rows": [
            {
                "name": r.name,
                "train_options": r.train_options,
                "paper": r.reported,
                "paper_note": r.note,
                "mean": r.mean,
                "std": r.std,
                "delta": {k: r.delta(k) for k in r.mean if r.delta(k) is not None},
                "runs": r.runs,
            }
            for r in results
        ],
    }


def write_all(table: Table, results: list[RowResult], eval_split: str, output_dir: str) -> dict[str, str]:
    """Write <output_dir>/<table>.{md,tex,csv,json}; return the paths by format."""
    stem = os.path.join(output_dir, table.name)
    paths = {"md": stem + ".md", "tex": stem + ".tex", "csv": stem + ".csv", "json": stem + ".json"}
    for kind, text in (
        ("md", markdown(table, results)),
        ("tex", latex(table, results)),
        ("csv", csv_text(table, results)),
    ):
        with atomic_write(paths[kind]) as tmp, open(tmp, "w", encoding="utf-8") as f:
            f.write(text)
    save_json(json_report(table, results, eval_split), paths["json"])
    return paths
