"""The look of the project's figures and charts: matplotlib (optional), paper-column sizes, PNG and PDF.

matplotlib is imported only here and only when a figure is drawn; without it, a one-line error says
how to install it. Sizes are those of a two-column paper (CVPR/ICCV: a column is 3.25 in wide, the
text 6.875 in), fonts 8 pt; each figure is written as PNG (``DPI``) and as vector PDF (fonts embedded
as TrueType, as publishers ask).
"""

from __future__ import annotations

import importlib
import logging
from types import ModuleType

import utils
from utils.files import atomic_write

FIGURES_REQUIREMENTS = "pip install -r requirements/figures.txt"
COLUMN_WIDTH_IN = 3.25  # one column of a two-column paper
TEXT_WIDTH_IN = 6.875  # both columns
WIDTHS_IN = {"column": COLUMN_WIDTH_IN, "text": TEXT_WIDTH_IN}
MAX_WIDTH_IN = 50.0  # a figure wider than this is no page's (and matplotlib would allocate it)
FONT_SIZE_PT = 8
DPI = 300
FORMATS = ("png", "pdf")
STYLE = {
    "font.size": FONT_SIZE_PT,
    "axes.titlesize": FONT_SIZE_PT,
    "axes.labelsize": FONT_SIZE_PT,
    "xtick.labelsize": FONT_SIZE_PT - 1,
    "ytick.labelsize": FONT_SIZE_PT - 1,
    "legend.fontsize": FONT_SIZE_PT - 1,
    "pdf.fonttype": 42,
    "ps.fonttype": 42,
    "axes.spines.top": False,
    "axes.spines.right": False,
    "savefig.dpi": DPI,
}


def import_pyplot(purpose: str) -> ModuleType:
    """matplotlib.pyplot on the file-only Agg backend, styled; DependencyError naming the pip command if
    missing."""
    try:
        matplotlib = importlib.import_module("matplotlib")
    except ImportError as err:
        raise utils.DependencyError(f"{purpose} needs matplotlib: {FIGURES_REQUIREMENTS}") from err
    matplotlib.use("Agg")
    # the PDF backend's font subsetting logs every table
    logging.getLogger("fontTools").setLevel(logging.WARNING)
    pyplot = importlib.import_module("matplotlib.pyplot")
    pyplot.rcParams.update(STYLE)
    return pyplot


def width_in(width: str | float) -> float:
    """A figure width: "column", "text" or inches."""
    if isinstance(width, str) and width in WIDTHS_IN:
        return WIDTHS_IN[width]
    try:
        inches = float(width)
    except ValueError:
        raise utils.InputError(f"width {width!r}: give column, text or inches") from None
    if not 0 < inches <= MAX_WIDTH_IN:  # NaN too
        raise utils.InputError(f"--width {width}: give column, text or inches in (0, {MAX_WIDTH_IN:g}]")
    return inches


def save_figure(figure, stem: str) -> list[str]:
    """Write ``<stem>.png`` and ``<stem>.pdf`` atomically (the figure's own size, no cropping); return the
    paths."""
    paths = []
    for ext in FORMATS:
        path = f"{stem}.{ext}"
        with atomic_write(path) as tmp:
            figure.savefig(tmp, format=ext, dpi=DPI)
        paths.append(path)
    return paths
