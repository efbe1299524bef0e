"""The optimization of a classification fine-tune (images or clips): steps per epoch, the lr
scaled by the effective batch, AdamW with timm's layer-wise lr decay, and the warm-up + cosine
schedule."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol

import torch
from timm.optim import create_optimizer_v2
from torch import nn

from hpm.engine import distributed as D
from hpm.engine.optim import build_lr_schedule
from hpm.errors import ConfigError


class ClassifierRecipe(Protocol):
    """The recipe fields the optimization reads (FinetuneConfig and VideoFinetuneConfig have them)."""

    batch_size: int
    accum_steps: int
    blr: float
    weight_decay: float
    layer_decay: float
    epochs: int
    warmup_epochs: float
    min_lr: float


@dataclass
class ClassifierOptim:
    """What :func:`classifier_optim` builds."""

    steps_per_epoch: int
    eff_batch: int  # samples per optimizer step over every process
    lr: float  # blr x eff_batch / 256
    optimizer: torch.optim.Optimizer
    schedule: Any  # per-step lr schedule (hpm.engine.optim.build_lr_schedule)


def classifier_optim(model: nn.Module, cfg: ClassifierRecipe, batches: int, dist: D.DistInfo,
                     too_few: str) -> ClassifierOptim:
    """The optimizer and schedule of ``model`` for ``batches`` loader batches per epoch.

    Raises:
        ConfigError: The batches give no optimizer step; ``too_few`` starts the message (e.g.
            "1 000 training clips") and the rest says what to lower.
    """
    steps_per_epoch = batches // cfg.accum_steps
    if steps_per_epoch < 1:
        raise ConfigError(f"{too_few} give no optimizer step of {cfg.batch_size} x {cfg.accum_steps} x "
                          f"{dist.world_size}; lower batch_size or accum_steps, or use more data (train_subset)")
    eff_batch = cfg.batch_size * cfg.accum_steps * dist.world_size
    lr = cfg.blr * eff_batch / 256
    optimizer = create_optimizer_v2(model, opt="adamw", lr=lr, weight_decay=cfg.weight_decay, layer_decay=cfg.layer_decay)
    schedule = build_lr_schedule(optimizer, steps_per_epoch * cfg.epochs, round(cfg.warmup_epochs * steps_per_epoch),
                                 cfg.min_lr)
    return ClassifierOptim(steps_per_epoch, eff_batch, lr, optimizer, schedule)
