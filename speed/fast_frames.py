"""The worker side of ``--input_pipeline fast``: frames decoded by libjpeg-turbo/libpng into uint8.

Each frame is read with ``torchvision.io`` (no PIL), resized once from its native size to the
training size with antialiased bicubic interpolation on uint8 (closer to the exact pipeline's
LANCZOS than bilinear; skipped when the file already has the training size, e.g. in a
``tools/prepare_kitti.py`` cache: the size is read from each decoded frame), flipped, and handed
over as a (3, H, W) uint8 tensor under ``("color_u8", frame_id)``. The colour-jitter draw of the
item travels as two small tensors; ``device_inputs.DeviceInputs`` builds every scale and the
jittered copies on the device, batched. When training on the CPU (pipeline ``fast_workers``)
float jitter in the training process would cost more than it saves, so the workers also make
the smaller scales (uint8, antialiased bicubic from the training size) and the jittered copies
with the exact pipeline's PIL jitter, and send them all as uint8. Both make only the image keys
they are given (the trainer gives ``model.image_keys``: every frame at scale 0, the target at
every scale, jittered copies at scale 0). Everything else in an item (intrinsics, labels, ground
truth) is the exact pipeline's.
"""
from __future__ import annotations

from typing import Callable, Collection, Iterable

import torch
import torchvision.transforms.v2.functional as v2F
from PIL import Image
from torchvision.io import ImageReadMode, decode_image, read_file
from torchvision.transforms import InterpolationMode

from utils import InputError

FRAME_KEY = "color_u8"  # ("color_u8", frame_id[, scale]): (3, h, w) uint8 frame at the training size [scale]
AUG_KEY = "color_aug_u8"  # ("color_aug_u8", frame_id, scale): the jittered copy (workers' scales only)
JITTER_FACTORS_KEY = "jitter_factors"  # (4,) float32: brightness, contrast, saturation, hue
JITTER_ORDER_KEY = "jitter_order"  # (4,) int64: the order of the four adjustments
IDENTITY_JITTER = (1.0, 1.0, 1.0, 0.0)  # factors that leave an image unchanged


def read_frame_uint8(path: str, height: int, width: int, do_flip: bool) -> torch.Tensor:
    """Decode an image file into RGB uint8 (3, height, width), resized (antialiased bicubic) if needed."""
    try:
        image = decode_image(read_file(path), mode=ImageReadMode.RGB)
    except (RuntimeError, ValueError) as error:
        raise InputError(f"{path}: cannot decode the frame ({error})") from None
    if tuple(image.shape[-2:]) != (height, width):
        image = v2F.resize(image, [height, width], interpolation=InterpolationMode.BICUBIC, antialias=True)
    return image.flip(-1) if do_flip else image


def add_worker_images(inputs: dict, frame_id, frame: torch.Tensor, keys: Collection[tuple], jitter: tuple | None,
                      color_jitter: Callable[[Image.Image, tuple | None], Image.Image]) -> None:
    """The image keys ``keys`` wants of one uint8 frame, made in the worker: each scale antialiased
    bicubic from the training size, its jittered copy with ``color_jitter`` (the exact pipeline's PIL
    jitter, on the uint8 scale), under the uint8 keys."""
    height, width = frame.shape[-2:]
    scales = sorted({key[2] for key in keys if key[1] == frame_id})
    for scale in scales:
        size = [height // 2 ** scale, width // 2 ** scale]
        scaled = frame if scale == 0 else v2F.resize(frame, size, interpolation=InterpolationMode.BICUBIC,
                                                     antialias=True)
        if ("color", frame_id, scale) in keys:
            inputs[(FRAME_KEY, frame_id, scale)] = scaled
        if ("color_aug", frame_id, scale) in keys:
            augmented = scaled if jitter is None else v2F.pil_to_tensor(color_jitter(v2F.to_pil_image(scaled), jitter))
            inputs[(AUG_KEY, frame_id, scale)] = augmented


def all_image_keys(frame_ids: Iterable, num_scales: int) -> frozenset[tuple]:
    """Monodepth2's full set of image keys: plain and jittered, every frame, every scale."""
    return frozenset((name, f, s) for name in ("color", "color_aug") for f in frame_ids for s in range(num_scales))


def jitter_tensors(params: tuple | None) -> tuple[torch.Tensor, torch.Tensor]:
    """``ColorJitter.get_params`` output (or None) -> (factors (4,) float32, order (4,) int64)."""
    if params is None:
        return torch.tensor(IDENTITY_JITTER, dtype=torch.float32), torch.arange(4)
    order, brightness, contrast, saturation, hue = params
    return torch.tensor([brightness, contrast, saturation, hue], dtype=torch.float32), order.clone().long()
