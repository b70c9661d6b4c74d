"""Export a depth model for deployment: ``python -m tools.export_model --load_weights_folder W --format onnx``.

Writes one graph (depth_graph.DepthGraph: RGB image batch -> disparity[, depth][, segmentation logits])
as ONNX (opset 17 by default, read by onnxruntime and TensorRT; dynamic batch, and dynamic image
size with ``--dynamic_size``) or TorchScript, with the model's options and the input/output
contract embedded as metadata; checks the file against PyTorch at two batch sizes; ``--time``
prints the inference time per image of PyTorch eager, torch.compile, TorchScript and onnxruntime.
"""
from __future__ import annotations

import argparse
import json
import logging
import os
import statistics
import sys
import tempfile
import time
import warnings
from typing import Callable, Sequence

import numpy as np
import torch

import options
import utils
from checkpoints import model_folder
from deploy import depth_graph
from utils import ProjectError, run_cli

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


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0],
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--load_weights_folder", required=True,
                        help="model folder: this project's, the authors' (decoder.pth) or Monodepth2's (depth.pth)")
    parser.add_argument("--format", choices=sorted(FORMATS), default="onnx", help="file format")
    parser.add_argument("--output", default=None,
                        help="file to write (default: <folder>/depth_<H>x<W>_<input_type>.onnx|.pt)")
    parser.add_argument("--height", type=int, default=None, help="input height, a multiple of 32 (default: the model's)")
    parser.add_argument("--width", type=int, default=None, help="input width, a multiple of 32 (default: the model's)")
    parser.add_argument("--input_type", choices=depth_graph.INPUT_TYPES, default="float",
                        help="float: NCHW RGB in [0, 1]; uint8: NCHW RGB in 0..255")
    parser.add_argument("--depth", action="store_true", help="also output depth = 1 / disparity (min/max depth of training)")
    parser.add_argument("--segmentation", action="store_true", help="also output the segmentation logits")
    parser.add_argument("--dynamic_size", action="store_true",
                        help="ONNX: accept any height and width that are multiples of 32 (batch is always dynamic)")
    parser.add_argument("--opset", type=int, default=DEFAULT_OPSET, help="ONNX opset")
    parser.add_argument("--no_check", action="store_true", help="skip the comparison with PyTorch after export")
    parser.add_argument("--time", action="store_true",
                        help="print ms/image of PyTorch eager, torch.compile, TorchScript and onnxruntime")
    parser.add_argument("--time_runs", type=int, default=TIMING_RUNS, help="timed runs (the median is reported)")
    opts = parser.parse_args(argv)
    utils.setup_logging()

    try:
        graph, spec = depth_graph.load_graph(opts.load_weights_folder, "cpu", opts.input_type, opts.depth,
                                        opts.segmentation)
    except (model_folder.CheckpointError, ValueError) as err:
        parser.error(str(err))
    height, width = opts.height or spec.height, opts.width or spec.width
    try:
        options.check_image_size(height, width)
    except ValueError as err:
        parser.error(f"--{err}")
    path = opts.output or default_output(opts.load_weights_folder, opts.format, height, width, opts.input_type)
    metadata = depth_graph.graph_metadata(graph, spec, height, width, opts.dynamic_size or opts.format == "torchscript")
    example = depth_graph.example_input(graph, 1, height, width)
    with utils.atomic_write(path) as tmp:  # a file that fails the check is not left at ``path``
        if opts.format == "onnx":
            export_onnx(graph, tmp, example, metadata, opts.dynamic_size, opts.opset)
        else:
            export_torchscript(graph, tmp, example, metadata)
        if not opts.no_check:
            worst = compare_with_pytorch(graph, tmp, opts.format, height, width)
            logger.info("matches PyTorch at batch sizes %s: worst error %s of the tolerance (rtol %g, atol %g)",
                        CHECK_BATCH_SIZES, ", ".join(f"{n} {r:.2g}" for n, r in worst.items()), RTOL, ATOL)
    logger.info("wrote %s (%s layout, %dx%d, %s input, outputs %s)", path, spec.layout, height, width,
                opts.input_type, ", ".join(graph.output_names))
    if opts.time:
        onnx_path = path if opts.format == "onnx" else None
        torchscript_path = path if opts.format == "torchscript" else None
        results = time_inference(graph, height, width, runs=opts.time_runs, onnx_path=onnx_path,
                                 torchscript_path=torchscript_path)
        print(format_timing(results, height, width, 1))
    return 0


if __name__ == "__main__":
    sys.exit(run_cli(main))
