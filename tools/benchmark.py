"""Speed and memory of every Table 2 configuration, measured side by side with the straightforward path.

    python -m tools.benchmark --make_data /tmp/kitti_bench --height 96 --width 320 --batch_size 4 --baseline
    python -m tools.benchmark --data_path kitti_data --split eigen_zhou --device cuda --baseline \
        --amp bf16 --channels_last

For each configuration (``--configs``; default all five of Table 2 of the paper's supplementary material) and
path it measures, from real files in KITTI's layout read by the training code's own loader:

- ``input samples/s``: the input pipeline alone (loader workers + host-to-device copy + the
  device-side part of the fast pipeline), at steady state;
- ``train samples/s``: whole training steps (loading, then ``Trainer.train_step``: forward, losses,
  backward with the non-finite checks, Adam) at steady state, and the time of 20 epochs of
  eigen_zhou projected from it;
- ``peak memory`` on CUDA (``torch.cuda.max_memory_allocated`` during training; n/a on the CPU);
- ``inference ms`` per image at batch 1 (depth encoder + joint decoder, eval mode).

Paths: ``fast`` is ``--input_pipeline fast`` with the fused DSSIM/SGT (plus ``--amp``,
``--channels_last``, ``--compile`` when given); ``--baseline`` adds, in the same process, ``exact``,
the straightforward path (Monodepth2's loader: every frame resized per scale from the native size
with PIL and jittered in the workers, all 24 images of an item; unfused losses; fp32), and
``default``, what ``train.py`` does without speed options (the same pipeline making only the 9
images the model reads, fused losses: ``exact``'s inputs, its losses up to float rounding), and the
ratios of both to ``exact``. Prints a table shaped like Table 2 of the paper's supplementary material and
writes JSON.
``--fast_data_path`` lets the fast path read other data, such as a ``tools/prepare_kitti.py`` cache of
``--data_path`` at the training size (its one-time cost is the tool's to report).
``--make_data DIR`` first writes a drive of KITTI-size frames (1242x375, smooth random texture,
pseudo-labels, split files) into DIR with the test fixture's writer.

``--encoders resnet18 timm:convnext_atto ...`` measures each encoder (``train.py --encoder``) in one run
and prints them side by side: parameters (the depth network, encoder + joint decoder, and all networks
with the pose network), FLOPs of the depth network on one image at the training size (counted by torch's
``torch.utils.flop_counter.FlopCounterMode``: convolutions, matrix products and attention, 2 per
multiply-add; element-wise operations are not counted), training samples/s and inference ms per image,
with the machine named.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import platform
import sys
import tempfile
import time
from typing import Callable, Iterator, Sequence

import torch
from torch.utils.flop_counter import FlopCounterMode

import options
import splits
import utils
from fileio.atomic import atomic_write
from runtime.machine import cpu_model, machine_summary
from runtime.processes import init_runtime
from speed import reference
from trainer import Trainer
from utils import InputError, run_cli

logger = logging.getLogger("benchmark")

KITTI_WIDTH, KITTI_HEIGHT = 1242, 375
EPOCHS = 20  # the paper's schedule
REFERENCE_SPLIT = "eigen_zhou/train_files.txt"
GIB = 2**30
MILLION = 1e6
GIGA = 1e9
MS_PER_S = 1000.0
S_PER_H = 3600.0
# Table 2 of the paper's supplementary material (two Titan Xp, 192x640, batch 12): training time for 20
# epochs, memory, inference.
PAPER_TABLE2 = {
    "baseline": ("Monodepth2", "14h 40m", "8.6GB", "4.9ms"),
    "semantics": ("w/ semantics", "16h 20m", "10.5GB", "7ms"),
    "cma": ("w/ CMA", "16h 10m", "7.2GB x 2", "9.7ms"),
    "sgt": ("w/o CMA, w/ SGT", "15h 50m", "7.9GB x 2", "7ms"),
    "full": ("full", "18h 20m", "9.4GB x 2", "9.7ms"),
}
CONFIG_ORDER = list(PAPER_TABLE2)
MADE_EDGE_FRAMES = 2  # --make_data's first and last frames have no neighbour: they are not training items
PATHS = ("exact", "default", "fast")  # the straightforward path, train.py's defaults, the opt-in fast path


def reference_epoch_items() -> int:
    """Training items in one epoch of eigen_zhou (from the split manifest)."""
    return splits.manifest()["files"][REFERENCE_SPLIT]["lines"]


def make_data(root: str, num_frames: int, ext: str) -> tuple[str, str]:
    """A KITTI-size drive (frames, labels, scans, split files) under ``root``: (data_path, split folder)."""
    from synthetic.kitti_frames import make_tiny_kitti  # the fixture's writer: real files in KITTI's layout

    tiny = make_tiny_kitti(root, num_frames=num_frames, exts=(ext,), width=KITTI_WIDTH, height=KITTI_HEIGHT)
    return tiny.data_path, tiny.split_dir


def synchronize(device: torch.device) -> None:
    """Wait for the device's queued work (CUDA timings); nothing on the CPU."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def cycle(loader: torch.utils.data.DataLoader) -> Iterator[dict]:
    """Batches of a loader, epoch after epoch."""
    while True:
        yield from loader


