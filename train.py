"""Train FSRE-Depth: ``python train.py --data_path DIR [options]`` or ``torchrun ... train.py ...``."""

from __future__ import annotations

import logging
import os
import signal
import sys
from typing import Sequence

import options
import utils
from checkpoints import released
from reproduce import demo
from trainer import Trainer
from training import signals

logger = logging.getLogger("train")


def main(argv: Sequence[str] | None = None) -> int:
    """Train; 0 when done, 128 + N when signal N stopped the run (its state saved for --resume)."""
    if released.LIST_OPTION in (sys.argv[1:] if argv is None else argv):  # before the options' checks
        sys.stdout.write(released.models_table() + "\n")
        return 0
    opts = options.parse_args(argv)
    rank = int(os.environ.get("RANK", 0))
    utils.setup_logging(rank)
    released.resolve_training_weights(opts)  # --model NAME; a model card that contradicts the options
    try:
        if opts.demo:
            demo.run(sys.argv[1:] if argv is None else argv, opts.demo_data)
        else:
            Trainer(opts).train()
    except signals.Interrupted as stopped:  # also the demo's training: saved, and --resume continues it
        logger.warning("%s", stopped)
        return stopped.exit_code
    except KeyboardInterrupt:  # a Ctrl-C outside the training loop: one line, as a signalled run ends
        logger.warning("stopped by SIGINT")
        return signals.SIGNAL_EXIT_BASE + signal.SIGINT
    return 0


if __name__ == "__main__":
    sys.exit(utils.run_cli(main))
