"""Model folders: one file per network in the authors' layout, saved atomically, loaded exactly.

A folder holds ``encoder.pth`` (with the plain entries ``height``, ``width``, ``epoch``,
``step``; a timm encoder's file also ``encoder``, its name, and ``timm_version``), ``decoder.pth``
(depth decoder, segmentation decoder and CMA modules: the authors' keys), ``pose_encoder.pth``,
``pose.pth``, the optimizer state ``adam.pth``, ``opt.json``, the model card ``model_card.json``
(checkpoints/model_card.py) and
``checksums.sha256`` (every file's SHA-256, checked on load; released folders without it load
unchecked). Files are read with ``weights_only=True``: a checkpoint can never run code.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
from dataclasses import dataclass

import torch
from torch import nn

import options
from checkpoints import model_card
from checkpoints.files import CheckpointError, read_state, save_state, verify_file, write_checksums
from networks import JointDecoder, PoseDecoder, build_encoder, encoder_metadata, encoders
from utils.files import atomic_folder, recover_folder

NETWORK_FILES = {
    "encoder": "encoder.pth",
    "decoder": "decoder.pth",
    "pose_encoder": "pose_encoder.pth",
    "pose": "pose.pth",
}
OPTIMIZER_FILE = "adam.pth"
OPTIONS_FILE = "opt.json"
METADATA_KEYS = ("height", "width", "epoch", "step", "use_stereo", "encoder", "timm_version")
UNUSED_PREFIXES = ("encoder.fc.",)  # torchvision's classifier, kept in the released encoders, never used
ENCODER_OPTIONS = {NETWORK_FILES["encoder"]: "--encoder", NETWORK_FILES["pose_encoder"]: "--pose_encoder"}

logger = logging.getLogger(__name__)


def split_metadata(state: dict) -> tuple[dict, dict]:
    """(tensors, plain entries such as height and width) of a checkpoint dict."""
    tensors = {k: v for k, v in state.items() if k not in METADATA_KEYS}
    return tensors, {k: state[k] for k in METADATA_KEYS if k in state}


def check_state_dict(net: nn.Module, state: dict, path: str) -> None:
    """Raise CheckpointError listing every missing, unexpected and misshapen key."""
    expected = net.state_dict()
    state = {k: v for k, v in state.items() if not k.startswith(UNUSED_PREFIXES)}
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    misshapen = [
        f"{k}: file {tuple(state[k].shape)}, network {tuple(expected[k].shape)}"
        for k in expected
        if k in state and tuple(state[k].shape) != tuple(expected[k].shape)
    ]
    if missing or unexpected or misshapen:
        lines = [f"{path} does not fit the {type(net).__name__}:"]
        for title, items in (("missing", missing), ("unexpected", unexpected), ("wrong shape", misshapen)):
            if items:
                lines.append(
                    f"  {title} ({len(items)}): "
                    + ", ".join(items[:10])
                    + (" ..." if len(items) > 10 else "")
                )
        raise CheckpointError("\n".join(lines))


def recorded_encoder(tensors: dict, metadata: dict, path: str) -> str:
    """The encoder an encoder file holds: the name it records (timm encoders), else the ResNet its keys
    show; CheckpointError when it is neither."""
    if "encoder" in metadata:
        return str(metadata["encoder"])
    return encoders.resnet_name(resnet_depth_of(tensors, path))


def check_encoder(net: nn.Module, tensors: dict, metadata: dict, path: str) -> None:
    """Refuse, with the reason, an encoder file written with another encoder than ``net`` (a ResNet of
    another depth, another timm model); warn when timm's version differs from the one that wrote it."""
    option = ENCODER_OPTIONS.get(os.path.basename(path))
    if option is None or not hasattr(net, "name"):
        return
    try:
        recorded = recorded_encoder(tensors, metadata, path)
    except CheckpointError:
        return  # neither named nor a ResNet: check_state_dict lists what does not fit
    if recorded != net.name:
        raise CheckpointError(
            f"{path} was written with the encoder {recorded}, not {net.name}: build the "
            f"network with {option} {recorded} (or start from another folder)"
        )
    version = metadata.get("timm_version")
    installed = net.metadata().get("timm_version") if hasattr(net, "metadata") else None
    if version and installed and version != installed:
        logger.warning(
            "%s was written with timm %s, this is timm %s: its keys fit, its outputs may differ",
            path,
            version,
            installed,
        )