def timed(device: torch.device, warmup: int, count: int, step: Callable[[], None]) -> float:
    """Seconds per call of ``step`` over ``count`` calls after ``warmup`` calls (device work included)."""
    for _ in range(warmup):
        step()
    synchronize(device)
    start = time.perf_counter()
    for _ in range(count):
        step()
    synchronize(device)
    return (time.perf_counter() - start) / count


def count_parameters(*nets: torch.nn.Module | None) -> int:
    """Parameters of the given networks (None: absent)."""
    return sum(p.numel() for net in nets if net is not None for p in net.parameters())


@torch.no_grad()
def depth_network_flops(model: torch.nn.Module, height: int, width: int, device: torch.device) -> int:
    """FLOPs of one image through the depth encoder and joint decoder at ``height`` x ``width``
    (torch's FlopCounterMode: 2 per multiply-add of convolutions, matrix products and attention)."""
    image = torch.rand(1, 3, height, width, device=device)
    counter = FlopCounterMode(display=False)
    with counter:
        model.decoder(model.encoder(image))
    return counter.get_total_flops()


def trainer_options(
    args: argparse.Namespace, config: str, path: str, log_dir: str, encoder: str | None = None
) -> argparse.Namespace:
    """Training options of one (configuration, path, encoder) run (``encoder`` None: train.py's default)."""
    data_path, img_ext = args.data_path, args.img_ext
    if path == "fast":
        data_path, img_ext = args.fast_data_path or data_path, args.fast_img_ext or img_ext
    argv = [
        "--data_path",
        data_path,
        "--split",
        args.split,
        "--config",
        config,
        "--height",
        str(args.height),
        "--width",
        str(args.width),
        "--batch_size",
        str(args.batch_size),
        "--num_workers",
        str(args.num_workers),
        "--img_ext",
        img_ext,
        "--weights_init",
        "scratch",
        "--no_validation",
        "--log_dir",
        log_dir,
        "--model_name",
        f"{config}_{path}_{(encoder or 'default').replace(':', '_')}",
        "--log_frequency",
        str(sys.maxsize),
        "--input_pipeline",
        "fast" if path == "fast" else "exact",
    ]
    if encoder is not None:
        argv += ["--encoder", encoder]
    if args.splits_dir:
        argv += ["--splits_dir", args.splits_dir]
    if args.device:
        argv += ["--device", args.device]
    if path == "fast":
        argv += ["--amp", args.amp] + ["--channels_last"] * args.channels_last + ["--compile"] * args.compile
    if path == "exact":
        argv += ["--input_images", "all"]  # Monodepth2's loader: every frame at every scale
    return options.parse_args(argv)


