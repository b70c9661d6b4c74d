"""The paper's monocular recipe over seeds and codecs on generated dashcam footage: \
``python -m tools.recipe_grid --out DIR``.

For each codec, synthetic drives as 30 fps videos (each scene frame shown three times unless
``--interpolate``), imported at 10 fps, split with the last drive held out; for each codec and seed a
monocular run from scratch (the full model, auto-masking on), evaluated untrained and after every
epoch. Writes ``DIR/grid.json`` (per run: AbsRel and a1 at every evaluation, the pose network's mean
translation and the share of pixels where a warp beats the unwarped frames at every logged step) and
``DIR/grid.md``. Resumable: finished cells are read back, a cut-off run resumes (reproduce/recipe_grid.py).
"""

from __future__ import annotations

import argparse
import logging
import sys
from typing import Sequence

import options
import utils
from datasets.synthetic.video import CODECS, parse_codec
from reproduce.recipe_grid import GridSettings, run_cell, write_tables

logger = logging.getLogger(__name__)

DEFAULT_CODECS = ("lossless", "h264-crf14", "h264-crf18", "h264-crf23", "h264-dashcam", "h265")


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0], formatter_class=utils.HelpFormatter)
    parser.add_argument(
        "--out", type=options.folder_path, required=True, help="grid folder (data, runs, grid.json, grid.md)"
    )
    parser.add_argument("--seeds", type=options.non_negative_int, nargs="+", default=[0, 1, 2, 3, 4])
    parser.add_argument(
        "--codecs", nargs="+", default=list(DEFAULT_CODECS), help=f"codecs, of the forms {', '.join(CODECS)}"
    )
    defaults = GridSettings()
    parser.add_argument(
        "--steps", type=options.positive_int, default=defaults.steps, help="training steps per run"
    )
    parser.add_argument(
        "--epochs",
        type=options.positive_int,
        default=defaults.epochs,
        help="the schedule's epochs (the issue's 290 steps are 10 epochs of 29); --steps may end it early",
    )
    parser.add_argument(
        "--frames", type=options.positive_int, default=defaults.frames, help="per drive at 10 fps"
    )
    parser.add_argument("--scale", type=options.positive_float, default=defaults.scale, help="of 1242x375")
    parser.add_argument("--height", type=options.positive_int, default=defaults.height)
    parser.add_argument("--width", type=options.positive_int, default=defaults.width)
    parser.add_argument("--batch_size", type=options.positive_int, default=defaults.batch_size)
    parser.add_argument(
        "--log_frequency",
        type=options.positive_int,
        default=defaults.log_frequency,
        help="steps between diagnostics",
    )
    parser.add_argument(
        "--interpolate",
        action="store_true",
        help="interpolated 30 fps poses instead of each scene frame shown three times",
    )
    parser.add_argument(
        "--train_options",
        default="",
        help="more train.py options for every run, one string (a method change under test)",
    )
    opts = parser.parse_args(argv)
    for codec in opts.codecs:
        parse_codec(codec)  # a bad spec fails before anything is written
    utils.setup_logging()
    settings = GridSettings(
        frames=opts.frames,
        scale=opts.scale,
        hold=not opts.interpolate,
        height=opts.height,
        width=opts.width,
        batch_size=opts.batch_size,
        epochs=opts.epochs,
        steps=opts.steps,
        log_frequency=opts.log_frequency,
        extra=tuple(opts.train_options.split()),
    )
    cells = []
    for seed in opts.seeds:
        for codec in opts.codecs:
            logger.info("cell %s seed %d", codec, seed)
            cells.append(run_cell(opts.out, codec, seed, settings))
            json_path, md_path = write_tables(opts.out, cells)
    logger.info("wrote %s and %s", json_path, md_path)
    with open(md_path) as f:
        print(f.read(), end="")
    return 0


if __name__ == "__main__":
    sys.exit(utils.run_cli(main))
