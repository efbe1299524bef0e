"""End-to-end fine-tuning (MAE / BEiT recipe) of a pre-trained encoder as a timm ViT classifier.

The encoder becomes a timm ``VisionTransformer`` with ``global_pool="avg"``: the patch tokens
are averaged and normalised by ``fc_norm`` (the pre-trained final ``norm`` is dropped, as in
MAE), then a linear head classifies. Training uses AdamW with layer-wise lr decay
(``timm.optim.create_optimizer_v2``), drop path, RandAugment and random erasing
(``timm.data.create_transform``), mixup / cutmix with label smoothing (``timm.data.Mixup`` and
``SoftTargetCrossEntropy``) and a per-step warm-up + cosine schedule. Top-1 is measured on the
centre-cropped test split.

Recipes (:data:`~hpm.eval.recipes.RECIPES`, in :mod:`hpm.eval.recipes`): ``reference``, the CPU
recipe for the bundled data (10 epochs on 10 000 images, tuned on images held out of the training
subset: ``val_holdout``), ``small``, a quick 3-epoch check, ``paper_vit_b16``, the paper's ViT-B
recipe (spec section 4: 100 epochs, batch 384, blr 5e-4, 5 warm-up epochs, layer decay 0.8,
weight decay 0.05, drop path 0.1, RandAugment m9, random erasing 0.25, mixup 0.8, cutmix 1.0,
label smoothing 0.1, global average pooling), and ``few_labels``, the reference stretched to the
same number of images seen whatever the number of labelled images (``images_seen``). A YAML file
and ``key=value`` overrides change any key. Multi-process training follows ``hpm pretrain``:
``torchrun ... -m hpm.cli eval finetune``; each process takes ``batch_size`` images per
micro-step.

Checkpoints and resumption: given a fine-tune directory (``hpm eval finetune`` uses the result
file's path without ``.json``: ``--out X/eval/finetune.json`` fine-tunes in ``X/eval/finetune/``),
:func:`run_finetune` writes ``DIR/checkpoints/step_XXXXXXXX/`` (:mod:`hpm.engine.checkpoint`:
``model.safetensors`` holds the timm classifier, ``state.pt`` the optimizer, grad scaler, step,
history, the running loss sums, the training seconds, every rank's RNG states, the recipe and
what was fine-tuned) after every epoch and every ``ckpt_every_steps`` optimizer steps, keeping
the newest :data:`KEEP_CKPTS`. Running it again resumes at the next optimizer step: the data
sampler restarts the epoch after the batches already done and the RNG states are restored
where the uninterrupted run had them. With ``num_workers=0`` (augmentation in the main process)
a resumed fine-tune is bit-identical to an uninterrupted one. With workers, the data order, the
mixup / cutmix draws, drop path, the weights and the lr schedule are exact, but the workers
start with fresh RNG streams, so the per-image augmentations (crop, flip, RandAugment, erasing)
after the resume point differ from an uninterrupted run (statistically the same recipe). A
different recipe or source is refused (:func:`check_same_finetune`); a finished fine-tune
returns its stored result without training. SIGTERM / SIGUSR1 stop the fine-tune after the
current optimizer step with a checkpoint and raise :class:`~hpm.errors.Preempted`
(:mod:`hpm.engine.preemption`).
"""

from __future__ import annotations

import itertools
import json
import math
import random
from collections.abc import Iterator
from contextlib import nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image, ImageOps
from timm.data import Mixup, create_transform
from timm.data.auto_augment import AugmentOp
from timm.data.auto_augment import posterize as timm_posterize
from timm.loss import LabelSmoothingCrossEntropy, SoftTargetCrossEntropy
from timm.optim import create_optimizer_v2
from torch import Tensor, nn
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader, Dataset, DistributedSampler, Subset
from torchvision.transforms.v2 import functional as TF
from tqdm import tqdm