def measure(
    args: argparse.Namespace, config: str, path: str, log_dir: str, encoder: str | None = None
) -> dict:
    """Input, training and inference figures of one configuration on one path (with one encoder)."""
    opts = trainer_options(args, config, path, log_dir, encoder)
    with reference.straightforward_kernels(path == "exact"):
        trainer = Trainer(opts)
        device = trainer.device
        model = trainer.model
        pose_encoder = opts.pose_encoder if model.pose is not None else None
        size = {
            "encoder": opts.encoder,
            "pose_encoder": pose_encoder,
            "depth_parameters": count_parameters(model.encoder, model.decoder),
            "parameters": count_parameters(*model.networks().values()),
            "flops": depth_network_flops(model, args.height, args.width, device),
        }
        batches = cycle(trainer.train_loader)

        def load() -> None:
            trainer.prepare_batch(next(batches))

        input_s = timed(device, args.warmup, args.input_batches, load)
        if args.input_only:
            trainer.close()
            return {
                "config": config,
                "path": path,
                **size,
                "input_samples_per_s": args.batch_size / input_s,
                "train_samples_per_s": None,
                "peak_memory_gib": None,
                "inference_ms": None,
                "projected_20_epochs_h": None,
            }

        def train_step() -> None:
            trainer.train_step(next(batches))

        if device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(device)
        train_s = timed(device, args.warmup, args.steps, train_step)
        peak = torch.cuda.max_memory_allocated(device) / GIB if device.type == "cuda" else None

        model.eval()
        image = torch.rand(1, 3, args.height, args.width, device=device)

        @torch.no_grad()
        def infer() -> None:
            model.decoder(model.encoder(image))

        inference_s = timed(device, args.warmup, args.inference_runs, infer)
        trainer.close()

    train_rate = args.batch_size / train_s
    return {
        "config": config,
        "path": path,
        **size,
        "input_samples_per_s": args.batch_size / input_s,
        "train_samples_per_s": train_rate,
        "peak_memory_gib": peak,
        "inference_ms": inference_s * MS_PER_S,
        "projected_20_epochs_h": EPOCHS * reference_epoch_items() / train_rate / S_PER_H,
    }


def format_hours(hours: float) -> str:
    """Hours -> '18h 20m', as Table 2 writes them."""
    minutes = round(hours * 60)
    return f"{minutes // 60}h {minutes % 60:02d}m"


def table(report: dict) -> str:
    """The results as a text table shaped like Table 2 of the paper's supplementary material, with its figures
    beside them."""
    head = (
        f"{'Method':<17} {'path':<7} {'20 ep (proj.)':>13} {'train/s':>8} {'input/s':>8} {'memory':>9} "
        f"{'infer ms':>8} | {'paper: time':>11} {'memory':>10} {'infer':>6}"
    )
    lines = [head, "-" * len(head)]
    for row in report["results"]:
        name, time_ref, memory_ref, infer_ref = PAPER_TABLE2[row["config"]]
        memory = "n/a" if row["peak_memory_gib"] is None else f"{row['peak_memory_gib']:.1f}GiB"
        hours = "-" if row["projected_20_epochs_h"] is None else format_hours(row["projected_20_epochs_h"])
        train = "-" if row["train_samples_per_s"] is None else f"{row['train_samples_per_s']:.2f}"
        infer = "-" if row["inference_ms"] is None else f"{row['inference_ms']:.2f}"
        lines.append(
            f"{name:<17} {row['path']:<7} {hours:>13} {train:>8} {row['input_samples_per_s']:>8.2f} "
            f"{memory:>9} {infer:>8} | {time_ref:>11} {memory_ref:>10} {infer_ref:>6}"
        )
    for config, by_path in report.get("speedups", {}).items():
        for path, ratio in by_path.items():
            lines.append(
                f"{PAPER_TABLE2[config][0]}: {path}/exact = "
                + ", ".join(f"{value:.2f}x {name}" for name, value in ratio.items() if value is not None)
            )
    settings = report["settings"]
    lines.append(
        f"{settings['height']}x{settings['width']}, batch {settings['batch_size']}, "
        f"{settings['num_workers']} workers, {report['machine']['device']}"
    )
    if settings.get("fast_data_path"):
        lines.append(
            f"exact path read {settings['data_path']} ({settings['img_ext']}), fast path read "
            f"{settings['fast_data_path']} ({settings['fast_img_ext'] or settings['img_ext']})"
        )
    return "\n".join(lines)


