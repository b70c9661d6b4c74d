"""Evaluate depth on a KITTI test split with Monodepth2's protocol (see evaluation/depth.py).

``python evaluate_depth.py --data_path D --load_weights_folder W --eval_split eigen`` loads a model
folder of this project, of the authors or of Monodepth2 (recognised from its keys; ``--model NAME``: a
released one, ``--list_models``), predicts the disparity of every test frame, compares it with the
ground truth that export_gt_depth.py wrote,
prints Monodepth2's table and writes the metrics as JSON.
"""

from __future__ import annotations

import logging
import sys
from typing import Sequence

import utils
from checkpoints import released
from evaluation.depth import build_parser, evaluate


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    released.add_model_option(parser, parser)  # --model NAME: a released model, fetched once
    opts = parser.parse_args(argv)
    utils.setup_logging()
    hint = released.entry(opts.model).info.get("eval", "") if opts.model else ""
    if "--eval_stereo" in hint and not opts.eval_stereo:
        logging.getLogger(__name__).warning(
            "%s is evaluated with %s (its publisher's protocol)", opts.model, hint
        )
    released.resolve_model_option(opts)
    evaluate(opts)
    return 0


if __name__ == "__main__":
    sys.exit(utils.run_cli(main))