from hpm.data import Unreadable, collate_skip_none
from hpm.data.transforms import PadTo
from hpm.engine import distributed as D
from hpm.engine.checkpoint import load_newest_on_every_rank, load_state, load_weights, rng_state, save_checkpoint, set_rng_state
from hpm.engine.logger import LOG, log_run_failure, log_to_file, stop_logging_to
from hpm.engine.optim import build_lr_schedule
from hpm.engine.precision import Resolved, autocast
from hpm.engine.preemption import StopSignals, ignore_stop_signals, preempted
from hpm.engine.shutdown import close_loader, reap_daemons_at_exit
from hpm.engine.train import TrainClock
from hpm.errors import CheckpointError, ConfigError, NonFiniteLossError
from hpm.eval.data import EvalData
from hpm.eval.recipes import RECIPES, FinetuneConfig, build_finetune_config, fit_schedule  # noqa: F401 (RECIPES, build_finetune_config: re-exported)
from hpm.models.timm_encoder import build_timm_encoder, timm_spec
from hpm.models.mae import MaskedAutoencoder

KEEP_CKPTS = 2  # checkpoints kept in a fine-tune directory (the newest)
# Recipe keys that may change when an interrupted fine-tune resumes: they set resources and
# bookkeeping, not what is trained (num_workers does move the augmentation randomness into
# worker processes, so only num_workers=0 resumes bit-exactly; see the module docstring).
RESUME_FREE_KEYS = ("ckpt_every_steps", "num_workers", "eval_batch_size")


class _PilDataset(Dataset):
    """Feeds a timm PIL transform from a data set of uint8 ``[C, H, W]`` tensors."""

    def __init__(self, base: Dataset, transform: Any, pad_to: int | None = None) -> None:
        self.base = base
        self.transform = transform
        self.pad = PadTo(pad_to) if pad_to else None

    def __len__(self) -> int:
        return len(self.base)  # type: ignore[arg-type]

    def __getitem__(self, index: int) -> tuple[Tensor, int] | Unreadable:
        """Return ``(image, label)`` (transformed float ``[C, H, W]``, int), or ``Unreadable(path)``."""
        item = self.base[index]
        if isinstance(item, Unreadable):
            return item
        image, label = item  # uint8 [C, H, W]
        if self.pad is not None:
            image = self.pad(image)
        return self.transform(TF.to_pil_image(image)), int(label)


def _seed_worker(worker_id: int) -> None:
    """Seed Python's and NumPy's RNGs (timm's augmentations use them) from torch's worker seed;
    leave SIGTERM / SIGUSR1 to the main process (it checkpoints, then stops the workers)."""
    seed = torch.initial_seed() % 2**32
    random.seed(seed)
    np.random.seed(seed)
    ignore_stop_signals(worker_id)


class _ResumableSampler(DistributedSampler):
    """A :class:`DistributedSampler` that can begin an epoch part-way.

    ``set_start(n)`` skips this rank's first ``n`` indices of the epoch's permutation (the images
    of the optimizer steps a resumed fine-tune already did); the permutation itself depends only
    on the seed and the epoch, never on the global RNG.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.start = 0

    def set_start(self, start: int) -> None:
        """Skip the first ``start`` indices of the coming epochs (0: the whole epoch)."""
        if not 0 <= start <= self.num_samples:
            raise ValueError(f"start {start} outside this rank's {self.num_samples} indices")
        self.start = start

    def __iter__(self) -> Iterator[int]:
        return itertools.islice(super().__iter__(), self.start, None)

    def __len__(self) -> int:
        return self.num_samples - self.start


def _posterize(img: Image.Image, bits_to_keep: int, **_: Any) -> Image.Image:
    """timm's posterize with Pillow 13's refused ``bits=0`` done as Pillow <= 12 did: a black image.

    timm (1.0.31) asks for 0 bits when a RandAugment magnitude reaches 10 (``mstd`` noise on
    ``m9`` gets there in about 2% of draws, so the paper recipe stopped after a few hundred
    images); Pillow 13 raises ``ValueError`` for it, Pillow <= 12 kept no bit (``i & ~255 = 0``).
    """
    if bits_to_keep >= 8:
        return img
    if bits_to_keep <= 0:
        return img.point([0] * 256 * len(img.getbands()))
    return ImageOps.posterize(img, bits_to_keep)


def _augment_ops(transform: Any) -> Iterator[Any]:
    """Every timm ``AugmentOp`` inside a transform (RandAugment ops, AutoAugment sub-policies, AugMix)."""
    if isinstance(transform, AugmentOp):
        yield transform
        return
    for name in ("transforms", "ops", "policy"):
        children = getattr(transform, name, None)
        if isinstance(children, list | tuple):
            for child in children:
                yield from _augment_ops(child)


def _train_transform(data: EvalData, cfg: FinetuneConfig) -> Any:
    """timm's training transform (PIL in): random resized crop, flip, RandAugment, erasing."""
    transform = create_transform(
        data.img_size,
        is_training=True,
        scale=tuple(cfg.crop_scale),
        hflip=cfg.hflip,
        color_jitter=None,
        auto_augment=cfg.auto_augment,
        interpolation="bicubic",
        mean=data.mean,
        std=data.std,
        re_prob=cfg.reprob,
        re_mode="pixel",
        re_count=1,
    )
    for op in _augment_ops(transform):
        if op.aug_fn is timm_posterize:
            op.aug_fn = _posterize
    return transform


