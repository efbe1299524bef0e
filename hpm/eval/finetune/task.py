"""Fine-tuning as a task of the run engine: mixup, forward, backward, clip and step per batch.

:class:`Finetuning` holds what :func:`~hpm.eval.finetune.run.setup` built and gives
:mod:`hpm.engine.loop` the pieces of the :class:`~hpm.engine.loop.Task` protocol.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import torch
from timm.data import Mixup
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
from hpm.eval.data import EvalData
from hpm.eval.finetune.classifier import evaluate_classifier
from hpm.eval.recipes import FinetuneConfig



@dataclass
class Finetuning(supervised.SupervisedRun):
    """The fine-tuning task: what the loop needs and where it stands."""

    cfg: FinetuneConfig
    data: EvalData
    device: torch.device
    precision: Resolved
    dist: D.DistInfo
    model: nn.Module  # the timm classifier (unwrapped)
    ddp: DistributedDataParallel | None
    sampler: ResumableDistributedSampler
    loader: DataLoader
    test_set: Dataset
    optimizer: torch.optim.Optimizer
    schedule: Any  # timm CosineLRScheduler, stepped per optimizer step
    scaler: torch.amp.GradScaler | None
    mixup: Mixup | None
    loss_fn: nn.Module
    steps_per_epoch: int
    lr: float
    eff_batch: int
    run_dir: Path | None  # the fine-tune directory (None: no checkpoints)
    setup: dict[str, Any]  # what is fine-tuned, and how (compared on resume; JSON types)
    classifier: dict[str, Any]  # classifier_spec: how timm rebuilds the classifier
    what: ClassVar[str] = "fine-tune"

    @property
    def epochs(self) -> int:
        return self.cfg.epochs

    def start_epoch(self, epoch: int, first: int) -> Iterator[Any]:
        """The epoch's batches after its first ``first`` steps (:func:`hpm.engine.supervised.epoch_batches`)."""
        return supervised.epoch_batches(self, epoch, first, self.cfg.accum_steps * self.cfg.batch_size)

    def train_step(self, batches: Iterator[Any], epoch: int, bar: tqdm) -> None:
        """One optimizer step: ``accum_steps`` micro-batches (mixup, forward, backward), then
        clip, step and zero the gradients."""
        cfg = self.cfg
        self.schedule.step_update(self.step)
        for micro in range(cfg.accum_steps):
            self._micro_step(next(batches), sync=self.ddp is None or micro == cfg.accum_steps - 1)
        supervised.optimizer_step(self, "fine-tuning loss", epoch, bar)

    def _micro_step(self, batch: Any, sync: bool) -> None:
        """Forward and backward of one micro-batch (gradients synchronised when ``sync``)."""
        images, labels, _ = batch  # [B, C, H, W] float, [B] int64
        if images.shape[0] < 2:
            return  # every image of the batch was unreadable
        images, labels = images.to(self.device, non_blocking=True), labels.to(self.device, non_blocking=True)
        if self.mixup is not None:
            if images.shape[0] % 2:  # a skipped unreadable image left an odd batch
                images, labels = images[:-1], labels[:-1]
            images, targets = self.mixup(images, labels)  # targets: [B, num_classes] soft
        else:
            targets = labels
        accum = self.cfg.accum_steps
        with (nullcontext() if sync else self.ddp.no_sync()), autocast(self.device, self.precision):  # type: ignore[union-attr]
            loss = self.loss_fn((self.ddp or self.model)(images), targets) / accum  # logits [B, num_classes]
            (self.scaler.scale(loss) if self.scaler else loss).backward()
        self.loss_sum += float(loss.detach()) * accum
        self.loss_n += 1

    def end_of_epoch(self, epoch: int) -> None:
        """Evaluate every ``eval_every`` epochs and after the last one, then checkpoint (the last
        epoch's checkpoint holds the result)."""
        cfg = self.cfg
        last = epoch + 1 == cfg.epochs
        if last or (cfg.eval_every and (epoch + 1) % cfg.eval_every == 0):
            top1, seen = evaluate_classifier(self.model, self.test_set, cfg.eval_batch_size, self.device, self.precision)
            mean_loss = torch.tensor([self.loss_sum / max(self.loss_n, 1)], device=self.device)  # [1]
            train_loss = float(D.all_reduce_mean(mean_loss)[0])
            self.history.append({"epoch": epoch + 1, "train_loss": train_loss, "top1": top1})
            LOG.info("fine-tune epoch %d/%d: train loss %.4f, test top-1 %.2f%% (%d images)",
                     epoch + 1, cfg.epochs, train_loss, top1, seen)
            self.loss_sum, self.loss_n = 0.0, 0
        if last:
            self.result = self.summary()
        if self.run_dir is not None:
            write_checkpoint(self)

    def check_finite(self) -> None:
        """Nothing to do: :meth:`train_step` checks the loss of every step."""

    def summary(self) -> dict[str, Any]:
        """The fine-tune's result (after its last epoch)."""
        return {
            "top1": self.history[-1]["top1"],
            "final_loss": self.history[-1]["train_loss"],
            "history": self.history,
            "lr": self.lr,
            "effective_batch": self.eff_batch,
            "steps": self.step,
            "num_train": len(self.data.train),
            "num_test": len(self.data.test),
            "train_s": round(self.clock.seconds(), 3),
            "recipe": self.cfg.model_dump(mode="json"),
            "world_size": self.dist.world_size,
            "precision": self.precision,
        }

    def rank_state(self) -> dict[str, Any]:
        """This rank's RNG states and running loss sums."""
        return supervised.rank_state(self)

    def save(self, ranks: list[Any]) -> Path:
        """Rank 0: the classifier, optimizer, grad scaler, history, every rank's state, the recipe
        and how timm rebuilds the classifier."""
        return supervised.save(self, "finetune", ranks, classifier=self.classifier)
