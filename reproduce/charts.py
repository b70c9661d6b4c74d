"""The per-class chart (Fig. 1 of the paper's supplementary material): a grouped bar chart, one group per
class."""

from __future__ import annotations

from reproduce import style

LOWER_IS_BETTER = ("abs_rel", "sq_rel", "rmse", "rmse_log")
CHART_HEIGHT_IN = 2.2
GROUP_WIDTH = 0.8  # of a class's slot, shared by its bars


def present_classes(results: dict[str, list[dict | None]], class_names: tuple[str, ...]) -> list[int]:
    """Indices of the classes that some model has pixels of (absent classes get no slot)."""
    return [k for k in range(len(class_names)) if any(rows[k] is not None for rows in results.values())]


def per_class_chart(
    results: dict[str, list[dict | None]],
    class_names: tuple[str, ...],
    metric: str,
    stem: str,
    width: str | float = "text",
):
    """Draw ``metric`` per class (one bar per model) and write ``<stem>.png`` and ``<stem>.pdf``; return the
    figure."""
    plt = style.import_pyplot("the per-class chart")
    shown = present_classes(results, class_names)
    figure, axes = plt.subplots(figsize=(style.width_in(width), CHART_HEIGHT_IN), layout="constrained")
    bar = GROUP_WIDTH / max(len(results), 1)
    for m, (name, rows) in enumerate(results.items()):
        xs = [i + (m - (len(results) - 1) / 2) * bar for i, k in enumerate(shown) if rows[k] is not None]
        values = [rows[k][metric] for k in shown if rows[k] is not None]
        axes.bar(xs, values, width=bar, label=name)
    axes.set_xticks(
        range(len(shown)), [class_names[k] for k in shown], rotation=45, ha="right", rotation_mode="anchor"
    )
    axes.set_xlim(-0.5, len(shown) - 0.5)
    axes.set_ylabel(metric + (" (lower is better)" if metric in LOWER_IS_BETTER else " (higher is better)"))
    axes.legend(frameon=False, ncols=min(len(results), 4))
    style.save_figure(figure, stem)
    return figure
