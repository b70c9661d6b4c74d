"""A timm model with multi-scale features (``features_only``) as the encoder of the depth and segmentation
decoders (``--encoder timm:NAME``), or as the pose encoder (``--pose_encoder timm:NAME``).

timm is optional (requirements/timm.txt): this module is imported only when a timm encoder is built, and
imports timm only inside its functions. The decoders get the last feature at each of the strides 2, 4, 8,
16 and 32; a model without a stride-2 level gets one made from its stride-4 feature (``stride2.*``, trained
with the encoder). Inputs in [0, 1] are normalised inside with the model's own mean and std.
docs/encoders.md, "What the decoders get from a timm encoder", gives the whole account."""

from __future__ import annotations

import functools
import importlib
import importlib.metadata
import os
from types import ModuleType

import torch
from torch import nn

from utils import DependencyError, InputError

from .blocks import ConvBlock, upsample
from .resnet_encoder import FEATURE_STRIDES, PretrainedWeightsUnavailable

TIMM_REQUIREMENTS = "pip install -r requirements/timm.txt"
REQUIRED_STRIDES = FEATURE_STRIDES[1:]  # 4 .. 32; stride 2 is made from stride 4 when the model has none
MADE_LEVEL_REDUCTION = 2  # the made stride-2 level has the stride-4 feature's channels / 2
IMAGENET_MEAN = (0.485, 0.456, 0.406)  # timm's default when a model's configuration has none
IMAGENET_STD = (0.229, 0.224, 0.225)
LOCAL_WEIGHTS_DIR = "timm"  # <torch hub dir>/checkpoints/timm/<NAME>.safetensors (or .pth), placed by hand
LOCAL_WEIGHTS_EXTS = (".safetensors", ".pth")
NHWC = "NHWC"


def import_timm() -> ModuleType:
    """timm, or DependencyError saying how to install it."""
    try:
        return importlib.import_module("timm")
    except ImportError as err:
        raise DependencyError(
            f"timm encoders (--encoder timm:NAME) need timm, which is not installed: {TIMM_REQUIREMENTS}"
        ) from err


def timm_version() -> str | None:
    """The installed timm's version, or None without timm."""
    try:
        return importlib.metadata.version("timm")
    except importlib.metadata.PackageNotFoundError:
        return None


def pick_levels(reductions: list[int]) -> list[int]:
    """Indices of timm's feature levels that the decoders read: the last level at each stride of
    ``FEATURE_STRIDES`` (stride 2 may be missing); ValueError when stride 4, 8, 16 or 32 is."""
    last = {stride: i for i, stride in enumerate(reductions) if stride in FEATURE_STRIDES}
    missing = [s for s in REQUIRED_STRIDES if s not in last]
    if missing:
        raise ValueError(
            f"its features lie at strides {', '.join(map(str, reductions))}; the decoders need "
            f"strides 4, 8, 16 and 32 (and take 2 when there): "
            f"missing {', '.join(map(str, missing))}"
        )
    return [last[s] for s in FEATURE_STRIDES if s in last]


def weightless_model(model_name: str) -> nn.Module:
    """timm's feature model without weights: on the meta device (no memory, no time) when it builds there."""
    timm = import_timm()
    try:
        with torch.device("meta"):
            return timm.create_model(model_name, pretrained=False, features_only=True)
    except (RuntimeError, NotImplementedError, TypeError):  # a model whose construction reads values
        return timm.create_model(model_name, pretrained=False, features_only=True)


@functools.lru_cache(maxsize=None)
def check_input_size(model_name: str, height: int, width: int, option: str = "--encoder") -> None:
    """InputError, one line naming ``option``, when the model cannot take images of this size (a transformer
    built for one size, windows that do not divide the features); shapes only, on the meta device."""
    model = weightless_model(model_name)
    device = next(iter(model.parameters()), torch.empty(0)).device
    try:
        with torch.no_grad():
            model(torch.empty(1, 3, height, width, device=device))
    except Exception as err:
        reason = (str(err).strip().splitlines() or [type(err).__name__])[0]
        raise InputError(
            f"{option} timm:{model_name} does not take {height}x{width} images ({reason}): "
            f"give another --height/--width or another encoder"
        ) from err


