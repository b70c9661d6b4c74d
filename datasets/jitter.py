"""Colour jitter, defined once: the authors' draw and its two arithmetics (PIL uint8, float tensors).

``draw`` is torchvision's ``ColorJitter.get_params`` with the authors' ranges, one per item, shared by all its
frames and scales (whether an item is jittered is the dataset's coin flip). ``jitter_pil`` applies it as the
authors do (PIL, rounding to uint8 after each adjustment); ``jitter_batch`` on float tensors, without the
rounding (the device side of ``--input_pipeline fast``; tests/test_speed.py states the tolerance).
docs/fidelity.md ("Colour jitter", and the arithmetic options) gives the whole account."""

from __future__ import annotations

from typing import NamedTuple

import torch
import torchvision.transforms.functional as TF
from PIL import Image
from torchvision import transforms

BRIGHTNESS_RANGE = CONTRAST_RANGE = SATURATION_RANGE = (0.8, 1.2)
HUE_RANGE = (-0.1, 0.1)
BRIGHTNESS, CONTRAST, SATURATION, HUE = range(4)  # ColorJitter's numbering of its adjustments
IDENTITY_FACTORS = (1.0, 1.0, 1.0, 0.0)  # brightness, contrast, saturation, hue that change nothing
GREY_WEIGHTS = (0.299, 0.587, 0.114)  # ITU-R 601-2 luma, as PIL's "L" mode and torchvision
HSV_CHANNEL_OFFSETS = (5.0, 3.0, 1.0)  # n of R, G, B in the HSV -> RGB formula


class JitterDraw(NamedTuple):
    """One item's draw, as ``ColorJitter.get_params`` returns it: the order of the adjustments, then the
    factors."""

    order: torch.Tensor
    brightness: float
    contrast: float
    saturation: float
    hue: float


def draw() -> JitterDraw:
    """Draw an item's jitter from torch's generator, with the authors' ranges."""
    return JitterDraw(
        *transforms.ColorJitter.get_params(BRIGHTNESS_RANGE, CONTRAST_RANGE, SATURATION_RANGE, HUE_RANGE)
    )


def as_tensors(jitter: JitterDraw | None) -> tuple[torch.Tensor, torch.Tensor]:
    """A draw (None: no jitter) as tensors: factors (4,) float32 in ColorJitter's numbering, order (4,)
    int64."""
    if jitter is None:
        return torch.tensor(IDENTITY_FACTORS, dtype=torch.float32), torch.arange(len(IDENTITY_FACTORS))
    order, *factors = jitter
    return torch.tensor(factors, dtype=torch.float32), order.clone().long()


# -- PIL, uint8: the authors' arithmetic ------------------------------------------------------------
PIL_ADJUSTMENTS = (TF.adjust_brightness, TF.adjust_contrast, TF.adjust_saturation, TF.adjust_hue)


def jitter_pil(image: Image.Image, jitter: JitterDraw | None) -> Image.Image:
    """A draw applied to a PIL image, adjustment by adjustment in the draw's order (identity for None)."""
    if jitter is None:
        return image
    order, *factors = jitter
    for index in order.tolist():
        image = PIL_ADJUSTMENTS[index](image, factors[index])
    return image


# -- float tensors, batched: the fast path's arithmetic --------------------------------------------
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


TENSOR_ADJUSTMENTS = (
    adjust_brightness,
    adjust_contrast,
    adjust_saturation,
    adjust_hue,
)  # ColorJitter's numbering


def adjust_each(images: torch.Tensor, op: torch.Tensor, factor: torch.Tensor) -> torch.Tensor:
    """One adjustment per image, without data-dependent control flow: ``op`` (N,) with its ``factor`` (N,).

    Brightness, contrast and saturation are blends with black, the mean grey level and the
    greyscale image (torchvision's definitions), so one blend with per-image partners serves all
    three; the hue shift is computed beside it and selected per image.
    """
    op, factor = op.view(-1, 1, 1, 1), factor.view(-1, 1, 1, 1)
    grey = greyscale(images)
    partner = torch.where(op == CONTRAST, grey.mean((1, 2, 3), keepdim=True), grey) * (op != BRIGHTNESS)
    blended = (factor * images + (1 - factor) * partner).clamp(0, 1)
    return torch.where(op == HUE, adjust_hue(images, factor.view(-1)), blended)


def jitter_batch(images: torch.Tensor, factors: torch.Tensor, order: torch.Tensor) -> torch.Tensor:
    """Draws applied to a batch (N, 3, H, W) in [0, 1], per image: factors (N, 4) in ``order`` (N, 4).

    The four adjustments as torchvision defines them (brightness: scale; contrast: blend with the mean grey
    level; saturation: blend with the greyscale image; hue: a shift in HSV), without ``jitter_pil``'s
    rounding to uint8 after each. On CUDA every image goes through every position (``adjust_each``: no
    host-device synchronisation); on the CPU, where indexing costs no synchronisation, only the images with
    a non-identity draw are adjusted, and the hue shift only where it is drawn.
    """
    if images.device.type != "cpu":
        for position in range(order.shape[1]):
            op = order[:, position]
            images = adjust_each(images, op, factors.gather(1, op[:, None])[:, 0])
        return images
    images = images.clone()
    jittered = (factors != factors.new_tensor(IDENTITY_FACTORS)).any(1)
    for position in range(order.shape[1]):
        op = order[:, position]
        for index, adjust in enumerate(TENSOR_ADJUSTMENTS):
            chosen = (jittered & (op == index)).nonzero()[:, 0]
            if len(chosen):
                images[chosen] = adjust(images[chosen], factors[chosen, index])
    return images
