"""Networks of FSRE-Depth: encoders, decoders, CMA and the pose decoder."""

from .blocks import Conv3x3, ConvBlock, upsample
from .cma import CMA
from .decoder import NUM_CH_DEC, DecoderBody, JointDecoder, cma_layer_to_level
from .encoders import DEFAULT_ENCODER, TIMM_PREFIX, build_encoder, encoder_metadata
from .pose_decoder import PoseDecoder
from .resnet_encoder import PretrainedWeightsUnavailable, ResnetEncoder

__all__ = [
    "CMA",
    "Conv3x3",
    "ConvBlock",
    "DEFAULT_ENCODER",
    "DecoderBody",
    "JointDecoder",
    "NUM_CH_DEC",
    "PoseDecoder",
    "PretrainedWeightsUnavailable",
    "ResnetEncoder",
    "TIMM_PREFIX",
    "build_encoder",
    "cma_layer_to_level",
    "encoder_metadata",
    "upsample",
]
