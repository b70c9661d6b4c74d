"""The tables of the paper's supplementary material as data: each row's training options and the numbers it
reports.

A ``Table`` is a list of ``Row``s. A row with ``train`` options is a training run (one per seed) that
is then evaluated on the table's split; a row without (``train=None``) is another method's result
that the paper prints for comparison: it is shown with the paper's numbers only. ``reported`` holds
the paper's numbers, copied from the supplementary material, by metric name
(``evaluation.metrics.DEPTH_METRIC_NAMES``) and, for Table 2, by cost name (``COST_NAMES``). Users
describe their own tables in a small JSON file (``load_user_table``).
"""

from __future__ import annotations

import json
import os
import re
import shlex
from dataclasses import dataclass, field

from evaluation.metrics import DEPTH_METRIC_NAMES
from utils import InputError, MissingFileError

METRICS = DEPTH_METRIC_NAMES
SAFE_NAME = re.compile(r"[A-Za-z0-9._-]+")  # a user table's name: one file name in --output_dir
SHORT_METRICS = ("abs_rel", "sq_rel", "a1")  # the columns of Tables 6 and 7
# Cost columns (Table 2): training time of 20 epochs (hours), peak memory per GPU (GiB), GPUs, inference (ms).
COST_NAMES = ("train_hours", "memory_gib", "gpus", "inference_ms")
METRIC_LABELS = {
    "abs_rel": "AbsRel",
    "sq_rel": "SqRel",
    "rmse": "RMSE",
    "rmse_log": "RMSE log",
    "a1": "δ<1.25",
    "a2": "δ<1.25²",
    "a3": "δ<1.25³",
    "train_hours": "train 20 ep (h)",
    "memory_gib": "memory (GiB)",
    "inference_ms": "inference (ms)",
}
LOWER_IS_BETTER = ("abs_rel", "sq_rel", "rmse", "rmse_log", "train_hours", "memory_gib", "inference_ms")


@dataclass(frozen=True)
class Row:
    """One line of a table: a training run (``train`` options) or a result the paper reports only
    (``train=None``)."""

    name: str
    train: tuple[str, ...] | None
    reported: dict = field(default_factory=dict)
    note: str = ""  # where the reported numbers come from, when not from this table itself


@dataclass(frozen=True)
class Table:
    """A table of the paper (or of a user): its rows, the split they are evaluated on and the columns
    shown."""

    name: str
    title: str
    rows: tuple[Row, ...]
    eval_split: str = "eigen"
    metrics: tuple[str, ...] = METRICS
    cost: bool = False  # add the benchmark's cost columns (Table 2)
    evaluate_options: tuple[str, ...] = ()  # extra evaluate_depth.py options of every row
    variables: dict = field(
        default_factory=dict
    )  # {NAME: meaning}: rows use {NAME}, given as --set NAME=VALUE
    notes: tuple[str, ...] = ()


def _metrics(*values: float) -> dict:
    """The paper's seven numbers in its column order, as a dict by metric name."""
    return dict(zip(METRICS, values))


def _cost(hours: int, minutes: int, memory_gib: float, gpus: int, inference_ms: float) -> dict:
    return {
        "train_hours": hours + minutes / 60,
        "memory_gib": memory_gib,
        "gpus": gpus,
        "inference_ms": inference_ms,
    }


TABLE5_SOURCE = "depth from Table 5 (ResNet18, labels of [16]: the original implementation)"

TABLE2 = Table(
    name="table2",
    title="Table 2: the configurations (depth on Eigen; cost for 20 epochs at 192x640, batch 12)",
    cost=True,
    rows=(
        Row("Monodepth2 (baseline)", ("--config", "baseline"), _cost(14, 40, 8.6, 1, 4.9)),
        Row("w/ semantics", ("--config", "semantics"), _cost(16, 20, 10.5, 1, 7.0)),
        Row("w/ CMA", ("--config", "cma"), _cost(16, 10, 7.2, 2, 9.7)),
        Row("w/o CMA, w/ SGT", ("--config", "sgt"), _cost(15, 50, 7.9, 2, 7.0)),
        Row(
            "full",
            ("--config", "full"),
            {**_cost(18, 20, 9.4, 2, 9.7), **_metrics(0.105, 0.722, 4.547, 0.182, 0.886, 0.964, 0.984)},
            note=TABLE5_SOURCE,
        ),
    ),
    notes=(
        "The supplementary material's Table 2 prints only the cost columns; the main paper's ablation holds "
        "the depth metrics of these configurations.",
        "Cost: the paper's on two Titan Xp; ours from python -m tools.benchmark (train.py's default path) on "
        "the machine named in the run's benchmark.json, projected to 20 epochs of eigen_zhou.",
    ),
)