def load_network(net: nn.Module, path: str) -> dict:
    """Load a network's file exactly (the same encoder, every key used, none missing, shapes equal); return
    its metadata."""
    tensors, metadata = split_metadata(read_state(path))
    check_encoder(net, tensors, metadata, path)
    check_state_dict(net, tensors, path)
    net.load_state_dict({k: v for k, v in tensors.items() if not k.startswith(UNUSED_PREFIXES)})
    return metadata


def save_model_folder(
    folder: str,
    networks: dict[str, nn.Module],
    opts: argparse.Namespace,
    optimizer: torch.optim.Optimizer | None = None,
    epoch: int = 0,
    step: int = 0,
) -> str:
    """Write a model folder with its checksums: built under a temporary name, then renamed into place
    (``utils.files.atomic_folder``), so a folder is never half-written."""
    with atomic_folder(folder) as tmp:
        for name, net in networks.items():
            state = {k: v.detach().cpu() for k, v in net.state_dict().items()}
            state.update(encoder_metadata(net))  # timm encoders: their name and timm's version
            if name == "encoder":
                state.update(height=opts.height, width=opts.width, epoch=epoch, step=step)
            save_state(state, os.path.join(tmp, NETWORK_FILES[name]))
        if optimizer is not None:
            save_state(optimizer.state_dict(), os.path.join(tmp, OPTIMIZER_FILE))
        options.save_options(opts, os.path.join(tmp, OPTIONS_FILE))
        model_card.write_card(model_card.training_card(opts, epoch, step), tmp)
        write_checksums(tmp)
    return folder


def check_folder(folder: str) -> None:
    """Raise CheckpointError when ``folder`` is not there (after restoring it if a kill cut its replacement
    short)."""
    if not os.path.isdir(folder):
        with contextlib.suppress(OSError):  # e.g. a read-only copy: then it stays missing
            recover_folder(folder)
    if not os.path.isdir(folder):
        raise CheckpointError(f"model folder {folder} not found")


def load_model_folder(folder: str, networks: dict[str, nn.Module], names=None) -> dict:
    """Load the named networks (default: all given) from a model folder; return the encoder's metadata."""
    check_folder(folder)
    metadata: dict = {}
    for name in names or list(networks):
        if name not in networks:
            continue
        meta = load_network(networks[name], os.path.join(folder, NETWORK_FILES[name]))
        if name == "encoder":
            metadata = meta
    return metadata


# ------------------------------------------------------------------------------------------------
# Released model folders: this project's and the authors' (encoder.pth + decoder.pth) and
# Monodepth2's (encoder.pth + depth.pth), recognised from their keys.
# ------------------------------------------------------------------------------------------------
LAYOUT_FSRE = "fsre"
LAYOUT_MONODEPTH2 = "monodepth2"
MONODEPTH2_DEPTH_FILE = "depth.pth"
# (bottleneck blocks?, blocks in layer3) -> ResNet depth
RESNET_DEPTHS = {(False, 2): 18, (False, 6): 34, (True, 6): 50, (True, 23): 101, (True, 36): 152}
POSE_VALUES_PER_FRAME = 6