def encoder_table(report: dict) -> str:
    """The encoders side by side: size, FLOPs at the training size, training and inference speed."""
    settings = report["settings"]
    head = (
        f"{'encoder':<28} {'config':<9} {'path':<7} {'params depth':>12} {'all':>7} "
        f"{'GFLOPs':>7} {'train/s':>8} {'infer ms':>8}"
    )
    lines = [head, "-" * len(head)]
    for row in report["results"]:
        train = "-" if row["train_samples_per_s"] is None else f"{row['train_samples_per_s']:.2f}"
        infer = "-" if row["inference_ms"] is None else f"{row['inference_ms']:.2f}"
        lines.append(
            f"{row['encoder']:<28} {row['config']:<9} {row['path']:<7} "
            f"{row['depth_parameters'] / MILLION:>11.2f}M {row['parameters'] / MILLION:>6.2f}M "
            f"{row['flops'] / GIGA:>7.2f} {train:>8} {infer:>8}"
        )
    pose = sorted({row["pose_encoder"] for row in report["results"] if row["pose_encoder"]})
    lines.append(
        f"params depth: encoder + joint decoder; all: with the pose network "
        f"({', '.join(pose) or 'none'}); "
        f"GFLOPs: depth network, one image at {settings['height']}x{settings['width']} "
        f"(torch FlopCounterMode, 2 per multiply-add)"
    )
    lines.append(
        f"{settings['height']}x{settings['width']}, batch {settings['batch_size']}, "
        f"{settings['num_workers']} workers, inference at batch 1, {report['machine']['summary']}, "
        f"{report['machine']['torch_threads']} threads"
    )
    return "\n".join(lines)


def machine(device: torch.device) -> dict:
    """What the figures were measured on."""
    name = (
        torch.cuda.get_device_name(device)
        if device.type == "cuda"
        else f"{cpu_model()}, {os.cpu_count()} cores"
    )
    return {
        "device": name,
        "summary": machine_summary(device),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "torch_threads": torch.get_num_threads(),
        "load_average": os.getloadavg(),
    }  # other jobs on a shared machine skew the figures


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0], formatter_class=utils.HelpFormatter)
    g = parser.add_argument_group("data")
    g.add_argument("--data_path", default=None, help="KITTI data in Monodepth2's layout (or use --make_data)")
    g.add_argument(
        "--split", default="eigen_zhou", help="training split (name or folder), as train.py takes it"
    )
    g.add_argument("--splits_dir", default=None, help="local copies of the split files, as train.py takes it")
    g.add_argument(
        "--make_data",
        metavar="DIR",
        default=None,
        help="write a drive of KITTI-size frames into DIR first and benchmark on it",
    )
    g.add_argument(
        "--make_frames",
        type=options.positive_int,
        default=40,
        help="frames per camera written by --make_data",
    )
    g.add_argument("--img_ext", default="png", choices=["png", "jpg"], help="frame file type")
    g.add_argument(
        "--fast_data_path",
        default=None,
        help="data the fast path reads instead of --data_path, e.g. a tools/prepare_kitti.py cache of it",
    )
    g.add_argument(
        "--fast_img_ext",
        default=None,
        choices=["png", "jpg"],
        help="frame file type of --fast_data_path (default: --img_ext)",
    )
    g = parser.add_argument_group("run")
    g.add_argument(
        "--configs", nargs="+", default=CONFIG_ORDER, choices=CONFIG_ORDER, help="Table 2 configurations"
    )
    g.add_argument(
        "--encoders",
        nargs="+",
        default=None,
        metavar="NAME",
        help="encoders to measure side by side, named as train.py's --encoder (resnet18, "
        "timm:NAME); "
        "default: train.py's default only, in the table of Table 2",
    )
    g.add_argument("--height", type=options.image_side, default=192, help="input height")
    g.add_argument("--width", type=options.image_side, default=640, help="input width")
    g.add_argument("--batch_size", type=options.positive_int, default=12, help="batch size")
    utils.add_device_option(g)
    g.add_argument(
        "--num_workers",
        type=options.non_negative_int,
        default=min(12, options.available_cpus()),
        help="loader processes",
    )
    g.add_argument("--steps", type=options.positive_int, default=10, help="timed training steps")
    g.add_argument(
        "--input_batches",
        type=options.positive_int,
        default=20,
        help="timed batches of the input pipeline alone",
    )
    g.add_argument(
        "--warmup", type=options.non_negative_int, default=2, help="untimed calls before each measurement"
    )
    g.add_argument(
        "--inference_runs", type=options.positive_int, default=50, help="timed inference calls at batch 1"
    )
    g.add_argument("--input_only", action="store_true", help="measure the input pipeline only")
    g.add_argument(
        "--baseline",
        action="store_true",
        help="also run the straightforward path (Monodepth2's loader, unfused losses, fp32) and "
        "train.py's defaults, and report ratios to the straightforward path",
    )
    g.add_argument(
        "--amp", default="off", choices=["off", "bf16", "fp16"], help="autocast on the fast path (CUDA)"
    )
    g.add_argument("--channels_last", action="store_true", help="channels_last on the fast path")
    g.add_argument("--compile", action="store_true", help="torch.compile on the fast path")
    g.add_argument("--output", default="benchmark.json", help="where the JSON report is written")
    return parser


