"""Encoders by name: torchvision's ResNets (``resnet18`` .. ``resnet152``, the authors') and any timm model
with multi-scale features (``timm:NAME``, networks/timm_encoder.py; timm is optional and imported only there).

Every depth encoder returns five features at strides 2, 4, 8, 16 and 32 (``FEATURE_STRIDES``) with
``num_ch_enc`` channels, which is what the decoders and CMA are built from; a pose encoder built with
``all_levels=False`` may return only its deepest feature (the pose decoder reads nothing else).
"""

from __future__ import annotations

from torch import nn

from .resnet_encoder import RESNETS, ResnetEncoder

DEFAULT_ENCODER = "resnet18"  # the authors' network, today's checkpoints
RESNET_PREFIX = "resnet"
TIMM_PREFIX = "timm:"
RESNET_NAMES = tuple(f"{RESNET_PREFIX}{depth}" for depth in RESNETS)


def resnet_name(num_layers: int) -> str:
    """``--num_layers N`` as an encoder name: ``resnetN``."""
    return f"{RESNET_PREFIX}{num_layers}"


def resnet_depth(name: str) -> int | None:
    """The ResNet depth of ``resnet18`` .. ``resnet152``; None for any other name."""
    return int(name[len(RESNET_PREFIX) :]) if name in RESNET_NAMES else None


def is_timm(name: str | None) -> bool:
    """Whether ``name`` is a timm encoder (``timm:NAME``)."""
    return bool(name) and name.startswith(TIMM_PREFIX)


def timm_model_name(name: str) -> str:
    """``timm:NAME`` -> ``NAME``."""
    return name[len(TIMM_PREFIX) :]


def encoder_name_error(name: str) -> str | None:
    """Why ``name`` is not an encoder name at all (its timm model is checked later), or None."""
    if resnet_depth(name) is not None or (is_timm(name) and timm_model_name(name)):
        return None
    return (
        f"unknown encoder {name!r}: give one of {', '.join(RESNET_NAMES)} or timm:NAME (a timm model "
        f"with multi-scale features, e.g. timm:convnext_tiny)"
    )


def build_encoder(
    name: str, pretrained: bool = False, num_input_images: int = 1, all_levels: bool = True
) -> nn.Module:
    """The encoder called ``name`` (ImageNet weights with ``pretrained``); ``num_input_images`` frames are
    stacked on the channel axis (the pose encoder: 2). ``all_levels=False`` lets a timm encoder return only
    its deepest feature (ResNets always return five)."""
    depth = resnet_depth(name)
    if depth is not None:
        return ResnetEncoder(depth, pretrained, num_input_images)
    if is_timm(name):
        from .timm_encoder import TimmEncoder  # timm is optional: imported only for timm encoders

        return TimmEncoder(timm_model_name(name), pretrained, num_input_images, all_levels)
    raise ValueError(encoder_name_error(name))


def encoder_metadata(net: nn.Module) -> dict:
    """Plain entries a network's file records about its encoder: timm encoders' name and timm's version
    (ResNet files stay exactly the authors' layout, their keys say which ResNet they are)."""
    return dict(net.metadata()) if hasattr(net, "metadata") else {}
