"""The benchmark's measurement (tools/benchmark.py is its command): timing, parameter and FLOP counts,
``measure`` of one configuration on one path, the report and its two tables (docs/performance.md)."""

from __future__ import annotations

import argparse
import sys
import time
from typing import TYPE_CHECKING, Callable, Iterator, Sequence

import torch
from torch.utils.flop_counter import FlopCounterMode

import options
import splits
from speed import reference
from utils.machine import machine_record

if TYPE_CHECKING:  # the command passes the trainer in: speed/ is what trainer.py imports
    from trainer import Trainer

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
PATHS = ("exact", "default", "fast")  # the straightforward path, train.py's defaults, the opt-in fast path
# a row's figures of whole training steps and inference (None with --input_only)
TRAINING_FIGURES = ("train_samples_per_s", "peak_memory_gib", "inference_ms", "projected_20_epochs_h")


def reference_epoch_items() -> int:
    """Training items in one epoch of eigen_zhou (from the split manifest)."""
    return splits.manifest()["files"][REFERENCE_SPLIT]["lines"]


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
    values = {
        "--data_path": data_path,
        "--split": args.split,
        "--config": config,
        "--height": str(args.height),
        "--width": str(args.width),
        "--batch_size": str(args.batch_size),
        "--num_workers": str(args.num_workers),
        "--img_ext": img_ext,
        "--weights_init": "scratch",
        "--log_dir": log_dir,
        "--model_name": f"{config}_{path}_{(encoder or 'default').replace(':', '_')}",
        "--log_frequency": str(sys.maxsize),
        "--input_pipeline": "fast" if path == "fast" else "exact",
    }
    argv = [token for option in values.items() for token in option] + ["--no_validation"]
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
    trainer_class: type[Trainer],
    args: argparse.Namespace,
    config: str,
    path: str,
    log_dir: str,
    encoder: str | None = None,
) -> dict:
    """Input, training and inference figures of one configuration on one path (with one encoder), from a
    ``trainer_class`` (trainer.Trainer) built on its options."""
    opts = trainer_options(args, config, path, log_dir, encoder)
    with reference.straightforward_kernels(path == "exact"):
        trainer = trainer_class(opts)
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
        row = {"config": config, "path": path, **size, "input_samples_per_s": args.batch_size / input_s}
        if args.input_only:
            trainer.close()
            return {**row, **dict.fromkeys(TRAINING_FIGURES)}

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
        **row,
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


def speedups(results: list[dict], configs: Sequence[str]) -> dict:
    """The ``default`` and ``fast`` figures of each configuration as ratios to its ``exact`` path
    (above 1: better)."""
    by_key = {(r["config"], r["path"]): r for r in results}

    def ratio(config: str, path: str, key: str, higher_is_better: bool = True) -> float | None:
        value, exact = by_key[config, path][key], by_key[config, "exact"][key]
        if value is None or exact is None:
            return None
        return value / exact if higher_is_better else exact / value

    return {
        config: {
            path: {
                "train": ratio(config, path, "train_samples_per_s"),
                "input": ratio(config, path, "input_samples_per_s"),
                "inference": ratio(config, path, "inference_ms", False),
            }
            for path in PATHS[1:]
        }
        for config in configs
    }


def make_report(args: argparse.Namespace, results: list[dict], device: torch.device) -> dict:
    """The JSON report: the settings, the machine, the rows, the paper's Table 2 and (with --baseline on
    train.py's encoder) the ratios to the straightforward path."""
    report = {
        "settings": {k: v for k, v in vars(args).items()},
        "machine": machine_record(device),
        "results": results,
        "reference_epoch_items": reference_epoch_items(),
        "paper_table2": {
            k: dict(zip(("method", "training_time", "memory", "inference"), v))
            for k, v in PAPER_TABLE2.items()
        },
    }
    if args.baseline and not args.encoders:
        report["speedups"] = speedups(results, args.configs)
    return report