def main(argv: Sequence[str] | None = None) -> dict:
    """Run the benchmark, print the table and write the JSON report; returns the report."""
    utils.setup_logging()
    parser = build_parser()
    args = parser.parse_args(argv)  # the options are checked before --make_data writes anything
    if args.data_path is None and not args.make_data:
        parser.error("give --data_path (KITTI data) or --make_data DIR")
    if args.make_data and args.make_frames < args.batch_size + MADE_EDGE_FRAMES:
        parser.error(
            f"--make_frames {args.make_frames} gives {args.make_frames - MADE_EDGE_FRAMES} training items, "
            f"fewer than one batch (--batch_size {args.batch_size})"
        )
    utils.pick_device(args.device)  # a device that is not there: one line now, not after --make_data
    twice = sorted({name for name in args.encoders or [] if args.encoders.count(name) > 1})
    if twice:  # each encoder's runs share their names: the second would find the first's run folder
        parser.error(f"--encoders lists {', '.join(twice)} more than once: name each encoder once")
    for encoder in args.encoders or []:  # an unknown or unsuitable encoder: one line now
        options.resolve_encoders(
            argparse.Namespace(
                encoder=encoder, num_layers=None, pose_encoder=None, height=args.height, width=args.width
            ),
            parser.error,
            "--encoders",
        )
    if args.make_data:
        args.data_path, args.split = make_data(args.make_data, args.make_frames, args.img_ext)
    for name in ("data_path", "fast_data_path"):  # before minutes of measuring the other paths
        if getattr(args, name) is not None and not os.path.isdir(getattr(args, name)):
            raise InputError(f"--{name} {getattr(args, name)} is not a folder")
    paths = PATHS if args.baseline else ["fast"]
    results = []
    with tempfile.TemporaryDirectory() as log_dir:
        for encoder in args.encoders or [None]:
            for config in args.configs:
                for path in paths:
                    logger.info(
                        "measuring %s on the %s path%s", config, path, f" with {encoder}" if encoder else ""
                    )
                    results.append(measure(args, config, path, log_dir, encoder))
    device = init_runtime(args.device).device
    report = {
        "settings": {k: v for k, v in vars(args).items()},
        "machine": machine(device),
        "results": results,
        "reference_epoch_items": reference_epoch_items(),
        "paper_table2": {
            k: dict(zip(("method", "training_time", "memory", "inference"), v))
            for k, v in PAPER_TABLE2.items()
        },
    }
    if args.baseline and not args.encoders:
        by_key = {(r["config"], r["path"]): r for r in results}

        def ratio(config: str, path: str, key: str, higher_is_better: bool = True) -> float | None:
            value, exact = by_key[config, path][key], by_key[config, "exact"][key]
            if value is None or exact is None:
                return None
            return value / exact if higher_is_better else exact / value

        report["speedups"] = {
            config: {
                path: {
                    "train": ratio(config, path, "train_samples_per_s"),
                    "input": ratio(config, path, "input_samples_per_s"),
                    "inference": ratio(config, path, "inference_ms", False),
                }
                for path in PATHS[1:]
            }
            for config in args.configs
        }
    with atomic_write(args.output) as tmp, open(tmp, "w") as f:
        json.dump(report, f, indent=2)
    print(encoder_table(report) if args.encoders else table(report))
    return report


def cli(argv: Sequence[str] | None = None) -> int:
    """Command-line entry: the project's errors (a missing folder, a bad split) print as one line."""
    main(argv)
    return 0


if __name__ == "__main__":
    sys.exit(run_cli(cli))
