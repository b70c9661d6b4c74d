"""Cross-task multi-embedding attention (CMA), the paper's module that lets depth and
segmentation decoder features refine each other."""

from __future__ import annotations

import math

import torch
from torch import nn

from .blocks import ConvBlock


class CMA(nn.Module):
    """One CMA module: keys and values from one task's feature, queries from the other's.

    With C input channels, H heads and embedding ratio r the embedding has E = H·C·r channels; head
    h owns the contiguous channel block h of q, k and v. Per pixel the score of a head is the dot
    product of its query and key blocks divided by sqrt(E), normalised by a softmax across the
    heads (skipped with one head), and the output is the score-weighted sum of the heads' value
    blocks (C·r channels), projected back to C channels (W), concatenated after the key feature and
    fused. Parameter names follow the authors' checkpoints.
    """

    def __init__(self, channels: int, num_heads: int = 4, ratio: int = 2) -> None:
        super().__init__()
        self.channels = channels
        self.num_heads = num_heads
        self.head_channels = channels * ratio
        embed = num_heads * self.head_channels
        self.query_conv = nn.Conv2d(channels, embed, 1)
        self.key_conv = nn.Conv2d(channels, embed, 1)
        self.value_conv = nn.Conv2d(channels, embed, 1)
        self.scale = 1.0 / math.sqrt(embed)
        self.W = nn.Sequential(
            nn.Conv2d(self.head_channels, channels, 1, bias=False), nn.BatchNorm2d(channels)
        )
        self.fuse = nn.Sequential(ConvBlock(2 * channels, channels), nn.Conv2d(channels, channels, 1))

    def forward(self, key: torch.Tensor, query: torch.Tensor) -> torch.Tensor:
        """Return the refined ``key`` feature (B, C, h, w), attended by ``query``."""
        b, _, h, w = key.shape
        heads = (b, self.num_heads, self.head_channels, h, w)
        q = self.query_conv(query).view(heads)
        k = self.key_conv(key).view(heads)
        v = self.value_conv(key).view(heads)
        score = (q * k).sum(2) * self.scale  # (B, H, h, w)
        if self.num_heads > 1:
            score = score.softmax(dim=1)
        out = (v * score.unsqueeze(2)).sum(1)  # (B, C·r, h, w)
        return self.fuse(torch.cat([key, self.W(out)], 1))
