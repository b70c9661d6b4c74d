"""The training loop: one code path for the CPU, one GPU, DataParallel and DistributedDataParallel.

``python train.py`` runs on the CPU, one GPU or (DataParallel) all visible GPUs with the total
batch split across them; under ``torchrun`` every process drives one device and
DistributedDataParallel (with SyncBatchNorm on CUDA) averages the gradients. Means inside the
losses (the SGT's pooled boundary mean included) are taken per device over that device's share
of the batch, as in the authors' two-GPU runs; only rank 0 logs and saves.

Long runs (README "Long runs and resuming"): the run folder is locked and never taken over by a
fresh run (training/run_folder.py); the data order of every epoch is recomputable and each item's
augmentation depends on (seed, epoch, index) only, so ``--resume`` continues exactly where a
training-state checkpoint left off (checkpoints/training_state.py); SIGTERM and SIGINT save one
and stop the run with exit code 128 + the signal number (training/signals.py); a step with a
non-finite loss, sampling grid or gradient is skipped before it can do harm, and
``--max_nonfinite_steps`` of them in a row stop the run with its last good state saved. The
split's files are checked before training (training/input_checks.py).
"""
from __future__ import annotations

import argparse
import contextlib
import json
import logging
import math
import os
import signal
import time
import uuid
import warnings
from typing import Iterator

import torch
import torch.distributed as dist
from tensorboardX import SummaryWriter
from torch import nn
from torch.utils.data import DataLoader, Subset
from tqdm import tqdm

import layers
import options
import splits
import utils
from checkpoints import model_folder, training_state
from datasets import DATASETS, colourise, read_split
from evaluation.metrics import DEPTH_METRIC_NAMES, depth_errors_of_image
from model import FSREModel, loader_image_keys
from runtime.processes import cleanup_runtime, init_runtime, union_of_keys
from speed import acceleration
from speed.acceleration import Acceleration
from training import input_checks, resume, run_folder, signals
from utils import InputError, TrainingError

logger = logging.getLogger(__name__)

GRID_KEY = "sample"  # model.py's outputs ("sample", frame, scale): the sampling grids of the view synthesis


