"""Real and predicted per-patch reconstruction loss of a pre-trained model (the paper's Figure 2).

Images are [N, C, H, W]; a video model's clips [N, C, T, H, W] go through the same functions,
one "patch" per tubelet token (time-major, :mod:`hpm.models.tubelet`).

The *real* loss of a patch is its reconstruction MSE (against the run's ``loss.target``) when
it is masked, averaged over ``M`` random masks (each patch is masked in about ``0.75 M`` of them). The *predicted* loss is the loss
predictor's score as the teacher computes it when it chooses masks (``mask.teacher_view``: the
full image, or random partial views scored at their hidden patches). How well the prediction
ranks the real loss is the measure of what HPM's teacher has learnt.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import NamedTuple
from pathlib import Path

import torch
from torch import Tensor

from hpm.config import Config, MaskConfig
from hpm.engine.checkpoint import load_state, load_weights, resolve_checkpoint
from hpm.engine.ema import build_teacher
from hpm.engine.ranking import masked_spearman, spearman, top_fraction_overlap
from hpm.errors import CheckpointError
from hpm.eval.encoder import _checkpoint_config
from hpm.losses.targets import TargetFn, all_patches, build_target, gather_patches, pixel_target
from hpm.masking import (
    average_at_masked, num_masked, random_mask, score_full_view, score_partial_views, score_source, znorm,
)
from hpm.models import build_run_model
from hpm.models.mae import MaskedAutoencoder


@dataclass
class PretrainedModels:
    """The whole pre-trained model of a checkpoint (encoder, decoders) and its EMA teacher."""

    student: MaskedAutoencoder
    teacher: MaskedAutoencoder | None  # HPM runs only
    cfg: Config
    checkpoint: Path
    step: int


def load_pretrained(path: str | Path) -> PretrainedModels:
    """Load every weight of a checkpoint (run directory: its newest), in eval mode, gradients off.

    Raises:
        CheckpointError: Missing or unreadable files, or weights of another architecture.
    """
    ckpt = resolve_checkpoint(path)
    state = load_state(ckpt)
    cfg = _checkpoint_config(ckpt, state)
    student = build_run_model(cfg)
    load_weights(student, ckpt / "model.safetensors")
    teacher = None
    if (ckpt / "teacher.safetensors").is_file():
        teacher = build_teacher(student)
        load_weights(teacher, ckpt / "teacher.safetensors")
    for model in (student, teacher):
        if model is not None:
            model.eval().requires_grad_(False)
    return PretrainedModels(student, teacher, cfg, ckpt, int(state.get("step", 0)))


def run_target(models: PretrainedModels) -> TargetFn:
    """The run's reconstruction target as ``(images, ids_mask) -> [N, K, D]``: an ``ema`` target
    reads the loaded teacher's full-image tokens, a ``model`` target loads its weights file.

    Raises:
        CheckpointError: An ``ema`` target without the teacher's weights in the checkpoint.
        ConfigError: A ``model`` target whose weights file is gone or does not fit.
    """
    target = build_target(models.cfg)
    if not target.needs_teacher:
        return target
    teacher = models.teacher
    if teacher is None:
        raise CheckpointError(f"{models.checkpoint} has no teacher.safetensors, which its ema target needs")
    return lambda imgs, ids: target(imgs, ids, teacher.forward_encoder(imgs)[:, 1:])


def _masked_views(
    model: MaskedAutoencoder, imgs: Tensor, num_masks: int, mask_ratio: float, generator: torch.Generator | None
) -> Iterator[tuple[Tensor, Tensor]]:
    """For each of ``num_masks`` uniformly random masks: the masked ids [N, K] and the decoder
    input [N, L, D] (encoded visible patches, mask tokens at the masked ones), which the
    reconstructor and the loss predictor both read (as in :meth:`MaskedAutoencoder.forward`)."""
    n, num_patches = imgs.shape[0], model.num_patches
    k = num_masked(num_patches, mask_ratio)
    for _ in range(num_masks):
        noise = torch.rand(n, num_patches, generator=generator).to(imgs.device)  # [N, L]
        ids = random_mask(noise, k)
        yield ids.ids_mask, model.forward_masked_input(imgs, ids.ids_keep, ids.ids_mask)


def _random_mask_losses(
    model: MaskedAutoencoder,
    imgs: Tensor,
    num_masks: int,
    mask_ratio: float,
    generator: torch.Generator | None,
    target: TargetFn | None,
    with_scores: bool = False,
) -> Iterator[tuple[Tensor, Tensor, Tensor | None]]:
    """For each of ``num_masks`` random masks: masked ids [N, K], their real loss [N, K] and,
    with ``with_scores``, the student's predictor scores [N, L] on that masked view."""
    tubelet = model.tubelet_size if model.is_video else None  # a clip's token target is its tubelet
    target = target or pixel_target(model.patch_size, norm=True, tubelet_size=tubelet)
    every = target(imgs, all_patches(imgs.shape[0], model.num_patches, imgs.device))  # [N, L, D], one pass for all masks
    for ids_mask, x in _masked_views(model, imgs, num_masks, mask_ratio, generator):
        pred = model.forward_decoder(x, ids_mask)  # [N, K, D]
        scores = model.forward_loss_predictor(x) if with_scores else None  # [N, L]
        per_patch = (pred.float() - gather_patches(every, ids_mask)).pow(2).mean(dim=-1)  # [N, K]
        yield ids_mask, per_patch, scores


