"""Exporting the depth graph for deployment: ONNX and TorchScript files with their metadata, the check of
an exported file against PyTorch, and the inference time of each backend.

``tools/export_model.py`` is the command; these are its parts, for use from Python too.
"""
from __future__ import annotations

import json
import logging
import os
import statistics
import tempfile
import time
import warnings
from typing import Callable, Sequence

import numpy as np
import torch

import utils
from deploy import depth_graph
from utils import ProjectError

logger = logging.getLogger(__name__)
FORMATS = {"onnx": ".onnx", "torchscript": ".pt"}
DEFAULT_OPSET = 17  # read by onnxruntime >= 1.13 and TensorRT >= 8.6
CHECK_BATCH_SIZES = (1, 3)
RTOL, ATOL = 1e-4, 1e-5  # fp32 agreement of an export with PyTorch: |a - b| <= ATOL + RTOL * |b|
TIMING_RUNS, TIMING_WARMUP = 20, 3
BACKENDS = ("PyTorch eager", "torch.compile", "TorchScript", "onnxruntime")
EXTRA_WARMUP = {"torch.compile": 1, "TorchScript": 2}  # the compilation; the profiling executor's optimising runs


class ExportMismatch(ProjectError, RuntimeError):
    """An exported file whose outputs differ from PyTorch's beyond the tolerance."""


def default_output(folder: str, fmt: str, height: int, width: int, input_type: str) -> str:
    """``<folder>/depth_<H>x<W>_<input type>.onnx|.pt``."""
    return os.path.join(folder, f"depth_{height}x{width}_{input_type}{FORMATS[fmt]}")


def export_onnx(graph: depth_graph.DepthGraph, path: str, example: torch.Tensor, metadata: dict[str, str],
                dynamic_size: bool = False, opset: int = DEFAULT_OPSET) -> str:
    """Write the graph as ONNX (dynamic batch; dynamic H, W with ``dynamic_size``), checked, with metadata."""
    onnx = depth_graph.import_optional("onnx", "export to ONNX")
    axes = {0: "batch", 2: "height", 3: "width"} if dynamic_size else {0: "batch"}
    names = [depth_graph.INPUT_NAME] + graph.output_names
    with utils.atomic_write(path) as tmp:
        with warnings.catch_warnings():
            # ReflectionPad2d's reversed slices are not constant-folded: harmless, said once per pad.
            warnings.filterwarnings("ignore", message="Constant folding")
            # The TorchScript-based exporter (deprecated since torch 2.9, still in 2.14): it writes opset
            # 17 in about a second; the dynamo exporter takes ~20 s here and stops at opset 18 (no Pad
            # adapter down to 17), which TensorRT 8.x does not read.
            warnings.filterwarnings("ignore", message=".*legacy TorchScript-based ONNX export", category=DeprecationWarning)
            warnings.filterwarnings("ignore", message="The feature will be removed", category=DeprecationWarning)
            torch.onnx.export(graph, (example,), tmp, dynamo=False, opset_version=opset, do_constant_folding=True,
                              input_names=[depth_graph.INPUT_NAME], output_names=graph.output_names,
                              dynamic_axes={name: axes for name in names})
        model = onnx.load(tmp)
        for key, value in metadata.items():
            entry = model.metadata_props.add()
            entry.key, entry.value = key, value
        model.producer_name = "fsre-depth export_model.py"
        onnx.checker.check_model(model, full_check=True)
        onnx.save(model, tmp)
    return path


def export_torchscript(graph: depth_graph.DepthGraph, path: str, example: torch.Tensor, metadata: dict[str, str]) -> str:
    """Write the graph as a traced TorchScript module with the metadata in ``metadata.json``."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*is deprecated", category=FutureWarning)
        with torch.no_grad():
            traced = torch.jit.trace(graph, (example,), check_trace=False)  # export_model checks it below
        with utils.atomic_write(path) as tmp:
            torch.jit.save(traced, tmp, _extra_files={depth_graph.TORCHSCRIPT_METADATA_FILE: json.dumps(metadata)})
    return path


def exported_runner(path: str, fmt: str) -> tuple[Callable[[torch.Tensor], tuple], dict]:
    """A callable running an exported file (image batch -> numpy outputs) and the file's metadata."""
    if fmt == "onnx":
        runner = depth_graph.OnnxGraph(path)
        return runner, runner.metadata
    module, metadata = depth_graph.load_torchscript(path)

    def run(images: torch.Tensor) -> tuple:
        with torch.no_grad():
            return tuple(t.numpy() for t in module(images))
    return run, metadata


