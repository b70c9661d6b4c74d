"""Run under torchrun by test_training: train, then dump this rank's final weights outside the run's
folder."""

import os
import sys

import torch

import options
import utils
from trainer import Trainer

if __name__ == "__main__":
    dump_dir, argv = sys.argv[1], sys.argv[2:]
    opts = options.parse_args(argv)
    utils.setup_logging(int(os.environ["RANK"]))
    trainer = Trainer(opts)
    trainer.train()
    torch.save(trainer.model.state_dict(), os.path.join(dump_dir, f"rank{os.environ['RANK']}.pt"))
