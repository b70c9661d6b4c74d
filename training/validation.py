"""Validation during training: the mean losses over the validation split (every process's shard) and,
where the split has ground-truth depth, the depth metrics."""

from __future__ import annotations

import argparse

import torch
from torch import nn
from torch.utils.data import DataLoader

import layers
from evaluation.metrics import DEPTH_METRIC_NAMES, depth_errors_of_image
from training import distributed, loaders, signals
from utils.processes import Runtime


@torch.no_grad()
def evaluate(
    model: nn.Module, loader: DataLoader, opts: argparse.Namespace, runtime: Runtime, device: torch.device
) -> tuple[dict, dict, dict | None, dict | None]:
    """(mean losses, depth metrics as ``de/NAME``, the last batch, its outputs) over all processes."""
    sums: dict = {}
    count = 0
    metric_sum = torch.zeros(len(DEPTH_METRIC_NAMES), dtype=torch.float64)
    metric_count = 0
    inputs = outputs = None
    with signals.blocked_while_starting_workers():
        batches = iter(loader)
    for inputs in batches:
        inputs = loaders.to_device(inputs, device)
        outputs, losses = model(inputs)
        batch = inputs[("color", 0, 0)].shape[0]
        for key, value in losses.items():
            sums[key] = sums.get(key, 0.0) + value.double().cpu() * batch
        count += batch
        if "depth_gt" in inputs:
            scaled_disp, _ = layers.disp_to_depth(outputs[("disp", 0)], opts.min_depth, opts.max_depth)
            for j in range(batch):
                result = depth_errors_of_image(inputs["depth_gt"][j, 0], scaled_disp[j, 0])
                if result is not None:
                    metric_sum += result[0].cpu()
                    metric_count += 1
    keys = distributed.union_of_keys(sums, runtime)  # a process whose shard is empty has none of its own
    packed = torch.tensor(
        [float(sums.get(k, 0.0)) for k in keys] + [count] + metric_sum.tolist() + [metric_count],
        dtype=torch.float64,
        device=device,
    )
    packed = distributed.all_reduce_sum(packed, runtime).cpu()
    total = packed[len(keys)].item()
    val_losses = {k: packed[i].item() / max(total, 1) for i, k in enumerate(keys)}
    metrics_total = packed[-1].item()
    metrics = {}
    if metrics_total > 0:
        values = packed[len(keys) + 1 : -1] / metrics_total
        metrics = {f"de/{name}": v.item() for name, v in zip(DEPTH_METRIC_NAMES, values)}
    return val_losses, metrics, inputs, outputs
