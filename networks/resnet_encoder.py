"""ResNet encoder shared by the depth and segmentation decoders, and the pose encoder."""

from __future__ import annotations

import os
from typing import Callable

import torch
from torch import nn
from torchvision import models

from utils import ProjectError

# Monodepth2 normalises inputs with these constants instead of ImageNet's per-channel ones.
INPUT_MEAN = 0.45
INPUT_STD = 0.225

RESNETS: dict[int, tuple[Callable[..., models.ResNet], models.WeightsEnum]] = {
    18: (models.resnet18, models.ResNet18_Weights.IMAGENET1K_V1),
    34: (models.resnet34, models.ResNet34_Weights.IMAGENET1K_V1),
    50: (models.resnet50, models.ResNet50_Weights.IMAGENET1K_V1),
    101: (models.resnet101, models.ResNet101_Weights.IMAGENET1K_V1),
    152: (models.resnet152, models.ResNet152_Weights.IMAGENET1K_V1),
}


NETWORK_STRIDE = 32  # the encoder downsamples by 32 (five stride-2 stages): image sides are multiples of it
FEATURE_STRIDES = (2, 4, 8, 16, 32)  # of the five features every depth encoder returns (the decoders' levels)


class PretrainedWeightsUnavailable(ProjectError, RuntimeError):
    """Raised when the ImageNet weights can neither be found in the cache nor downloaded."""


def imagenet_state_dict(num_layers: int) -> dict[str, torch.Tensor]:
    """Load torchvision's ImageNet weights for a ResNet, with a clear error when offline."""
    weights = RESNETS[num_layers][1]
    checkpoint_dir = os.path.join(torch.hub.get_dir(), "checkpoints")
    filename = os.path.basename(weights.url)
    try:
        return weights.get_state_dict(progress=True)
    except Exception as err:  # URLError, HTTPError, socket errors, corrupt files ...
        raise PretrainedWeightsUnavailable(
            f"cannot load the ImageNet weights of ResNet-{num_layers} ({err}). Download {weights.url} "
            f"on a machine with internet access and place it at {os.path.join(checkpoint_dir, filename)} "
            f"(TORCH_HOME moves that folder), or train from scratch with --weights_init scratch."
        ) from err


class ResnetEncoder(nn.Module):
    """torchvision ResNet without avgpool and classifier, returning five feature maps (1/2 .. 1/32).

    With ``num_input_images > 1`` the first convolution takes the frames stacked on the channel
    axis; its ImageNet weights are then the RGB weights repeated per frame and divided by the
    number of frames (Monodepth2's pose encoder).
    """

    def __init__(self, num_layers: int = 18, pretrained: bool = False, num_input_images: int = 1) -> None:
        super().__init__()
        if num_layers not in RESNETS:
            raise ValueError(f"num_layers must be one of {sorted(RESNETS)}, got {num_layers}")
        builder = RESNETS[num_layers][0]
        self.num_input_images = num_input_images
        self.name = f"resnet{num_layers}"  # as --encoder names it (networks/encoders.py)
        self.feature_strides = FEATURE_STRIDES
        self.encoder = builder(weights=None)
        if num_input_images > 1:
            self.encoder.conv1 = nn.Conv2d(
                num_input_images * 3, 64, kernel_size=7, stride=2, padding=3, bias=False
            )
            nn.init.kaiming_normal_(self.encoder.conv1.weight, mode="fan_out", nonlinearity="relu")
        if pretrained:
            state = imagenet_state_dict(num_layers)
            if num_input_images > 1:
                state["conv1.weight"] = (
                    torch.cat([state["conv1.weight"]] * num_input_images, 1) / num_input_images
                )
            self.encoder.load_state_dict(state)
        # The classifier is unused; dropping it keeps every parameter trainable (DDP needs that).
        del self.encoder.fc, self.encoder.avgpool
        expansion = 4 if num_layers > 34 else 1
        self.num_ch_enc: tuple[int, ...] = (
            64,
            64 * expansion,
            128 * expansion,
            256 * expansion,
            512 * expansion,
        )

    def forward(self, images: torch.Tensor) -> list[torch.Tensor]:
        """Images in [0, 1], (B, 3·n, H, W) -> features at 1/2, 1/4, 1/8, 1/16, 1/32."""
        e = self.encoder
        x = (images - INPUT_MEAN) / INPUT_STD
        f0 = e.relu(e.bn1(e.conv1(x)))
        f1 = e.layer1(e.maxpool(f0))
        f2 = e.layer2(f1)
        f3 = e.layer3(f2)
        f4 = e.layer4(f3)
        return [f0, f1, f2, f3, f4]
