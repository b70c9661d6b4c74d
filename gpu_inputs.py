"""The device side of ``--input_pipeline fast``: scales and colour jitter built on the device, batched.

The workers (``datasets/fast_frames.py``) send each frame once, as uint8 at the training size,
with the item's colour-jitter draw. ``DeviceInputs`` turns such a batch into the exact pipeline's
keys: ``("color", f, s)`` for every scale (scale 0 is the frame / 255, scales 1.. are resized
from it with antialiased bicubic interpolation, clamped to [0, 1]) and ``("color_aug", f, s)``,
the same frame jittered with the item's factors in the item's order, per scale, as the exact pipeline does.
Adjustments follow torchvision's tensor functions (brightness: scale; contrast: blend with the
mean grey level; saturation: blend with the greyscale image; hue: a shift in HSV), computed in
float without the exact pipeline's rounding to uint8 after each adjustment. Batches without
uint8 frames (the exact pipeline, validation) pass through unchanged.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torchvision.transforms import _functional_tensor as tensor_ops  # batched RGB <-> HSV

from datasets.fast_frames import FRAME_KEY, IDENTITY_JITTER, JITTER_FACTORS_KEY, JITTER_ORDER_KEY

UINT8_MAX = 255.0
GREY_WEIGHTS = (0.299, 0.587, 0.114)  # ITU-R 601-2 luma, as PIL's "L" mode and torchvision


def greyscale(images: torch.Tensor) -> torch.Tensor:
    """(N, 3, H, W) RGB -> (N, 1, H, W) luma."""
    weights = images.new_tensor(GREY_WEIGHTS).view(1, 3, 1, 1)
    return (images * weights).sum(1, keepdim=True)


def _blend(images: torch.Tensor, other: torch.Tensor, factor: torch.Tensor) -> torch.Tensor:
    return (factor * images + (1 - factor) * other).clamp(0, 1)


def adjust_brightness(images: torch.Tensor, factor: torch.Tensor) -> torch.Tensor:
    """Per-image brightness factors (N,) on (N, 3, H, W) in [0, 1]."""
    return (images * factor.view(-1, 1, 1, 1)).clamp(0, 1)


def adjust_contrast(images: torch.Tensor, factor: torch.Tensor) -> torch.Tensor:
    """Per-image contrast factors (N,): blend with the image's mean grey level."""
    mean = greyscale(images).mean((1, 2, 3), keepdim=True)
    return _blend(images, mean, factor.view(-1, 1, 1, 1))


def adjust_saturation(images: torch.Tensor, factor: torch.Tensor) -> torch.Tensor:
    """Per-image saturation factors (N,): blend with the greyscale image."""
    return _blend(images, greyscale(images), factor.view(-1, 1, 1, 1))


def adjust_hue(images: torch.Tensor, factor: torch.Tensor) -> torch.Tensor:
    """Per-image hue shifts (N,) in [-0.5, 0.5]; images with a zero shift are returned bit for bit."""
    hsv = tensor_ops._rgb2hsv(images)
    hue = torch.remainder(hsv[:, 0:1] + factor.view(-1, 1, 1, 1), 1.0)
    shifted = tensor_ops._hsv2rgb(torch.cat([hue, hsv[:, 1:]], 1))
    return torch.where(factor.view(-1, 1, 1, 1) == 0, images, shifted)


ADJUSTMENTS = (adjust_brightness, adjust_contrast, adjust_saturation, adjust_hue)  # ColorJitter's numbering


def color_jitter(images: torch.Tensor, factors: torch.Tensor, order: torch.Tensor) -> torch.Tensor:
    """ColorJitter on a batch (N, 3, H, W), per image: factors (N, 4) applied in ``order`` (N, 4).

    At each of the four positions every adjustment runs on the whole batch, with the identity
    factor for the images whose order puts another adjustment there, so the step has no
    data-dependent control flow (no host-device synchronisation).
    """
    identity = factors.new_tensor(IDENTITY_JITTER)
    for position in range(len(ADJUSTMENTS)):
        for index, adjust in enumerate(ADJUSTMENTS):
            chosen = order[:, position] == index
            images = adjust(images, torch.where(chosen, factors[:, index], identity[index]))
    return images


class DeviceInputs:
    """Turns a fast-pipeline batch (uint8 frames + jitter draws) into the exact pipeline's keys."""

    def __init__(self, device: torch.device | str, num_scales: int) -> None:
        self.device = torch.device(device)
        self.num_scales = num_scales

    def __call__(self, inputs: dict) -> dict:
        frame_ids = [key[1] for key in inputs if isinstance(key, tuple) and key[0] == FRAME_KEY]
        if not frame_ids:
            return inputs
        inputs = dict(inputs)
        frames = torch.cat([inputs.pop((FRAME_KEY, f)).to(self.device, non_blocking=True) for f in frame_ids])
        factors = inputs.pop(JITTER_FACTORS_KEY).to(self.device, non_blocking=True).repeat(len(frame_ids), 1)
        order = inputs.pop(JITTER_ORDER_KEY).to(self.device, non_blocking=True).repeat(len(frame_ids), 1)
        batch = frames.shape[0] // len(frame_ids)
        height, width = frames.shape[-2:]
        images = frames.float() / UINT8_MAX
        for scale in range(self.num_scales):
            if scale > 0:
                size = (height // 2 ** scale, width // 2 ** scale)
                images_s = F.interpolate(images, size=size, mode="bicubic", align_corners=False,
                                         antialias=True).clamp(0, 1)
            else:
                images_s = images
            augmented = color_jitter(images_s, factors, order)
            for f, plain, aug in zip(frame_ids, images_s.split(batch), augmented.split(batch)):
                inputs[("color", f, scale)] = plain
                inputs[("color_aug", f, scale)] = aug
        return inputs
