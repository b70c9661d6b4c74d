"""The worker side of ``--input_pipeline fast``: frames decoded into uint8 tensors, without PIL.

``add_uint8_frames`` is the dataset's one hook into the fast path (``MonoDataset.load_item``): each frame is
decoded by TorchCodec, resized once to the training size (antialiased bicubic on uint8), flipped and handed
over as ``("color_u8", frame_id)`` with the item's jitter draw (``speed.device_inputs.DeviceInputs`` makes the
rest on the device); ``fast_workers`` (CPU runs) makes every scale and the PIL-jittered copies here. The rest
of an item is the exact pipeline's. docs/performance.md and docs/fidelity.md give the whole account."""

from __future__ import annotations

from typing import Collection

import torch
import torchvision.transforms.v2.functional as v2F
from torchcodec.decoders import decode_image
from torchvision.transforms import InterpolationMode

from utils import InputError

from .jitter import JitterDraw, as_tensors, jitter_pil

PIPELINES = ("fast", "fast_workers")  # the scales and jitter made on the device, or in the workers
FRAME_KEY = "color_u8"  # ("color_u8", frame_id[, scale]): (3, h, w) uint8 frame at the training size [scale]
AUG_KEY = "color_aug_u8"  # ("color_aug_u8", frame_id, scale): the jittered copy (workers' scales only)
JITTER_FACTORS_KEY = "jitter_factors"  # (4,) float32: brightness, contrast, saturation, hue
JITTER_ORDER_KEY = "jitter_order"  # (4,) int64: the order of the four adjustments


def read_frame_uint8(path: str, height: int, width: int, do_flip: bool) -> torch.Tensor:
    """Decode an image file into RGB uint8 (3, height, width), resized (antialiased bicubic) if needed."""
    try:
        image = decode_image(path, mode="RGB")
    except FileNotFoundError:
        raise InputError(f"{path}: file not found") from None
    except (RuntimeError, ValueError, OSError) as error:
        raise InputError(f"{path}: cannot decode the frame ({error})") from None
    if image.dim() != 3:  # an animated or multi-image file (GIF, WebP): (N, 3, H, W)
        raise InputError(f"{path}: holds {image.shape[0]} images, a frame must be one")
    if tuple(image.shape[-2:]) != (height, width):
        image = v2F.resize(image, [height, width], interpolation=InterpolationMode.BICUBIC, antialias=True)
    return image.flip(-1) if do_flip else image


def add_worker_images(
    inputs: dict, frame_id, frame: torch.Tensor, keys: Collection[tuple], jitter: JitterDraw | None
) -> None:
    """The image keys ``keys`` wants of one uint8 frame, made in the worker: each scale antialiased
    bicubic from the training size, its jittered copy with the exact pipeline's PIL jitter (on the
    uint8 scale), under the uint8 keys."""
    height, width = frame.shape[-2:]
    scales = sorted({key[2] for key in keys if key[1] == frame_id})
    for scale in scales:
        size = [height // 2**scale, width // 2**scale]
        scaled = (
            frame
            if scale == 0
            else v2F.resize(frame, size, interpolation=InterpolationMode.BICUBIC, antialias=True)
        )
        if ("color", frame_id, scale) in keys:
            inputs[(FRAME_KEY, frame_id, scale)] = scaled
        if ("color_aug", frame_id, scale) in keys:
            augmented = (
                scaled if jitter is None else v2F.pil_to_tensor(jitter_pil(v2F.to_pil_image(scaled), jitter))
            )
            inputs[(AUG_KEY, frame_id, scale)] = augmented


def add_uint8_frames(
    inputs: dict,
    frame_paths: dict,
    height: int,
    width: int,
    do_flip: bool,
    jitter: JitterDraw | None,
    keys: Collection[tuple],
    in_workers: bool,
) -> None:
    """An item's images for the fast pipelines: the uint8 frames of ``frame_paths`` (frame id -> file)
    that ``keys`` needs, at the training size, and the jitter draw (``fast``); or, ``in_workers``
    (``fast_workers``), the uint8 images of ``keys``, jittered copies included."""
    needed = {key[1] for key in keys}
    for frame_id, path in frame_paths.items():
        if frame_id not in needed:
            continue
        frame = read_frame_uint8(path, height, width, do_flip)
        if in_workers:
            add_worker_images(inputs, frame_id, frame, keys, jitter)
        else:
            inputs[(FRAME_KEY, frame_id)] = frame
    if not in_workers:
        inputs[JITTER_FACTORS_KEY], inputs[JITTER_ORDER_KEY] = as_tensors(jitter)
