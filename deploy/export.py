"""Exporting the depth graph for deployment: ONNX, torch.export and TorchScript files with their
metadata, the check of an exported file against PyTorch, and the inference time of each backend.

``tools/export_model.py`` is the command; these are its parts, for use from Python too. Formats: ``onnx``
(torch's TorchScript-based exporter by default, opset 17; ``onnx_exporter="dynamo"``: opset 18+), ``export``
(``.pt2``) and ``torchscript`` (traced ``.pt``). The README's "Deployment" and docs/performance.md
("Inference") give the whole account and the costs."""

from __future__ import annotations

import json
import logging
import os
import statistics
import tempfile
import time
import warnings
from contextlib import contextmanager
from typing import Callable, Iterator, Sequence

import numpy as np
import torch
from torch.export import Dim

import utils
from deploy import depth_graph
from networks.resnet_encoder import NETWORK_STRIDE
from utils import ProjectError
from utils.files import atomic_write

logger = logging.getLogger(__name__)
FORMATS = {"onnx": ".onnx", "export": ".pt2", "torchscript": ".pt"}
ONNX_EXPORTERS = ("torchscript", "dynamo")
DEFAULT_OPSET = {"torchscript": 17, "dynamo": 18}  # 17: read by onnxruntime >= 1.13 and TensorRT >= 8.6
DYNAMO_PACKAGES = "onnx, onnxruntime and onnxscript"
DYNAMO_LOGGERS = ("onnxscript", "onnx_ir")  # they log every optimisation pass at INFO
EXAMPLE_BATCH = 2  # torch.export specialises a dimension whose example size is 1, so it traces with 2
MAX_BATCH = 1024  # the largest batch a torch.export-based graph promises to accept
MAX_SIZE_BLOCKS = (
    256  # the largest height or width, in multiples of NETWORK_STRIDE, of a --dynamic_size graph
)
CHECK_BATCH_SIZES = (1, 3)
RTOL, ATOL = 1e-4, 1e-5  # fp32 agreement of an export with PyTorch: |a - b| <= ATOL + RTOL * |b|
TIMING_RUNS, TIMING_WARMUP = 20, 3
CLOCKS = {
    "wall": time.perf_counter,
    "cpu": time.process_time,
}  # cpu: this process's CPU time (shared machines)
BACKENDS = ("PyTorch eager", "torch.compile", "torch.export", "TorchScript", "onnxruntime")
EXTRA_WARMUP = {
    "torch.compile": 1,
    "TorchScript": 2,
}  # the compilation; the profiling executor's optimising runs


class ExportMismatch(ProjectError, RuntimeError):
    """An exported file whose outputs differ from PyTorch's beyond the tolerance."""


def default_output(folder: str, fmt: str, height: int, width: int, input_type: str) -> str:
    """``<folder>/depth_<H>x<W>_<input type>.onnx|.pt2|.pt``."""
    return os.path.join(folder, f"depth_{height}x{width}_{input_type}{FORMATS[fmt]}")


def copy_card(folder: str, path: str, fmt: str) -> str:
    """Write the model folder's card beside the exported file (``<file>.card.json``), with the file's format
    and sha256; return the card's path."""
    from checkpoints import model_card
    from checkpoints.files import file_digest

    extra = {"file": os.path.basename(path), "format": fmt, "sha256": file_digest(path)}
    return model_card.copy_beside(folder, path, extra)


def dynamic_shapes(dynamic_size: bool) -> tuple[dict[int, object]]:
    """torch.export's dynamic dimensions of the graph's one input: the batch, and H and W (multiples
    of the network's stride) with ``dynamic_size``."""
    axes: dict[int, object] = {0: Dim("batch", min=1, max=MAX_BATCH)}
    if dynamic_size:
        axes[2] = NETWORK_STRIDE * Dim("height_blocks", min=1, max=MAX_SIZE_BLOCKS)
        axes[3] = NETWORK_STRIDE * Dim("width_blocks", min=1, max=MAX_SIZE_BLOCKS)
    return (axes,)


@contextmanager
def quiet_loggers(names: Sequence[str], level: int = logging.WARNING) -> Iterator[None]:
    """Within the block, the named loggers report only from ``level`` up."""
    loggers = [logging.getLogger(name) for name in names]
    levels = [logger.level for logger in loggers]
    for logger in loggers:
        logger.setLevel(level)
    try:
        yield
    finally:
        for logger, previous in zip(loggers, levels):
            logger.setLevel(previous)


def tracing_example(example: torch.Tensor) -> torch.Tensor:
    """An input of ``EXAMPLE_BATCH`` images like ``example``, for the exporters built on torch.export."""
    return example[:1].expand(EXAMPLE_BATCH, *example.shape[1:]).contiguous()