TABLE3 = Table(
    name="table3",
    title="Table 3: high resolution (320x1024, K = 7), KITTI Eigen split",
    rows=(
        Row("Monodepth2 [5] (320x1024)", None, _metrics(0.115, 0.882, 4.701, 0.190, 0.879, 0.961, 0.982)),
        Row("PackNet-SfM [6] (384x1280)", None, _metrics(0.107, 0.802, 4.538, 0.186, 0.889, 0.962, 0.981)),
        Row("SGDepth [8] (384x1280)", None, _metrics(0.107, 0.768, 4.468, 0.186, 0.891, 0.963, 0.982)),
        Row("SAFENet [1] (320x1024)", None, _metrics(0.106, 0.743, 4.489, 0.181, 0.884, 0.965, 0.984)),
        Row("HR-Depth [9] (320x1024)", None, _metrics(0.106, 0.755, 4.472, 0.181, 0.892, 0.966, 0.984)),
        Row("HR-Depth [9] (384x1280)", None, _metrics(0.104, 0.727, 4.410, 0.179, 0.894, 0.966, 0.984)),
        Row(
            "Ours (320x1024)",
            ("--config", "full", "--height", "320", "--width", "1024", "--sgt_kernel_size", "7"),
            _metrics(0.102, 0.687, 4.366, 0.178, 0.895, 0.967, 0.984),
        ),
    ),
    notes=("Rows without a run are other methods' results, printed by the paper for comparison.",),
)

TABLE4 = Table(
    name="table4",
    title="Table 4: KITTI improved ground truth (652 frames of the Eigen split)",
    eval_split="eigen_benchmark",
    rows=(
        Row("Monodepth2 [5]", None, _metrics(0.090, 0.545, 3.942, 0.137, 0.914, 0.983, 0.995)),
        Row("Poggi et al. [13]", None, _metrics(0.087, 0.514, 3.827, 0.133, 0.920, 0.983, 0.995)),
        Row("PackNet-SfM [6]", None, _metrics(0.086, 0.505, 3.746, 0.132, 0.919, 0.983, 0.995)),
        Row("SGDepth [8]", None, _metrics(0.085, 0.487, 3.757, 0.130, 0.921, 0.984, 0.996)),
        Row("HR-Depth [9]", None, _metrics(0.085, 0.472, 3.768, 0.130, 0.920, 0.985, 0.996)),
        Row("Ours", ("--config", "full"), _metrics(0.083, 0.439, 3.627, 0.126, 0.924, 0.986, 0.996)),
    ),
    notes=(
        'The paper evaluates its model "without re-training": our row is the full model at 192x640, the run '
        "Table 2's full row trains (the same options share one run folder). The supplementary does not name "
        "the resolution; Monodepth2's row is its 640x192 model's published figure.",
        "Evaluation: every gt > 0, no crop (Monodepth2's protocol for this ground truth).",
    ),
)

TABLE5 = Table(
    name="table5",
    title="Table 5: two sources of pseudo-labels, KITTI Eigen split",
    rows=(
        Row(
            "ResNet18, labels [16]",
            ("--config", "full"),
            _metrics(0.105, 0.722, 4.547, 0.182, 0.886, 0.964, 0.984),
        ),
        Row(
            "ResNet18, labels [14]",
            ("--config", "full", "--seg_path", "{labels_14}"),
            _metrics(0.106, 0.717, 4.529, 0.182, 0.886, 0.964, 0.983),
        ),
        Row(
            "ResNet50, labels [16]",
            ("--config", "full", "--num_layers", "50"),
            _metrics(0.102, 0.675, 4.393, 0.178, 0.893, 0.966, 0.984),
        ),
        Row(
            "ResNet50, labels [14]",
            ("--config", "full", "--num_layers", "50", "--seg_path", "{labels_14}"),
            _metrics(0.103, 0.688, 4.449, 0.179, 0.892, 0.966, 0.984),
        ),
    ),
    variables={
        "labels_14": "root of the pseudo-labels of [14] (Tao et al., trained without KITTI images), "
        "in the layout of <data_path>/segmentation"
    },
    notes=(
        "Labels [16] are the authors' set (<data_path>/segmentation, fine-tuned on 200 KITTI images); "
        "labels [14] come from a network trained without KITTI images (--set labels_14=DIR).",
    ),
)

TABLE6 = Table(
    name="table6",
    title="Table 6: CMA at different decoder layers l, KITTI Eigen split",
    metrics=SHORT_METRICS,
    rows=tuple(
        Row(
            f"l = {','.join(map(str, range(last + 1)))}",
            ("--config", "cma", "--cma_layers", *map(str, range(last + 1))),
            dict(zip(SHORT_METRICS, values)),
        )
        for last, values in (
            (1, (0.109, 0.776, 0.882)),
            (2, (0.107, 0.741, 0.884)),
            (3, (0.110, 0.744, 0.880)),
            (4, (0.110, 0.718, 0.877)),
        )
    ),
    notes=(
        "Rows train CMA without the SGT loss (--config cma): the supplementary does not say; its best row "
        "(0.107) differs from the full model's 0.105.",
    ),
)

