"""Segmentation fine-tuning as a task of the run engine: forward, per-pixel loss, backward, step.

:class:`Segmenting` holds what :func:`~hpm.eval.segment.run.setup` built and gives
:mod:`hpm.engine.loop` the pieces of the :class:`~hpm.engine.loop.Task` protocol.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import torch
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader, Dataset
from tqdm import tqdm

from hpm.data.distributed_sampler import ResumableDistributedSampler
from hpm.engine import distributed as D
from hpm.engine import supervised
from hpm.engine.logger import LOG
from hpm.engine.loop import write_checkpoint
from hpm.engine.precision import Resolved, autocast
from hpm.eval.segment.data import SegmentData
from hpm.eval.segment.inference import evaluate_segmenter
from hpm.eval.segment.recipes import SegmentConfig



@dataclass
class Segmenting(supervised.SupervisedRun):
    """The segmentation task: what the loop needs and where it stands."""

    cfg: SegmentConfig
    data: SegmentData
    device: torch.device
    precision: Resolved
    dist: D.DistInfo
    model: nn.Module  # the Segmenter (unwrapped)
    ddp: DistributedDataParallel | None
    sampler: ResumableDistributedSampler
    loader: DataLoader
    val_set: Dataset
    optimizer: torch.optim.Optimizer
    schedule: Any  # timm PolyLRScheduler, stepped per optimizer step
    scaler: torch.amp.GradScaler | None
    loss_fn: nn.Module
    steps_per_epoch: int
    epochs: int
    run_dir: Path | None  # the segmentation directory (None: no checkpoints)
    setup: dict[str, Any]  # what is fine-tuned, and how (compared on resume; JSON types)
    what: ClassVar[str] = "segmentation fine-tune"

    def start_epoch(self, epoch: int, first: int) -> Iterator[Any]:
        """The epoch's batches after its first ``first`` steps (:func:`hpm.engine.supervised.epoch_batches`)."""
        return supervised.epoch_batches(self, epoch, first, self.cfg.batch_size)

    def train_step(self, batches: Iterator[Any], epoch: int, bar: tqdm) -> None:
        """One optimizer step: forward, per-pixel cross-entropy (ignoring 255), backward, clip, step."""
        self.schedule.step_update(self.step)
        images, labels = next(batches)  # [B, C, H, W] float, [B, H, W] int64
        images, labels = images.to(self.device, non_blocking=True), labels.to(self.device, non_blocking=True)
        with autocast(self.device, self.precision):
            loss = self.loss_fn((self.ddp or self.model)(images).float(), labels)  # logits [B, K, H, W]
        supervised.backward(self, loss)
        supervised.optimizer_step(self, "segmentation loss", epoch, bar)

    def end_of_epoch(self, epoch: int) -> None:
        """Evaluate every ``eval_every`` epochs and after the last one, then checkpoint (the last
        epoch's checkpoint holds the result)."""
        cfg = self.cfg
        last = epoch + 1 == self.epochs
        if last or (cfg.eval_every and (epoch + 1) % cfg.eval_every == 0):
            scores = evaluate_segmenter(self.model, self.val_set, cfg.num_classes, cfg.crop_size, cfg.stride(),
                                        self.device, self.precision, self.dist)
            mean_loss = torch.tensor([self.loss_sum / max(self.loss_n, 1)], device=self.device)  # [1]
            train_loss = float(D.all_reduce_mean(mean_loss)[0])
            self.history.append({"epoch": epoch + 1, "train_loss": train_loss, "miou": scores["miou"],
                                 "pixel_acc": scores["pixel_acc"]})
            LOG.info("segmentation epoch %d/%d: train loss %.4f, mIoU %.2f%%, pixel accuracy %.2f%%",
                     epoch + 1, self.epochs, train_loss, scores["miou"], scores["pixel_acc"])
            self.loss_sum, self.loss_n = 0.0, 0
            if last:
                self.result = self.summary(scores)
        if self.run_dir is not None:
            write_checkpoint(self)

    def check_finite(self) -> None:
        """Nothing to do: :meth:`train_step` checks the loss of every step."""

    def summary(self, scores: dict[str, Any]) -> dict[str, Any]:
        """The run's result (after its last epoch): the last scores, the history and the recipe."""
        return {
            **scores,
            "final_loss": self.history[-1]["train_loss"],
            "history": self.history,
            "steps": self.step,
            "epochs": self.epochs,
            "effective_batch": self.cfg.batch_size * self.dist.world_size,
            "num_train": len(self.data.train),
            "num_val": len(self.data.val),
            "train_s": round(self.clock.seconds(), 3),
            "recipe": self.cfg.model_dump(mode="json"),
            "world_size": self.dist.world_size,
            "precision": self.precision,
        }

    def rank_state(self) -> dict[str, Any]:
        """This rank's RNG states and running loss sums."""
        return supervised.rank_state(self)

    def save(self, ranks: list[Any]) -> Path:
        """Rank 0: the model, optimizer, grad scaler, history, every rank's state and the recipe."""
        return supervised.save(self, "segment", ranks)
