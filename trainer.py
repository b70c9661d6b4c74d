"""The training loop (Monodepth2's ``Trainer``): one code path for the CPU, one GPU, DataParallel and DDP.

Under ``torchrun`` every process drives one device and DDP averages the gradients; only rank 0 logs
and saves. What the loop relies on (resume, stop signals, non-finite checks, the run folder) is in
training/; the opt-in speed path (speed/) is entered only when a speed option is given.
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
from typing import Iterator

import torch
import torch.distributed as dist
from torch import nn
from tqdm import tqdm

import options
import utils
from checkpoints import model_folder, training_state
from model import FSREModel
from speed.acceleration import Acceleration
from training import distributed, loaders, logs, optimisation, resume, run_folder, signals, validation
from training.loop_state import LoopState
from training.nonfinite import NonfiniteChecks
from utils import InputError
from utils.processes import cleanup_runtime, init_runtime

logger = logging.getLogger(__name__)


def speed_path_asked(opts: argparse.Namespace) -> bool:
    """Whether an opt-in speed option is given (``--input_pipeline fast``, ``--amp``, ``--channels_last``,
    ``--compile``): only then does the run enter speed/ (the defaults are the authors' pipeline)."""
    return opts.input_pipeline == "fast" or opts.amp != "off" or opts.channels_last or opts.compile


class Trainer:
    """Builds the model, data and optimizer from options, claims the run folder, and trains (Monodepth2's)."""

    def __init__(self, opts: argparse.Namespace) -> None:
        self.opts = opts
        self.runtime = rt = init_runtime(opts.device, opts.no_cuda, opts.dist_backend)
        self.device = rt.device
        if opts.batch_size % rt.world_size:
            raise InputError(
                f"--batch_size {opts.batch_size} is the total batch: it must divide among "
                f"{rt.world_size} processes"
            )
        self.log_path = os.path.join(opts.log_dir, opts.model_name)
        utils.seed_everything(opts.seed + rt.rank)
        if opts.deterministic:
            torch.use_deterministic_algorithms(True, warn_only=True)
        # first: bad data fails before the model is built (no random numbers are drawn)
        self.train_dataset, self.train_sampler, self.train_loader, self.val_loader = loaders.build(
            opts, rt, self.device
        )

        self.model = FSREModel(opts)
        if rt.distributed and self.device.type == "cuda" and opts.sync_bn:
            self.model = nn.SyncBatchNorm.convert_sync_batchnorm(self.model)
        self.model.to(self.device)
        self.speed = None  # the opt-in speed path: here, or nowhere
        if speed_path_asked(opts):
            self.speed = Acceleration(self.model, opts, self.device, loaders.loader_image_keys(opts))
        self.models = self.model.networks()
        if opts.load_weights_folder:
            model_folder.load_model_folder(opts.load_weights_folder, self.models, opts.models_to_load)
            logger.info("loaded %s from %s", ", ".join(opts.models_to_load), opts.load_weights_folder)
        self.optimizer = optimisation.adam(self.model, opts)
        self.scheduler = optimisation.schedule(self.optimizer, opts)
        self.scaler = optimisation.gradient_scaler(self.device, opts.amp)  # a pass-through unless fp16
        self.net = self._wrap(self.model)
        self.nonfinite = NonfiniteChecks(self.model, self.scaler, rt, self.device, opts.max_nonfinite_steps)

        self.loop = LoopState()  # epoch, step, ...: what a training-state checkpoint stores besides weights
        self.stop_signal = signals.StopSignal()  # installed while training
        self.last_state: str | None = None  # the newest training-state checkpoint written (or resumed from)
        self.last_model_folder: str | None = None  # the newest models/weights_* folder written
        self.run_log = logs.RunLog(opts)  # rank 0's progress lines and TensorBoard files
        self.lock = run_folder.claim_for_all(self.log_path, opts, rt, resume.check_run_folder)
        try:
            if opts.resume is not None:
                self.last_state = resume.load(
                    opts.resume, self.log_path, opts, self.loop, self.models, self.optimizer, self.scheduler
                )
            if rt.is_main:
                with run_folder.writing(self.log_path, self.last_state):
                    self.run_log.open(self.log_path, run_folder.EVENT_DIRS)
                    options.save_options(
                        opts, os.path.join(self.log_path, run_folder.MODELS_DIR, model_folder.OPTIONS_FILE)
                    )
        except BaseException:
            self.close()
            raise
        logger.info(
            "training %s (config %s) on %s, %d process(es), %d training items, batch %d",
            opts.model_name,
            opts.config,
            self.device,
            rt.world_size,
            len(self.train_dataset),
            opts.batch_size,
        )

    @property
    def step(self) -> int:
        """Steps trained so far (``loop.step``)."""
        return self.loop.step

    # ------------------------------------------------------------------------------------------
    def _wrap(self, model: nn.Module) -> nn.Module:
        """DDP under torchrun, DataParallel over several GPUs when no --device is named, else the model."""
        rt = self.runtime
        if rt.distributed:
            device_ids = [rt.local_rank] if self.device.type == "cuda" else None
            return nn.parallel.DistributedDataParallel(model, device_ids=device_ids)
        if self.device.type == "cuda" and self.opts.device is None and torch.cuda.device_count() > 1:
            logger.info("DataParallel over %d GPUs", torch.cuda.device_count())
            return nn.DataParallel(model)
        return model

    def close(self) -> None:
        """Close the TensorBoard files, let go of the run folder and leave the process group."""
        self.run_log.close()
        if self.lock is not None:
            self.lock.release()
            self.lock = None
        cleanup_runtime(self.runtime)

    # ------------------------------------------------------------------------------------------
    def prepare_batch(self, inputs: dict) -> dict:
        """A loader batch on this device (DataParallel scatters from the host itself), in the model's keys."""
        if not isinstance(self.net, nn.DataParallel):
            inputs = loaders.to_device(inputs, self.device)
        if self.speed is not None:  # the fast pipeline's scales and jitter (a no-op on prepared batches)
            inputs = self.speed.prepare_inputs(inputs)
        return inputs

    def forward(
        self, batch: dict, with_outputs: bool = True, plain_photometric: bool = False
    ) -> tuple[dict, dict]:
        """A prepared batch through the (wrapped) model: (outputs, losses), the total ``losses["loss"]``."""
        outputs, losses = self.net(batch, with_outputs=with_outputs, plain_photometric=plain_photometric)
        return outputs, {k: v.mean() for k, v in losses.items()}  # DataParallel returns one value per GPU

    def process_batch(self, inputs: dict, with_outputs: bool = True) -> tuple[dict, dict]:
        """``forward`` of a loader batch."""
        return self.forward(self.prepare_batch(inputs), with_outputs)

    def train(self) -> None:
        """Run the epochs, validating and saving after each one; then let go of the run folder."""
        opts, loop = self.opts, self.loop
        self.run_log.start()
        self.total_steps = len(self.train_loader) * opts.num_epochs
        if opts.max_steps is not None:
            self.total_steps = min(self.total_steps, opts.max_steps)
        self.stop_signal.install()
        try:
            if loop.step >= self.total_steps or loop.epoch >= opts.num_epochs:
                logger.info(
                    "nothing left to train: step %d of %d, epoch %d of %d",
                    loop.step,
                    self.total_steps,
                    loop.epoch,
                    opts.num_epochs,
                )
            for loop.epoch in range(loop.epoch, opts.num_epochs):
                if loop.step >= self.total_steps and (loop.batch_in_epoch == 0 or loop.ended_part_way):
                    break
                self.run_epoch()
                if loop.batch_in_epoch:  # --max_steps ended the epoch part-way: a larger budget resumes it
                    break
        finally:
            self.stop_signal.uninstall()
            self.close()

    def run_epoch(self) -> None:
        """One pass over the training data (a resumed epoch skips the batches done), then the epoch's end."""
        loop = self.loop
        loop.ended_part_way = False
        with self.start_epoch() as bar:
            for inputs in self.epoch_batches():
                log_now = loop.step % self.opts.log_frequency == 0 and self.runtime.is_main
                batch, outputs, losses = self.train_step(inputs, keep_outputs=log_now)
                self.run_log.window_samples += self.opts.batch_size
                if log_now:
                    lr = self.optimizer.param_groups[0]["lr"]
                    self.run_log.train_step(loop, self.total_steps, batch, outputs, losses, lr)
                bar.update(self.opts.batch_size)
                loop.step += 1
                loop.batch_in_epoch += 1
                self.after_step()
                if loop.step >= self.total_steps:
                    break
        self.end_epoch()

    # ------------------------------------------------------------------------------------------
    # the parts of an epoch, in their order
    # ------------------------------------------------------------------------------------------
    def start_epoch(self) -> tqdm:
        """Set the sampler to this epoch (skipping the batches done) and open its progress bar."""
        loop = self.loop
        self.train_sampler.set_epoch(loop.epoch)
        self.train_sampler.skip = loop.batch_in_epoch * self.train_loader.batch_size
        self.net.train()
        self.run_log.start_window()  # throughput between two logged steps
        steps = min(len(self.train_loader), self.total_steps - loop.step)
        return tqdm(
            total=steps * self.opts.batch_size,
            unit="sample",
            desc=f"epoch {loop.epoch}",
            disable=not self.runtime.is_main,
            dynamic_ncols=True,
            leave=False,
        )

    def epoch_batches(self) -> Iterator[dict]:
        """The epoch's batches still to train: none once the step budget is spent (resumed at its end)."""
        if self.loop.step >= self.total_steps:
            return iter(())
        with signals.blocked_while_starting_workers():
            return iter(self.train_loader)

    def train_step(self, inputs: dict, keep_outputs: bool = False) -> tuple[dict, dict, dict]:
        """Forward, zero_grad, backward, step: (batch, outputs, losses). A step whose loss, sampling grids
        or gradients are not finite on some process updates nothing (training/nonfinite.py)."""
        batch = self.prepare_batch(inputs)
        grids_here = not isinstance(self.net, nn.DataParallel)  # the check reads the grids the model returns
        warmup = self.loop.step < self.opts.photometric_warmup  # the plain photometric loss first
        outputs, losses = self.forward(batch, keep_outputs or grids_here, plain_photometric=warmup)
        self.optimizer.zero_grad(set_to_none=True)
        problem = self.nonfinite.before_backward(losses["loss"], outputs)  # off CUDA only: NaN grids crash it
        if problem is None:
            self.scaler.scale(losses["loss"]).backward()
            problem = self.nonfinite.after_backward(losses["loss"], outputs)
        if problem is None:
            self.scaler.step(self.optimizer)
            self.scaler.update()
        self.nonfinite.count(self.loop, problem)
        return batch, outputs if keep_outputs else {}, losses

    def after_step(self) -> None:
        """Act on what the step brought: a stop signal, too many bad steps in a row, a periodic checkpoint."""
        if self.stop_signalled():
            self.stop(self.save_training_state())
        self.nonfinite.stop_if_too_many(self.loop, self.save_training_state)
        if self.opts.checkpoint_every and self.loop.step % self.opts.checkpoint_every == 0:
            self.save_training_state()

    def end_epoch(self) -> None:
        """Learning-rate step; the training state (before validation: a failing validation loses nothing);
        validation; the model folder; then a stop signal that came meanwhile ends the run.

        An epoch that the step budget (``--max_steps``) ended part-way is saved as such (its epoch, the
        batches done, no learning-rate step), so that a resume with a larger budget finishes it."""
        opts, rt, loop = self.opts, self.runtime, self.loop
        self.train_sampler.skip = 0
        distributed.broadcast_buffers(self.model, rt)
        complete = loop.batch_in_epoch >= len(self.train_loader)
        if complete:
            self.scheduler.step()
            loop.batch_in_epoch = 0
        else:
            loop.ended_part_way = True
        path = self.save_training_state(epoch_done=complete)
        val_losses = self.validate() if self.val_loader is not None else None
        last = loop.epoch == opts.num_epochs - 1 or loop.step >= self.total_steps
        if (loop.epoch + 1) % opts.save_frequency == 0 or last:
            best = val_losses is not None and val_losses["loss"] < loop.best_val_loss
            if best:
                loop.best_val_loss = val_losses["loss"]
            if rt.is_main:
                self.save_model(best)
            if best:
                path = self.save_training_state(
                    epoch_done=complete
                )  # again, with the new best validation loss
        if self.stop_signalled():
            self.stop(path)

    @torch.no_grad()
    def validate(self) -> dict:
        """Mean losses over the validation split and, with ground truth, the depth metrics (logged)."""
        self.model.eval()
        losses, metrics, inputs, outputs = validation.evaluate(
            self.model, self.val_loader, self.opts, self.runtime, self.device
        )
        if self.runtime.is_main:
            self.run_log.validation(self.loop.step, self.loop.epoch, inputs, outputs, losses, metrics)
        self.model.train()
        return losses

    # ------------------------------------------------------------------------------------------
    # stop signals
    # ------------------------------------------------------------------------------------------
    def stop_signalled(self) -> bool:
        """Whether a stop signal reached any process (one all-reduce under DDP, so that all stop together)."""
        return distributed.any_process([self.stop_signal.received], self.runtime, self.device)[0]

    def stop(self, path: str) -> None:
        """End the run after a stop signal (the state is saved in ``path``)."""
        signum = self.stop_signal.signum if self.stop_signal.signum is not None else signal.SIGTERM
        logger.warning("stopping at epoch %d, step %d", self.loop.epoch, self.loop.step)
        raise signals.Interrupted(signum, path)

    # ------------------------------------------------------------------------------------------
    # checkpoints
    # ------------------------------------------------------------------------------------------
    def save_training_state(self, epoch_done: bool = False) -> str:
        """Rank 0 writes a training-state checkpoint (as of the next epoch when ``epoch_done``); all ranks
        wait."""
        folder = training_state.checkpoint_dir(self.log_path)
        path = training_state.checkpoint_path(folder, self.loop.step)
        if self.runtime.is_main:
            loop = self.loop.after_epoch() if epoch_done else self.loop
            state = resume.checkpoint_of(loop, self.models, self.optimizer, self.scheduler, self.opts)
            with run_folder.writing(path, self.last_state):
                training_state.save_checkpoint(folder, loop.step, state, self.opts.keep_checkpoints)
            logger.info(
                "saved the training state (epoch %d, batch %d, step %d) to %s",
                loop.epoch,
                loop.batch_in_epoch,
                loop.step,
                path,
            )
        if self.runtime.distributed:
            dist.barrier()
        self.last_state = path
        return path

    def save_model(self, best: bool = False) -> str:
        """Write ``models/weights_{epoch}`` (``_best`` when the validation loss is the lowest so far)."""
        name = f"weights_{self.loop.epoch}" + ("_best" if best else "")
        folder = os.path.join(self.log_path, run_folder.MODELS_DIR, name)
        with run_folder.writing(folder, self.last_state):
            model_folder.save_model_folder(
                folder, self.models, self.opts, self.optimizer, self.loop.epoch, self.loop.step
            )
        self.last_model_folder = folder
        logger.info("saved %s", folder)
        return folder