@dataclass
class ModelSpec:
    """What a model folder holds: its layout and the network options read from its keys."""

    folder: str
    layout: str
    num_layers: int | None  # of a ResNet encoder; None for a timm one
    height: int
    width: int
    scales: tuple
    semantics: bool
    num_classes: int
    cma_layers: tuple
    num_heads: int
    cma_ratio: int
    min_depth: float
    max_depth: float
    use_stereo: bool
    pose_frames: int | None  # values per pair / 6 of pose.pth; None without pose files
    encoder: str = encoders.DEFAULT_ENCODER  # as --encoder names it
    pose_encoder: str | None = None  # as --pose_encoder names it; None without pose files
    timm_version: str | None = None  # that wrote a timm encoder's file

    def as_options(self) -> argparse.Namespace:
        """Training options describing this model (defaults for everything the folder does not say)."""
        pose = ["--pose_encoder", self.pose_encoder] if self.pose_encoder else []
        argv = [
            "--weights_init",
            "scratch",
            "--encoder",
            self.encoder,
            *pose,
            "--height",
            str(self.height),
            "--width",
            str(self.width),
        ]
        opts = options.build_parser().parse_args(argv)
        options.resolve_encoders(opts)
        opts.timm_version = self.timm_version
        opts.scales = list(self.scales)
        opts.semantic_weight = opts.semantic_weight if self.semantics else 0.0
        opts.num_classes, opts.cma_layers = self.num_classes, list(self.cma_layers)
        opts.num_heads, opts.cma_ratio = self.num_heads, self.cma_ratio
        opts.min_depth, opts.max_depth, opts.use_stereo = self.min_depth, self.max_depth, self.use_stereo
        return opts


def resnet_depth_of(encoder_state: dict, path: str) -> int:
    """ResNet depth of an encoder state dict, from its block structure."""
    bottleneck = any(k.endswith(".conv3.weight") for k in encoder_state)
    blocks = {k.split(".")[2] for k in encoder_state if k.startswith("encoder.layer3.")}
    depth = RESNET_DEPTHS.get((bottleneck, len(blocks)))
    if depth is None:
        raise CheckpointError(f"{path}: not a torchvision ResNet encoder ({len(blocks)} blocks in layer3)")
    return depth


def _saved_options(folder: str) -> dict:
    """The folder's opt.json (checked against its checksum), or {} without one."""
    path = os.path.join(folder, OPTIONS_FILE)
    if not os.path.isfile(path):
        return {}
    verify_file(path)
    return options.read_options_file(path)


def _decoder_state(folder: str) -> tuple[str, dict]:
    fsre = os.path.join(folder, NETWORK_FILES["decoder"])
    monodepth2 = os.path.join(folder, MONODEPTH2_DEPTH_FILE)
    if os.path.isfile(fsre):
        return LAYOUT_FSRE, read_state(fsre)
    if os.path.isfile(monodepth2):
        state = read_state(monodepth2)
        return LAYOUT_MONODEPTH2, {f"depth_decoder.{k}": v for k, v in state.items()}
    raise CheckpointError(
        f"{folder} holds neither decoder.pth (this project's and the authors' layout) nor "
        f"depth.pth (Monodepth2's)"
    )


