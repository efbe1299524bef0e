"""Real and predicted per-patch reconstruction loss of a pre-trained model (the paper's Figure 2).

The *real* loss of a patch is its reconstruction MSE (against the run's ``loss.target``) when
it is masked, averaged over ``M`` random masks (each patch is masked in about ``0.75 M`` of them). The *predicted* loss is the loss
predictor's score as the teacher computes it when it chooses masks (``mask.teacher_view``: the
full image, or random partial views scored at their hidden patches). How well the prediction
ranks the real loss is the measure of what HPM's teacher has learnt.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import Tensor

from hpm.config import Config
from hpm.engine.checkpoint import load_state, load_weights, resolve_checkpoint
from hpm.engine.ema import build_teacher
from hpm.engine.ranking import masked_spearman, spearman, top_fraction_overlap
from hpm.errors import CheckpointError
from hpm.eval.encoder import _checkpoint_config
from hpm.losses.targets import TargetFn, all_patches, build_target, gather_patches, pixel_target
from hpm.masking import (
    attention_view_scores, average_at_masked, num_masked, random_mask, score_teacher_views, teacher_views, znorm,
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
    target = target or pixel_target(model.patch_size, norm=True)
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
        imgs: [N, C, H, W] normalised images.
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
    """The loss predictor's score of every patch on the full image. [N, C, H, W] -> [N, L]."""
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

    Full view: :func:`predicted_patch_loss` or :meth:`~MaskedAutoencoder.attention_scores`.
    Masked view: ``mask.teacher_views`` partial views of ratio ``mask.teacher_ratio`` drawn from
    ``generator`` and scored as in training (:func:`~hpm.masking.score_teacher_views`, hidden
    patches; :func:`~hpm.masking.attention_view_scores`, shown patches); a patch none of them
    scored is NaN (it can not be chosen by score).

    Returns:
        float32 [N, L].
    """
    mc = cfg.mask
    attention = mc.strategy == "attention"
    if not attention:
        _require_predictor(model)
    if mc.teacher_view == "full":
        return model.attention_scores(imgs) if attention else predicted_patch_loss(model, imgs)
    noise = torch.rand(imgs.shape[0], model.num_patches, generator=generator).to(imgs.device)  # [N, L]
    views = teacher_views(noise, num_masked(model.num_patches, mc.view_ratio), mc.teacher_views)
    return attention_view_scores(model, imgs, views) if attention else score_teacher_views(model, imgs, views)


def _fill_nan(x: Tensor) -> Tensor:
    """Replace NaN entries by their row's mean of the finite ones."""
    finite = torch.isfinite(x)
    mean = torch.where(finite, x, torch.zeros_like(x)).sum(1, keepdim=True) / finite.sum(1, keepdim=True).clamp(min=1)
    return torch.where(finite, x, mean.expand_as(x))


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
    attention_run = models.cfg.mask.strategy == "attention"
    generator = torch.Generator().manual_seed(seed)
    extra = torch.Generator().manual_seed(seed + 1)
    as_used = torch.Generator().manual_seed(seed + 2)  # the teacher's partial views (masked-view runs)
    ratio, target = models.cfg.mask.ratio, run_target(models)
    scorers = [(name, model) for name, model in (("student", student), ("teacher", teacher))
               if model is not None and model.has_predictor]
    sums: dict[str, float] = {}

    def add(key: str, values: Tensor) -> None:
        sums[key] = sums.get(key, 0.0) + float(values.sum())

    for start in range(0, imgs.shape[0], batch_size):
        batch = imgs[start : start + batch_size]
        real = _fill_nan(real_patch_loss(student, batch, num_masks, ratio, generator, target)[0])  # [B, L]
        if student.has_predictor:
            add("student_masked_spearman", masked_view_spearman(student, batch, num_masks, ratio, generator, target))
        retest = _fill_nan(real_patch_loss(student, batch, num_masks, ratio, extra, target)[0])
        add("real_retest_spearman", spearman(retest, real))
        ranked: list[tuple[str, Tensor]] = []
        for name, model in scorers:
            ranked += [(f"{name}{'_full' if name == 'teacher' else ''}", predicted_patch_loss(model, batch)),
                       (f"{name}_masked_avg", _fill_nan(masked_view_scores(model, batch, num_masks, ratio, extra)))]
        if teacher is not None:
            ranked.append(("teacher_attention", teacher.attention_scores(batch)))
            if attention_run or teacher.has_predictor:  # the scores that chose the run's masks
                if models.cfg.mask.teacher_view == "full":  # the same full-image pass as one above
                    same = dict(ranked)["teacher_attention" if attention_run else "teacher_full"]
                    ranked.append(("teacher", same))
                else:
                    ranked.append(("teacher", teacher_patch_scores(teacher, models.cfg, batch, as_used)))
        for key, pred in ranked:
            scored = torch.isfinite(pred)
            add(f"{key}_spearman", masked_spearman(pred, real, scored))
            add(f"{key}_top25", top_fraction_overlap(torch.nan_to_num(pred, nan=float("-inf")), real))
    out = {key: value / imgs.shape[0] for key, value in sums.items()}
    if teacher is not None:
        mc = models.cfg.mask
        out.update(teacher_view=mc.teacher_view, teacher_views=mc.teacher_views if mc.teacher_view == "masked" else 0,
                   mask_strategy=mc.strategy)
    return out
