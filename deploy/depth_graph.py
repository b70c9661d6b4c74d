"""The deployable depth graph: one module from an RGB image batch to disparity[, depth][, segmentation
logits], shared by predict.py (PyTorch) and deploy/export.py (ONNX, torch.export, TorchScript), and the
readers of exported files with their metadata (``load_exported``: any of the three, one interface).

The graph's contract (input ``image`` (B, 3, H, W), float in [0, 1] or uint8, normalised inside; outputs
``disp``[, ``depth``][, ``seg_logits``]) is the README's, "Deployment". onnx and onnxruntime are optional
(requirements/export.txt). Reading an exported file runs it: give only files you trust."""

from __future__ import annotations

import copy
import importlib
import json
import os
from types import ModuleType

import numpy as np
import torch
from torch import nn

import layers
import options
from checkpoints import model_folder
from utils import UINT8_MAX, DependencyError, InputError, MissingFileError
from utils.programs import load_program_file

INPUT_TYPES = ("float", "uint8")
INPUT_NAME = "image"
OUTPUT_DISP, OUTPUT_DEPTH, OUTPUT_SEG = "disp", "depth", "seg_logits"
METADATA_VERSION = 1
METADATA_FILE = "metadata.json"  # the metadata inside a .pt2 (torch.export) or .pt (TorchScript) file
EXPORT_REQUIREMENTS = "pip install -r requirements/export.txt"
ONNX_PACKAGES = "onnx and onnxruntime"
FILE_TYPES = {".onnx": "onnx", ".pt2": "export", ".pt": "torchscript"}  # extension -> export format


