"""The training and validation loaders of a run: split files checked, one shard per process, an order
that a resume can recompute (training/resume.py), workers that leave stop signals to the main process."""

from __future__ import annotations

import argparse
import logging

import torch
from torch.utils.data import DataLoader, Dataset, Subset

import options
import splits
from datasets import DATASETS, read_split
from model import image_keys
from training import input_checks, resume, signals
from training.logs import TRAINER_LOGGER
from utils import InputError
from utils.processes import Runtime

logger = logging.getLogger(TRAINER_LOGGER)


def loader_image_keys(opts: argparse.Namespace) -> frozenset[tuple] | None:
    """The image keys the loaders make: the model's (``--input_images model``), or None for all."""
    return image_keys(opts) if opts.input_images == "model" else None


def worker_pipeline(opts: argparse.Namespace, device: torch.device) -> str:
    """What the training workers do: exact (the authors'), fast (uint8 frames; scales and jitter on the
    device, speed/) or fast_workers (``--input_pipeline fast`` on a CPU-only run, where float jitter in the
    training process costs more than PIL's in the workers)."""
    pipeline = opts.input_pipeline
    return "fast_workers" if pipeline == "fast" and device.type == "cpu" else pipeline


def build(
    opts: argparse.Namespace, runtime: Runtime, device: torch.device
) -> tuple[Dataset, resume.ResumableSampler, DataLoader, DataLoader | None]:
    """(training dataset, its sampler, training loader, validation loader or None) of a run."""
    rt = runtime
    # options.parse_args resolves the default; options built otherwise get the same cap here
    opts.num_workers = options.default_workers(opts.num_workers)
    train_file, val_file = splits.training_files(opts.split, opts.splits_dir)
    dataset_class = DATASETS[opts.dataset]
    common = dict(
        height=opts.height,
        width=opts.width,
        frame_ids=[0] + options.source_frame_ids(opts),
        num_scales=max(opts.scales) + 1,
        img_ext=opts.img_ext,
        load_labels=options.needs_labels(opts),
        seg_path=opts.seg_path,
    )
    # training items carry no ground truth: only validation computes depth metrics
    train_dataset = dataset_class(
        opts.data_path,
        read_split(train_file),
        is_train=True,
        input_pipeline=worker_pipeline(opts, device),
        image_keys=loader_image_keys(opts),
        load_depth=False,
        **common,
    )
    per_process = opts.batch_size // rt.world_size
    if len(train_dataset) < per_process * rt.world_size:
        raise InputError(
            f"{train_file} lists {len(train_dataset)} items, fewer than one batch "
            f"(--batch_size {opts.batch_size})"
        )
    input_checks.check_split(train_dataset, train_file, opts.input_check, opts.num_workers)
    # one sampler for one process and for DDP: each epoch's order is recomputable from (seed, epoch)
    train_sampler = resume.ResumableSampler(train_dataset, rt.world_size, rt.rank, opts.seed)
    generator = torch.Generator().manual_seed(opts.seed + rt.rank)
    pin = device.type == "cuda"
    # loader workers ignore stop signals: the main process saves, then stops them (training/signals.py)
    train_loader = DataLoader(
        train_dataset,
        per_process,
        sampler=train_sampler,
        num_workers=opts.num_workers,
        pin_memory=pin,
        drop_last=True,
        generator=generator,
        persistent_workers=opts.num_workers > 0,
        worker_init_fn=signals.loader_worker_init,
    )
    if opts.num_workers > 0:
        signals.stop_workers_at_exit()

    val_loader = None
    if val_file is not None and not opts.no_validation:
        val_dataset = dataset_class(
            opts.data_path, read_split(val_file), is_train=False, image_keys=loader_image_keys(opts), **common
        )
        if len(val_dataset) == 0:
            raise InputError(
                f"{val_file} lists no items: validation needs at least one (or train with --no_validation)"
            )
        input_checks.check_split(val_dataset, val_file, opts.input_check, opts.num_workers)
        shard = Subset(val_dataset, range(rt.rank, len(val_dataset), rt.world_size))
        val_loader = DataLoader(
            shard,
            per_process,
            shuffle=False,
            num_workers=opts.num_workers,
            pin_memory=pin,
            drop_last=False,
            worker_init_fn=signals.loader_worker_init,
        )
        logger.info(
            "validation: %d items from %s (ground-truth depth: %s)",
            len(val_dataset),
            val_file,
            "yes" if val_dataset.load_depth else "no",
        )
    return train_dataset, train_sampler, train_loader, val_loader


def to_device(inputs: dict, device: torch.device) -> dict:
    """A batch's tensors moved to ``device`` (other values as they are)."""
    return {k: v.to(device, non_blocking=True) if torch.is_tensor(v) else v for k, v in inputs.items()}
