"""The maps one panel figure shows: real loss, the teacher's scores, the mask they choose."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import NamedTuple

import torch
from torch import Tensor

from hpm.config import Config
from hpm.errors import DataError
from hpm.eval.patch_loss import PretrainedModels, predicted_patch_loss, real_patch_loss, run_target, teacher_patch_scores
from hpm.masking import (
    MaskIds, MaskRequest, alpha_at, get_strategy, num_hard_patches, num_masked, score_source, shown_hints,
)
from hpm.viz.panels.reconstruction import denormalise, reconstruction_picture

COLUMNS = ("input", "real_loss", "predicted_loss", "mask", "reconstruction")
ATTENTION_COLUMNS = ("input", "real_loss", "predicted_loss", "attention", "mask", "reconstruction")  # attention runs


@dataclass
class PatchMaps:
    """Everything one panel figure shows, for ``N`` images of ``L`` patches.

    Attributes:
        pixels: [N, C, H, W] the inputs, de-normalised to [0, 1].
        real_loss: [N, L] MSE of each patch against the run's target averaged over the masks
            that hid it (NaN for a patch none of them hid).
        mask_count: [N, L] how many of the ``num_masks`` masks hid each patch.
        predicted: [N, L] the loss predictor's score as the teacher computes it (NaN for a patch
            its partial views left visible), or None (MAE run).
        predictor: ``"teacher"``, ``"student"`` or None: whose scores ``predicted`` holds.
        teacher_view: ``"full"`` or ``"masked"``: the view ``predicted`` comes from.
        teacher_views: partial views per image (masked view), else 0.
        masked: [N, L] bool, the mask of the reconstruction (HPM's; random for an MAE run).
        hard: [N, L] bool, the masked patches chosen by score, or None (MAE run).
        attention: [N, L] the teacher's [CLS] attention that chose the mask (attention runs;
            NaN for a patch its partial views hid), else None.
        attention_mode: ``mask.attention_mode`` of an attention run, else None.
        hints: [N, L] bool, the most-attended patches shown back (``hints`` mode), else None.
        chosen: ``"hardest"`` or ``"easiest"`` (``mask.select``): which patches ``hard`` holds.
        reconstruction: [N, C, H, W] in [0, 1]: predictions in the masked patches, the input
            elsewhere; for a target that is not pixels, a picture of the target ([N, 1 or 3, H', W']).
        target: ``loss.target`` of the run.
        alpha: α of the HPM mask (None for an MAE run).
        num_masks: M.
        mask_ratio: Fraction of the patches every mask hides.
        grid: Patches per column and per row.
        labels: One label per image (data-set index and class, or file name).
    """

    pixels: Tensor
    real_loss: Tensor
    mask_count: Tensor
    predicted: Tensor | None
    predictor: str | None
    masked: Tensor
    hard: Tensor | None
    chosen: str
    reconstruction: Tensor
    alpha: float | None
    num_masks: int
    mask_ratio: float
    grid: tuple[int, int]
    labels: list[str]
    teacher_view: str = "full"
    target: str = "norm_pix"
    teacher_views: int = 0
    attention: Tensor | None = None
    attention_mode: str | None = None
    hints: Tensor | None = None

    @property
    def columns(self) -> tuple[str, ...]:
        """The panels of one row: :data:`COLUMNS`, or :data:`ATTENTION_COLUMNS` for an attention run."""
        return ATTENTION_COLUMNS if self.attention is not None else COLUMNS


class _ShownMask(NamedTuple):
    """The mask a figure shows and the scores that chose it (the score fields of :class:`PatchMaps`)."""

    ids: MaskIds
    predicted: Tensor | None
    predictor: str | None
    hard: Tensor | None
    chosen: str
    alpha: float | None
    teacher_view: str = "full"
    teacher_views: int = 0
    attention: Tensor | None = None
    attention_mode: str | None = None
    hints: Tensor | None = None


def final_alpha(cfg: Config) -> float:
    """The α of the run's last step (``mask.alpha_end`` for the default easy-to-hard schedule)."""
    # frac = 1 for both schedule units: epoch (epochs-1+1)/epochs, iter (0+1)/1
    return alpha_at(cfg.mask, cfg.train.epochs - 1, 0, cfg.train.epochs, 1)


@torch.no_grad()
def _check_alpha(alpha: float, num_hard: int, scores: Tensor, chosen_by: str) -> None:
    """Refuse an α outside [0, 1] or one that asks for more patches than ``scores`` [N, L] scores."""
    if not 0.0 <= alpha <= 1.0:
        raise DataError(f"alpha must be in [0, 1], got {alpha}")
    if num_hard > int(torch.isfinite(scores).sum(1).min()):
        raise DataError(f"alpha {alpha} asks for {num_hard} patches chosen by {chosen_by}, more than the teacher's view scores")


def _request(cfg: Config, grid: tuple[int, int], seed: int, n: int, num_hard: int = 0,
             scores: Tensor | None = None) -> MaskRequest:
    """A request for ``n`` images whose random part comes from generator ``seed + 1``."""
    k = num_masked(grid[0] * grid[1], cfg.mask.ratio)
    return MaskRequest(cfg.mask, grid, k, torch.Generator().manual_seed(seed + 1), n, (0, n), "cpu", num_hard, scores)