@torch.no_grad()
def evaluate_classifier(
    model: nn.Module, dataset: Dataset, batch_size: int, device: torch.device, precision: Resolved
) -> tuple[float, int]:
    """Top-1 accuracy (in %) and the number of images, summed over all processes.

    Each process evaluates every ``world_size``-th image of ``dataset``.
    """
    joined = torch.distributed.is_available() and torch.distributed.is_initialized()
    rank, world = (torch.distributed.get_rank(), torch.distributed.get_world_size()) if joined else (0, 1)
    shard = Subset(dataset, list(range(rank, len(dataset), world)))  # type: ignore[arg-type]
    loader = DataLoader(shard, batch_size=batch_size, shuffle=False, collate_fn=collate_skip_none)
    was_training = model.training
    model.eval()
    counts = torch.zeros(2, device=device)  # correct, seen
    for images, labels, _ in loader:
        if images.shape[0] == 0:
            continue
        with autocast(device, precision):
            logits = model(images.to(device))  # [B, C]
        counts[0] += (logits.argmax(1).cpu() == labels).sum().item()
        counts[1] += labels.shape[0]
    model.train(was_training)
    counts = D.all_reduce_sum(counts)
    return 100.0 * float(counts[0]) / max(float(counts[1]), 1.0), int(counts[1])


def classifier_spec(encoder: MaskedAutoencoder, data: EvalData) -> dict[str, Any]:
    """How to rebuild the fine-tuned classifier with timm, and what it expects as input.

    Returns:
        ``timm_model`` and ``timm_kwargs`` (the encoder's shape, ``global_pool="avg"``,
        ``num_classes`` and a ``pretrained_cfg`` that describes this classifier: its classes,
        input size, normalisation and head, so that ``timm.create_model(timm_model,
        pretrained=True, pretrained_cfg_overlay=dict(file=...), **timm_kwargs)`` keeps the
        head), plus ``mean``, ``std`` and ``class_names``.
    """
    name, kwargs = timm_spec(encoder.cfg, global_pool="avg", num_classes=data.num_classes)
    kwargs["pretrained_cfg"] = {
        "architecture": name,
        "input_size": [data.channels, data.img_size, data.img_size],
        "interpolation": "bicubic",
        "crop_pct": 1.0,
        "crop_mode": "center",
        "mean": list(data.mean),
        "std": list(data.std),
        "num_classes": data.num_classes,
        "label_names": list(data.classes),
        "first_conv": "patch_embed.proj",
        "classifier": "head",
    }
    return {
        "timm_model": name,
        "timm_kwargs": kwargs,
        "mean": list(data.mean),
        "std": list(data.std),
        "class_names": list(data.classes),
    }