class Trainer:
    """Builds the model, data and optimizer from options, claims the run folder, and trains (Monodepth2's surface)."""

    def __init__(self, opts: argparse.Namespace) -> None:
        self.opts = opts
        self.runtime = rt = init_runtime(opts.device, opts.no_cuda, opts.dist_backend)
        self.device = rt.device
        if opts.batch_size % rt.world_size:
            raise InputError(f"--batch_size {opts.batch_size} is the total batch: it must divide among "
                             f"{rt.world_size} processes")
        self.log_path = os.path.join(opts.log_dir, opts.model_name)
        utils.seed_everything(opts.seed + rt.rank)
        if opts.deterministic:
            torch.use_deterministic_algorithms(True, warn_only=True)
        self._build_data()  # first: bad data fails before the model is built (no random numbers are drawn)

        self.model = FSREModel(opts)
        if rt.distributed and self.device.type == "cuda" and opts.sync_bn:
            self.model = nn.SyncBatchNorm.convert_sync_batchnorm(self.model)
        self.model.to(self.device)
        self.acceleration = Acceleration(self.model, opts, self.device)  # opt-in speed-ups (off by default)
        self.models = self.model.networks()
        if opts.load_weights_folder:
            model_folder.load_model_folder(opts.load_weights_folder, self.models, opts.models_to_load)
            logger.info("loaded %s from %s", ", ".join(opts.models_to_load), opts.load_weights_folder)
        self.optimizer = torch.optim.Adam(self.model.parameters(), opts.learning_rate)
        self.scheduler = torch.optim.lr_scheduler.MultiStepLR(self.optimizer, opts.lr_milestones, opts.lr_gamma)
        self.net = self._wrap(self.model)

        self.epoch = 0
        self.step = 0
        self.batch_in_epoch = 0  # batches of self.epoch already trained (a resumed epoch skips them)
        self.ended_part_way = False  # the step budget ended self.epoch part-way and its end was done (saved)
        self.nonfinite_in_row = self.nonfinite_total = 0
        self.stop_signal: signals.StopSignal | None = None
        self.stop_agreed = False  # a stop signal reached some process: the step under way is the last
        self.best_val_loss = math.inf
        self.run_id = uuid.uuid4().hex  # a resumed run keeps its checkpoint's: rotation deletes only the run's own
        self.last_state: str | None = None  # the newest training-state checkpoint written (or resumed from)
        self.last_model_folder: str | None = None  # the newest models/weights_* folder written
        self.writers: dict = {}
        self.lock = self._claim_run_folder()
        try:
            if opts.resume is not None:
                self.resume(opts.resume)
            if rt.is_main:
                with self.writing(self.log_path):
                    self.writers = {mode: SummaryWriter(os.path.join(self.log_path, mode)) for mode in ("train", "val")}
                    options.save_options(opts, os.path.join(self.log_path, "models", model_folder.OPTIONS_FILE))
        except BaseException:
            self.close()
            raise
        logger.info("training %s (config %s) on %s, %d process(es), %d training items, batch %d", opts.model_name,
                    opts.config, self.device, rt.world_size, len(self.train_dataset), opts.batch_size)

    # ------------------------------------------------------------------------------------------
    def _wrap(self, model: nn.Module) -> nn.Module:
        rt = self.runtime
        if rt.distributed:
            device_ids = [rt.local_rank] if self.device.type == "cuda" else None
            return nn.parallel.DistributedDataParallel(model, device_ids=device_ids)
        if self.device.type == "cuda" and self.opts.device is None and torch.cuda.device_count() > 1:
            logger.info("DataParallel over %d GPUs", torch.cuda.device_count())
            return nn.DataParallel(model)
        return model

    def _build_data(self) -> None:
        opts, rt = self.opts, self.runtime
        train_file, val_file = splits.training_files(opts.split, opts.splits_dir)
        dataset_class = DATASETS[opts.dataset]
        common = dict(height=opts.height, width=opts.width, frame_ids=[0] + options.source_frame_ids(opts),
                      num_scales=max(opts.scales) + 1, img_ext=opts.img_ext, load_labels=options.needs_labels(opts),
                      seg_path=opts.seg_path)
        # training items carry no ground truth: only validation computes depth metrics
        self.train_dataset = dataset_class(opts.data_path, read_split(train_file), is_train=True,
                                           input_pipeline=acceleration.dataset_pipeline(opts, self.device),
                                           image_keys=loader_image_keys(opts), load_depth=False, **common)
        per_process = opts.batch_size // rt.world_size
        if len(self.train_dataset) < per_process * rt.world_size:
            raise InputError(f"{train_file} lists {len(self.train_dataset)} items, fewer than one batch "
                             f"(--batch_size {opts.batch_size})")
        input_checks.check_split(self.train_dataset, train_file, opts.input_check, opts.num_workers)
        # one sampler for one process and for DDP: each epoch's order is recomputable from (seed, epoch)
        self.train_sampler = resume.ResumableSampler(self.train_dataset, rt.world_size, rt.rank, opts.seed)
        generator = torch.Generator().manual_seed(opts.seed + rt.rank)
        pin = self.device.type == "cuda"
        # loader workers ignore stop signals: the main process saves, then stops them (training/signals.py)
        self.train_loader = DataLoader(
            self.train_dataset, per_process, sampler=self.train_sampler,
            num_workers=opts.num_workers, pin_memory=pin, drop_last=True, generator=generator,
            persistent_workers=opts.num_workers > 0, worker_init_fn=signals.loader_worker_init)
        if opts.num_workers > 0:
            signals.stop_workers_at_exit()

        self.val_loader = None
        if val_file is not None and not opts.no_validation:
            val_dataset = dataset_class(opts.data_path, read_split(val_file), is_train=False,
                                        image_keys=loader_image_keys(opts), **common)
            if len(val_dataset) == 0:
                raise InputError(f"{val_file} lists no items: validation needs at least one (or train with "
                                 f"--no_validation)")
            input_checks.check_split(val_dataset, val_file, opts.input_check, opts.num_workers)
            shard = Subset(val_dataset, range(rt.rank, len(val_dataset), rt.world_size))
            self.val_loader = DataLoader(shard, per_process, shuffle=False, num_workers=opts.num_workers,
                                         pin_memory=pin, drop_last=False, worker_init_fn=signals.loader_worker_init)
            logger.info("validation: %d items from %s (ground-truth depth: %s)", len(val_dataset), val_file,
                        "yes" if val_dataset.load_depth else "no")

    def _claim_run_folder(self) -> utils.RunLock | None:
        """Rank 0 locks and checks the run folder (training/run_folder.py); every process learns the outcome."""
        lock, problem = None, None
        if self.runtime.is_main:
            try:
                lock = run_folder.claim(self.log_path, self.opts)
            except InputError as err:
                problem = err
        if self.runtime.distributed:
            message = [str(problem) if problem else None]
            dist.broadcast_object_list(message, src=0)
            if message[0] and problem is None:
                problem = InputError(message[0])
        if problem:
            raise problem
        return lock

    def close(self) -> None:
        """Close the TensorBoard files, let go of the run folder and leave the process group."""
        for writer in self.writers.values():
            writer.close()
        self.writers = {}
        if self.lock is not None:
            self.lock.release()
            self.lock = None
        cleanup_runtime(self.runtime)

    # ------------------------------------------------------------------------------------------
    def to_device(self, inputs: dict) -> dict:
        """Move a batch's tensors to this process's device."""
        return {k: v.to(self.device, non_blocking=True) if torch.is_tensor(v) else v for k, v in inputs.items()}

    def prepare_batch(self, inputs: dict) -> dict:
        """A loader batch on this process's device (DataParallel scatters from the host itself), in the model's keys."""
        if not isinstance(self.net, nn.DataParallel):
            inputs = self.to_device(inputs)
        return self.acceleration.prepare_inputs(inputs)  # idempotent: a no-op on prepared batches

    def forward(self, batch: dict, with_outputs: bool = True) -> tuple[dict, dict]:
        """Forward a prepared batch through the (wrapped) model: (outputs, losses), the total in ``losses["loss"]``."""
        outputs, losses = self.net(batch, with_outputs=with_outputs)
        return outputs, {k: v.mean() for k, v in losses.items()}  # DataParallel returns one value per GPU

    def process_batch(self, inputs: dict, with_outputs: bool = True) -> tuple[dict, dict]:
        """``forward`` of a loader batch."""
        return self.forward(self.prepare_batch(inputs), with_outputs)

    def train(self) -> None:
        """Run the epochs, validating and saving after each one; then let go of the run folder."""
        opts = self.opts
        self.start_time = time.time()
        self.total_steps = len(self.train_loader) * opts.num_epochs
        if opts.max_steps is not None:
            self.total_steps = min(self.total_steps, opts.max_steps)
        self.stop_signal = signals.StopSignal().install()
        try:
            if self.step >= self.total_steps or self.epoch >= opts.num_epochs:
                logger.info("nothing left to train: step %d of %d, epoch %d of %d", self.step, self.total_steps,
                            self.epoch, opts.num_epochs)
            for self.epoch in range(self.epoch, opts.num_epochs):
                if self.step >= self.total_steps and (self.batch_in_epoch == 0 or self.ended_part_way):
                    break
                self.run_epoch()
                if self.batch_in_epoch:  # --max_steps ended the epoch part-way: a larger budget resumes it
                    break
        finally:
            self.stop_signal.uninstall()
            self.close()

    def run_epoch(self) -> None:
        """One pass over the training data (a resumed epoch skips the batches done), then the epoch's end."""
        self.ended_part_way = False
        with self.start_epoch() as bar:
            for inputs in self.epoch_batches():
                self.train_step(inputs)
                bar.update(self.opts.batch_size)
                self.step += 1
                self.batch_in_epoch += 1
                self.after_step()
                if self.step >= self.total_steps:
                    break
        self.end_epoch()

    # ------------------------------------------------------------------------------------------
    # the parts of an epoch, in their order
    # ------------------------------------------------------------------------------------------
    def start_epoch(self) -> tqdm:
        """Set the sampler to this epoch (skipping the batches done) and open its progress bar."""
        self.train_sampler.set_epoch(self.epoch)
        self.train_sampler.skip = self.batch_in_epoch * self.train_loader.batch_size
        self.net.train()
        self.window_start, self.window_samples = time.time(), 0  # throughput between two logs
        steps = min(len(self.train_loader), self.total_steps - self.step)
        return tqdm(total=steps * self.opts.batch_size, unit="sample", desc=f"epoch {self.epoch}",
                    disable=not self.runtime.is_main, dynamic_ncols=True, leave=False)

    def epoch_batches(self) -> Iterator[dict]:
        """The epoch's batches still to train: none when the step budget is spent (a run resumed at its end)."""
        if self.step >= self.total_steps:
            return iter(())
        with signals.blocked_while_starting_workers():
            return iter(self.train_loader)

    def train_step(self, inputs: dict) -> None:
        """Forward, backward, the non-finite guard, the optimizer step, and logging.

        A step whose loss, sampling grids or gradients are not finite gets no update, so the weights
        stay finite. Off CUDA the loss and grids are checked before the backward pass, which they
        would crash (grid_sample's CPU backward segfaults on NaN coordinates, pytorch/pytorch#24823);
        on CUDA, whose kernel clamps NaN coordinates, one check after it covers all three (one host
        read per step). The grids are checked where the model returns them (not under DataParallel).
        """
        log_now = self.step % self.opts.log_frequency == 0 and self.runtime.is_main
        batch = self.prepare_batch(inputs)
        outputs, losses = self.forward(batch, with_outputs=log_now or not isinstance(self.net, nn.DataParallel))
        forward_bad = self.nonfinite_forward(losses["loss"], outputs)
        outputs = outputs if log_now else {}
        check_before_backward = self.device.type != "cuda"
        if check_before_backward:
            bad, self.stop_agreed = self.agree(forward_bad)
            if bad:
                self.skip_nonfinite_step(self.forward_problem(losses["loss"]))
        if not (check_before_backward and bad):
            self.optimizer.zero_grad(set_to_none=True)
            self.acceleration.backward(losses["loss"])
            bad, self.stop_agreed = self.agree(forward_bad | self.nonfinite_gradients())
            if bad:
                self.skip_nonfinite_step(self.forward_problem(losses["loss"]) if bool(forward_bad) else "a gradient")
            else:
                self.acceleration.step(self.optimizer)
                self.nonfinite_in_row = 0
        self.window_samples += self.opts.batch_size
        if log_now:
            self.log_step(batch, outputs, losses)

    def after_step(self) -> None:
        """Act on what the step brought: a stop signal, too many non-finite steps in a row, a periodic checkpoint."""
        opts = self.opts
        if self.stop_agreed:
            self.stop(self.save_training_state())
        if self.nonfinite_in_row >= opts.max_nonfinite_steps:
            path = self.save_training_state()
            raise TrainingError(
                f"the loss, a sampling grid or a gradient was not finite for {self.nonfinite_in_row} steps in a row "
                f"(steps {self.step - self.nonfinite_in_row}..{self.step - 1}, --max_nonfinite_steps "
                f"{opts.max_nonfinite_steps}); the last good state is saved in {path}")
        if opts.checkpoint_every and self.step % opts.checkpoint_every == 0:
            self.save_training_state()

    def end_epoch(self) -> None:
        """Learning-rate step; the training state (before validation: a failing validation loses nothing);
        validation; the model folder; then a stop signal that came meanwhile ends the run.

        An epoch that the step budget (``--max_steps``) ended part-way is saved as such (its epoch, the
        batches done, no learning-rate step), so that a resume with a larger budget finishes it."""
        opts, rt = self.opts, self.runtime
        self.train_sampler.skip = 0
        utils.broadcast_buffers(self.model, rt)
        complete = self.batch_in_epoch >= len(self.train_loader)
        if complete:
            self.scheduler.step()
            self.batch_in_epoch = 0
        else:
            self.ended_part_way = True
        next_epoch = self.epoch + 1 if complete else None
        path = self.save_training_state(next_epoch)
        val_losses = self.validate() if self.val_loader is not None else None
        last = self.epoch == opts.num_epochs - 1 or self.step >= self.total_steps
        if (self.epoch + 1) % opts.save_frequency == 0 or last:
            best = val_losses is not None and val_losses["loss"] < self.best_val_loss
            if best:
                self.best_val_loss = val_losses["loss"]
            if rt.is_main:
                self.save_model(best)
            if best:
                path = self.save_training_state(next_epoch)  # again, with the new best validation loss
        if self.stop_signalled():
            self.stop(path)

    # ------------------------------------------------------------------------------------------
    # faults and signals
    # ------------------------------------------------------------------------------------------
    def nonfinite_forward(self, loss: torch.Tensor, outputs: dict) -> torch.Tensor:
        """Whether the loss or one of the sampling grids in ``outputs`` is not finite (a bool on the device)."""
        bad = ~torch.isfinite(loss.detach())
        grids = [value.detach() for key, value in outputs.items() if isinstance(key, tuple) and key[0] == GRID_KEY]
        if grids:
            bad = bad | ~torch.stack([torch.isfinite(grid).all() for grid in grids]).all()
        return bad

    def forward_problem(self, loss: torch.Tensor) -> str:
        """What was not finite in a forward pass that ``nonfinite_forward`` (agreed by all processes) flagged."""
        value = loss.item()
        if not math.isfinite(value):
            return f"the loss ({value})"
        return "a sampling grid" + (" (or another process's loss)" if self.runtime.distributed else "")

    def agree(self, bad: torch.Tensor) -> tuple[bool, bool]:
        """(``bad`` on any process, a stop signal on any process): one all-reduce under DDP, so that all skip or stop."""
        stop = self.stop_signal is not None and self.stop_signal.signum is not None
        if not self.runtime.distributed:
            return bool(bad), stop
        flags = torch.stack([bad.float().to(self.device), torch.tensor(float(stop), device=self.device)])
        dist.all_reduce(flags, op=dist.ReduceOp.MAX)
        bad_any, stop_any = flags.tolist()
        return bool(bad_any), bool(stop_any)

    def stop_signalled(self) -> bool:
        """Whether a stop signal reached any process (asked again at the end of an epoch)."""
        return self.agree(torch.zeros((), dtype=torch.bool, device=self.device))[1]

    def nonfinite_gradients(self) -> torch.Tensor:
        """Whether a gradient is not finite (a bool on the device; identical on every DDP process).
        Under fp16 autocast the gradient scaler makes this check itself: always False there."""
        if self.acceleration.scaler.is_enabled():
            return torch.zeros((), dtype=torch.bool, device=self.device)
        grads = [p.grad for p in self.model.parameters() if p.grad is not None]
        return ~torch.isfinite(torch.nn.utils.get_total_norm(grads, norm_type=math.inf))

    def skip_nonfinite_step(self, problem: str) -> None:
        """Count a step with non-finite values; the weights and the optimizer's state stay as they were."""
        self.nonfinite_in_row += 1
        self.nonfinite_total += 1
        logger.warning("step %d: %s is not finite, step skipped (%d in a row, %d in all)", self.step, problem,
                       self.nonfinite_in_row, self.nonfinite_total)

    def stop(self, path: str) -> None:
        """End the run after a stop signal (the state is saved in ``path``)."""
        signum = self.stop_signal.signum if self.stop_signal.signum is not None else signal.SIGTERM
        logger.warning("stopping at epoch %d, step %d", self.epoch, self.step)
        raise signals.Interrupted(signum, path)

    # ------------------------------------------------------------------------------------------
    # checkpoints
    # ------------------------------------------------------------------------------------------
    @contextlib.contextmanager
    def writing(self, path: str) -> Iterator[None]:
        """A failed write (read-only or full --log_dir) ends the run with one line naming the path and the last state."""
        try:
            yield
        except OSError as err:
            last = (f"the last complete training state is {self.last_state}" if self.last_state
                    else "no training state was saved yet")
            problem = str(err) if isinstance(err, utils.UnwritableError) else \
                f"cannot write {err.filename or path}: {err.strerror or err}"
            raise TrainingError(f"{problem}; {last}") from err

    def resume_state(self, epoch: int, batch_in_epoch: int) -> dict:
        """Everything an exact resume needs, in types that ``torch.load(weights_only=True)`` reads."""
        return {"networks": {name: net.state_dict() for name, net in self.models.items()},
                "optimizer": self.optimizer.state_dict(), "scheduler": self.scheduler.state_dict(),
                "epoch": epoch, "batch_in_epoch": batch_in_epoch, "step": self.step,
                "best_val_loss": self.best_val_loss, "nonfinite_total": self.nonfinite_total,
                "nonfinite_in_row": self.nonfinite_in_row, "ended_part_way": self.ended_part_way,
                "rng": resume.rng_states(),
                "options": json.dumps(vars(self.opts), sort_keys=True), training_state.RUN_ID_KEY: self.run_id}

    def save_training_state(self, epoch: int | None = None) -> str:
        """Rank 0 writes a training-state checkpoint (after ``epoch`` ends, when given); all ranks wait for it."""
        folder = training_state.checkpoint_dir(self.log_path)
        path = training_state.checkpoint_path(folder, self.step)
        if self.runtime.is_main:
            state = self.resume_state(self.epoch if epoch is None else epoch,
                                      self.batch_in_epoch if epoch is None else 0)
            with self.writing(path):
                training_state.save_checkpoint(folder, self.step, state, self.opts.keep_checkpoints)
            logger.info("saved the training state (epoch %d, batch %d, step %d) to %s", state["epoch"],
                        state["batch_in_epoch"], self.step, path)
        if self.runtime.distributed:
            dist.barrier()
        self.last_state = path
        return path

    def resume(self, where: str) -> None:
        """Load a training-state checkpoint (``options.RESUME_LATEST``: the run's newest one that loads)."""
        if where == options.RESUME_LATEST:
            found = training_state.latest_checkpoint(training_state.checkpoint_dir(self.log_path))
            if found is None:
                logger.info("--resume: no checkpoint in %s yet, starting fresh",
                            training_state.checkpoint_dir(self.log_path))
                return
            path, state = found
        else:
            path, state = where, training_state.load_checkpoint(where)
        saved_options = json.loads(state["options"])
        self.check_resumed_options(path, saved_options)
        for name, net in self.models.items():
            if name not in state["networks"]:
                raise model_folder.CheckpointError(f"{path} holds no {name} network")
            model_folder.check_state_dict(net, state["networks"][name], f"{path} ({name})")
            net.load_state_dict(state["networks"][name])
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        self.epoch, self.batch_in_epoch, self.step = state["epoch"], state["batch_in_epoch"], state["step"]
        self.best_val_loss = state["best_val_loss"]
        self.nonfinite_total, self.nonfinite_in_row = state["nonfinite_total"], state["nonfinite_in_row"]
        self.ended_part_way = bool(state.get("ended_part_way", False))  # absent from older checkpoints
        self.run_id = state.get(training_state.RUN_ID_KEY, self.run_id)
        self.last_state = path
        resume.set_rng_states(state["rng"])
        if resume.schedule_changed(saved_options, self.opts):
            self.reschedule()
        logger.info("resumed from %s: epoch %d, batch %d of the epoch, step %d", path, self.epoch,
                    self.batch_in_epoch, self.step)

    def check_resumed_options(self, path: str, saved: dict) -> None:
        """Apply the rule of training/resume.py to the options that differ from the checkpoint's."""
        changes = resume.changed_options(saved, self.opts)
        networks = [changes[k] for k in resume.NETWORK_OPTIONS if k in changes]
        if networks:
            raise InputError(f"{', '.join(networks)}: {path} holds the weights of another network; resume "
                             f"it with the options it was trained with, or start a new run with another "
                             f"--model_name")
        versions = [changes.pop(k) for k in resume.VERSION_OPTIONS if k in changes]
        if versions:
            logger.warning("resuming with another library version (%s): the weights fit, the outputs may "
                           "differ", ", ".join(versions))
        fixed = [k for k in resume.FIXED_OPTIONS if k in changes]
        if fixed:
            raise InputError(f"{', '.join(changes[k] for k in fixed)}: a resumed run keeps the image size of {path}; "
                             f"to train at another size, start a new run from its weights (--load_weights_folder) "
                             f"with another --model_name")
        data_order = [changes[k] for k in resume.DATA_ORDER_OPTIONS if k in changes]
        if data_order:
            logger.warning("resuming with another data order (%s): the run goes on, but not as it would have",
                           ", ".join(data_order))
        others = [v for k, v in changes.items() if k not in resume.DATA_ORDER_OPTIONS]
        if others:
            logger.info("resuming with other options (%s): they apply from here on (opt.json records them)",
                        ", ".join(others))

    def reschedule(self) -> None:
        """Rebuild the learning-rate schedule from today's options, at the epoch reached, as a run with
        them from the start would have it."""
        epochs_done = self.scheduler.last_epoch
        for group in self.optimizer.param_groups:
            group["lr"] = group["initial_lr"] = self.opts.learning_rate
        self.scheduler = torch.optim.lr_scheduler.MultiStepLR(self.optimizer, self.opts.lr_milestones, self.opts.lr_gamma)
        with warnings.catch_warnings():  # "scheduler.step() before optimizer.step()": here on purpose
            warnings.simplefilter("ignore")
            for _ in range(epochs_done):
                self.scheduler.step()
        logger.warning("resuming with another learning-rate schedule (--learning_rate %g, --lr_milestones %s, "
                       "--lr_gamma %g): the rate is now %g", self.opts.learning_rate, self.opts.lr_milestones,
                       self.opts.lr_gamma, self.optimizer.param_groups[0]["lr"])

    # ------------------------------------------------------------------------------------------
    # logging
    # ------------------------------------------------------------------------------------------
    def log_step(self, batch: dict, outputs: dict, losses: dict) -> None:
        """Log a training step: the progress line, TensorBoard scalars and pictures, the throughput since the last."""
        rate = self.window_samples / max(time.time() - self.window_start, 1e-9)
        self.log_progress(losses, rate)
        self.log("train", batch, outputs, losses, samples_per_s=rate)
        self.window_start, self.window_samples = time.time(), 0

    def log_progress(self, losses: dict, samples_per_s: float) -> None:
        elapsed = time.time() - self.start_time
        done = self.step + 1
        left = elapsed / done * (self.total_steps - done)
        logger.info("epoch %d | step %d/%d | %.1f samples/s | loss %.5f | elapsed %s | left %s", self.epoch,
                    done, self.total_steps, samples_per_s, losses["loss"].item(), utils.sec_to_hm_str(elapsed),
                    utils.sec_to_hm_str(left))

    # ------------------------------------------------------------------------------------------
    @torch.no_grad()
    def validate(self) -> dict:
        """Mean losses over the validation split and, where ground truth exists, the depth metrics."""
        model = self.model
        model.eval()
        sums: dict = {}
        count = 0
        metric_sum = torch.zeros(len(DEPTH_METRIC_NAMES), dtype=torch.float64)
        metric_count = 0
        inputs = outputs = losses = None
        with signals.blocked_while_starting_workers():
            batches = iter(self.val_loader)
        for inputs in batches:
            inputs = self.to_device(inputs)
            outputs, losses = model(inputs)
            batch = inputs[("color", 0, 0)].shape[0]
            for key, value in losses.items():
                sums[key] = sums.get(key, 0.0) + value.double().cpu() * batch
            count += batch
            if "depth_gt" in inputs:
                scaled_disp, _ = layers.disp_to_depth(outputs[("disp", 0)], self.opts.min_depth, self.opts.max_depth)
                for j in range(batch):
                    result = depth_errors_of_image(inputs["depth_gt"][j, 0], scaled_disp[j, 0])
                    if result is not None:
                        metric_sum += result[0].cpu()
                        metric_count += 1
        keys = union_of_keys(sums, self.runtime)  # a process whose shard is empty has none of its own
        packed = torch.tensor([float(sums.get(k, 0.0)) for k in keys] + [count] + metric_sum.tolist() + [metric_count],
                              dtype=torch.float64, device=self.device)
        packed = utils.all_reduce_sum(packed, self.runtime).cpu()
        total = packed[len(keys)].item()
        val_losses = {k: packed[i].item() / max(total, 1) for i, k in enumerate(keys)}
        metrics_total = packed[-1].item()
        metrics = {}
        if metrics_total > 0:
            values = packed[len(keys) + 1:-1] / metrics_total
            metrics = {f"de/{name}": v.item() for name, v in zip(DEPTH_METRIC_NAMES, values)}
        if self.runtime.is_main:
            logger.info("validation after epoch %d: loss %.5f%s", self.epoch, val_losses.get("loss", float("nan")),
                        "".join(f" | {k[3:]} {v:.4f}" for k, v in metrics.items()))
            scalars = {k: torch.tensor(v) for k, v in {**val_losses, **metrics}.items()}
            self.log("val", inputs, outputs, scalars)
        model.train()
        return val_losses

    # ------------------------------------------------------------------------------------------
    def log(self, mode: str, inputs: dict, outputs: dict, scalars: dict, samples_per_s: float | None = None) -> None:
        """Write scalars and, when outputs are given, pictures of the first items to TensorBoard."""
        writer = self.writers[mode]
        for key, value in scalars.items():
            writer.add_scalar(key, float(value.detach() if torch.is_tensor(value) else value), self.step)
        if mode == "train":
            writer.add_scalar("learning_rate", self.optimizer.param_groups[0]["lr"], self.step)
            if samples_per_s is not None:
                writer.add_scalar("samples_per_s", samples_per_s, self.step)
            writer.add_scalar("nonfinite_steps", self.nonfinite_total, self.step)
        if not outputs:
            return
        opts = self.opts
        frames = [0] + options.source_frame_ids(opts)
        batch = inputs[("color", 0, 0)].shape[0]
        for j in range(min(opts.num_log_images, batch)):
            for f in frames:
                writer.add_image(f"color_{f}_0/{j}", inputs[("color", f, 0)][j].cpu(), self.step)
            for s in opts.scales:
                for f in frames[1:]:
                    writer.add_image(f"color_pred_{f}_{s}/{j}", outputs[("color", f, s)][j].detach().cpu(), self.step)
                writer.add_image(f"disp_{s}/{j}", utils.colormap_tensor(outputs[("disp", s)][j]), self.step)
                if ("automask", s) in outputs:
                    writer.add_image(f"automask_{s}/{j}", outputs[("automask", s)][j].float().cpu(), self.step)
            if ("seg_logits", 0) in outputs:
                prediction = outputs[("seg_logits", 0)][j].argmax(0).cpu().numpy()
                writer.add_image(f"seg_pred/{j}", colourise(prediction), self.step, dataformats="HWC")
            if ("seg", 0, 0) in inputs:
                target = inputs[("seg", 0, 0)][j, 0].cpu().numpy()
                writer.add_image(f"seg_target/{j}", colourise(target), self.step, dataformats="HWC")
            for level in opts.sgt_levels:
                if ("sgt_boundary", level) in outputs:
                    boundary = outputs[("sgt_boundary", level)][j].float().cpu()
                    writer.add_image(f"sgt_boundary_{level}/{j}", boundary, self.step)

    def save_model(self, best: bool = False) -> str:
        """Write ``models/weights_{epoch}`` (``_best`` when the validation loss is the lowest so far)."""
        name = f"weights_{self.epoch}" + ("_best" if best else "")
        folder = os.path.join(self.log_path, "models", name)
        with self.writing(folder):
            model_folder.save_model_folder(folder, self.models, self.opts, self.optimizer, self.epoch, self.step)
        self.last_model_folder = folder
        logger.info("saved %s", folder)
        return folder

