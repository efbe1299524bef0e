"""``run_finetune``: set a fine-tune up, resume it, and hand it to the run engine."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from timm.data import Mixup
from timm.loss import LabelSmoothingCrossEntropy, SoftTargetCrossEntropy
from torch import nn

from hpm.data import collate_skip_none
from hpm.engine import distributed as D
from hpm.engine.ddp import wrap_ddp
from hpm.engine.logger import LOG
from hpm.engine.precision import Resolved
from hpm.engine.supervised import run_supervised
from hpm.engine.supervised_setup import grad_scaler, resumable_loader, seed_everything, setup_record
from hpm.eval.finetune.optim import classifier_optim
from hpm.eval.data import EvalData
from hpm.eval.finetune.augment import PilDataset, seed_worker, train_transform
from hpm.eval.finetune.classifier import build_classifier, classifier_spec
from hpm.eval.finetune.resume import resume
from hpm.eval.finetune.task import Finetuning
from hpm.eval.recipes import FinetuneConfig, fit_schedule
from hpm.models.mae import MaskedAutoencoder


def run_finetune(
    encoder: MaskedAutoencoder,
    data: EvalData,
    cfg: FinetuneConfig,
    device: torch.device,
    precision: Resolved,
    dist: D.DistInfo | None = None,
    progress: bool = True,
    run_dir: str | Path | None = None,
    source: dict[str, Any] | None = None,
) -> tuple[dict[str, Any], nn.Module]:
    """Fine-tune ``encoder`` on ``data.train`` and report top-1 on ``data.test``; resumable.

    Args:
        encoder: The pre-trained (or randomly initialised) masked autoencoder; not modified.
        data: Train and test splits (their subsets already taken).
        cfg: The recipe (with ``images_seen``, its schedule is stretched to ``data.train``:
            :func:`~hpm.eval.recipes.fit_schedule`).
        device: Where to train.
        precision: Autocast precision (fp16 uses a gradient scaler).
        dist: This process's place in a torchrun job (default: a single process).
        progress: Show a progress bar (rank 0).
        run_dir: The fine-tune directory (locked while it runs): checkpoints go to ``run_dir/checkpoints/``
            and a fine-tune found there is resumed, or, if finished, returned without training.
            None: no checkpoints, no resumption, stop signals keep their default action.
        source: What is fine-tuned (the encoder, the data), JSON types; a resumed fine-tune
            must have the same, with the same recipe, process count and precision.

    Returns:
        ``(result, model)``: ``result`` holds ``top1``, ``history`` (per evaluated epoch),
        ``final_loss``, ``lr``, ``effective_batch``, ``steps``, ``train_s`` (over all
        invocations); ``model`` is the fine-tuned timm classifier (unwrapped).

    Raises:
        NonFiniteLossError: The loss became NaN or infinite.
        ConfigError: Too few training images for one step, or ``run_dir`` holds another fine-tune.
        RunDirInUse: Another process fine-tunes in ``run_dir``.
        Preempted: A stop signal arrived (with ``run_dir``); the last finished step was checkpointed.
    """
    dist = dist or D.DistInfo()
    cfg = fit_schedule(cfg, len(data.train))  # a recipe with images_seen: its epochs for these images
    run_dir = Path(run_dir) if run_dir is not None else None
    run = run_supervised(lambda: setup(encoder, data, cfg, device, precision, dist, run_dir, source or {}),
                         resume, _log_header, run_dir, dist, progress)
    return run.result, run.model


def setup(
    encoder: MaskedAutoencoder, data: EvalData, cfg: FinetuneConfig, device: torch.device, precision: Resolved,
    dist: D.DistInfo, run_dir: Path | None, source: dict[str, Any],
) -> Finetuning:
    """Seed, then build the classifier, data, optimizer, schedule, mixup and loss (in this order:
    the RNG draws of an uninterrupted fine-tune must not move)."""
    seed_everything(cfg.seed + dist.rank)
    model = build_classifier(encoder, data.num_classes, cfg, device)
    train_set = PilDataset(data.train.base, train_transform(data, cfg), data.img_size if data.fit == "pad" else None)
    sampler, loader = resumable_loader(train_set, cfg.batch_size, cfg.num_workers, dist, cfg.seed,
                                       collate_fn=collate_skip_none, worker_init_fn=seed_worker)
    opt = classifier_optim(model, cfg, len(loader), dist, f"{len(data.train)} training images")
    scaler = grad_scaler(precision, device)
    mixup, loss_fn = _mixup_and_loss(cfg, data.num_classes)
    setup_json = setup_record(source, dist, precision)
    return Finetuning(
        cfg, data, device, precision, dist, model, wrap_ddp(model, device, dist), sampler, loader,
        data.test.with_transform(data.transform()), opt.optimizer, opt.schedule, scaler, mixup, loss_fn,
        opt.steps_per_epoch, opt.lr, opt.eff_batch, run_dir, setup_json,
        classifier_spec(encoder, data, cfg.global_pool),
    )


def _mixup_and_loss(cfg: FinetuneConfig, num_classes: int) -> tuple[Mixup | None, nn.Module]:
    """timm's mixup / cutmix (or None) and the loss that fits it."""
    if cfg.uses_mixup:
        mixup = Mixup(
            mixup_alpha=cfg.mixup, cutmix_alpha=cfg.cutmix, prob=cfg.mixup_prob, switch_prob=cfg.mixup_switch_prob,
            mode="batch", label_smoothing=cfg.smoothing, num_classes=num_classes,
        )
        return mixup, SoftTargetCrossEntropy()
    if cfg.smoothing > 0:
        return None, LabelSmoothingCrossEntropy(cfg.smoothing)
    return None, nn.CrossEntropyLoss()


def _log_header(run: Finetuning) -> None:
    cfg, data = run.cfg, run.data
    LOG.info(
        "fine-tune: %d train / %d test images, %d classes | effective batch %d = %d x %d accum x %d | lr %.3g "
        "(blr %.3g), layer decay %.2f, drop path %.2f | %d steps/epoch, %d epochs | %s, %s",
        len(data.train), len(data.test), data.num_classes, run.eff_batch, cfg.batch_size, cfg.accum_steps,
        run.dist.world_size, run.lr, cfg.blr, cfg.layer_decay, cfg.drop_path, run.steps_per_epoch, cfg.epochs,
        run.device, run.precision,
    )
