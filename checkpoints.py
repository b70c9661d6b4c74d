"""Model folders: one file per network in the authors' layout, saved atomically, loaded exactly.

A folder holds ``encoder.pth`` (with the plain entries ``height``, ``width``, ``epoch``,
``step``), ``decoder.pth`` (depth decoder, segmentation decoder and CMA modules: the authors'
keys), ``pose_encoder.pth``, ``pose.pth``, the optimizer state ``adam.pth`` and ``opt.json``.
Files are read with ``weights_only=True``: a checkpoint can never run code.
"""
from __future__ import annotations

import argparse
import os
import shutil

import torch
from torch import nn

import options

NETWORK_FILES = {"encoder": "encoder.pth", "decoder": "decoder.pth", "pose_encoder": "pose_encoder.pth",
                 "pose": "pose.pth"}
OPTIMIZER_FILE = "adam.pth"
OPTIONS_FILE = "opt.json"
METADATA_KEYS = ("height", "width", "epoch", "step", "use_stereo")
UNUSED_PREFIXES = ("encoder.fc.",)  # torchvision's classifier, kept in the released encoders, never used


class CheckpointError(RuntimeError):
    """A checkpoint file that does not fit the network it is loaded into."""


def read_state(path: str) -> dict:
    """A .pth file's dict, on the CPU, without running any code it may hold."""
    if not os.path.isfile(path):
        raise CheckpointError(f"{path} not found")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:
        raise CheckpointError(f"cannot read {path}: {err}") from err


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
    misshapen = [f"{k}: file {tuple(state[k].shape)}, network {tuple(expected[k].shape)}"
                 for k in expected if k in state and tuple(state[k].shape) != tuple(expected[k].shape)]
    if missing or unexpected or misshapen:
        lines = [f"{path} does not fit the {type(net).__name__}:"]
        for title, items in (("missing", missing), ("unexpected", unexpected), ("wrong shape", misshapen)):
            if items:
                lines.append(f"  {title} ({len(items)}): " + ", ".join(items[:10]) + (" ..." if len(items) > 10 else ""))
        raise CheckpointError("\n".join(lines))


def load_network(net: nn.Module, path: str) -> dict:
    """Load a network's file exactly (every key used, none missing, shapes equal); return its metadata."""
    tensors, metadata = split_metadata(read_state(path))
    check_state_dict(net, tensors, path)
    net.load_state_dict({k: v for k, v in tensors.items() if not k.startswith(UNUSED_PREFIXES)})
    return metadata


def atomic_save(obj, path: str) -> None:
    """torch.save to a temporary name, then rename: the file is whole or absent."""
    tmp = f"{path}.{os.getpid()}.tmp"
    try:
        torch.save(obj, tmp)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


def save_model_folder(folder: str, networks: dict[str, nn.Module], opts: argparse.Namespace,
                      optimizer: torch.optim.Optimizer | None = None, epoch: int = 0, step: int = 0) -> str:
    """Write a model folder: built in ``<folder>.tmp``, then renamed, so a folder is never half-written."""
    tmp = folder + ".tmp"
    if os.path.exists(tmp):
        shutil.rmtree(tmp)
    os.makedirs(tmp)
    for name, net in networks.items():
        state = {k: v.detach().cpu() for k, v in net.state_dict().items()}
        if name == "encoder":
            state.update(height=opts.height, width=opts.width, epoch=epoch, step=step)
        torch.save(state, os.path.join(tmp, NETWORK_FILES[name]))
    if optimizer is not None:
        torch.save(optimizer.state_dict(), os.path.join(tmp, OPTIMIZER_FILE))
    options.save_options(opts, os.path.join(tmp, OPTIONS_FILE))
    if os.path.exists(folder):
        shutil.rmtree(folder)
    os.replace(tmp, folder)
    return folder


def load_model_folder(folder: str, networks: dict[str, nn.Module], names=None) -> dict:
    """Load the named networks (default: all given) from a model folder; return the encoder's metadata."""
    if not os.path.isdir(folder):
        raise CheckpointError(f"model folder {folder} not found")
    metadata: dict = {}
    for name in names or list(networks):
        if name not in networks:
            continue
        meta = load_network(networks[name], os.path.join(folder, NETWORK_FILES[name]))
        if name == "encoder":
            metadata = meta
    return metadata
