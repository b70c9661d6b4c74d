"""The device side of ``--input_pipeline fast``: scales and colour jitter built on the device, batched.

The workers (``datasets/fast_frames.py``) send each frame once, as uint8 at the training size,
with the item's colour-jitter draw. ``DeviceInputs`` turns such a batch into the exact pipeline's
keys, only those of ``image_keys`` when given (the trainer gives ``model.image_keys``, the keys
the model reads): ``("color", f, s)`` for every scale (scale 0 is the frame / 255, scales 1.. are resized
from it with antialiased bicubic interpolation, clamped to [0, 1]) and ``("color_aug", f, s)``,
the same frame jittered with the item's factors in the item's order, per scale, as the exact
pipeline does. Adjustments follow torchvision's tensor functions (brightness: scale; contrast: blend with the
mean grey level; saturation: blend with the greyscale image; hue: a shift in HSV), computed in
float without the exact pipeline's rounding to uint8 after each adjustment. Batches without
uint8 frames (the exact pipeline, validation) pass through unchanged; batches whose workers
made the images already (``fast_workers``, for training on the CPU) are only converted to float.
"""
from __future__ import annotations

from contextlib import contextmanager
from typing import Collection

import torch
import torch.nn.functional as F

from speed.fast_frames import AUG_KEY, FRAME_KEY, IDENTITY_JITTER, JITTER_FACTORS_KEY, JITTER_ORDER_KEY
from utils import UINT8_MAX

GREY_WEIGHTS = (0.299, 0.587, 0.114)  # ITU-R 601-2 luma, as PIL's "L" mode and torchvision
BRIGHTNESS, CONTRAST, SATURATION, HUE = range(4)  # ColorJitter's numbering of its adjustments
HSV_CHANNEL_OFFSETS = (5.0, 3.0, 1.0)  # n of R, G, B in the HSV -> RGB formula


def greyscale(images: torch.Tensor) -> torch.Tensor:
    """(N, 3, H, W) RGB -> (N, 1, H, W) luma."""
    r, g, b = images.unbind(1)
    return (GREY_WEIGHTS[0] * r + GREY_WEIGHTS[1] * g + GREY_WEIGHTS[2] * b).unsqueeze(1)


def adjust_hue(images: torch.Tensor, factor: torch.Tensor) -> torch.Tensor:
    """Per-image hue shifts (N,) in [-0.5, 0.5] on (N, 3, H, W): torchvision's HSV round trip, in closed form.

    Hue as torchvision's ``_rgb2hsv`` computes it; back to RGB with the compact formula
    channel = V - V·S·clamp(min(k, 4 - k), 0, 1), k = (n + 6·hue) mod 6, n = 5, 3, 1 for R, G, B
    (V·S = max - min), which spares the six-way selection of ``_hsv2rgb``.
    """
    r, g, b = images.unbind(1)
    maxc = images.amax(1)
    chroma = maxc - images.amin(1)
    safe = torch.where(chroma == 0, torch.ones_like(chroma), chroma)
    rc, gc, bc = (maxc - r) / safe, (maxc - g) / safe, (maxc - b) / safe
    is_r, is_g = maxc == r, maxc == g
    hue = (is_r * (bc - gc) + (is_g & ~is_r) * (2.0 + rc - bc) + (~is_g & ~is_r) * (4.0 + gc - rc)) / 6.0
    hue = torch.remainder(hue + factor.view(-1, 1, 1), 1.0)
    channels = []
    for offset in HSV_CHANNEL_OFFSETS:
        k = torch.remainder(offset + 6.0 * hue, 6.0)
        channels.append(maxc - chroma * torch.clamp(torch.minimum(k, 4.0 - k), 0, 1))
    return torch.stack(channels, 1)


def adjust_brightness(images: torch.Tensor, factor: torch.Tensor) -> torch.Tensor:
    """Per-image brightness factors (N,): scale towards black."""
    return (images * factor.view(-1, 1, 1, 1)).clamp(0, 1)


