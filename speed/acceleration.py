"""Opt-in speed-ups of a training step (``Acceleration``): the fast pipeline's device side, autocast,
channels_last, compile. The trainer builds it only when a speed option is given, and then passes each
batch through ``prepare_inputs``; the options and what they change are in docs/performance.md.
"""

from __future__ import annotations

import argparse
import functools
from typing import Any, Collection

import torch
from torch import nn

from speed.device_inputs import DeviceInputs
from utils import InputError

AMP_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}


def _to_float32(value: Any) -> Any:
    """Floating tensors (also inside dicts, lists, tuples) cast to float32; everything else unchanged."""
    if torch.is_tensor(value):
        return value.float() if value.is_floating_point() else value
    if isinstance(value, dict):
        return {k: _to_float32(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(_to_float32(v) for v in value)
    return value


def run_forward_in_autocast(module: nn.Module, device_type: str, dtype: torch.dtype) -> None:
    """Make ``module``'s forward run under autocast and return float32 (its state dict is untouched)."""
    inner = module.forward

    @functools.wraps(inner)
    def forward(*args: Any, **kwargs: Any) -> Any:
        with torch.autocast(device_type, dtype=dtype):
            outputs = inner(*args, **kwargs)
        return _to_float32(outputs)

    module.forward = forward


class Acceleration:
    """The opt-in speed-ups chosen by the options, applied to a model that is already on ``device``.

    - ``--input_pipeline fast``: ``DeviceInputs`` builds the loader's ``image_keys`` (None: all) of each
      batch, scales and jitter, on the device (on a CPU-only run the workers make them: only converted).
    - ``--amp bf16|fp16`` (CUDA only): each network's forward runs under ``torch.autocast``, its floating
      outputs cast back to float32, so geometry and every loss stay float32 (fp16: the trainer's
      gradient scaler is enabled, training/optimisation.py).
    - ``--channels_last``: parameters (and so activations) in NHWC memory order.
    - ``--compile``: ``torch.compile`` on every network, in place (checkpoint keys are unchanged).
    """

    def __init__(
        self,
        model: nn.Module,
        opts: argparse.Namespace,
        device: torch.device,
        image_keys: Collection[tuple] | None = None,
    ) -> None:
        self.amp = opts.amp
        if self.amp != "off" and device.type != "cuda":
            raise InputError(f"--amp {self.amp} needs a CUDA device; this run uses {device}")
        fast = opts.input_pipeline == "fast"
        self.device_inputs = DeviceInputs(device, max(opts.scales) + 1, image_keys) if fast else None
        networks = model.networks().values()
        if opts.channels_last:
            model.to(memory_format=torch.channels_last)
        if self.amp != "off":
            for net in networks:
                run_forward_in_autocast(net, device.type, AMP_DTYPES[self.amp])
        if opts.compile:
            for net in networks:
                net.compile()

    def prepare_inputs(self, inputs: dict) -> dict:
        """A batch on the device -> the model's keys (builds scales and jitter for the fast pipeline)."""
        return inputs if self.device_inputs is None else self.device_inputs(inputs)