@functools.lru_cache(maxsize=None)
def describe(model_name: str, option: str = "--encoder") -> tuple[tuple[int, ...], tuple[int, ...]]:
    """(channels, strides) of the levels a timm model's encoder returns; InputError, one line naming
    ``option``, for an unknown name or pretrained tag, or a model without suitable multi-scale features.
    Built without weights (on the meta device when the model allows it), so that options are checked before
    anything else is built."""
    timm = import_timm()
    if not timm.is_model(model_name):
        close = timm.list_models(f"*{model_name.split('.')[0][:6]}*")[:5]
        hint = f" (close: {', '.join(close)})" if close else ""
        raise InputError(
            f"{option} timm:{model_name}: timm {timm_version()} has no model {model_name!r}{hint}"
        )
    architecture, _, tag = model_name.partition(".")
    if tag:
        tags = [name.partition(".")[2] for name in timm.list_pretrained(f"{architecture}.*")]
        if tag not in tags:
            raise InputError(
                f"{option} timm:{model_name}: timm {timm_version()} has no pretrained tag {tag!r} for "
                f"{architecture} (its tags: {', '.join(tags) or 'none'})"
            )
    try:
        model = weightless_model(model_name)
        channels, reductions = list(model.feature_info.channels()), list(model.feature_info.reduction())
        picks = pick_levels(reductions)
    except Exception as err:  # timm: "features_only not implemented for ..."; pick_levels: the strides
        reason = (str(err).strip().splitlines() or [type(err).__name__])[0]
        raise InputError(
            f"{option} timm:{model_name}: no multi-scale features the decoders can use ({reason})"
        ) from err
    out_channels = [channels[i] for i in picks]
    strides = [reductions[i] for i in picks]
    if strides[0] != FEATURE_STRIDES[0]:
        out_channels.insert(0, out_channels[0] // MADE_LEVEL_REDUCTION)
        strides.insert(0, FEATURE_STRIDES[0])
    return tuple(out_channels), tuple(strides)


def local_weights_file(model_name: str) -> str:
    """Where ImageNet weights placed by hand are looked for: ``<hub>/checkpoints/timm/NAME.safetensors``."""
    folder = os.path.join(torch.hub.get_dir(), "checkpoints", LOCAL_WEIGHTS_DIR)
    return os.path.join(folder, model_name + LOCAL_WEIGHTS_EXTS[0])


def weights_source(timm: ModuleType, model_name: str) -> str:
    """Where timm downloads a model's weights from (for the message when it cannot)."""
    cfg = timm.models.get_pretrained_cfg(model_name)
    cfg = cfg.to_dict() if cfg is not None and hasattr(cfg, "to_dict") else (cfg or {})
    if cfg.get("hf_hub_id"):
        return f"model.safetensors of https://huggingface.co/{cfg['hf_hub_id']}"
    if cfg.get("url"):
        return cfg["url"]
    return ""


def create_pretrained(timm: ModuleType, model_name: str, **kwargs) -> nn.Module:
    """timm's model with its ImageNet weights: a file placed at ``local_weights_file`` (or .pth beside it),
    else timm's own loading (the Hugging Face cache, then the download); PretrainedWeightsUnavailable when
    neither works."""
    placed = os.path.splitext(local_weights_file(model_name))[0]
    for ext in LOCAL_WEIGHTS_EXTS:
        if os.path.isfile(placed + ext):
            overlay = {"file": placed + ext}
            return timm.create_model(model_name, pretrained=True, pretrained_cfg_overlay=overlay, **kwargs)
    source = weights_source(timm, model_name)
    if not source:
        raise PretrainedWeightsUnavailable(
            f"timm has no pretrained weights for {model_name}: train it from "
            f"scratch with --weights_init scratch"
        )
    try:
        return timm.create_model(model_name, pretrained=True, **kwargs)
    except Exception as err:  # no network, no cached file, a corrupt download ...
        reason = (str(err).strip().splitlines() or [type(err).__name__])[0]
        raise PretrainedWeightsUnavailable(
            f"cannot load the ImageNet weights of timm:{model_name} ({reason}). Download {source} on a "
            f"machine with internet access and place it at {local_weights_file(model_name)} (TORCH_HOME "
            f"moves that folder), or train from scratch with --weights_init scratch."
        ) from err


class TimmEncoder(nn.Module):
    """A timm model's multi-scale features at strides 2, 4, 8, 16, 32 (docs/encoders.md says how).

    ``num_input_images > 1`` stacks frames on the channel axis (timm adapts the first convolution's
    ImageNet weights: repeated per channel and scaled, as Monodepth2's pose encoder does);
    ``all_levels=False`` returns the deepest feature only (the pose encoder).
    """

    def __init__(
        self, model_name: str, pretrained: bool = False, num_input_images: int = 1, all_levels: bool = True
    ) -> None:
        super().__init__()
        timm = import_timm()
        channels, strides = describe(model_name)  # checks the name and its levels first
        self.model_name = model_name
        self.name = f"timm:{model_name}"
        self.num_input_images = num_input_images
        kwargs = {"features_only": True, "in_chans": 3 * num_input_images}
        self.encoder = (
            create_pretrained(timm, model_name, **kwargs)
            if pretrained
            else timm.create_model(model_name, pretrained=False, **kwargs)
        )
        self.picks = pick_levels(list(self.encoder.feature_info.reduction()))
        self.nhwc = str(getattr(getattr(self.encoder, "output_fmt", ""), "value", "")) == NHWC
        cfg = getattr(self.encoder, "pretrained_cfg", None) or {}
        mean = torch.tensor(cfg.get("mean") or IMAGENET_MEAN, dtype=torch.float32).repeat(num_input_images)
        std = torch.tensor(cfg.get("std") or IMAGENET_STD, dtype=torch.float32).repeat(num_input_images)
        # not in the state dict: the files hold trained parameters only; the constants come with the model
        self.register_buffer("mean", mean.view(1, -1, 1, 1), persistent=False)
        self.register_buffer("std", std.view(1, -1, 1, 1), persistent=False)
        self.all_levels = all_levels
        made = all_levels and self.encoder.feature_info.reduction()[self.picks[0]] != FEATURE_STRIDES[0]
        self.stride2 = ConvBlock(channels[1], channels[0]) if made else None
        self.num_ch_enc: tuple[int, ...] = channels if all_levels else channels[-1:]
        self.feature_strides: tuple[int, ...] = strides if all_levels else strides[-1:]

    def metadata(self) -> dict:
        """What a weights file records about this encoder: its name and the timm version that built it."""
        return {"encoder": self.name, "timm_version": timm_version()}

    def forward(self, images: torch.Tensor) -> list[torch.Tensor]:
        """Images in [0, 1], (B, 3·n, H, W) -> features at 1/2 .. 1/32 (without all_levels: the deepest)."""
        features = self.encoder((images - self.mean) / self.std)
        if self.nhwc:
            features = [f.permute(0, 3, 1, 2) for f in features]
        if not self.all_levels:
            return [features[self.picks[-1]]]
        features = [features[i] for i in self.picks]
        if self.stride2 is not None:
            features.insert(0, self.stride2(upsample(features[0])))
        return features
