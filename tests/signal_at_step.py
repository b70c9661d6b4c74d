"""Run train.py as the command line does, with a test-only callback: SIGTERM to this process as step N
begins (so the state is saved after step N). Used by test_resume under torchrun; not an option of
train.py."""

import signal
import sys

import train
import utils
from trainer import Trainer


def signal_at_step(at_step: int) -> None:
    """Make ``Trainer.train_step`` send SIGTERM to this process before step ``at_step`` (1-based) runs."""
    train_step = Trainer.train_step

    def train_step_then_signal(self, *args, **kwargs):
        if self.step == at_step - 1:
            signal.raise_signal(signal.SIGTERM)  # handled before it returns: the flag is set before step N
        return train_step(self, *args, **kwargs)

    Trainer.train_step = train_step_then_signal


if __name__ == "__main__":
    signal_at_step(int(sys.argv[1]))
    sys.exit(utils.run_cli(train.main, sys.argv[2:]))
