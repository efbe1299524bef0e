"""``run_video_finetune``: set a video fine-tune up, resume it, and hand it to the run engine
(:func:`hpm.engine.supervised.run_supervised`; its loop, checkpoints, lock, stop signals)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from timm.loss import LabelSmoothingCrossEntropy
from torch import nn
from torch.utils.data import DataLoader

from hpm.data import collate_skip_none
from hpm.data.distributed_sampler import ResumableDistributedSampler
from hpm.engine import distributed as D
from hpm.engine.ddp import wrap_ddp
from hpm.engine.logger import LOG
from hpm.engine.precision import Resolved
from hpm.engine.supervised import run_supervised
from hpm.engine.supervised_setup import grad_scaler, resumable_loader, seed_everything, setup_record
from hpm.eval.finetune.optim import classifier_optim
from hpm.eval.finetune.augment import seed_worker
from hpm.eval.recipes import fit_schedule
from hpm.eval.video.augment import TrainClips, train_clip_transform
from hpm.eval.video.classifier import VideoClassifier
from hpm.eval.video.data import VideoEvalData
from hpm.eval.video.recipes import VideoFinetuneConfig
from hpm.eval.video.task import VideoFinetuning, resume
from hpm.models.mae import MaskedAutoencoder


def run_video_finetune(
    encoder: MaskedAutoencoder, data: VideoEvalData, cfg: VideoFinetuneConfig, device: torch.device,
    precision: Resolved, dist: D.DistInfo | None = None, progress: bool = True, run_dir: str | Path | None = None,
    source: dict[str, Any] | None = None,
) -> tuple[dict[str, Any], nn.Module]:
    """Fine-tune ``encoder`` on ``data.train`` and report multi-view top-1 on ``data.test``; resumable
    exactly as :func:`hpm.eval.finetune.run_finetune` (same directory layout and refusals).

    Returns:
        ``(result, model)``: ``result`` holds ``top1``, ``history``, ``final_loss``, ``lr``,
        ``effective_batch``, ``steps``, ``train_s``, ``views``; ``model`` the :class:`VideoClassifier`.
    """
    dist = dist or D.DistInfo()
    cfg = fit_schedule(cfg, len(data.train))  # type: ignore[assignment]
    run_dir = Path(run_dir) if run_dir is not None else None
    run = run_supervised(lambda: setup(encoder, data, cfg, device, precision, dist, run_dir, source or {}),
                         resume, _log_header, run_dir, dist, progress)
    return run.result, run.model


def _loader(data: VideoEvalData, cfg: VideoFinetuneConfig, dist: D.DistInfo
            ) -> tuple[ResumableDistributedSampler, DataLoader]:
    """The shuffled, resumable training clips."""
    transform = train_clip_transform(data.img_size, cfg.crop_scale, cfg.hflip, data.mean, data.std)
    train_set = TrainClips(data.train.files, data.train.labels, data.num_frames, data.stride, data.channels, transform)
    sampler, loader = resumable_loader(train_set, cfg.batch_size, cfg.num_workers, dist, cfg.seed,
                                       collate_fn=collate_skip_none, worker_init_fn=seed_worker)
    return sampler, loader


def setup(
    encoder: MaskedAutoencoder, data: VideoEvalData, cfg: VideoFinetuneConfig, device: torch.device,
    precision: Resolved, dist: D.DistInfo, run_dir: Path | None, source: dict[str, Any],
) -> VideoFinetuning:
    """Seed, then build the classifier, data, optimizer (AdamW, timm's layer-wise lr decay),
    schedule and loss, in this order (the RNG draws of an uninterrupted fine-tune must not move)."""
    seed_everything(cfg.seed + dist.rank)
    model = VideoClassifier(encoder, data.num_classes, cfg.drop_path, cfg.head_init_std, cfg.global_pool).to(device).train()
    sampler, loader = _loader(data, cfg, dist)
    opt = classifier_optim(model, cfg, len(loader), dist, f"{len(data.train)} training clips")
    scaler = grad_scaler(precision, device)
    loss_fn = LabelSmoothingCrossEntropy(cfg.smoothing) if cfg.smoothing > 0 else nn.CrossEntropyLoss()
    setup_json = setup_record(source, dist, precision)
    spec = {"classes": list(data.classes), "label": data.kind, "num_frames": data.num_frames, "img_size": data.img_size,
            "mean": list(data.mean), "std": list(data.std), "pool": cfg.global_pool}
    return VideoFinetuning(
        cfg, data, device, precision, dist, model, wrap_ddp(model, device, dist), sampler, loader,  # type: ignore[arg-type]
        data.views(data.test), opt.optimizer, opt.schedule, scaler, None, loss_fn, opt.steps_per_epoch, opt.lr,
        opt.eff_batch, run_dir,
        setup_json, spec,
    )


def _log_header(run: VideoFinetuning) -> None:
    cfg, data = run.cfg, run.data
    LOG.info(
        "video fine-tune: %d train / %d test clips, %d %s classes, %d x %d test views | effective batch %d | lr %.3g "
        "(blr %.3g), layer decay %.2f, drop path %.2f | %d steps/epoch, %d epochs | %s, %s",
        len(data.train), len(data.test), data.num_classes, data.kind, data.test_clips, data.test_crops, run.eff_batch,
        run.lr, cfg.blr, cfg.layer_decay, cfg.drop_path, run.steps_per_epoch, cfg.epochs, run.device, run.precision,
    )