def adjust_contrast(images: torch.Tensor, factor: torch.Tensor) -> torch.Tensor:
    """Per-image contrast factors (N,): blend with the image's mean grey level."""
    factor = factor.view(-1, 1, 1, 1)
    return (factor * images + (1 - factor) * greyscale(images).mean((1, 2, 3), keepdim=True)).clamp(0, 1)


def adjust_saturation(images: torch.Tensor, factor: torch.Tensor) -> torch.Tensor:
    """Per-image saturation factors (N,): blend with the greyscale image."""
    factor = factor.view(-1, 1, 1, 1)
    return (factor * images + (1 - factor) * greyscale(images)).clamp(0, 1)


ADJUSTMENTS = (adjust_brightness, adjust_contrast, adjust_saturation, adjust_hue)  # ColorJitter's numbering


def _adjust(images: torch.Tensor, op: torch.Tensor, factor: torch.Tensor) -> torch.Tensor:
    """One adjustment per image: ``op`` (N,) in ColorJitter's numbering with its ``factor`` (N,).

    Brightness, contrast and saturation are blends with black, the mean grey level and the
    greyscale image (torchvision's definitions), so one blend with per-image partners serves all
    three; the hue shift is computed beside it and selected per image.
    """
    op, factor = op.view(-1, 1, 1, 1), factor.view(-1, 1, 1, 1)
    grey = greyscale(images)
    partner = torch.where(op == CONTRAST, grey.mean((1, 2, 3), keepdim=True), grey) * (op != BRIGHTNESS)
    blended = (factor * images + (1 - factor) * partner).clamp(0, 1)
    return torch.where(op == HUE, adjust_hue(images, factor.view(-1)), blended)


def color_jitter(images: torch.Tensor, factors: torch.Tensor, order: torch.Tensor) -> torch.Tensor:
    """ColorJitter on a batch (N, 3, H, W), per image: factors (N, 4) applied in ``order`` (N, 4).

    On CUDA every image goes through every position (no data-dependent control flow, so no
    host-device synchronisation); on the CPU, where indexing costs no synchronisation, only the
    images with a non-identity draw are adjusted, and the hue shift only where it is drawn.
    """
    if images.device.type != "cpu":
        for position in range(order.shape[1]):
            op = order[:, position]
            images = _adjust(images, op, factors.gather(1, op[:, None])[:, 0])
        return images
    images = images.clone()
    jittered = (factors != factors.new_tensor(IDENTITY_JITTER)).any(1)
    for position in range(order.shape[1]):
        op = order[:, position]
        for index in range(len(IDENTITY_JITTER)):
            chosen = (jittered & (op == index)).nonzero()[:, 0]
            if len(chosen):
                images[chosen] = ADJUSTMENTS[index](images[chosen], factors[chosen, index])
    return images


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
    """Turns a fast-pipeline batch (uint8 frames + jitter draws) into the model's image keys."""

    def __init__(self, device: torch.device | str, num_scales: int,
                 image_keys: Collection[tuple] | None = None) -> None:
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
                images = F.interpolate(torch.cat([full_size[f] for f in chosen]),
                                       size=(height // 2 ** scale, width // 2 ** scale), mode="bicubic",
                                       align_corners=False, antialias=True).clamp(0, 1)
                per_frame = dict(zip(chosen, images.split(batch)))
            for f in plain:
                inputs[("color", f, scale)] = per_frame[f]
            if jittered:
                augmented = color_jitter(torch.cat([per_frame[f] for f in jittered]),
                                         factors.repeat(len(jittered), 1), order.repeat(len(jittered), 1))
                for f, aug in zip(jittered, augmented.split(batch)):
                    inputs[("color_aug", f, scale)] = aug
        return inputs


def to_float(images: torch.Tensor) -> torch.Tensor:
    """uint8 images -> float32 in [0, 1] (in place after the cast; equal to ``to_tensor``'s division)."""
    return images.float().div_(UINT8_MAX)