class DepthGraph(nn.Module):
    """Encoder and joint decoder as one dict-free module: image batch -> (disp[, depth][, seg_logits])."""

    def __init__(
        self,
        encoder: nn.Module,
        decoder: nn.Module,
        min_depth: float,
        max_depth: float,
        input_type: str = "float",
        depth: bool = False,
        segmentation: bool = False,
    ) -> None:
        super().__init__()
        if input_type not in INPUT_TYPES:
            raise InputError(f"input_type must be one of {INPUT_TYPES}, got {input_type!r}")
        if segmentation and not decoder.semantics:
            raise InputError("segmentation logits asked for, but the model has no segmentation head")
        self.encoder = encoder
        # A shallow copy sharing every parameter, computing only the full-size disparity head.
        self.decoder = copy.copy(decoder)
        self.decoder.scales = (0,)
        self.min_depth, self.max_depth = float(min_depth), float(max_depth)
        self.input_type = input_type
        self.depth, self.segmentation = depth, segmentation

    @property
    def output_names(self) -> list[str]:
        """Names of the outputs, in the order ``forward`` returns them."""
        return [OUTPUT_DISP] + [OUTPUT_DEPTH] * self.depth + [OUTPUT_SEG] * self.segmentation

    def forward(self, images: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """(B, 3, H, W) RGB images (float in [0, 1] or uint8) -> the outputs named by ``output_names``."""
        if self.input_type == "uint8":
            images = images.float() / UINT8_MAX
        outputs = self.decoder(self.encoder(images))
        disp, depth = layers.disp_to_depth(outputs[("disp", 0)], self.min_depth, self.max_depth)
        result = [disp]
        if self.depth:
            result.append(depth)
        if self.segmentation:
            result.append(outputs[("seg_logits", 0)])
        return tuple(result)


def load_graph(
    folder: str,
    device: torch.device | str = "cpu",
    input_type: str = "float",
    depth: bool = False,
    segmentation: bool | None = False,
) -> tuple[DepthGraph, model_folder.ModelSpec]:
    """The DepthGraph of any supported model folder (this project's, the authors', Monodepth2's), in eval
    mode.

    ``segmentation=None`` outputs the segmentation logits when the model has a segmentation head.
    """
    encoder, decoder, spec = model_folder.load_depth_model(folder, device)
    if segmentation is None:
        segmentation = spec.semantics
    if segmentation and not spec.semantics:
        raise InputError(
            f"{folder} has no segmentation head ({spec.layout} layout): drop the segmentation output"
        )
    graph = DepthGraph(encoder, decoder, spec.min_depth, spec.max_depth, input_type, depth, segmentation)
    return graph.eval(), spec


def example_input(graph: DepthGraph, batch: int, height: int, width: int, seed: int = 0) -> torch.Tensor:
    """A random image batch of the graph's input type (uint8 0..255 or float in [0, 1])."""
    g = torch.Generator().manual_seed(seed)
    if graph.input_type == "uint8":
        return torch.randint(0, int(UINT8_MAX) + 1, (batch, 3, height, width), generator=g, dtype=torch.uint8)
    return torch.rand(batch, 3, height, width, generator=g)


def model_options(spec: model_folder.ModelSpec) -> dict:
    """The model's training options: its opt.json where the folder has one, else those read from its keys."""
    path = os.path.join(spec.folder, model_folder.OPTIONS_FILE)
    return vars(options.load_options(path) if os.path.isfile(path) else spec.as_options())


def graph_metadata(
    graph: DepthGraph, spec: model_folder.ModelSpec, height: int, width: int, dynamic_size: bool
) -> dict[str, str]:
    """The contract and options embedded in an exported file, as string key -> JSON value."""
    values = {
        "fsre_export_version": METADATA_VERSION,
        "input_name": INPUT_NAME,
        "input_type": graph.input_type,
        "input_layout": "NCHW RGB",
        "height": height,
        "width": width,
        "dynamic_size": dynamic_size,
        "outputs": graph.output_names,
        "min_depth": graph.min_depth,
        "max_depth": graph.max_depth,
        "num_classes": spec.num_classes if graph.segmentation else None,
        "source_layout": spec.layout,
        "source_folder": os.path.abspath(spec.folder),
        "num_layers": spec.num_layers,
        "encoder": spec.encoder,
        "timm_version": spec.timm_version,
        "options": model_options(spec),
    }
    return {key: json.dumps(value, sort_keys=True) for key, value in values.items()}


def parse_metadata(props: dict[str, str], source: str) -> dict:
    """Decode ``graph_metadata``'s strings; raise InputError naming ``source`` when they are not there."""
    if "fsre_export_version" not in props:
        raise InputError(f"{source} holds no export metadata: write it with python -m tools.export_model")
    try:
        return {key: json.loads(value) for key, value in props.items()}
    except json.JSONDecodeError as err:
        raise InputError(f"{source}: unreadable export metadata ({err})") from err


def import_optional(name: str, purpose: str, packages: str = ONNX_PACKAGES) -> ModuleType:
    """Import an optional export dependency, or raise DependencyError saying how to install it."""
    try:
        return importlib.import_module(name)
    except ImportError as err:
        raise DependencyError(
            f"{purpose} needs {packages} ({name} is missing): {EXPORT_REQUIREMENTS}"
        ) from err


class OnnxGraph:
    """An exported .onnx file run by onnxruntime on the CPU: image batch -> numpy outputs, plus its
    metadata."""

    def __init__(self, path: str, threads: int | None = None) -> None:
        ort = import_optional("onnxruntime", "running an ONNX export")
        if not os.path.isfile(path):
            raise MissingFileError(f"{path}: no such ONNX file")
        session_options = ort.SessionOptions()
        if threads:
            session_options.intra_op_num_threads = threads
        self.session = ort.InferenceSession(path, session_options, providers=["CPUExecutionProvider"])
        self.metadata = parse_metadata(self.session.get_modelmeta().custom_metadata_map, path)
        self.output_names = [o.name for o in self.session.get_outputs()]

    def __call__(self, images: torch.Tensor | np.ndarray) -> tuple:
        """Run the graph on a batch (tensor or array) of the file's input type; outputs as numpy arrays, in
        the file's order."""
        array = images.cpu().numpy() if torch.is_tensor(images) else np.ascontiguousarray(images)
        return tuple(self.session.run(None, {self.metadata["input_name"]: array}))


class TorchGraphFile:
    """An exported .pt2 (torch.export) or .pt (TorchScript) file run on the CPU, with OnnxGraph's
    interface."""

    def __init__(self, path: str, fmt: str) -> None:
        if not os.path.isfile(path):
            raise MissingFileError(f"{path}: no such {fmt} file")
        self.module, self.metadata = (load_program if fmt == "export" else load_torchscript)(path)
        self.output_names = list(self.metadata["outputs"])

    @torch.no_grad()
    def __call__(self, images: torch.Tensor | np.ndarray) -> tuple:
        """Run the graph on a batch (tensor or array) of the file's input type; outputs as numpy arrays, in
        the file's order."""
        return tuple(t.numpy() for t in self.module(torch.as_tensor(images).cpu()))


def load_exported(path: str, fmt: str | None = None) -> OnnxGraph | TorchGraphFile:
    """Any exported file (``fmt`` onnx, export or torchscript; default: from the extension .onnx, .pt2, .pt)
    as a callable on the CPU: image batch (B, 3, H, W) of the file's input type -> its outputs as numpy
    arrays in ``output_names`` order (disp[, depth][, seg_logits]), with ``metadata`` (``graph_metadata``)."""
    if fmt is None:
        fmt = FILE_TYPES.get(os.path.splitext(path)[1].lower())
        if fmt is None:
            raise InputError(f"{path}: not an exported file (expected {', '.join(FILE_TYPES)})")
    try:
        return OnnxGraph(path) if fmt == "onnx" else TorchGraphFile(path, fmt)
    except (InputError, DependencyError):
        raise
    except Exception as err:  # onnxruntime's, torch.export's and TorchScript's readers each raise their own
        reason = (str(err).strip().splitlines() or [type(err).__name__])[0]
        raise InputError(
            f"{path}: not a readable {fmt} file ({reason[:200]}): write it with python -m tools.export_model"
        ) from None


def load_program(path: str) -> tuple[nn.Module, dict]:
    """An exported torch.export file (.pt2) as a module, and its metadata."""
    if not os.path.isfile(path):
        raise MissingFileError(f"{path}: no such torch.export file")
    extra = {METADATA_FILE: ""}
    module = load_program_file(path, "export", extra_files=extra)
    return module, parse_metadata(json.loads(extra[METADATA_FILE] or "{}"), path)


def load_torchscript(path: str, device: torch.device | str = "cpu") -> tuple[torch.jit.ScriptModule, dict]:
    """An exported TorchScript file and its metadata (for files exported before torch.export was offered)."""
    if not os.path.isfile(path):
        raise MissingFileError(f"{path}: no such TorchScript file")
    extra = {METADATA_FILE: ""}
    module = load_program_file(path, "torchscript", device, extra_files=extra)
    return module, parse_metadata(json.loads(extra[METADATA_FILE] or "{}"), path)
