"""Export a depth model for deployment: \
``python -m tools.export_model --load_weights_folder W --format onnx``.

Writes one graph (depth_graph.DepthGraph: RGB image batch -> disparity[, depth][, segmentation logits])
as ONNX (opset 17 by default, read by onnxruntime and TensorRT; ``--onnx_exporter dynamo`` for
torch's exporter built on torch.export, opset 18), as a torch.export program (``.pt2``) or as
TorchScript, with the model's options and the input/output contract embedded as metadata; dynamic
batch, and dynamic image size with ``--dynamic_size``. The file is checked against PyTorch at two
batch sizes under a temporary name and renamed only when it passes; the model's card is written
beside it (``<file>.card.json``). ``--model NAME`` exports a released model. ``--time`` prints the
inference time per image of each backend. The library behind it is ``deploy/export.py``.
"""

from __future__ import annotations

import argparse
import logging
import sys
import time
from typing import Sequence

import torch

import options
import utils
from checkpoints import model_folder, released
from deploy import depth_graph, export
from utils import run_cli
from utils.files import atomic_write

logger = logging.getLogger(__name__)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0], formatter_class=utils.HelpFormatter)
    weights = parser.add_mutually_exclusive_group(required=True)
    weights.add_argument(
        "--load_weights_folder",
        help="model folder: this project's, the authors' (decoder.pth) or Monodepth2's (depth.pth)",
    )
    released.add_model_option(weights, parser)
    parser.add_argument(
        "--format",
        choices=list(export.FORMATS),
        default="onnx",
        help="onnx; export: a torch.export program (.pt2, torch.export.load reads it); torchscript: "
        "a traced TorchScript module (.pt; TorchScript is deprecated in torch 2.14)",
    )
    parser.add_argument(
        "--output",
        default=None,
        help="file to write (default: <folder>/depth_<H>x<W>_<input_type>.onnx|.pt2|.pt)",
    )
    parser.add_argument(
        "--height", type=int, default=None, help="input height, a multiple of 32 (default: the model's)"
    )
    parser.add_argument(
        "--width", type=int, default=None, help="input width, a multiple of 32 (default: the model's)"
    )
    parser.add_argument(
        "--input_type",
        choices=depth_graph.INPUT_TYPES,
        default="float",
        help="float: NCHW RGB in [0, 1]; uint8: NCHW RGB in 0..255",
    )
    parser.add_argument(
        "--depth", action="store_true", help="also output depth = 1 / disparity (min/max depth of training)"
    )
    parser.add_argument("--segmentation", action="store_true", help="also output the segmentation logits")
    parser.add_argument(
        "--dynamic_size",
        action="store_true",
        help="ONNX and export: accept any height and width that are multiples of 32 (batch is always "
        "dynamic; TorchScript always accepts any size)",
    )
    parser.add_argument(
        "--onnx_exporter",
        choices=export.ONNX_EXPORTERS,
        default="torchscript",
        help="ONNX: torch's TorchScript-based exporter (opset 17 for TensorRT 8.6; deprecated since "
        "torch 2.9) or its dynamo exporter built on torch.export (opset 18+, needs onnxscript)",
    )
    parser.add_argument(
        "--opset",
        type=int,
        default=None,
        help="ONNX opset (default: 17 with the torchscript exporter, 18 with dynamo)",
    )
    parser.add_argument(
        "--no_check", action="store_true", help="skip the comparison with PyTorch after export"
    )
    parser.add_argument(
        "--time",
        action="store_true",
        help="print ms/image of PyTorch eager, torch.compile, torch.export, TorchScript and onnxruntime",
    )
    parser.add_argument(
        "--time_runs",
        type=options.positive_int,
        default=export.TIMING_RUNS,
        help="timed runs (the median is reported)",
    )
    parser.add_argument(
        "--time_backends",
        nargs="+",
        choices=export.BACKENDS,
        default=list(export.BACKENDS),
        metavar="BACKEND",
        help=f"backends to time: {', '.join(export.BACKENDS)}",
    )
    parser.add_argument(
        "--time_clock",
        choices=list(export.CLOCKS),
        default="wall",
        help="wall clock, or this process's CPU time (on a machine shared with other jobs)",
    )
    parser.add_argument(
        "--threads",
        type=options.positive_int,
        default=None,
        help="threads of PyTorch and onnxruntime (default: PyTorch's default)",
    )
    opts = parser.parse_args(argv)
    utils.setup_logging()
    released.resolve_model_option(opts)
    if opts.format != "onnx" and (opts.opset is not None or opts.onnx_exporter != "torchscript"):
        parser.error(f"--opset and --onnx_exporter are for --format onnx, not {opts.format}")
    if opts.threads is not None:
        torch.set_num_threads(opts.threads)

    try:
        graph, spec = depth_graph.load_graph(
            opts.load_weights_folder, "cpu", opts.input_type, opts.depth, opts.segmentation
        )
    except (model_folder.CheckpointError, ValueError) as err:
        parser.error(str(err))
    height, width = opts.height or spec.height, opts.width or spec.width
    try:
        options.check_image_size(height, width)
    except ValueError as err:
        parser.error(f"--{err}")
    path = opts.output or export.default_output(
        opts.load_weights_folder, opts.format, height, width, opts.input_type
    )
    metadata = depth_graph.graph_metadata(
        graph, spec, height, width, opts.dynamic_size or opts.format == "torchscript"
    )
    example = depth_graph.example_input(graph, 1, height, width)
    with atomic_write(path) as tmp:  # a file that fails the check is not left at ``path``
        wall, cpu = time.perf_counter(), time.process_time()
        if opts.format == "onnx":
            export.export_onnx(
                graph, tmp, example, metadata, opts.dynamic_size, opts.opset, opts.onnx_exporter
            )
        elif opts.format == "export":
            export.export_program(graph, tmp, example, metadata, opts.dynamic_size)
        else:
            export.export_torchscript(graph, tmp, example, metadata)
        logger.info(
            "exported in %.1f s (%.1f s of CPU time)", time.perf_counter() - wall, time.process_time() - cpu
        )
        if not opts.no_check:
            worst = export.compare_with_pytorch(graph, tmp, opts.format, height, width)
            logger.info(
                "matches PyTorch at batch sizes %s: worst error %s of the tolerance (rtol %g, atol %g)",
                export.CHECK_BATCH_SIZES,
                ", ".join(f"{n} {r:.2g}" for n, r in worst.items()),
                export.RTOL,
                export.ATOL,
            )
    card = export.copy_card(opts.load_weights_folder, path, opts.format)
    logger.info(
        "wrote %s (%s layout, %dx%d, %s input, outputs %s) and its card %s",
        path,
        spec.layout,
        height,
        width,
        opts.input_type,
        ", ".join(graph.output_names),
        card,
    )
    if opts.time:
        backend = {fmt: name for name, fmt in export.BACKEND_FORMATS.items()}[opts.format]
        results = export.time_inference(
            graph,
            height,
            width,
            runs=opts.time_runs,
            files={backend: path},
            backends=opts.time_backends,
            clock=opts.time_clock,
        )
        print(export.format_timing(results, height, width, 1, opts.time_clock))
    return 0


if __name__ == "__main__":
    sys.exit(run_cli(main))