@torch.no_grad()
def real_patch_loss(
    model: MaskedAutoencoder,
    imgs: Tensor,
    num_masks: int = 10,
    mask_ratio: float = 0.75,
    generator: torch.Generator | None = None,
    target: TargetFn | None = None,
) -> tuple[Tensor, Tensor]:
    """Per-patch reconstruction loss averaged over ``num_masks`` random masks.

    Args:
        model: A model with its reconstruction decoder.
        imgs: [N, C, H, W] normalised images (video model: [N, C, T, H, W] clips).
        num_masks: M, random masks per image.
        mask_ratio: Fraction of patches each mask hides.
        generator: Draws the masks (CPU generator; seeded for reproducible maps).
        target: The run's reconstruction target (:func:`run_target`); None: norm-pix pixels.

    Returns:
        ``(loss, count)``: float32 [N, L] mean loss over the masks that hid the patch (NaN for a
        patch no mask hid) and int64 [N, L] how many masks hid it.
    """
    if num_masks < 1:
        raise ValueError(f"num_masks must be >= 1, got {num_masks}")
    passes = _random_mask_losses(model, imgs, num_masks, mask_ratio, generator, target)
    return average_at_masked(((ids, loss) for ids, loss, _ in passes), imgs.shape[0], model.num_patches, imgs.device)


def _require_predictor(model: MaskedAutoencoder) -> None:
    if not model.has_predictor:
        raise CheckpointError("this model has no loss predictor (an MAE run); there is no predicted loss")


@torch.no_grad()
def predicted_patch_loss(model: MaskedAutoencoder, imgs: Tensor) -> Tensor:
    """The loss predictor's score of every patch on the full image. [N, C, H, W] (or clips
    [N, C, T, H, W]) -> [N, L]."""
    _require_predictor(model)
    return model.score_patches(imgs).float()


@torch.no_grad()
def masked_view_scores(
    model: MaskedAutoencoder,
    imgs: Tensor,
    num_masks: int = 10,
    mask_ratio: float = 0.75,
    generator: torch.Generator | None = None,
) -> Tensor:
    """The predictor's scores from partial views, where it is trained: for each of ``num_masks``
    random masks the scores of the masked patches, z-normalised within the image (the relative
    objective fixes scores only up to a shift per image and mask), averaged per patch over the
    masks that hid it. Works for a student or a teacher (no reconstructor needed).

    Returns:
        float32 [N, L] (NaN for a patch no mask hid).
    """
    _require_predictor(model)

    def passes() -> Iterator[tuple[Tensor, Tensor]]:
        for ids_mask, x in _masked_views(model, imgs, num_masks, mask_ratio, generator):
            yield ids_mask, znorm(torch.gather(model.forward_loss_predictor(x), 1, ids_mask))  # [N, K]

    return average_at_masked(passes(), imgs.shape[0], model.num_patches, imgs.device)[0]