TABLE7 = Table(
    name="table7",
    title="Table 7: SGT margin m, KITTI Eigen split",
    metrics=SHORT_METRICS,
    rows=tuple(
        Row(f"m = {margin}", ("--config", "sgt", "--sgt_margin", margin), dict(zip(SHORT_METRICS, values)))
        for margin, values in (
            ("0.1", (0.110, 0.783, 0.880)),
            ("0.2", (0.109, 0.772, 0.881)),
            ("0.3", (0.108, 0.755, 0.882)),
            ("0.4", (0.108, 0.739, 0.881)),
        )
    ),
    notes=(
        "Rows train SGT without CMA (--config sgt): the supplementary does not say; its best row (0.108) "
        "differs from the full model's 0.105.",
    ),
)

TABLES = {table.name: table for table in (TABLE2, TABLE3, TABLE4, TABLE5, TABLE6, TABLE7)}


def _argv(value, where: str) -> tuple[str, ...]:
    """A row's options: a list of strings (and numbers), or one string split as a shell would."""
    if isinstance(value, str):
        try:
            return tuple(shlex.split(value))
        except ValueError as err:  # an unterminated quote
            raise InputError(f"{where}: options {value!r} do not split as a shell line ({err})") from None
    if isinstance(value, list) and all(isinstance(v, (str, int, float)) for v in value):
        return tuple(str(v) for v in value)
    raise InputError(f"{where}: options must be a list of strings or one string, got {value!r}")


def load_user_table(path: str) -> Table:
    """A table from JSON: {"name", "title", "eval_split", "metrics", "evaluate_options", "rows": [{"name",
    "train"}]}.

    ``train`` (or ``options``) of a row is a list of train.py options or one string; ``reported`` is optional
    (numbers by metric name, shown beside ours).
    """
    if not os.path.isfile(path):
        raise MissingFileError(f"{path}: no such table file (or give a named table: {', '.join(TABLES)})")
    try:
        with open(path, encoding="utf-8") as f:
            spec = json.load(f)
    except json.JSONDecodeError as err:
        raise InputError(f"{path}: not valid JSON ({err})") from err
    except UnicodeDecodeError as err:
        raise InputError(f"{path}: not UTF-8 text (byte {err.start}): save the table as UTF-8") from None
    if not isinstance(spec, dict) or not isinstance(spec.get("rows"), list) or not spec["rows"]:
        raise InputError(f'{path}: expected an object with a non-empty list "rows"')
    known = {"name", "title", "eval_split", "metrics", "evaluate_options", "rows", "notes"}
    unknown = sorted(set(spec) - known)
    if unknown:
        raise InputError(f"{path}: unknown keys {unknown} (known: {sorted(known)})")
    metrics = tuple(spec.get("metrics", METRICS))
    bad = [m for m in metrics if m not in METRICS]
    if bad:
        raise InputError(f"{path}: unknown metrics {bad} (known: {list(METRICS)})")
    rows = []
    names = set()
    for i, entry in enumerate(spec["rows"]):
        where = f"{path}: rows[{i}]"
        if not isinstance(entry, dict) or "name" not in entry or not ({"train", "options"} & set(entry)):
            raise InputError(f'{where}: a row needs "name" and "train" (its train.py options)')
        if not isinstance(entry["name"], str) or not entry["name"].strip():
            raise InputError(f'{where}: a row\'s "name" must be a non-empty string, got {entry["name"]!r}')
        if entry["name"] in names:
            raise InputError(f"{where}: row name {entry['name']!r} is used twice")
        names.add(entry["name"])
        reported = entry.get("reported", {})
        if not isinstance(reported, dict) or any(
            k not in METRICS or not isinstance(v, (int, float)) for k, v in reported.items()
        ):
            raise InputError(f'{where}: "reported" must map metric names to numbers')
        rows.append(
            Row(str(entry["name"]), _argv(entry.get("train", entry.get("options")), where), dict(reported))
        )
    name = spec.get("name") or os.path.splitext(os.path.basename(path))[0]
    if not isinstance(name, str) or not SAFE_NAME.fullmatch(name) or name in (os.curdir, os.pardir):
        raise InputError(
            f'{path}: "name" {name!r} names the output files <output_dir>/<name>.md ...: '
            f"use letters, digits, '.', '_' and '-' only (no folders)"
        )
    notes = spec.get("notes", [])
    if not isinstance(notes, list) or not all(isinstance(n, str) for n in notes):
        raise InputError(f'{path}: "notes" must be a list of strings, got {notes!r}')
    return Table(
        name=str(name),
        title=str(spec.get("title", name)),
        rows=tuple(rows),
        eval_split=str(spec.get("eval_split", "eigen")),
        metrics=metrics,
        evaluate_options=_argv(spec.get("evaluate_options", []), f"{path}: evaluate_options"),
        notes=tuple(notes),
    )


def get_table(name_or_path: str) -> Table:
    """A named table of the paper, or a user's table from a JSON file."""
    if name_or_path in TABLES:
        return TABLES[name_or_path]
    if name_or_path.endswith(".json") or os.path.exists(name_or_path):
        return load_user_table(name_or_path)
    raise InputError(f"unknown table {name_or_path!r}: give one of {', '.join(TABLES)} or a JSON file")