def _scored_mask(
    cfg: Config, strategy: str, scores: Tensor, grid: tuple[int, int], alpha: float | None, seed: int, chosen_by: str
) -> tuple[MaskIds, Tensor, float, int]:
    """The mask ``strategy`` chooses from ``scores`` [N, L] at α (default: the run's last).

    Returns:
        ``(ids, hard, alpha, num_hard)``: ``hard`` [N, L] bool, the masked patches chosen by score.
    """
    alpha = final_alpha(cfg) if alpha is None else alpha
    num_hard = num_hard_patches(num_masked(scores.shape[1], cfg.mask.ratio), alpha)
    _check_alpha(alpha, num_hard, scores, chosen_by)
    masking = get_strategy(strategy)
    ids = masking.mask(_request(cfg, grid, seed, scores.shape[0], num_hard, scores))
    chosen = ids.ids_mask[:, : masking.num_chosen(cfg.mask, num_hard)]  # [N, H']
    hard = torch.zeros(scores.shape, dtype=torch.bool).scatter_(1, chosen, True)  # [N, L]
    return ids, hard, alpha, num_hard


def _predicted_loss_mask(models: PretrainedModels, imgs: Tensor, alpha: float | None, seed: int) -> _ShownMask:
    """HPM's mask from the predicted loss as the run's teacher scores it (partial views from
    generator ``seed + 2``), or the student's full-image score without a teacher; a random mask
    without a predictor (MAE run)."""
    cfg, student, teacher = models.cfg, models.student, models.teacher
    grid, n = student.grid_size, imgs.shape[0]
    if teacher is not None:  # as the run's teacher scores patches to choose masks
        predicted = teacher_patch_scores(teacher, cfg, imgs, torch.Generator().manual_seed(seed + 2))  # [N, L]
    elif student.has_predictor:
        predicted = predicted_patch_loss(student, imgs)  # [N, L]
    else:
        return _ShownMask(get_strategy("random").mask(_request(cfg, grid, seed, n)), None, None, None,
                          cfg.mask.select, None)
    ids, hard, alpha, _ = _scored_mask(cfg, "hpm", predicted, grid, alpha, seed, "predicted loss")
    masked_view = teacher is not None and cfg.mask.teacher_view == "masked"
    return _ShownMask(
        ids, predicted, "teacher" if teacher is not None else "student", hard, cfg.mask.select, alpha,
        teacher_view="masked" if masked_view else "full", teacher_views=cfg.mask.teacher_views if masked_view else 0,
    )


def _attention_mask(models: PretrainedModels, imgs: Tensor, alpha: float | None, seed: int) -> _ShownMask:
    """The attention mask of an attention run: the teacher's attention as the run scores patches
    (partial views from generator ``seed + 2``) chooses it; the predicted loss is the teacher's
    full-image pass, if it has a predictor."""
    cfg, teacher = models.cfg, models.teacher
    assert teacher is not None
    attention = teacher_patch_scores(teacher, cfg, imgs, torch.Generator().manual_seed(seed + 2))  # [N, L]
    predicted = predicted_patch_loss(teacher, imgs) if teacher.has_predictor else None  # [N, L]
    grid, mode = models.student.grid_size, cfg.mask.attention_mode
    ids, hard, alpha, num_hard = _scored_mask(cfg, "attention", attention, grid, alpha, seed, "attention")
    masked_view = cfg.mask.teacher_view == "masked"
    return _ShownMask(
        ids, predicted, "teacher" if predicted is not None else None, hard,
        "least-attended" if mode == "low" else "most-attended", alpha,
        teacher_view="masked" if masked_view else "full", teacher_views=cfg.mask.teacher_views if masked_view else 0,
        attention=attention, attention_mode=mode,
        hints=shown_hints(attention, ids, num_hard) if mode == "hints" else None,
    )


def compute_maps(
    models: PretrainedModels,
    imgs: Tensor,
    mean: Sequence[float],
    std: Sequence[float],
    num_masks: int = 10,
    alpha: float | None = None,
    seed: int = 0,
    labels: Sequence[str] | None = None,
) -> PatchMaps:
    """Real loss, predicted loss, HPM mask and reconstruction of ``imgs``.

    Args:
        models: The run's student (reconstructor, maybe a predictor) and teacher (HPM).
        imgs: [N, C, H, W] images normalised as in training.
        mean: Per-channel mean of that normalisation (to show pixels).
        std: Per-channel standard deviation of it.
        num_masks: M, random masks averaged for the real loss.
        alpha: α of the HPM mask (default: the run's last α, see :func:`final_alpha`).
        seed: Seeds the M masks (generator ``seed``), the random part of the HPM mask
            (generator ``seed + 1``) and a masked-view teacher's partial views (``seed + 2``).
        labels: Row labels (default ``#0``, ``#1``, ...).
    """
    cfg, student = models.cfg, models.student
    target = run_target(models)
    real, count = real_patch_loss(student, imgs, num_masks, cfg.mask.ratio, torch.Generator().manual_seed(seed), target)
    if score_source(cfg.mask.strategy) == "attention" and models.teacher is not None:
        shown = _attention_mask(models, imgs, alpha, seed)
    else:
        shown = _predicted_loss_mask(models, imgs, alpha, seed)
    fields = shown._asdict()
    ids = fields.pop("ids")
    return PatchMaps(
        pixels=denormalise(imgs.float(), mean, std),
        real_loss=real,
        mask_count=count,
        masked=ids.as_bool(student.num_patches),
        reconstruction=reconstruction_picture(models, imgs, ids, mean, std, target),
        num_masks=num_masks,
        mask_ratio=cfg.mask.ratio,
        grid=student.grid_size,
        labels=list(labels) if labels is not None else [f"#{i}" for i in range(imgs.shape[0])],
        target=cfg.loss.target,
        **fields,
    )
