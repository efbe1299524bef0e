"""Detection fine-tuning as a task of the run engine: Mask R-CNN's losses, backward, step.

:class:`Detecting` holds what :func:`~hpm.eval.detect.run.setup` built and gives
:mod:`hpm.engine.loop` the pieces of the :class:`~hpm.engine.loop.Task` protocol.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import torch
from pycocotools.coco import COCO
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader, Dataset
from tqdm import tqdm

from hpm.data.distributed_sampler import ResumableDistributedSampler
from hpm.engine import distributed as D
from hpm.engine import supervised
from hpm.engine.integrity import write_durable
from hpm.engine.logger import LOG
from hpm.engine.loop import write_checkpoint
from hpm.engine.precision import Resolved, autocast
from hpm.eval.detect.coco_eval import coco_scores, predict
from hpm.eval.detect.data import DetectData
from hpm.eval.detect.recipes import DetectConfig

PREDICTIONS = "predictions.json"  # the last evaluation's COCO results, in the detection directory


@dataclass
class Detecting(supervised.SupervisedRun):
    """The detection task: what the loop needs and where it stands."""

    cfg: DetectConfig
    data: DetectData
    device: torch.device
    precision: Resolved
    dist: D.DistInfo
    model: nn.Module  # the Detector (unwrapped)
    ddp: DistributedDataParallel | None
    sampler: ResumableDistributedSampler
    loader: DataLoader
    val_set: Dataset
    ground_truth: COCO  # the validation split
    optimizer: torch.optim.Optimizer
    schedule: Any  # timm MultiStepLRScheduler, stepped per optimizer step
    scaler: torch.amp.GradScaler | None
    steps_per_epoch: int
    epochs: int
    run_dir: Path | None  # the detection directory (None: no checkpoints)
    setup: dict[str, Any]  # what is fine-tuned, and how (compared on resume; JSON types)
    what: ClassVar[str] = "detection fine-tune"

    def start_epoch(self, epoch: int, first: int) -> Iterator[Any]:
        """The epoch's batches after its first ``first`` steps (:func:`hpm.engine.supervised.epoch_batches`)."""
        return supervised.epoch_batches(self, epoch, first, self.cfg.batch_size)

    def train_step(self, batches: Iterator[Any], epoch: int, bar: tqdm) -> None:
        """One optimizer step: Mask R-CNN's summed losses (RPN, box, class, mask), backward, clip, step."""
        self.schedule.step_update(self.step)
        images, targets = next(batches)  # lists: [C, S, S] float; boxes [K, 4], labels [K], masks [K, S, S]
        images = [image.to(self.device, non_blocking=True) for image in images]
        targets = [{k: v.to(self.device, non_blocking=True) for k, v in t.items()} for t in targets]
        with autocast(self.device, self.precision):
            losses = (self.ddp or self.model)(images, targets)
        loss = sum(v.float() for v in losses.values())
        supervised.backward(self, loss)
        supervised.optimizer_step(self, "detection loss", epoch, bar)

    def end_of_epoch(self, epoch: int) -> None:
        """Evaluate every ``eval_every`` epochs and after the last one (writing its predictions to the
        detection directory), then checkpoint (the last epoch's checkpoint holds the result)."""
        cfg = self.cfg
        last = epoch + 1 == self.epochs
        if last or (cfg.eval_every and (epoch + 1) % cfg.eval_every == 0):
            results = predict(self.model, self.val_set, self.data.cat_ids, self.device, self.precision, self.dist)
            scores = coco_scores(self.ground_truth, results) if self.dist.is_main else {}
            scores = D.all_gather_objects(scores)[0]
            mean_loss = torch.tensor([self.loss_sum / max(self.loss_n, 1)], device=self.device)  # [1]
            train_loss = float(D.all_reduce_mean(mean_loss)[0])
            self.history.append({"epoch": epoch + 1, "train_loss": train_loss, "box_ap": scores["box"]["AP"],
                                 "mask_ap": scores["mask"]["AP"]})
            LOG.info("detection epoch %d/%d: train loss %.4f, box AP %.3f, mask AP %.3f", epoch + 1, self.epochs,
                     train_loss, scores["box"]["AP"], scores["mask"]["AP"])
            self.loss_sum, self.loss_n = 0.0, 0
            if last:
                if self.run_dir is not None and self.dist.is_main:
                    write_durable(self.run_dir / PREDICTIONS, json.dumps(results).encode())
                self.result = self.summary(scores, len(results))
        if self.run_dir is not None:
            write_checkpoint(self)

    def check_finite(self) -> None:
        """Nothing to do: :meth:`train_step` checks the loss of every step."""

    def summary(self, scores: dict[str, Any], detections: int) -> dict[str, Any]:
        """The run's result (after its last epoch): the last scores, the history and the recipe."""
        return {
            **scores,
            "detections": detections,
            "final_loss": self.history[-1]["train_loss"],
            "history": self.history,
            "steps": self.step,
            "epochs": self.epochs,
            "effective_batch": self.cfg.batch_size * self.dist.world_size,
            "num_train": len(self.data.train.images),
            "num_val": len(self.data.val.images),
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
        return supervised.save(self, "detect", ranks)
