"""``run_segment``: set a segmentation fine-tune up, resume it, and hand it to the run engine."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from timm.optim import create_optimizer_v2
from timm.scheduler import PolyLRScheduler
from torch import nn

from hpm.engine import distributed as D
from hpm.engine.ddp import wrap_ddp
from hpm.engine.logger import LOG
from hpm.engine.precision import Resolved
from hpm.engine.supervised import run_supervised
from hpm.engine.supervised_setup import grad_scaler, require_a_step, resumable_loader, seed_everything, setup_record
from hpm.eval.segment.data import SegmentationDataset, SegmentData
from hpm.eval.segment.model import build_segmenter
from hpm.eval.segment.recipes import IGNORE_INDEX, SegmentConfig
from hpm.eval.segment.resume import resume
from hpm.eval.segment.task import Segmenting
from hpm.models.mae import MaskedAutoencoder


def run_segment(
    encoder: MaskedAutoencoder,
    data: SegmentData,
    cfg: SegmentConfig,
    device: torch.device,
    precision: Resolved,
    dist: D.DistInfo | None = None,
    progress: bool = True,
    run_dir: str | Path | None = None,
    source: dict[str, Any] | None = None,
) -> tuple[dict[str, Any], nn.Module]:
    """Fine-tune ``encoder`` for segmentation on ``data.train`` and score ``data.val``; resumable.

    Args:
        encoder: The pre-trained (or randomly initialised) masked autoencoder at the crop size; not modified.
        data: The checked training and validation pairs.
        cfg: The recipe.
        device: Where to train.
        precision: Autocast precision (fp16 uses a gradient scaler).
        dist: This process's place in a torchrun job (default: a single process).
        progress: Show a progress bar (rank 0).
        run_dir: The segmentation directory (locked while it runs): checkpoints go to
            ``run_dir/checkpoints/`` and a run found there is resumed, or, if finished, returned
            without training. None: no checkpoints, no resumption.
        source: What is fine-tuned (the encoder, the data), JSON types; a resumed run must have the
            same, with the same recipe, process count and precision.

    Returns:
        ``(result, model)``: ``result`` holds ``miou``, ``pixel_acc``, ``per_class_iou``, ``history``
        (per evaluated epoch), ``final_loss``, ``steps``, ``recipe``, ...; ``model`` the Segmenter.

    Raises:
        NonFiniteLossError: The loss became NaN or infinite.
        ConfigError: Too few training images for one step, or ``run_dir`` holds another run.
        RunDirInUse: Another process trains in ``run_dir``.
        Preempted: A stop signal arrived (with ``run_dir``); the last finished step was checkpointed.
    """
    dist = dist or D.DistInfo()
    run_dir = Path(run_dir) if run_dir is not None else None
    run = run_supervised(lambda: setup(encoder, data, cfg, device, precision, dist, run_dir, source or {}),
                         resume, _log_header, run_dir, dist, progress)
    return run.result, run.model


def setup(
    encoder: MaskedAutoencoder, data: SegmentData, cfg: SegmentConfig, device: torch.device, precision: Resolved,
    dist: D.DistInfo, run_dir: Path | None, source: dict[str, Any],
) -> Segmenting:
    """Seed, then build the model, data, optimizer (AdamW, layer-wise lr decay), poly schedule and
    loss (in this order: the RNG draws of an uninterrupted run must not move)."""
    seed_everything(cfg.seed + dist.rank)
    model = build_segmenter(encoder, cfg).to(device)
    train_set = SegmentationDataset(data.train, cfg, data, train=True)
    sampler, loader = resumable_loader(train_set, cfg.batch_size, cfg.num_workers, dist, cfg.seed)
    require_a_step(loader, len(data.train), cfg.batch_size, dist)
    steps_per_epoch, epochs = cfg.step_plan(len(loader))
    optimizer = create_optimizer_v2(model, opt="adamw", lr=cfg.lr, weight_decay=cfg.weight_decay,
                                    layer_decay=cfg.layer_decay)
    schedule = PolyLRScheduler(optimizer, t_initial=steps_per_epoch * epochs, power=cfg.poly_power, lr_min=cfg.min_lr,
                               warmup_t=cfg.warmup_iters, warmup_lr_init=cfg.lr * 1e-6, t_in_epochs=False)
    scaler = grad_scaler(precision, device)
    setup_json = setup_record(source, dist, precision)
    return Segmenting(
        cfg, data, device, precision, dist, model, wrap_ddp(model, device, dist), sampler, loader,
        SegmentationDataset(data.val, cfg, data, train=False), optimizer, schedule, scaler,
        nn.CrossEntropyLoss(ignore_index=IGNORE_INDEX), steps_per_epoch, epochs, run_dir, setup_json,
    )


def _log_header(run: Segmenting) -> None:
    cfg, data = run.cfg, run.data
    LOG.info(
        "segmentation fine-tune (%s head): %d train / %d val images, %d classes | batch %d x %d | lr %.3g, "
        "layer decay %.2f, drop path %.2f | %d steps/epoch, %d epochs | %s, %s",
        cfg.head, len(data.train), len(data.val), cfg.num_classes, cfg.batch_size, run.dist.world_size, cfg.lr,
        cfg.layer_decay, cfg.drop_path, run.steps_per_epoch, run.epochs, run.device, run.precision,
    )
