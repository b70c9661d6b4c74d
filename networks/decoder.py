"""The depth and segmentation decoders (one body, two heads) and the joint decoder with CMA.

Decoder levels run from 4 (1/16 of the input after upsampling) to 0 (full size); the feature of
level i is at scale 1/2^i. The paper's CMA layer l is decoder level 4 - l, and the authors'
checkpoints name its modules by ``v = level - 1`` (their option ``--cma_layers 3 2 1``).
"""

from __future__ import annotations

from typing import Sequence

import torch
from torch import nn

from .blocks import Conv3x3, ConvBlock, upsample
from .cma import CMA
from .resnet_encoder import FEATURE_STRIDES

NUM_CH_DEC = (16, 32, 64, 128, 256)
NUM_LEVELS = 5
TOP_LEVEL = NUM_LEVELS - 1
DEFAULT_SCALES = (0, 1, 2, 3)
DEFAULT_CMA_LAYERS = (0, 1, 2)  # the paper's l, i.e. decoder levels 4, 3, 2


def cma_layer_to_level(layer: int) -> int:
    """Paper's CMA layer index l -> decoder level."""
    if not 0 <= layer <= TOP_LEVEL:
        raise ValueError(f"CMA layer must be in 0..{TOP_LEVEL}, got {layer}")
    return TOP_LEVEL - layer


def cma_checkpoint_key(level: int) -> str:
    """Name of the CMA modules of a decoder level in the authors' decoder.pth."""
    return str(level - 1)


class DecoderBody(nn.Module):
    """Monodepth2's U-Net decoder with one Conv3x3 head per requested scale (no activation).

    Parameters sit in one ModuleList named ``decoder`` in Monodepth2's order (upconv and iconv
    for levels 4..0, then the heads), so released checkpoints load without renaming.
    """

    def __init__(
        self,
        num_ch_enc: Sequence[int],
        out_channels: int,
        head_scales: Sequence[int],
        num_ch_dec: Sequence[int] = NUM_CH_DEC,
    ) -> None:
        super().__init__()
        self.num_ch_dec = tuple(num_ch_dec)
        self.head_scales = tuple(head_scales)
        convs: list[nn.Module] = []
        for level in range(TOP_LEVEL, -1, -1):
            in_up = num_ch_enc[-1] if level == TOP_LEVEL else num_ch_dec[level + 1]
            convs.append(ConvBlock(in_up, num_ch_dec[level]))
            in_i = num_ch_dec[level] + (num_ch_enc[level - 1] if level > 0 else 0)
            convs.append(ConvBlock(in_i, num_ch_dec[level]))
        convs += [Conv3x3(num_ch_dec[s], out_channels) for s in self.head_scales]
        self.decoder = nn.ModuleList(convs)

    def upconv(self, level: int) -> nn.Module:
        """The ConvBlock applied before upsampling at ``level``."""
        return self.decoder[2 * (TOP_LEVEL - level)]

    def iconv(self, level: int) -> nn.Module:
        """The ConvBlock applied after the skip concatenation at ``level``."""
        return self.decoder[2 * (TOP_LEVEL - level) + 1]

    def head(self, scale: int) -> nn.Module:
        """The output convolution at ``scale``."""
        return self.decoder[2 * NUM_LEVELS + self.head_scales.index(scale)]

    def level(self, level: int, x: torch.Tensor, features: Sequence[torch.Tensor]) -> torch.Tensor:
        """One decoder level: upconv, x2 upsample, concatenate the encoder skip, iconv."""
        x = upsample(self.upconv(level)(x))
        if level > 0:
            x = torch.cat([x, features[level - 1]], 1)
        return self.iconv(level)(x)


class JointDecoder(nn.Module):
    """Depth decoder, optional segmentation decoder, and CMA at the chosen layers.

    Every Table 2 configuration is an instance: ``semantics=False`` is Monodepth2's depth decoder;
    ``cma_layers=()`` runs the two decoders side by side. Where CMA runs, both modules read the
    features from before either is updated, and everything later at that level (heads, next
    upconv) reads the refined features.

    ``forward`` returns a dict with ``("disp", s)`` (sigmoid outputs, B×1×H/2^s×W/2^s) for each
    scale, ``("seg_logits", 0)`` (B×num_classes×H×W) when ``semantics``, and
    ``("depth_feature", i)`` for every level i (the depth decoder's features, after CMA where it
    runs), which the SGT loss reads.
    """

    def __init__(
        self,
        num_ch_enc: Sequence[int],
        scales: Sequence[int] = DEFAULT_SCALES,
        semantics: bool = True,
        num_classes: int = 19,
        cma_layers: Sequence[int] = DEFAULT_CMA_LAYERS,
        num_heads: int = 4,
        cma_ratio: int = 2,
        feature_strides: Sequence[int] = FEATURE_STRIDES,
    ) -> None:
        super().__init__()
        if tuple(feature_strides) != FEATURE_STRIDES or len(num_ch_enc) != NUM_LEVELS:
            raise ValueError(
                f"the decoders read {NUM_LEVELS} encoder features at strides {FEATURE_STRIDES}, "
                f"got {len(num_ch_enc)} at {tuple(feature_strides)}"
            )
        if cma_layers and not semantics:
            raise ValueError("CMA needs the segmentation decoder: enable semantics or pass no CMA layers")
        self.scales = tuple(scales)
        self.semantics = semantics
        self.num_classes = num_classes
        self.depth_decoder = DecoderBody(num_ch_enc, 1, self.scales)
        self.seg_decoder = DecoderBody(num_ch_enc, num_classes, (0,)) if semantics else None
        self.cma_levels = tuple(sorted({cma_layer_to_level(layer) for layer in cma_layers}, reverse=True))
        # att_d_to_s makes the new depth feature (K, V: depth; Q: segmentation), att_s_to_d the new
        # segmentation feature: the authors' names.
        self.att_d_to_s = nn.ModuleDict()
        self.att_s_to_d = nn.ModuleDict()
        for level in self.cma_levels:
            channels = NUM_CH_DEC[level]
            self.att_d_to_s[cma_checkpoint_key(level)] = CMA(channels, num_heads, cma_ratio)
            self.att_s_to_d[cma_checkpoint_key(level)] = CMA(channels, num_heads, cma_ratio)

    def forward(self, features: Sequence[torch.Tensor]) -> dict:
        outputs: dict = {}
        x_d = x_s = features[-1]
        for level in range(TOP_LEVEL, -1, -1):
            x_d = self.depth_decoder.level(level, x_d, features)
            if self.seg_decoder is not None:
                x_s = self.seg_decoder.level(level, x_s, features)
            if level in self.cma_levels:
                key = cma_checkpoint_key(level)
                x_d, x_s = self.att_d_to_s[key](x_d, x_s), self.att_s_to_d[key](x_s, x_d)
            outputs[("depth_feature", level)] = x_d
            if level in self.scales:
                outputs[("disp", level)] = torch.sigmoid(self.depth_decoder.head(level)(x_d))
        if self.seg_decoder is not None:
            outputs[("seg_logits", 0)] = self.seg_decoder.head(0)(x_s)
        return outputs
