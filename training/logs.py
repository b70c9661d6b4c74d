"""What a run logs (rank 0 only): the progress line, and TensorBoard scalars and pictures in ``train/``
and ``val/`` of the run folder."""

from __future__ import annotations

import argparse
import logging
import os
import time

import torch
from tensorboardX import SummaryWriter

import options
import utils
from datasets import colourise
from training.diagnostics import step_scalars
from training.loop_state import LoopState
from utils.colormap import colormap

TRAINER_LOGGER = "trainer"  # a run's progress and validation lines name the trainer, as they always have
logger = logging.getLogger(TRAINER_LOGGER)

MIN_WINDOW_S = 1e-9  # a throughput window never lasts zero seconds


class RunLog:
    """The progress line and the TensorBoard files of a run, with the throughput between two logged steps."""

    def __init__(self, opts: argparse.Namespace) -> None:
        self.opts = opts
        self.writers: dict[str, SummaryWriter] = {}
        self.start_time = self.window_start = time.time()
        self.window_samples = 0

    def open(self, log_path: str, modes: tuple[str, ...]) -> None:
        """Open a TensorBoard file per mode (``train``, ``val``) in the run folder."""
        self.writers = {mode: SummaryWriter(os.path.join(log_path, mode)) for mode in modes}

    def close(self) -> None:
        """Close the TensorBoard files."""
        for writer in self.writers.values():
            writer.close()
        self.writers = {}

    def start(self) -> None:
        """The clock of the run's elapsed and remaining time starts."""
        self.start_time = time.time()

    def start_window(self) -> None:
        """A new throughput window starts (at the start of an epoch and after each logged step)."""
        self.window_start, self.window_samples = time.time(), 0

    def train_step(
        self, loop: LoopState, total_steps: int, batch: dict, outputs: dict, losses: dict, lr: float
    ) -> None:
        """Log the step ``loop`` is at: the progress line; losses, learning rate ``lr``, throughput, bad
        steps so far; pictures."""
        step, epoch = loop.step, loop.epoch
        rate = self.window_samples / max(time.time() - self.window_start, MIN_WINDOW_S)
        elapsed = time.time() - self.start_time
        done = step + 1
        left = elapsed / done * (total_steps - done)
        logger.info(
            "epoch %d | step %d/%d | %.1f samples/s | loss %.5f | elapsed %s | left %s",
            epoch,
            done,
            total_steps,
            rate,
            losses["loss"].item(),
            utils.sec_to_hm_str(elapsed),
            utils.sec_to_hm_str(left),
        )
        self.write(
            "train",
            step,
            batch,
            outputs,
            {
                **losses,
                "learning_rate": lr,
                "samples_per_s": rate,
                "nonfinite_steps": loop.nonfinite_total,
                **step_scalars(batch, outputs),  # pose translation, share of pixels a warp wins
            },
        )
        self.start_window()

    def validation(
        self, step: int, epoch: int, inputs: dict, outputs: dict, losses: dict, metrics: dict
    ) -> None:
        """Log a validation: its line (loss, depth metrics), scalars and pictures."""
        logger.info(
            "validation after epoch %d: loss %.5f%s",
            epoch,
            losses.get("loss", float("nan")),
            "".join(f" | {k[3:]} {v:.4f}" for k, v in metrics.items()),
        )
        scalars = {k: torch.tensor(v) for k, v in {**losses, **metrics}.items()}  # float32, as always logged
        self.write("val", step, inputs, outputs, scalars)

    def write(self, mode: str, step: int, inputs: dict, outputs: dict, scalars: dict) -> None:
        """Write scalars and, when outputs are given, pictures of the first items to TensorBoard."""
        writer = self.writers[mode]
        for key, value in scalars.items():
            writer.add_scalar(key, float(value.detach() if torch.is_tensor(value) else value), step)
        if outputs:
            write_pictures(writer, inputs, outputs, self.opts, step)


def colormap_tensor(values: torch.Tensor) -> torch.Tensor:
    """(1, H, W) or (H, W) tensor -> (3, H, W) float image in [0, 1] for TensorBoard."""
    rgb = colormap(values.detach().float().cpu().squeeze().numpy())
    return torch.from_numpy(rgb).permute(2, 0, 1).float() / utils.UINT8_MAX


def write_pictures(
    writer: SummaryWriter, inputs: dict, outputs: dict, opts: argparse.Namespace, step: int
) -> None:
    """Frames, predicted frames, disparities, masks, segmentations and SGT boundaries of the first items."""
    frames = [0] + options.source_frame_ids(opts)
    batch = inputs[("color", 0, 0)].shape[0]
    for j in range(min(opts.num_log_images, batch)):
        for f in frames:
            writer.add_image(f"color_{f}_0/{j}", inputs[("color", f, 0)][j].cpu(), step)
        for s in opts.scales:
            for f in frames[1:]:
                writer.add_image(f"color_pred_{f}_{s}/{j}", outputs[("color", f, s)][j].detach().cpu(), step)
            writer.add_image(f"disp_{s}/{j}", colormap_tensor(outputs[("disp", s)][j]), step)
            if ("automask", s) in outputs:
                writer.add_image(f"automask_{s}/{j}", outputs[("automask", s)][j].float().cpu(), step)
        if ("seg_logits", 0) in outputs:
            prediction = outputs[("seg_logits", 0)][j].argmax(0).cpu().numpy()
            writer.add_image(f"seg_pred/{j}", colourise(prediction), step, dataformats="HWC")
        if ("seg", 0, 0) in inputs:
            target = inputs[("seg", 0, 0)][j, 0].cpu().numpy()
            writer.add_image(f"seg_target/{j}", colourise(target), step, dataformats="HWC")
        for level in opts.sgt_levels:
            if ("sgt_boundary", level) in outputs:
                boundary = outputs[("sgt_boundary", level)][j].float().cpu()
                writer.add_image(f"sgt_boundary_{level}/{j}", boundary, step)
