"""What an exact resume needs besides the checkpoint file: the data order of any epoch, the random
states, and the rule for options given at resume.

Data order: ``ResumableSampler`` is torch's DistributedSampler (one process: one replica), whose
permutation of an epoch comes from a generator seeded with (seed + epoch), so it can be recomputed;
a resumed epoch skips its first batches without loading them. Each index carries a seed that
depends only on (seed, epoch, index), from which the dataset draws the item's augmentation.

Options at resume: what is given applies and ``opt.json`` records it, so what is recorded is what
runs. The image size (``FIXED_OPTIONS``) is refused: another size is another run; so are other
encoders (``NETWORK_OPTIONS``): their weights are another network's. Another timm version is warned
about (the keys fit, the outputs may differ). The learning-rate
schedule (``SCHEDULE_OPTIONS``) is rebuilt at the epoch reached, as if the run had had it from the
start (the checkpoint's saved schedule would otherwise win). Another data order
(``DATA_ORDER_OPTIONS``) is warned about: the run goes on, but not as it would have; any other
change is logged.
"""
from __future__ import annotations

import argparse
import random

import numpy as np
import torch
from torch.utils.data import DistributedSampler

FIXED_OPTIONS = ("height", "width")
NETWORK_OPTIONS = ("encoder", "pose_encoder", "num_layers")  # --num_layers is --encoder's alias for ResNets
VERSION_OPTIONS = ("timm_version",)  # recorded, not given: the library that built a timm encoder
SCHEDULE_OPTIONS = ("learning_rate", "lr_milestones", "lr_gamma")
DATA_ORDER_OPTIONS = ("batch_size", "seed", "split", "dataset")
NOT_COMPARED = ("resume", "overwrite")  # how this process was started, not how the run trains
AUGMENT_STREAM = 1  # tells the generator of item seeds apart from the permutation's


def changed_options(saved: dict, opts: argparse.Namespace) -> dict[str, str]:
    """Options whose value differs from the checkpoint's, as ``{name: "--name old -> new"}`` (options the
    checkpoint does not know, added since, are not compared)."""
    return {name: f"--{name} {saved[name]} -> {value}" for name, value in sorted(vars(opts).items())
            if name in saved and name not in NOT_COMPARED and saved[name] != value}


def schedule_changed(saved: dict, opts: argparse.Namespace) -> bool:
    """Whether the learning-rate schedule given differs from the checkpoint's."""
    return any(name in changed_options(saved, opts) for name in SCHEDULE_OPTIONS)


class ResumableSampler(DistributedSampler):
    """DistributedSampler whose epochs can start after ``skip`` items, yielding ``(index, item seed)``."""

    def __init__(self, dataset, num_replicas: int, rank: int, seed: int) -> None:
        super().__init__(dataset, num_replicas, rank, shuffle=True, seed=seed, drop_last=True)
        self.skip = 0

    def item_seeds(self) -> np.ndarray:
        """One seed per dataset index, a function of (seed, epoch, index) only."""
        rng = np.random.default_rng([self.seed, self.epoch, AUGMENT_STREAM])
        return rng.integers(0, 2 ** 63 - 1, len(self.dataset), dtype=np.int64)

    def __iter__(self):
        seeds = self.item_seeds()
        indices = list(super().__iter__())[self.skip:]
        return iter([(index, int(seeds[index])) for index in indices])

    def __len__(self) -> int:
        return self.num_samples - self.skip


# ------------------------------------------------------------------------------------------------
# random states
# ------------------------------------------------------------------------------------------------
def rng_states() -> dict:
    """Python's, NumPy's and torch's (CPU and CUDA) generator states, in types ``weights_only`` loads."""
    _, keys, pos, has_gauss, cached = np.random.get_state()
    states = {"python": random.getstate(), "numpy": [torch.from_numpy(keys.astype(np.int64)), pos, has_gauss, cached],
              "torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        states["cuda"] = torch.cuda.get_rng_state_all()
    return states


def set_rng_states(states: dict) -> None:
    """Restore what ``rng_states`` returned."""
    version, internal, gauss = states["python"]
    random.setstate((version, tuple(internal), gauss))
    keys, pos, has_gauss, cached = states["numpy"]
    np.random.set_state(("MT19937", keys.numpy().astype(np.uint32), pos, has_gauss, cached))
    torch.set_rng_state(states["torch"])
    if "cuda" in states and torch.cuda.is_available() and len(states["cuda"]) == torch.cuda.device_count():
        torch.cuda.set_rng_state_all(states["cuda"])