@dataclass
class _Finetuning:
    """What the fine-tuning loop needs (built by :func:`_setup`) and where it stands."""

    cfg: FinetuneConfig
    data: EvalData
    device: torch.device
    precision: Resolved
    dist: D.DistInfo
    model: nn.Module  # the timm classifier (unwrapped)
    ddp: DistributedDataParallel | None
    sampler: _ResumableSampler
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
    step: int = 0  # optimizer steps done
    loss_sum: float = 0.0  # this rank's training loss since the last evaluation
    loss_n: int = 0  # micro-batches in loss_sum
    history: list[dict[str, float]] = field(default_factory=list)
    clock: TrainClock = field(default_factory=TrainClock)
    last_ckpt: Path | None = None  # rank 0 only
    last_ckpt_step: int | None = None  # every rank
    result: dict[str, Any] | None = None  # set when the last epoch is done

    @property
    def total_steps(self) -> int:
        return self.steps_per_epoch * self.cfg.epochs


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
        run_dir: The fine-tune directory: checkpoints go to ``run_dir/checkpoints/`` (rank 0
            writes, every rank reads) and a fine-tune found there is resumed, or, if finished,
            returned without training. None: no checkpoints, no resumption, stop signals keep
            their default action.
        source: What is fine-tuned (the encoder, the data), JSON types; a resumed fine-tune
            must have the same (with the same recipe, process count and precision).

    Returns:
        ``(result, model)``: ``result`` holds ``top1``, ``history`` (per evaluated epoch),
        ``final_loss``, ``lr``, ``effective_batch``, ``steps``, ``train_s`` (over all
        invocations); ``model`` is the fine-tuned timm classifier (unwrapped).

    Raises:
        NonFiniteLossError: The loss became NaN or infinite.
        ConfigError: Too few training images for one step, or ``run_dir`` holds a fine-tune
            of another recipe or source.
        Preempted: SIGTERM or SIGUSR1 arrived (with ``run_dir``); a checkpoint of the last
            finished optimizer step was written.
    """
    dist = dist or D.DistInfo()
    cfg = fit_schedule(cfg, len(data.train))  # a recipe with images_seen: its epochs for these images
    reap_daemons_at_exit()
    if run_dir is not None and dist.is_main and (Path(run_dir) / "train.log").is_file():
        log_to_file(Path(run_dir) / "train.log")  # a resume: its warnings, and a refusal, reach the log
    run: _Finetuning | None = None
    try:
        run = _setup(encoder, data, cfg, device, precision, dist, run_dir, source or {})
        resume_rng = _resume(run)
        if run.result is not None:
            return run.result, run.model
        if run.run_dir is not None and dist.is_main:
            log_to_file(run.run_dir / "train.log")
        _log_header(run)
        run.clock = TrainClock(run.clock.before)  # training time starts now (plus that of earlier invocations)
        bar = tqdm(
            total=run.total_steps, initial=run.step, disable=not (progress and dist.is_main), unit="step",
            dynamic_ncols=True,
        )
        with (StopSignals() if run.run_dir is not None else nullcontext()) as stop, bar:
            for epoch in range(run.step // run.steps_per_epoch, cfg.epochs):
                _train_epoch(run, epoch, stop, bar, resume_rng)
                resume_rng = None
                _end_of_epoch(run, epoch)
                _stop_if_asked(run, stop)
        assert run.result is not None  # the last epoch sets it
        return run.result, run.model
    except BaseException as exc:
        log_run_failure(exc)
        raise
    finally:
        if run is not None:
            close_loader(run.loader)
        if run_dir is not None:
            stop_logging_to(Path(run_dir) / "train.log")  # the next fine-tune of a study logs to its own


def _setup(
    encoder: MaskedAutoencoder,
    data: EvalData,
    cfg: FinetuneConfig,
    device: torch.device,
    precision: Resolved,
    dist: D.DistInfo,
    run_dir: str | Path | None,
    source: dict[str, Any],
) -> _Finetuning:
    """Seed, then build the classifier, data, optimizer, schedule, mixup and loss (in this order:
    the RNG draws of an uninterrupted fine-tune must not move)."""
    torch.manual_seed(cfg.seed + dist.rank)
    random.seed(cfg.seed + dist.rank)
    np.random.seed(cfg.seed + dist.rank)

    model = build_timm_encoder(encoder, global_pool="avg", num_classes=data.num_classes, drop_path_rate=cfg.drop_path)
    nn.init.trunc_normal_(model.head.weight, std=cfg.head_init_std)
    nn.init.zeros_(model.head.bias)
    model.set_grad_checkpointing(False)
    model = model.to(device).train()

    train_set = _PilDataset(data.train.base, _train_transform(data, cfg), data.img_size if data.fit == "pad" else None)
    test_set = data.test.with_transform(data.transform())
    sampler = _ResumableSampler(train_set, dist.world_size, dist.rank, shuffle=True, seed=cfg.seed, drop_last=True)
    loader = DataLoader(
        train_set, batch_size=cfg.batch_size, sampler=sampler, drop_last=True, num_workers=cfg.num_workers,
        collate_fn=collate_skip_none, worker_init_fn=_seed_worker, persistent_workers=cfg.num_workers > 0,
    )
    steps_per_epoch = len(loader) // cfg.accum_steps
    if steps_per_epoch < 1:
        raise ConfigError(
            f"{len(data.train)} training images give no optimizer step of {cfg.batch_size} x {cfg.accum_steps} "
            f"x {dist.world_size} images; lower batch_size or accum_steps, or use more images (train_subset)"
        )
    eff_batch = cfg.batch_size * cfg.accum_steps * dist.world_size
    lr = cfg.blr * eff_batch / 256
    optimizer = create_optimizer_v2(model, opt="adamw", lr=lr, weight_decay=cfg.weight_decay, layer_decay=cfg.layer_decay)
    schedule = build_lr_schedule(
        optimizer, steps_per_epoch * cfg.epochs, round(cfg.warmup_epochs * steps_per_epoch), cfg.min_lr
    )
    scaler = torch.amp.GradScaler(device.type) if precision == "fp16" else None
    mixup = (
        Mixup(
            mixup_alpha=cfg.mixup, cutmix_alpha=cfg.cutmix, prob=cfg.mixup_prob, switch_prob=cfg.mixup_switch_prob,
            mode="batch", label_smoothing=cfg.smoothing, num_classes=data.num_classes,
        )
        if cfg.uses_mixup
        else None
    )
    if mixup is not None:
        loss_fn: nn.Module = SoftTargetCrossEntropy()
    elif cfg.smoothing > 0:
        loss_fn = LabelSmoothingCrossEntropy(cfg.smoothing)
    else:
        loss_fn = nn.CrossEntropyLoss()
    ddp = DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None) if dist.enabled else None
    setup = _jsonable({"source": source, "world_size": dist.world_size, "precision": precision})
    return _Finetuning(
        cfg, data, device, precision, dist, model, ddp, sampler, loader, test_set, optimizer, schedule, scaler,
        mixup, loss_fn, steps_per_epoch, lr, eff_batch, Path(run_dir) if run_dir is not None else None, setup,
        classifier_spec(encoder, data),
    )


def _log_header(run: _Finetuning) -> None:
    cfg, data = run.cfg, run.data
    LOG.info(
        "fine-tune: %d train / %d test images, %d classes | effective batch %d = %d x %d accum x %d | lr %.3g "
        "(blr %.3g), layer decay %.2f, drop path %.2f | %d steps/epoch, %d epochs | %s, %s",
        len(data.train), len(data.test), data.num_classes, run.eff_batch, cfg.batch_size, cfg.accum_steps,
        run.dist.world_size, run.lr, cfg.blr, cfg.layer_decay, cfg.drop_path, run.steps_per_epoch, cfg.epochs,
        run.device, run.precision,
    )


def _epoch_batches(run: _Finetuning, first: int, resume_rng: dict[str, Any] | None) -> Iterator[Any]:
    """The epoch's batch iterator; a resumed fine-tune restores its RNG states here.

    Making a DataLoader iterator draws a seed from torch's RNG: an uninterrupted fine-tune does
    it at every epoch start without workers, and only at the first epoch with persistent
    workers. The checkpoint's RNG states are therefore restored before the iterator when the
    uninterrupted run made one after the checkpoint (an epoch boundary, no workers), and after it
    otherwise, so the draws of the remaining steps follow the same sequence.
    """
    before = resume_rng is not None and first == 0 and run.cfg.num_workers == 0
    if before:
        set_rng_state(resume_rng)  # type: ignore[arg-type]
    batches = iter(run.loader)
    if resume_rng is not None and not before:
        set_rng_state(resume_rng)
    return batches


def _train_epoch(
    run: _Finetuning, epoch: int, stop: StopSignals | None, bar: tqdm, resume_rng: dict[str, Any] | None
) -> None:
    """The epoch's optimizer steps from the resume point inside it; a checkpoint every
    ``ckpt_every_steps`` steps and a stop on SIGTERM / SIGUSR1 (the epoch's end is left to the caller)."""
    cfg = run.cfg
    first = run.step - epoch * run.steps_per_epoch  # steps of this epoch done before a resume
    run.sampler.set_epoch(epoch)
    run.sampler.set_start(first * cfg.accum_steps * cfg.batch_size)
    batches = _epoch_batches(run, first, resume_rng)
    for _ in range(first, run.steps_per_epoch):
        _train_step(run, batches, epoch)
        bar.update(1)
        bar.set_postfix(loss=f"{run.loss_sum / max(run.loss_n, 1):.4f}", lr=f"{run.optimizer.param_groups[-1]['lr']:.2e}")
        if run.step % run.steps_per_epoch:
            if run.run_dir is not None and cfg.ckpt_every_steps and run.step % cfg.ckpt_every_steps == 0:
                _checkpoint(run)
            _stop_if_asked(run, stop)


def _train_step(run: _Finetuning, batches: Iterator[Any], epoch: int) -> None:
    """One optimizer step: ``accum_steps`` micro-batches (mixup, forward, backward), then clip,
    step and zero the gradients."""
    cfg, device, scaler = run.cfg, run.device, run.scaler
    run.schedule.step_update(run.step)
    for micro in range(cfg.accum_steps):
        images, labels, _ = next(batches)  # [B, C, H, W] float, [B] int64
        if images.shape[0] < 2:
            continue  # every image of the batch was unreadable
        images, labels = images.to(device, non_blocking=True), labels.to(device, non_blocking=True)
        if run.mixup is not None:
            if images.shape[0] % 2:  # a skipped unreadable image left an odd batch
                images, labels = images[:-1], labels[:-1]
            images, targets = run.mixup(images, labels)  # targets: [B, num_classes] soft
        else:
            targets = labels
        sync = run.ddp is None or micro == cfg.accum_steps - 1
        with (nullcontext() if sync else run.ddp.no_sync()), autocast(device, run.precision):  # type: ignore[union-attr]
            loss = run.loss_fn((run.ddp or run.model)(images), targets) / cfg.accum_steps  # logits [B, num_classes]
            (scaler.scale(loss) if scaler else loss).backward()
        run.loss_sum += float(loss.detach()) * cfg.accum_steps
        run.loss_n += 1
    if not math.isfinite(run.loss_sum):
        raise NonFiniteLossError(
            f"the fine-tuning loss became NaN or infinite at step {run.step} (epoch {epoch}); "
            f"the last good checkpoint is kept: {run.last_ckpt or 'none was written yet'}. "
            "Try a lower blr, clip_grad=1.0 or precision=fp32"
        )
    if scaler is not None:
        scaler.unscale_(run.optimizer)
    if cfg.clip_grad is not None:
        nn.utils.clip_grad_norm_(run.model.parameters(), cfg.clip_grad)
    if scaler is not None:
        scaler.step(run.optimizer)
        scaler.update()
    else:
        run.optimizer.step()
    run.optimizer.zero_grad(set_to_none=True)
    run.step += 1


def _end_of_epoch(run: _Finetuning, epoch: int) -> None:
    """Evaluate every ``eval_every`` epochs and after the last one, then checkpoint (the last
    epoch's checkpoint holds the result)."""
    cfg = run.cfg
    last = epoch + 1 == cfg.epochs
    if last or (cfg.eval_every and (epoch + 1) % cfg.eval_every == 0):
        top1, seen = evaluate_classifier(run.model, run.test_set, cfg.eval_batch_size, run.device, run.precision)
        mean_loss = torch.tensor([run.loss_sum / max(run.loss_n, 1)], device=run.device)  # [1]
        train_loss = float(D.all_reduce_mean(mean_loss)[0])
        run.history.append({"epoch": epoch + 1, "train_loss": train_loss, "top1": top1})
        LOG.info(
            "fine-tune epoch %d/%d: train loss %.4f, test top-1 %.2f%% (%d images)",
            epoch + 1, cfg.epochs, train_loss, top1, seen,
        )
        run.loss_sum, run.loss_n = 0.0, 0
    if last:
        run.result = _result(run)
    if run.run_dir is not None:
        _checkpoint(run)


def _result(run: _Finetuning) -> dict[str, Any]:
    history = run.history
    return {
        "top1": history[-1]["top1"],
        "final_loss": history[-1]["train_loss"],
        "history": history,
        "lr": run.lr,
        "effective_batch": run.eff_batch,
        "steps": run.step,
        "num_train": len(run.data.train),
        "num_test": len(run.data.test),
        "train_s": round(run.clock.seconds(), 3),
        "recipe": run.cfg.model_dump(mode="json"),
        "world_size": run.dist.world_size,
        "precision": run.precision,
    }


def _rank_states(run: _Finetuning) -> list[dict[str, Any]]:
    """Every rank's RNG states and running loss sums, gathered on all ranks (a collective under torchrun)."""
    return D.all_gather_objects({"rng": rng_state(), "loss_sum": run.loss_sum, "loss_n": run.loss_n})  # type: ignore[return-value]


def _checkpoint(run: _Finetuning) -> Path | None:
    """Write a checkpoint of ``run.step`` (rank 0) and wait for every rank; reads no RNG."""
    ranks = _rank_states(run)
    if run.dist.is_main:
        assert run.run_dir is not None
        state = {
            "kind": "finetune",
            "recipe": run.cfg.model_dump(mode="json"),
            "setup": run.setup,
            "classifier": run.classifier,
            "epoch": run.step // run.steps_per_epoch,
            "total_steps": run.total_steps,
            "history": run.history,
            "ranks": ranks,
            "optimizer": run.optimizer.state_dict(),
            "scaler": run.scaler.state_dict() if run.scaler is not None else None,
            "train_time_s": run.clock.seconds(),
        }
        if run.result is not None:
            state["result"] = run.result
        run.last_ckpt = save_checkpoint(run.run_dir, run.step, run.model, None, state, KEEP_CKPTS)
    run.last_ckpt_step = run.step
    D.barrier()
    return run.last_ckpt


def _stop_if_asked(run: _Finetuning, stop: StopSignals | None) -> None:
    """After a SIGTERM / SIGUSR1 (on any rank): checkpoint the finished step unless it was just
    written, and raise :class:`Preempted`; a finished fine-tune just ends. A collective under
    torchrun: every rank calls it at the same points."""
    if stop is None:
        return
    signum = stop.agreed(run.device)
    if not signum or run.result is not None:
        return
    if run.last_ckpt_step != run.step:
        _checkpoint(run)
    where = run.last_ckpt if run.dist.is_main else "rank 0's fine-tune directory"
    raise preempted("fine-tune", signum, run.step, run.total_steps, where)


# ------------------------------------------------------------------ resumption
def _resume(run: _Finetuning) -> dict[str, Any] | None:
    """Load the newest checkpoint of ``run.run_dir`` (if any) after checking it is this fine-tune.

    Restores the weights, optimizer, grad scaler, step, history, running loss sums and training
    seconds; a finished fine-tune gets its stored ``result`` (and its final weights) only.

    Returns:
        This rank's RNG states to restore when its epoch's batches start (None: nothing to restore).

    Raises:
        ConfigError: The checkpoint is of another recipe, source, process count or precision.
        CheckpointError: The checkpoint is unreadable or not a fine-tune's.
    """
    if run.run_dir is None:
        return None
    run_dir = run.run_dir

    def load(ckpt: Path) -> dict[str, Any]:
        state = load_state(ckpt)
        if state.get("kind") != "finetune":
            raise CheckpointError(
                f"{ckpt} is not a fine-tune checkpoint (it has no kind 'finetune'); {run_dir} is a fine-tune "
                "directory: pass another --out (the result file names the directory)"
            )
        check_same_finetune(run_dir, state, run.cfg, run.setup)
        load_weights(run.model, ckpt / "model.safetensors")
        return state

    found = load_newest_on_every_rank(run_dir, load, run.dist.is_main)
    if found is None:
        return None
    ckpt, state = found
    run.step, run.history = int(state["step"]), list(state["history"])
    run.last_ckpt, run.last_ckpt_step = ckpt, run.step
    if "result" in state:
        run.result = state["result"]
        LOG.info(
            "the fine-tune in %s is finished (step %d): its result is reported without training; delete %s "
            "to fine-tune again", run.run_dir, run.step, run.run_dir,
        )
        return None
    run.optimizer.load_state_dict(state["optimizer"])
    if run.scaler is not None and state.get("scaler") is not None:
        run.scaler.load_state_dict(state["scaler"])
    mine = state["ranks"][run.dist.rank]
    run.loss_sum, run.loss_n = float(mine["loss_sum"]), int(mine["loss_n"])
    run.clock = TrainClock(float(state.get("train_time_s", 0.0)))
    LOG.info("resuming the fine-tune from %s (step %d of %d)", ckpt, run.step, run.total_steps)
    return mine["rng"]


def check_same_finetune(run_dir: Path, state: dict[str, Any], cfg: FinetuneConfig, setup: dict[str, Any]) -> None:
    """Refuse to resume (or report) a fine-tune of another recipe or source.

    Compared: every recipe key but :data:`RESUME_FREE_KEYS` (a key the checkpoint lacks, added
    to hpm since, takes its default), what was fine-tuned (``setup["source"]``), the number of
    processes and the precision.

    Raises:
        ConfigError: Naming each differing key with both values, and what to do.
    """
    defaults = FinetuneConfig().model_dump(mode="json")
    saved = _flatten({"recipe": {**defaults, **state.get("recipe", {})}, **state.get("setup", {})})
    now = _flatten({"recipe": cfg.model_dump(mode="json"), **setup})
    free = {f"recipe.{k}" for k in RESUME_FREE_KEYS}
    diffs = [
        f"{key}: {saved.get(key, '<absent>')!r} (in {run_dir}) vs {now.get(key, '<absent>')!r} (now)"
        for key in sorted((set(saved) | set(now)) - free)
        if saved.get(key, "<absent>") != now.get(key, "<absent>")
    ]
    if diffs:
        where = "a finished fine-tune" if "result" in state else f"a fine-tune interrupted at step {state['step']}"
        raise ConfigError(
            f"{run_dir} holds {where} with another recipe or source, so it cannot be resumed:\n  "
            + "\n  ".join(diffs)
            + f"\nPass another --out for the new fine-tune (its directory is the result file's path without "
            f".json), or delete {run_dir} to start over."
        )


def _flatten(tree: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """Nested dicts as ``{"a.b.c": leaf}`` (lists are leaves)."""
    out: dict[str, Any] = {}
    for key, value in tree.items():
        if isinstance(value, dict):
            out.update(_flatten(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = value
    return out


def _jsonable(value: Any) -> Any:
    """``value`` as JSON types (tuples become lists, paths strings), for checkpoints and comparison."""
    return json.loads(json.dumps(value, default=str))
