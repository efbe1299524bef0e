"""Video fine-tuning as a task of the run engine: the image fine-tune's step (forward, backward,
clip, step per batch of clips) with a multi-view evaluation and checkpoints of their own kind."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import torch

from hpm.engine import distributed as D
from hpm.engine import supervised
from hpm.engine.logger import LOG
from hpm.engine.loop import write_checkpoint
from hpm.eval.finetune import check_same_finetune
from hpm.eval.finetune.task import Finetuning
from hpm.eval.video.classifier import evaluate_views

KIND = "video_finetune"  # the checkpoints' kind: an image fine-tune directory is not resumed as one


@dataclass
class VideoFinetuning(Finetuning):
    """The video fine-tune: :class:`~hpm.eval.finetune.task.Finetuning`'s steps on clips
    ``[B, C, T, H, W]`` (no mixup), ``test_set`` the test views
    (:class:`~hpm.eval.video.views.ClipViews`), top-1 on the softmax scores averaged over them."""

    what: ClassVar[str] = "fine-tune"

    def end_of_epoch(self, epoch: int) -> None:
        """Evaluate every ``eval_every`` epochs and after the last one, then checkpoint (the last
        epoch's checkpoint holds the result)."""
        cfg = self.cfg
        last = epoch + 1 == cfg.epochs
        if last or (cfg.eval_every and (epoch + 1) % cfg.eval_every == 0):
            top1, seen = evaluate_views(self.model, self.test_set, cfg.eval_batch_size, self.device, self.precision)
            mean_loss = torch.tensor([self.loss_sum / max(self.loss_n, 1)], device=self.device)  # [1]
            train_loss = float(D.all_reduce_mean(mean_loss)[0])
            self.history.append({"epoch": epoch + 1, "train_loss": train_loss, "top1": top1})
            LOG.info("video fine-tune epoch %d/%d: train loss %.4f, test top-1 %.2f%% (%d videos, %d views each)",
                     epoch + 1, cfg.epochs, train_loss, top1, seen, self.data.test_clips * self.data.test_crops)
            self.loss_sum, self.loss_n = 0.0, 0
        if last:
            self.result = self.summary()
        if self.run_dir is not None:
            write_checkpoint(self)

    def summary(self) -> dict[str, Any]:
        """The image fine-tune's result plus the test views."""
        return {**super().summary(), "views": self.data.describe_views()}

    def save(self, ranks: list[Any]) -> Path:
        """Rank 0: the classifier, optimizer, history, every rank's state and the recipe."""
        return supervised.save(self, KIND, ranks, classifier=self.classifier)


def resume(run: VideoFinetuning) -> None:
    """Restore ``run`` from the newest checkpoint of its directory, if it holds this fine-tune
    (same recipe, encoder, data, label kind, views, process count and precision)."""
    supervised.resume(run, KIND, "video fine-tune", lambda run_dir, state: check_same_finetune(
        run_dir, state, run.cfg, run.setup))
