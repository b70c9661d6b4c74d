"""Monodepth2's pose decoder: relative camera motion from the pose encoder's deepest feature."""

from __future__ import annotations

from typing import Sequence

import torch
from torch import nn

# Monodepth2 scales the raw outputs so that the initial motions are small.
POSE_OUTPUT_SCALE = 0.01
POSE_CHANNELS = 256


class PoseDecoder(nn.Module):
    """1x1 squeeze, two 3x3 convs (zero padding), 1x1 to 6 values per frame, mean over the image.

    ``num_frames_to_predict_for`` is 1 in the authors' code and 2 in Monodepth2's released
    pose.pth, of which only the first frame's values are used.
    """

    def __init__(self, num_ch_enc: Sequence[int], num_frames_to_predict_for: int = 1) -> None:
        super().__init__()
        self.num_frames = num_frames_to_predict_for
        self.net = nn.ModuleList(
            [
                nn.Conv2d(num_ch_enc[-1], POSE_CHANNELS, 1),  # squeeze
                nn.Conv2d(POSE_CHANNELS, POSE_CHANNELS, 3, 1, 1),
                nn.Conv2d(POSE_CHANNELS, POSE_CHANNELS, 3, 1, 1),
                nn.Conv2d(POSE_CHANNELS, 6 * num_frames_to_predict_for, 1),
            ]
        )
        self.relu = nn.ReLU()

    def forward(self, features: Sequence[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        """Pose-encoder features -> (axisangle, translation), each (B, num_frames, 1, 3)."""
        out = features[-1]
        last = len(self.net) - 1
        for i, conv in enumerate(self.net):
            out = conv(out)
            if i != last:
                out = self.relu(out)
        out = POSE_OUTPUT_SCALE * out.mean(3).mean(2).view(-1, self.num_frames, 1, 6)
        return out[..., :3], out[..., 3:]
