"""Train FSRE-Depth: ``python train.py --data_path DIR [options]`` or ``torchrun ... train.py ...``."""
from __future__ import annotations

import os
import sys
from typing import Sequence

import demo
import options
import utils
from trainer import Trainer


def main(argv: Sequence[str] | None = None) -> int:
    opts = options.parse_args(argv)
    rank = int(os.environ.get("RANK", 0))
    utils.setup_logging(rank)
    if opts.demo:
        demo.run(sys.argv[1:] if argv is None else argv, opts.demo_data)
        return 0
    Trainer(opts).train()
    return 0


if __name__ == "__main__":
    sys.exit(main())
