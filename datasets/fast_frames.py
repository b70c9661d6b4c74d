"""The worker side of ``--input_pipeline fast``: frames decoded by libjpeg-turbo/libpng into uint8.

Each frame is read with ``torchvision.io`` (no PIL), resized once from its native size to the
training size with antialiased bicubic interpolation on uint8 (closer to the exact pipeline's
LANCZOS than bilinear; skipped when the file already has the training size, e.g. in a
``tools/prepare_kitti.py`` cache: the size is read from each decoded frame), flipped, and handed
over as a (3, H, W) uint8 tensor under ``("color_u8", frame_id)``. The colour-jitter draw of the
item travels as two small tensors; ``gpu_inputs.DeviceInputs`` builds every scale and the
jittered copies on the device, batched. Everything else in an item (intrinsics, labels, ground
truth) is the exact pipeline's.
"""
from __future__ import annotations

import torch
import torchvision.transforms.v2.functional as v2F
from torchvision.io import ImageReadMode, decode_image, read_file
from torchvision.transforms import InterpolationMode

FRAME_KEY = "color_u8"  # ("color_u8", frame_id): (3, H, W) uint8 frame at the training size
JITTER_FACTORS_KEY = "jitter_factors"  # (4,) float32: brightness, contrast, saturation, hue
JITTER_ORDER_KEY = "jitter_order"  # (4,) int64: the order of the four adjustments
IDENTITY_JITTER = (1.0, 1.0, 1.0, 0.0)  # factors that leave an image unchanged


def read_frame_uint8(path: str, height: int, width: int, do_flip: bool) -> torch.Tensor:
    """Decode an image file into RGB uint8 (3, height, width), resized (antialiased bicubic) if needed."""
    try:
        image = decode_image(read_file(path), mode=ImageReadMode.RGB)
    except (RuntimeError, ValueError) as error:
        raise RuntimeError(f"{path}: cannot decode the frame ({error})") from error
    if tuple(image.shape[-2:]) != (height, width):
        image = v2F.resize(image, [height, width], interpolation=InterpolationMode.BICUBIC, antialias=True)
    return image.flip(-1) if do_flip else image


def jitter_tensors(params: tuple | None) -> tuple[torch.Tensor, torch.Tensor]:
    """``ColorJitter.get_params`` output (or None) -> (factors (4,) float32, order (4,) int64)."""
    if params is None:
        return torch.tensor(IDENTITY_JITTER, dtype=torch.float32), torch.arange(4)
    order, brightness, contrast, saturation, hue = params
    return torch.tensor([brightness, contrast, saturation, hue], dtype=torch.float32), order.clone().long()
