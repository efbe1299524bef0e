"""``run_detect``: set a detection fine-tune up, resume it, and hand it to the run engine."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from timm.optim import create_optimizer_v2
from timm.scheduler import MultiStepLRScheduler
from torch import nn

from hpm.engine import distributed as D
from hpm.engine.ddp import wrap_ddp
from hpm.engine.logger import LOG
from hpm.engine.precision import Resolved
from hpm.engine.supervised import run_supervised
from hpm.engine.supervised_setup import grad_scaler, require_a_step, resumable_loader, seed_everything, setup_record
from hpm.eval.detect.coco_eval import ground_truth
from hpm.eval.detect.data import DetectData, DetectionDataset, collate
from hpm.eval.detect.model import build_detector
from hpm.eval.detect.recipes import DetectConfig
from hpm.eval.detect.resume import resume
from hpm.eval.detect.task import Detecting
from hpm.models.mae import MaskedAutoencoder


def run_detect(
    encoder: MaskedAutoencoder,
    data: DetectData,
    cfg: DetectConfig,
    device: torch.device,
    precision: Resolved,
    dist: D.DistInfo | None = None,
    progress: bool = True,
    run_dir: str | Path | None = None,
    source: dict[str, Any] | None = None,
) -> tuple[dict[str, Any], nn.Module]:
    """Fine-tune ``encoder`` as a Mask R-CNN on ``data.train`` and score ``data.val``; resumable.

    Args:
        encoder: The pre-trained (or randomly initialised) masked autoencoder; not modified.
        data: The checked training and validation splits.
        cfg: The recipe.
        device: Where to train.
        precision: Autocast precision (fp16 uses a gradient scaler).
        dist: This process's place in a torchrun job (default: a single process).
        progress: Show a progress bar (rank 0).
        run_dir: The detection directory (locked while it runs): checkpoints go to
            ``run_dir/checkpoints/``, the last evaluation's COCO results to ``run_dir/predictions.json``,
            and a run found there is resumed, or, if finished, returned without training. None: no
            checkpoints, no resumption.
        source: What is fine-tuned (the encoder, the data), JSON types; a resumed run must have the
            same, with the same recipe, process count and precision.

    Returns:
        ``(result, model)``: ``result`` holds ``box`` and ``mask`` (``AP``, ``AP50``, ``AP75``, ``APs``,
        ``APm``, ``APl``), ``history``, ``final_loss``, ``steps``, ``recipe``, ...; ``model`` the Detector.

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
    encoder: MaskedAutoencoder, data: DetectData, cfg: DetectConfig, device: torch.device, precision: Resolved,
    dist: D.DistInfo, run_dir: Path | None, source: dict[str, Any],
) -> Detecting:
    """Seed, then build the model, data, optimizer (AdamW, layer-wise lr decay) and step schedule
    (in this order: the RNG draws of an uninterrupted run must not move)."""
    seed_everything(cfg.seed + dist.rank)
    model = build_detector(encoder, cfg, len(data.cat_ids), data.mean, data.std).to(device)
    train_set = DetectionDataset(data.train, data, cfg, train=True)
    sampler, loader = resumable_loader(train_set, cfg.batch_size, cfg.num_workers, dist, cfg.seed, collate_fn=collate)
    require_a_step(loader, len(data.train.images), cfg.batch_size, dist)
    steps_per_epoch, epochs = cfg.step_plan(len(loader))
    total = steps_per_epoch * epochs
    optimizer = create_optimizer_v2(model, opt="adamw", lr=cfg.lr, weight_decay=cfg.weight_decay,
                                    layer_decay=cfg.layer_decay)
    schedule = MultiStepLRScheduler(optimizer, decay_t=[int(f * total) for f in cfg.lr_drops], decay_rate=0.1,
                                    warmup_t=cfg.warmup_iters, warmup_lr_init=cfg.lr * 1e-3, warmup_prefix=False,
                                    t_in_epochs=False)
    scaler = grad_scaler(precision, device)
    setup_json = setup_record(source, dist, precision)
    return Detecting(
        cfg, data, device, precision, dist, model, wrap_ddp(model, device, dist), sampler, loader,
        DetectionDataset(data.val, data, cfg, train=False), ground_truth(data.val), optimizer, schedule, scaler,
        steps_per_epoch, epochs, run_dir, setup_json,
    )


def _log_header(run: Detecting) -> None:
    cfg, data = run.cfg, run.data
    LOG.info(
        "detection fine-tune (Mask R-CNN, simple pyramid): %d train / %d val images, %d categories | batch %d x %d "
        "| lr %.3g, layer decay %.2f, drop path %.2f | %d px | %d steps/epoch, %d epochs | %s, %s",
        len(data.train.images), len(data.val.images), len(data.cat_ids), cfg.batch_size, run.dist.world_size, cfg.lr,
        cfg.layer_decay, cfg.drop_path, cfg.image_size, run.steps_per_epoch, run.epochs, run.device, run.precision,
    )
