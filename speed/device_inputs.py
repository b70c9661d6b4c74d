"""The device side of ``--input_pipeline fast``: scales and colour jitter built on the device, batched,
from the uint8 frames and jitter draws that the workers (``datasets/fast_frames.py``) send."""

from __future__ import annotations

from contextlib import contextmanager
from typing import Collection

import torch
import torch.nn.functional as F

from datasets.fast_frames import AUG_KEY, FRAME_KEY, JITTER_FACTORS_KEY, JITTER_ORDER_KEY
from datasets.jitter import jitter_batch
from utils import UINT8_MAX


@contextmanager
def one_thread():
    """Run a block with one intra-op thread (the previous number is restored after it)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


class DeviceInputs:
    """Turns a fast-pipeline batch (uint8 frames + jitter draws) into the exact pipeline's image keys.

    Only those of ``image_keys`` when given (the trainer gives the loader's, ``model.image_keys``):
    ``("color", f, s)`` (scale 0 is the frame / 255, scales 1.. are resized from it with antialiased
    bicubic interpolation, clamped to [0, 1]) and ``("color_aug", f, s)``, the same frame jittered with
    the item's draw, per scale, as the exact pipeline does, in float (``datasets.jitter.jitter_batch``:
    without the exact pipeline's rounding to uint8 after each adjustment). Batches without uint8 frames
    (the exact pipeline, validation) pass through unchanged; batches whose workers made the images
    already (``fast_workers``, for training on the CPU) are only converted to float.
    """

    def __init__(
        self, device: torch.device | str, num_scales: int, image_keys: Collection[tuple] | None = None
    ) -> None:
        self.device = torch.device(device)
        self.num_scales = num_scales
        self.image_keys = None if image_keys is None else frozenset(image_keys)  # None: every frame and scale

    def wanted(self, name: str, frame_id, scale: int) -> bool:
        """Whether the image key (name, frame, scale) is to be made."""
        return self.image_keys is None or (name, frame_id, scale) in self.image_keys

    def __call__(self, inputs: dict) -> dict:
        uint8_keys = [key for key in inputs if isinstance(key, tuple) and key[0] in (FRAME_KEY, AUG_KEY)]
        if not uint8_keys:
            return inputs
        inputs = dict(inputs)
        if len(uint8_keys[0]) == 3:  # the workers made the images (training on the CPU): convert only
            with one_thread():  # memory-bound; idle intra-op threads would spin against the loader workers
                for key in uint8_keys:
                    name = "color" if key[0] == FRAME_KEY else "color_aug"
                    inputs[(name, *key[1:])] = to_float(inputs.pop(key).to(self.device))
            return inputs
        frame_ids = [key[1] for key in uint8_keys]
        frames = torch.cat([inputs.pop((FRAME_KEY, f)).to(self.device, non_blocking=True) for f in frame_ids])
        factors = inputs.pop(JITTER_FACTORS_KEY).to(self.device, non_blocking=True)
        order = inputs.pop(JITTER_ORDER_KEY).to(self.device, non_blocking=True)
        batch = frames.shape[0] // len(frame_ids)
        height, width = frames.shape[-2:]
        full_size = dict(zip(frame_ids, to_float(frames).split(batch)))  # converted once, resized per scale
        for scale in range(self.num_scales):
            plain = [f for f in frame_ids if self.wanted("color", f, scale)]
            jittered = [f for f in frame_ids if self.wanted("color_aug", f, scale)]
            chosen = [f for f in frame_ids if f in plain or f in jittered]
            if not chosen:
                continue
            if scale == 0:
                per_frame = {f: full_size[f] for f in chosen}
            else:
                images = F.interpolate(
                    torch.cat([full_size[f] for f in chosen]),
                    size=(height // 2**scale, width // 2**scale),
                    mode="bicubic",
                    align_corners=False,
                    antialias=True,
                ).clamp(0, 1)
                per_frame = dict(zip(chosen, images.split(batch)))
            for f in plain:
                inputs[("color", f, scale)] = per_frame[f]
            if jittered:
                augmented = jitter_batch(
                    torch.cat([per_frame[f] for f in jittered]),
                    factors.repeat(len(jittered), 1),
                    order.repeat(len(jittered), 1),
                )
                for f, aug in zip(jittered, augmented.split(batch)):
                    inputs[("color_aug", f, scale)] = aug
        return inputs


def to_float(images: torch.Tensor) -> torch.Tensor:
    """uint8 images -> float32 in [0, 1] (in place after the cast; equal to ``to_tensor``'s division)."""
    return images.float().div_(UINT8_MAX)
