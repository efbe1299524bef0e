"""Pre-training as a task of the run engine: masks -> forward/backward -> optimizer and EMA step.

:class:`Pretraining` holds what :func:`hpm.engine.train.setup` built and gives
:mod:`hpm.engine.loop` the pieces of the :class:`~hpm.engine.loop.Task` protocol; the loop,
checkpoint timing, stop signals and faults are the engine's.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch.utils.data import DataLoader
from tqdm import tqdm

from hpm.config import Config, config_to_dict
from hpm.data import GlobalBatchSampler
from hpm.data.build import PretrainData
from hpm.engine import distributed as D
from hpm.engine.checkpoint import rng_state, save_checkpoint
from hpm.engine.clock import TrainClock
from hpm.engine.ema import ema_decay_at
from hpm.engine.logger import MetricsLogger
from hpm.engine.loop import write_checkpoint
from hpm.engine.precision import Resolved
from hpm.engine.step import PretrainStep
from hpm.engine.step_log import StepLog
from hpm.errors import DataError
from hpm.masking import alpha_at, num_hard_patches
from hpm.models.mae import MaskedAutoencoder

# Called after each epoch's checkpoint (rank 0 only): (student, epoch, step) -> a record to log, or None.
EpochHook = Callable[[MaskedAutoencoder, int, int], "dict[str, Any] | None"]


@dataclass
class Pretraining:
    """The pre-training task: what the loop needs, built by :func:`~hpm.engine.train.setup`."""

    cfg: Config
    run_dir: Path
    device: torch.device
    precision: Resolved
    dist: D.DistInfo
    data: PretrainData
    sampler: GlobalBatchSampler
    loader: DataLoader
    model: MaskedAutoencoder
    optimizer: torch.optim.Optimizer
    schedule: Any  # timm CosineLRScheduler, stepped per optimizer step
    step_fn: PretrainStep
    metrics: MetricsLogger
    steps_per_epoch: int
    step: int  # optimizer steps done (the resume point at first)
    clock: TrainClock
    last_ckpt: Path | None
    on_epoch_end: EpochHook | None = None
    last_loss: float | None = None
    what: str = "training"
    last_ckpt_step: int | None = None
    log: StepLog = field(init=False)

    def __post_init__(self) -> None:
        self.log = StepLog(self)
        self.last_ckpt_step = self.step if self.last_ckpt is not None else None

    @property
    def epochs(self) -> int:
        return self.cfg.train.epochs

    @property
    def ckpt_every_steps(self) -> int:
        return self.cfg.train.ckpt_every_steps or 0

    @property
    def total_steps(self) -> int:
        return self.steps_per_epoch * self.epochs

    def start_epoch(self, epoch: int, first: int) -> Iterator[Any]:
        """The epoch's batches after the ``first`` optimizer steps already done."""
        self.model.train()
        self.sampler.set_epoch(epoch)
        self.sampler.set_start(first * self.cfg.train.accum_steps)
        return iter(self.loader)

    def train_step(self, batches: Iterator[Any], epoch: int, bar: tqdm) -> None:
        """Masks, forward/backward over the micro-batches, optimizer and EMA step, logging."""
        cfg, tc, step_fn, log = self.cfg, self.cfg.train, self.step_fn, self.log
        step = self.step
        self.schedule.step_update(step)
        alpha = alpha_at(cfg.mask, epoch, step, tc.epochs, self.total_steps)
        num_hard = num_hard_patches(step_fn.num_mask, alpha) if step_fn.uses_teacher else 0
        log_now = (step + 1) % tc.log_every == 0 or step + 1 == self.total_steps
        for micro in range(tc.accum_steps):
            images, _, dropped = next(batches)
            log.skip(dropped)
            if images.shape[0] == 0:
                if self.dist.enabled:
                    raise DataError("a whole batch of images was unreadable; fix or remove the corrupt files")
                continue
            images = images.to(self.device, non_blocking=True)  # [B, C, H, W]
            masks, scores = step_fn.generate_mask(images, num_hard)
            out = step_fn.forward_backward(
                images, masks, scores, num_hard,
                loss_scale=1.0 / tc.accum_steps,
                want_metrics=log_now and micro == tc.accum_steps - 1,
                sync_grads=micro == tc.accum_steps - 1,
            )
            log.add(out, step, images.shape[0] * self.dist.world_size)
        step_fn.optimizer_step(ema_decay_at(cfg.ema, step / self.steps_per_epoch, tc.epochs))
        self.step += 1
        if log_now:
            log.write(epoch, out, alpha, num_hard, bar)

    def end_of_epoch(self, epoch: int) -> None:
        """The epoch's checkpoint, then the caller's evaluation every ``eval.knn_every_epochs``."""
        tc = self.cfg.train
        if (epoch + 1) % tc.ckpt_every_epochs == 0 or epoch + 1 == tc.epochs or epoch + 1 in tc.keep_epochs:
            write_checkpoint(self)
        every = self.cfg.eval.knn_every_epochs
        if self.on_epoch_end is None or not every or (epoch + 1) % every or epoch + 1 >= tc.epochs:
            return
        started = time.perf_counter()
        if self.dist.is_main:
            record = self.on_epoch_end(self.model, epoch, self.step)
            if record is not None:
                self.metrics.log(record)
        D.barrier()
        spent = time.perf_counter() - started
        self.clock.excluded += spent
        self.log.window_start += spent  # images/s counts training only

    def check_finite(self) -> None:
        self.log.check_finite()

    def rank_state(self) -> dict[str, Any]:
        """This rank's partial logging window."""
        return self.log.state_dict()

    def save(self, ranks: list[Any]) -> Path:
        """Rank 0: weights, teacher, optimizer, RNG, config and every rank's logging window."""
        state = {
            "step_state": self.step_fn.state_dict(),
            "rng": rng_state(),
            "config": config_to_dict(self.cfg),
            "epoch": self.step // self.steps_per_epoch,
            "train_time_s": self.clock.seconds(),
            "log_windows": ranks,  # per rank
        }
        kept = {e * self.steps_per_epoch for e in self.cfg.train.keep_epochs}  # train.keep_epochs: never pruned
        return save_checkpoint(self.run_dir, self.step, self.model, self.step_fn.teacher, state,
                               self.cfg.train.keep_ckpts, kept)