def inspect_model_folder(folder: str) -> ModelSpec:
    """Recognise a model folder's layout and network options from its files' keys (and opt.json)."""
    check_folder(folder)
    encoder_path = os.path.join(folder, NETWORK_FILES["encoder"])
    encoder_state, metadata = split_metadata(read_state(encoder_path))
    layout, decoder_state = _decoder_state(folder)
    saved = _saved_options(folder)
    defaults = options.build_parser().parse_args([])  # for what neither the keys nor opt.json say

    head_keys = sorted(
        int(k.split(".")[2])
        for k in decoder_state
        if k.startswith("depth_decoder.decoder.") and k.endswith(".conv.weight") and k.count(".") == 4
    )
    num_heads_in_file = len([i for i in head_keys if i >= 10])
    seg_head = decoder_state.get("seg_decoder.decoder.10.conv.weight")
    cma_keys = sorted(
        {int(k.split(".")[1]) for k in decoder_state if k.startswith("att_d_to_s.")}, reverse=True
    )
    cma_layers = tuple(3 - v for v in cma_keys)  # key v is decoder level v + 1, the paper's layer 3 - v
    num_heads = int(saved.get("num_heads", defaults.num_heads))
    cma_ratio = int(saved.get("cma_ratio", defaults.cma_ratio))
    if cma_keys:
        query = decoder_state[f"att_d_to_s.{cma_keys[0]}.query_conv.weight"]
        per_channel = query.shape[0] // query.shape[1]  # heads x ratio
        if num_heads * cma_ratio != per_channel:
            num_heads = defaults.num_heads if per_channel % defaults.num_heads == 0 else per_channel
            cma_ratio = per_channel // num_heads
    if cma_layers and seg_head is None:
        raise CheckpointError(
            f"{folder}: the decoder holds CMA modules (att_d_to_s.*) but not the segmentation head "
            f"seg_decoder.decoder.10.conv.weight that they need"
        )
    pose_path = os.path.join(folder, NETWORK_FILES["pose"])
    pose_encoder_path = os.path.join(folder, NETWORK_FILES["pose_encoder"])
    pose_frames = pose_encoder = None
    if os.path.isfile(pose_path) and os.path.isfile(pose_encoder_path):
        pose_frames = read_state(pose_path)["net.3.weight"].shape[0] // POSE_VALUES_PER_FRAME
        pose_encoder = recorded_encoder(*split_metadata(read_state(pose_encoder_path)), pose_encoder_path)
    encoder = recorded_encoder(encoder_state, metadata, encoder_path)
    return ModelSpec(
        folder=folder,
        layout=layout,
        num_layers=encoders.resnet_depth(encoder),
        encoder=encoder,
        pose_encoder=pose_encoder,
        timm_version=metadata.get("timm_version", saved.get("timm_version")),
        height=int(metadata.get("height", saved.get("height", defaults.height))),
        width=int(metadata.get("width", saved.get("width", defaults.width))),
        scales=tuple(range(num_heads_in_file)),
        semantics=seg_head is not None,
        num_classes=int(seg_head.shape[0]) if seg_head is not None else defaults.num_classes,
        cma_layers=cma_layers,
        num_heads=num_heads,
        cma_ratio=cma_ratio,
        min_depth=float(saved.get("min_depth", defaults.min_depth)),
        max_depth=float(saved.get("max_depth", defaults.max_depth)),
        use_stereo=bool(metadata.get("use_stereo", saved.get("use_stereo", defaults.use_stereo))),
        pose_frames=pose_frames,
    )


def load_depth_model(
    folder: str, device: torch.device | str = "cpu"
) -> tuple[nn.Module, nn.Module, ModelSpec]:
    """Encoder and joint decoder of any supported model folder, loaded exactly, in eval mode."""
    spec = inspect_model_folder(folder)
    encoder = build_encoder(spec.encoder)
    decoder = JointDecoder(
        encoder.num_ch_enc,
        spec.scales,
        spec.semantics,
        spec.num_classes,
        spec.cma_layers,
        spec.num_heads,
        spec.cma_ratio,
        encoder.feature_strides,
    )
    load_network(encoder, os.path.join(folder, NETWORK_FILES["encoder"]))
    _, state = _decoder_state(folder)
    path = os.path.join(
        folder, NETWORK_FILES["decoder"] if spec.layout == LAYOUT_FSRE else MONODEPTH2_DEPTH_FILE
    )
    check_state_dict(decoder, state, path)
    decoder.load_state_dict(state)
    return encoder.to(device).eval(), decoder.to(device).eval(), spec


def load_pose_model(
    folder: str, device: torch.device | str = "cpu"
) -> tuple[nn.Module, nn.Module, ModelSpec]:
    """Pose encoder and decoder of a model folder, loaded exactly, in eval mode."""
    spec = inspect_model_folder(folder)
    if spec.pose_frames is None:
        raise CheckpointError(f"{folder} has no pose_encoder.pth and pose.pth")
    pose_encoder = build_encoder(spec.pose_encoder, num_input_images=2, all_levels=False)
    pose_decoder = PoseDecoder(pose_encoder.num_ch_enc, spec.pose_frames)
    load_network(pose_encoder, os.path.join(folder, NETWORK_FILES["pose_encoder"]))
    load_network(pose_decoder, os.path.join(folder, NETWORK_FILES["pose"]))
    return pose_encoder.to(device).eval(), pose_decoder.to(device).eval(), spec