def compare_with_pytorch(graph: depth_graph.DepthGraph, path: str, fmt: str, height: int, width: int,
                         batch_sizes: Sequence[int] = CHECK_BATCH_SIZES) -> dict[str, float]:
    """Largest |export - PyTorch| / (ATOL + RTOL |PyTorch|) per output (<= 1 passes); raise ExportMismatch above."""
    run, metadata = exported_runner(path, fmt)
    worst = {name: 0.0 for name in graph.output_names}
    for batch in batch_sizes:
        images = depth_graph.example_input(graph, batch, height, width, seed=batch)
        with torch.no_grad():
            expected = [t.numpy() for t in graph(images)]
        got = run(images)
        if len(got) != len(expected):
            raise ExportMismatch(f"{path} returns {len(got)} outputs, PyTorch {len(expected)}")
        for name, a, b in zip(graph.output_names, got, expected):
            if a.shape != b.shape:
                raise ExportMismatch(f"{path}: {name} has shape {a.shape} at batch {batch}, PyTorch {b.shape}")
            worst[name] = max(worst[name], float(np.max(np.abs(a - b) / (ATOL + RTOL * np.abs(b)))))
    bad = {name: ratio for name, ratio in worst.items() if ratio > 1}
    if bad:
        raise ExportMismatch(f"{path} differs from PyTorch beyond rtol {RTOL}, atol {ATOL}: "
                             + ", ".join(f"{n} at {r:.3g}x the tolerance" for n, r in bad.items()))
    return worst


def _backend(name: str, graph: depth_graph.DepthGraph, images: torch.Tensor, folder: str, onnx_path: str | None,
             torchscript_path: str | None) -> Callable[[torch.Tensor], object]:
    """A callable running the graph with one backend (exporting to ``folder`` when no file is given)."""
    if name == "PyTorch eager":
        return graph
    if name == "torch.compile":
        return torch.compile(graph)
    metadata = {"fsre_export_version": json.dumps(depth_graph.METADATA_VERSION), "input_name": json.dumps(depth_graph.INPUT_NAME)}
    if name == "TorchScript":
        path = torchscript_path or export_torchscript(graph, os.path.join(folder, "graph.pt"), images, metadata)
        return depth_graph.load_torchscript(path)[0]
    path = onnx_path or export_onnx(graph, os.path.join(folder, "graph.onnx"), images, metadata)
    return depth_graph.OnnxGraph(path, threads=torch.get_num_threads())


def time_inference(graph: depth_graph.DepthGraph, height: int, width: int, batch: int = 1, runs: int = TIMING_RUNS,
                   warmup: int = TIMING_WARMUP, onnx_path: str | None = None,
                   torchscript_path: str | None = None, backends: Sequence[str] = BACKENDS) -> dict[str, float | str]:
    """Median ms per image of each backend on this machine (or why it failed), same input for all.

    Files not given are exported to a temporary folder first; torch.compile compiles during
    warm-up. The timed runs go round the backends in turn, so a change of the machine's load
    affects all of them alike. A backend that cannot run here maps to its error message.
    """
    unknown = set(backends) - set(BACKENDS)
    if unknown:
        raise ValueError(f"unknown backends {sorted(unknown)}: choose from {BACKENDS}")
    images = depth_graph.example_input(graph, batch, height, width)
    results: dict[str, float | str] = {}
    runners: dict[str, Callable[[torch.Tensor], object]] = {}
    times: dict[str, list[float]] = {}
    with tempfile.TemporaryDirectory() as tmp, torch.inference_mode():
        for name in backends:
            try:
                runner = _backend(name, graph, images, tmp, onnx_path, torchscript_path)
                for _ in range(warmup + EXTRA_WARMUP.get(name, 0)):
                    runner(images)
                runners[name], times[name] = runner, []
            except Exception as err:  # report, do not stop: the other backends still time
                logger.warning("%s failed: %s", name, err)
                results[name] = f"failed: {type(err).__name__}: {str(err).splitlines()[0] if str(err) else ''}"
        for _ in range(runs):
            for name, runner in runners.items():
                start = time.perf_counter()
                runner(images)
                times[name].append(time.perf_counter() - start)
    for name in runners:
        results[name] = 1000 * statistics.median(times[name]) / batch
    return {name: results[name] for name in backends}


def format_timing(results: dict[str, float | str], height: int, width: int, batch: int) -> str:
    """A Markdown table of ``time_inference``'s results."""
    lines = [f"| backend ({height}x{width}, batch {batch}, {torch.get_num_threads()} threads) | ms / image |",
             "|---|---|"]
    lines += [f"| {name} | {value:.1f} |" if isinstance(value, float) else f"| {name} | {value} |"
              for name, value in results.items()]
    return "\n".join(lines)