@torch.no_grad()
def masked_view_spearman(
    model: MaskedAutoencoder,
    imgs: Tensor,
    num_masks: int = 10,
    mask_ratio: float = 0.75,
    generator: torch.Generator | None = None,
    target: TargetFn | None = None,
) -> Tensor:
    """The student's ranking where it is trained: its scores of the masked patches of a random
    mask against their real loss under that same mask. Returns [N]: Spearman per image, mean
    over the masks."""
    total = torch.zeros(imgs.shape[0], device=imgs.device)
    passes = _random_mask_losses(model, imgs, num_masks, mask_ratio, generator, target, with_scores=True)
    for ids_mask, real, scores in passes:
        total += spearman(torch.gather(scores.float(), 1, ids_mask), real)  # [N]
    return total / num_masks


@torch.no_grad()
def teacher_patch_scores(
    model: MaskedAutoencoder, cfg: Config, imgs: Tensor, generator: torch.Generator | None = None
) -> Tensor:
    """The scores a teacher computes to choose masks, as the run's ``mask.strategy`` and
    ``mask.teacher_view`` say: predicted loss (``hpm``) or [CLS] attention (``attention``).

    Full view: :func:`~hpm.masking.score_full_view`. Masked view: ``mask.teacher_views`` partial
    views of ratio ``mask.teacher_ratio`` drawn from ``generator`` and scored as in training
    (:func:`~hpm.masking.score_partial_views`); a patch none of them scored is NaN (it can not be
    chosen by score).

    Returns:
        float32 [N, L].
    """
    mc = cfg.mask
    source = score_source(mc.strategy)
    if source == "loss":
        _require_predictor(model)
    if mc.teacher_view == "full":
        return score_full_view(model, imgs, source)[0]
    noise = torch.rand(imgs.shape[0], model.num_patches, generator=generator).to(imgs.device)  # [N, L]
    view_mask = num_masked(model.num_patches, mc.view_ratio)
    return score_partial_views(model, imgs, noise, source, view_mask, mc.teacher_views)


def _fill_nan(x: Tensor) -> Tensor:
    """Replace NaN entries by their row's mean of the finite ones."""
    finite = torch.isfinite(x)
    mean = torch.where(finite, x, torch.zeros_like(x)).sum(1, keepdim=True) / finite.sum(1, keepdim=True).clamp(min=1)
    return torch.where(finite, x, mean.expand_as(x))


class _Generators(NamedTuple):
    """The three seeded mask draws of :func:`ranking_quality`."""

    masks: torch.Generator  # seed: the real loss and the student's masked-view ranking
    extra: torch.Generator  # seed + 1: the retest masks and the masked-average scores
    as_used: torch.Generator  # seed + 2: the teacher's partial views (masked-view runs)


def _rankings(models: PretrainedModels, batch: Tensor, num_masks: int, gens: _Generators) -> list[tuple[str, Tensor]]:
    """The per-patch scores [B, L] to rank against the real loss, by figure name (NaN: not scored)."""
    student, teacher, cfg = models.student, models.teacher, models.cfg
    ranked: list[tuple[str, Tensor]] = []
    for name, model in (("student", student), ("teacher", teacher)):
        if model is not None and model.has_predictor:
            full_key = "teacher_full" if name == "teacher" else name
            averaged = _fill_nan(masked_view_scores(model, batch, num_masks, cfg.mask.ratio, gens.extra))  # [B, L]
            ranked += [(full_key, predicted_patch_loss(model, batch)), (f"{name}_masked_avg", averaged)]
    if teacher is None:
        return ranked
    ranked.append(("teacher_attention", teacher.attention_scores(batch)))
    attention_run = score_source(cfg.mask.strategy) == "attention"
    if attention_run or teacher.has_predictor:  # the scores that chose the run's masks
        if cfg.mask.teacher_view == "full":  # the same full-image pass as one above
            ranked.append(("teacher", dict(ranked)["teacher_attention" if attention_run else "teacher_full"]))
        else:
            ranked.append(("teacher", teacher_patch_scores(teacher, cfg, batch, gens.as_used)))
    return ranked


