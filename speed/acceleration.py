"""Opt-in speed-ups of a training step: the fast input pipeline, autocast, channels_last, compile.

Everything here is off by default (the defaults reproduce the authors' implementation); the
trainer calls ``Acceleration`` at two points: building it (after the model is on its device) and
``prepare_inputs`` for each batch.

- ``--input_pipeline fast``: ``device_inputs.DeviceInputs`` builds scales and jitter on the device
  (on a CPU-only run the workers make them, ``fast_workers``: see ``datasets/fast_frames.py``).
- ``--amp bf16|fp16`` (CUDA only): each network's forward runs under ``torch.autocast`` and its
  floating outputs are cast back to float32, so geometry (back-projection, projection, warping),
  the photometric, smoothness, cross-entropy and SGT losses stay in float32. fp16 adds a gradient
  scaler (training/optimisation.py).
- ``--channels_last``: parameters (and so activations) in NHWC memory order.
- ``--compile``: ``torch.compile`` on every network, in place (checkpoint keys are unchanged).
"""

from __future__ import annotations

import argparse
import functools
from typing import Any

import torch
from torch import nn

from model import loader_image_keys
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


def dataset_pipeline(opts: argparse.Namespace, device: torch.device) -> str:
    """What the training workers do: exact, fast (uint8 frames; scales and jitter on the device) or
    fast_workers (on a CPU-only run, where float jitter in the training process costs more than PIL's)."""
    pipeline = opts.input_pipeline
    return "fast_workers" if pipeline == "fast" and device.type == "cpu" else pipeline


class Acceleration:
    """The opt-in speed-ups chosen by the options, applied to a model that is already on ``device``."""

    def __init__(self, model: nn.Module, opts: argparse.Namespace, device: torch.device) -> None:
        self.amp = opts.amp
        if self.amp != "off" and device.type != "cuda":
            raise InputError(f"--amp {self.amp} needs a CUDA device; this run uses {device}")
        self.dataset_pipeline = dataset_pipeline(opts, device)
        fast = opts.input_pipeline == "fast"
        self.device_inputs = (
            DeviceInputs(device, max(opts.scales) + 1, loader_image_keys(opts)) if fast else None
        )
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