def export_onnx(
    graph: depth_graph.DepthGraph,
    path: str,
    example: torch.Tensor,
    metadata: dict[str, str],
    dynamic_size: bool = False,
    opset: int | None = None,
    exporter: str = "torchscript",
) -> str:
    """Write the graph as ONNX (dynamic batch; dynamic H, W with ``dynamic_size``), checked, with metadata.

    ``exporter``: ``torchscript`` (torch's TorchScript-based exporter) or ``dynamo`` (built on
    torch.export; opset 18 and above, since it has no adapter of Pad down to 17).
    """
    opset = DEFAULT_OPSET[exporter] if opset is None else opset
    if exporter == "dynamo" and opset < DEFAULT_OPSET["dynamo"]:
        raise utils.InputError(
            f"the dynamo ONNX exporter writes opset {DEFAULT_OPSET['dynamo']} and above, "
            f"not {opset}: use the torchscript exporter for opset {opset}"
        )
    onnx = depth_graph.import_optional("onnx", "export to ONNX")
    names = [depth_graph.INPUT_NAME] + graph.output_names
    with atomic_write(path) as tmp:
        if exporter == "dynamo":
            depth_graph.import_optional("onnxscript", "the dynamo ONNX exporter", DYNAMO_PACKAGES)
            with quiet_loggers(DYNAMO_LOGGERS):
                torch.onnx.export(
                    graph,
                    (tracing_example(example),),
                    tmp,
                    dynamo=True,
                    opset_version=opset,
                    verbose=False,
                    input_names=[depth_graph.INPUT_NAME],
                    output_names=graph.output_names,
                    dynamic_shapes=dynamic_shapes(dynamic_size),
                )
        else:
            axes = {0: "batch", 2: "height", 3: "width"} if dynamic_size else {0: "batch"}
            with warnings.catch_warnings():
                # ReflectionPad2d's reversed slices are not constant-folded: harmless, said once per pad.
                warnings.filterwarnings("ignore", message="Constant folding")
                # The TorchScript-based exporter is deprecated since torch 2.9 (still in 2.14); it is the
                # default because it writes opset 17, which TensorRT 8.x reads.
                warnings.filterwarnings(
                    "ignore", message=".*legacy TorchScript-based ONNX export", category=DeprecationWarning
                )
                warnings.filterwarnings(
                    "ignore", message="The feature will be removed", category=DeprecationWarning
                )
                torch.onnx.export(
                    graph,
                    (example,),
                    tmp,
                    dynamo=False,
                    opset_version=opset,
                    do_constant_folding=True,
                    input_names=[depth_graph.INPUT_NAME],
                    output_names=graph.output_names,
                    dynamic_axes={name: axes for name in names},
                )
        model = onnx.load(tmp)
        for key, value in metadata.items():
            entry = model.metadata_props.add()
            entry.key, entry.value = key, value
        model.producer_name = "fsre-depth tools.export_model"
        onnx.checker.check_model(model, full_check=True)
        onnx.save(model, tmp)
    return path


def export_program(
    graph: depth_graph.DepthGraph,
    path: str,
    example: torch.Tensor,
    metadata: dict[str, str],
    dynamic_size: bool = False,
) -> str:
    """Write the graph with torch.export as a ``.pt2`` file (dynamic batch; dynamic H, W with
    ``dynamic_size``), the metadata in ``metadata.json`` among its extra files."""
    with torch.no_grad():
        program = torch.export.export(
            graph, (tracing_example(example),), dynamic_shapes=dynamic_shapes(dynamic_size)
        )
    with atomic_write(path) as tmp:
        torch.export.save(program, tmp, extra_files={depth_graph.METADATA_FILE: json.dumps(metadata)})
    return path


