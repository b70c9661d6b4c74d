"""Small convolution blocks shared by the decoders (Monodepth2's names and parameter layout)."""

import torch
import torch.nn.functional as F
from torch import nn


class Conv3x3(nn.Module):
    """Reflection-padded 3x3 convolution; the parameter lives at ``.conv`` as in Monodepth2."""

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__()
        self.pad = nn.ReflectionPad2d(1)
        self.conv = nn.Conv2d(in_channels, out_channels, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(self.pad(x))


class ConvBlock(nn.Module):
    """Conv3x3 followed by ELU, the decoder's basic layer."""

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__()
        self.conv = Conv3x3(in_channels, out_channels)
        self.nonlin = nn.ELU(inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.nonlin(self.conv(x))


def upsample(x: torch.Tensor) -> torch.Tensor:
    """Nearest-neighbour x2 upsampling, as in every decoder level."""
    return F.interpolate(x, scale_factor=2, mode="nearest")