def _batch_figures(
    models: PretrainedModels, batch: Tensor, num_masks: int, gens: _Generators, target: TargetFn
) -> list[tuple[str, Tensor]]:
    """Every figure of :func:`ranking_quality` for one batch, per image ([B] each), in report order."""
    student, ratio = models.student, models.cfg.mask.ratio
    real = _fill_nan(real_patch_loss(student, batch, num_masks, ratio, gens.masks, target)[0])  # [B, L]
    figures: list[tuple[str, Tensor]] = []
    if student.has_predictor:
        figures.append(("student_masked_spearman",
                        masked_view_spearman(student, batch, num_masks, ratio, gens.masks, target)))
    retest = _fill_nan(real_patch_loss(student, batch, num_masks, ratio, gens.extra, target)[0])  # [B, L]
    figures.append(("real_retest_spearman", spearman(retest, real)))
    for key, pred in _rankings(models, batch, num_masks, gens):
        figures.append((f"{key}_spearman", masked_spearman(pred, real, torch.isfinite(pred))))
        figures.append((f"{key}_top25", top_fraction_overlap(torch.nan_to_num(pred, nan=float("-inf")), real)))
    return figures


def _teacher_setting(mc: MaskConfig) -> dict[str, object]:
    """How the run's teacher scores patches, stored beside its figures."""
    return {"teacher_view": mc.teacher_view, "teacher_views": mc.teacher_views if mc.teacher_view == "masked" else 0,
            "mask_strategy": mc.strategy}


@torch.no_grad()
def ranking_quality(
    models: PretrainedModels,
    imgs: Tensor,
    num_masks: int = 10,
    batch_size: int = 256,
    seed: int = 0,
) -> dict[str, float]:
    """How well the predicted loss ranks the real (mask-averaged) loss.

    Args:
        models: Student (its reconstructor gives the real loss) and, for HPM, the teacher.
        imgs: [N, C, H, W] normalised images (e.g. a fixed slice of the test split).
        num_masks: M, random masks averaged per image.
        batch_size: Images per forward pass.
        seed: Seeds the masks.

    Returns:
        Mean over images of the Spearman correlation and of the top-25% overlap (chance 0.25)
        between the prediction and the real loss: ``teacher_spearman`` / ``teacher_top25``
        measure the teacher as the run configures it (``teacher_view``: the full image, or
        partial views drawn from a third generator, seed + 2, as in training; then Spearman over
        the patches the views hid, and the top 25% taken among them, which are the patches a
        mask can take as hard, against the truly hardest quarter of all patches);
        ``teacher_full_*`` is always the full-image pass (the same figures as ``teacher_*`` for a
        full-view run), ``student_*`` the student's full-image pass, and
        ``student_masked_spearman`` (:func:`masked_view_spearman`: the partial view the
        predictor is trained on); ``teacher_attention_*``, the teacher's full-image [CLS]
        attention (AttMask's score; for an ``attention`` run ``teacher_*`` is its attention as
        the run configures it and ``teacher_full_*`` the predicted loss, when it has a
        predictor); empty for an MAE run. Two diagnostics of the full-view ranking,
        from masks drawn by a second generator (so the figures above do not change with them):
        ``real_retest_spearman``, the real loss against itself from ``num_masks`` other masks
        (the ceiling any ranking of a mask-averaged loss can reach), and ``*_masked_avg_spearman`` /
        ``*_masked_avg_top25``, the ranking by :func:`masked_view_scores` (scores from partial
        views averaged per patch) instead of one full-view pass.
    """
    student, teacher = models.student, models.teacher
    if not student.has_predictor and teacher is None:
        return {}
    gens = _Generators(*(torch.Generator().manual_seed(seed + i) for i in range(3)))
    target = run_target(models)
    sums: dict[str, float] = {}
    for start in range(0, imgs.shape[0], batch_size):
        for key, values in _batch_figures(models, imgs[start : start + batch_size], num_masks, gens, target):
            sums[key] = sums.get(key, 0.0) + float(values.sum())
    out = {key: value / imgs.shape[0] for key, value in sums.items()}
    if teacher is not None:
        out.update(_teacher_setting(models.cfg.mask))
    return out