def export_torchscript(
    graph: depth_graph.DepthGraph, path: str, example: torch.Tensor, metadata: dict[str, str]
) -> str:
    """Write the graph as a traced TorchScript module with the metadata in ``metadata.json``."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*is deprecated", category=FutureWarning)
        with torch.no_grad():
            traced = torch.jit.trace(graph, (example,), check_trace=False)  # export_model checks it below
        with atomic_write(path) as tmp:
            torch.jit.save(traced, tmp, _extra_files={depth_graph.METADATA_FILE: json.dumps(metadata)})
    return path


WRITERS = {
    "onnx": export_onnx,
    "export": export_program,
    "torchscript": export_torchscript,
}  # format -> writer


def compare_with_pytorch(
    graph: depth_graph.DepthGraph,
    path: str,
    fmt: str,
    height: int,
    width: int,
    batch_sizes: Sequence[int] = CHECK_BATCH_SIZES,
) -> dict[str, float]:
    """Largest |export - PyTorch| / (ATOL + RTOL |PyTorch|) per output (<= 1 passes); raise ExportMismatch
    above."""
    run = depth_graph.load_exported(path, fmt)
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
                raise ExportMismatch(
                    f"{path}: {name} has shape {a.shape} at batch {batch}, PyTorch {b.shape}"
                )
            worst[name] = max(worst[name], float(np.max(np.abs(a - b) / (ATOL + RTOL * np.abs(b)))))
    bad = {name: ratio for name, ratio in worst.items() if ratio > 1}
    if bad:
        raise ExportMismatch(
            f"{path} differs from PyTorch beyond rtol {RTOL}, atol {ATOL}: "
            + ", ".join(f"{n} at {r:.3g}x the tolerance" for n, r in bad.items())
        )
    return worst


BACKEND_FORMATS = {
    "torch.export": "export",
    "TorchScript": "torchscript",
    "onnxruntime": "onnx",
}  # their files


def _backend(
    name: str, graph: depth_graph.DepthGraph, images: torch.Tensor, folder: str, files: dict[str, str]
) -> Callable[[torch.Tensor], object]:
    """A callable running the graph with one backend (exporting to ``folder`` when ``files`` has no file for
    it)."""
    if name == "PyTorch eager":
        return graph
    if name == "torch.compile":
        return torch.compile(graph)
    fmt = BACKEND_FORMATS[name]
    path = files.get(name)
    if path is None:
        metadata = {
            "fsre_export_version": json.dumps(depth_graph.METADATA_VERSION),
            "input_name": json.dumps(depth_graph.INPUT_NAME),
            "outputs": json.dumps(graph.output_names),
        }
        path = WRITERS[fmt](graph, os.path.join(folder, "graph" + FORMATS[fmt]), images, metadata)
    if fmt == "onnx":
        return depth_graph.OnnxGraph(path, threads=torch.get_num_threads())
    return (depth_graph.load_program if fmt == "export" else depth_graph.load_torchscript)(path)[0]


def time_inference(
    graph: depth_graph.DepthGraph,
    height: int,
    width: int,
    batch: int = 1,
    runs: int = TIMING_RUNS,
    warmup: int = TIMING_WARMUP,
    files: dict[str, str] | None = None,
    backends: Sequence[str] = BACKENDS,
    clock: str = "wall",
) -> dict[str, float | str]:
    """Median ms per image of each backend on this machine (or why it failed), same input for all.

    ``files`` maps a backend (torch.export, TorchScript, onnxruntime) to an exported file to run;
    the others are exported to a temporary folder first; torch.compile compiles during warm-up.
    The timed runs go round the backends in turn, so a change of the machine's load affects all of
    them alike. ``clock="cpu"`` times this process's CPU time instead of the wall clock: on a
    machine shared with other jobs it leaves out the time spent waiting for a core (with one
    thread it is then the cost of the computation). A backend that cannot run here maps to its
    error message.
    """
    unknown = set(backends) - set(BACKENDS)
    if unknown:
        raise ValueError(f"unknown backends {sorted(unknown)}: choose from {BACKENDS}")
    now = CLOCKS[clock]
    images = depth_graph.example_input(graph, batch, height, width)
    results: dict[str, float | str] = {}
    runners: dict[str, Callable[[torch.Tensor], object]] = {}
    times: dict[str, list[float]] = {}
    with tempfile.TemporaryDirectory() as tmp, torch.inference_mode():
        for name in backends:
            try:
                runner = _backend(name, graph, images, tmp, files or {})
                for _ in range(warmup + EXTRA_WARMUP.get(name, 0)):
                    runner(images)
                runners[name], times[name] = runner, []
            except Exception as err:  # report, do not stop: the other backends still time
                logger.warning("%s failed: %s", name, err)
                results[name] = (
                    f"failed: {type(err).__name__}: {str(err).splitlines()[0] if str(err) else ''}"
                )
        for _ in range(runs):
            for name, runner in runners.items():
                start = now()
                runner(images)
                times[name].append(now() - start)
    for name in runners:
        results[name] = 1000 * statistics.median(times[name]) / batch
    return {name: results[name] for name in backends}


def format_timing(
    results: dict[str, float | str], height: int, width: int, batch: int, clock: str = "wall"
) -> str:
    """A Markdown table of ``time_inference``'s results."""
    unit = "ms / image" if clock == "wall" else "CPU ms / image"
    lines = [
        f"| backend ({height}x{width}, batch {batch}, {torch.get_num_threads()} threads) | {unit} |",
        "|---|---|",
    ]
    lines += [
        f"| {name} | {value:.1f} |" if isinstance(value, float) else f"| {name} | {value} |"
        for name, value in results.items()
    ]
    return "\n".join(lines)
