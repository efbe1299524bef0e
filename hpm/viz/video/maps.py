"""What the video picture shows of some clips: per-token real loss, the teacher's scores, the
mask the run's strategy draws from them, and the reconstruction under that mask."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import Tensor

from hpm.eval.patch_loss import (
    PretrainedModels, predicted_patch_loss, real_patch_loss, run_target, teacher_patch_scores,
)
from hpm.masking import MaskIds, MaskRequest, get_strategy, num_hard_patches, score_source
from hpm.viz.panels.maps import final_alpha
from hpm.viz.panels.reconstruction import reconstruct

PIXEL_TARGETS = ("norm_pix", "pix")


@dataclass
class ClipMaps:
    """Everything the video picture shows, for ``N`` clips of ``L = T' * H' * W'`` tokens.

    Attributes:
        pixels: [N, C, T, H, W] the clips, de-normalised to [0, 1].
        real_loss: [N, L] MSE of each token against the run's target averaged over the
            ``num_masks`` random masks that hid it (NaN: no mask hid it).
        predicted: [N, L] the loss predictor's score as the run's teacher computes it (NaN: its
            partial views left the token visible), the student's without a teacher, or None (no
            loss predictor).
        masked: [N, L] bool, the mask the run's ``mask.strategy`` draws (from the teacher's
            scores for a scored strategy).
        hard: [N, L] bool, the masked tokens chosen by score (all False for an unscored strategy).
        reconstruction: [N, C, T, H, W] in [0, 1], the student's prediction in the masked
            tubelets and the clip elsewhere, or None (a target that is not pixels).
        strategy: ``mask.strategy`` of the run.
        alpha: α of the mask (None: the strategy uses no scores).
        time_size: T', token positions in time.
        grid: H', W' token rows and columns per time step.
        tubelet: t, frames per tubelet.
        patch: p, pixels per token side.
        labels: one label per clip.
    """

    pixels: Tensor
    real_loss: Tensor
    predicted: Tensor | None
    masked: Tensor
    hard: Tensor
    reconstruction: Tensor | None
    strategy: str
    alpha: float | None
    time_size: int
    grid: tuple[int, int]
    tubelet: int
    patch: int
    labels: list[str]

    def frame_map(self, values: Tensor) -> Tensor:
        """Per-token values [N, L] as per-pixel maps of every frame: [N, T, H, W]."""
        return token_frames(values, self.time_size, self.grid, self.tubelet, self.patch)


def token_frames(values: Tensor, time_size: int, grid: tuple[int, int], tubelet: int, patch: int) -> Tensor:
    """Time-major per-token values [N, T' * H' * W'] upsampled to the frames: [N, T' t, H' p, W' p];
    every pixel of a tubelet's frames holds the tubelet's value."""
    maps = values.reshape(values.shape[0], time_size, grid[0], grid[1])  # [N, T', H', W']
    return maps.repeat_interleave(tubelet, 1).repeat_interleave(patch, 2).repeat_interleave(patch, 3)


def denormalise_clips(x: Tensor, mean: Sequence[float], std: Sequence[float]) -> Tensor:
    """[N, C, T, H, W] normalised clips back to pixels in [0, 1]."""
    m = torch.tensor(mean, dtype=x.dtype).view(1, -1, 1, 1, 1)
    s = torch.tensor(std, dtype=x.dtype).view(1, -1, 1, 1, 1)
    return (x * s + m).clamp(0.0, 1.0)


def _scores(models: PretrainedModels, clips: Tensor, seed: int) -> tuple[Tensor | None, Tensor | None]:
    """``(predicted, mask_scores)`` [N, L] each or None: the predicted loss shown, and the scores the
    run's strategy masks by: the teacher's as the run computes them (partial views from generator
    ``seed + 2``), the student's full-view predicted loss in a checkpoint without a teacher."""
    cfg, student, teacher = models.cfg, models.student, models.teacher
    scores = None
    if get_strategy(cfg.mask.strategy).uses_teacher:
        gen = torch.Generator().manual_seed(seed + 2)
        scores = teacher_patch_scores(teacher, cfg, clips, gen) if teacher is not None else predicted_patch_loss(student, clips)
        if score_source(cfg.mask.strategy) == "loss":
            return scores, scores
    predictor = teacher if teacher is not None and teacher.has_predictor else student
    return (predicted_patch_loss(predictor, clips) if predictor.has_predictor else None), scores


@torch.no_grad()
def clip_mask(
    models: PretrainedModels, clips: Tensor, scores: Tensor | None, alpha: float | None, seed: int
) -> tuple[MaskIds, Tensor, float | None]:
    """The mask the run's ``mask.strategy`` draws for ``clips`` [N, C, T, H, W], its random part from
    generator ``seed + 1``, at α (default: the run's last) when ``scores`` [N, L] choose tokens.

    Returns:
        ``(ids, hard, alpha)``: ``hard`` [N, L] bool, the masked tokens chosen by score; ``alpha``
        None for an unscored strategy.
    """
    cfg, model = models.cfg, models.student
    strategy = get_strategy(cfg.mask.strategy)
    n, num_tokens, time_size = clips.shape[0], model.num_patches, model.time_size
    k = strategy.masked_count(num_tokens, cfg.mask.ratio, time_size)
    alpha = (final_alpha(cfg) if alpha is None else alpha) if scores is not None else None
    num_hard = num_hard_patches(k, alpha) if alpha is not None else 0
    request = MaskRequest(cfg.mask, model.grid_size, k, torch.Generator().manual_seed(seed + 1), n, (0, n), "cpu",
                          num_hard, scores, time_size)
    ids = strategy.mask(request)
    chosen = ids.ids_mask[:, : strategy.chosen_count(cfg.mask, num_hard, time_size)]  # [N, H']
    hard = torch.zeros(n, num_tokens, dtype=torch.bool).scatter_(1, chosen, True)  # [N, L]
    return ids, hard, alpha


@torch.no_grad()
def compute_clip_maps(
    models: PretrainedModels,
    clips: Tensor,
    mean: Sequence[float],
    std: Sequence[float],
    num_masks: int = 10,
    alpha: float | None = None,
    seed: int = 0,
    labels: Sequence[str] | None = None,
) -> ClipMaps:
    """Real loss, predicted loss, the run's mask and the reconstruction of ``clips``.

    Args:
        models: The run's student (reconstructor, maybe a predictor) and teacher.
        clips: [N, C, T, H, W] clips normalised as in training.
        mean: Per-channel mean of that normalisation (to show pixels).
        std: Per-channel standard deviation of it.
        num_masks: M, random masks averaged for the real loss (generator ``seed``).
        alpha: α of a scored mask (default: the run's last α).
        seed: Seeds the M masks (``seed``), the mask's random part (``seed + 1``) and a
            masked-view teacher's partial views (``seed + 2``), as the image panels do.
        labels: Row labels (default ``#0``, ``#1``, ...).
    """
    cfg, student = models.cfg, models.student
    target = run_target(models)
    real, _ = real_patch_loss(student, clips, num_masks, cfg.mask.ratio, torch.Generator().manual_seed(seed), target)
    predicted, scores = _scores(models, clips, seed)
    ids, hard, alpha = clip_mask(models, clips, scores, alpha, seed)
    recon = None
    if cfg.loss.target in PIXEL_TARGETS:
        recon = denormalise_clips(reconstruct(student, clips, ids, cfg.loss.target == "norm_pix"), mean, std)
    return ClipMaps(
        pixels=denormalise_clips(clips.float(), mean, std), real_loss=real, predicted=predicted,
        masked=ids.as_bool(student.num_patches), hard=hard, reconstruction=recon, strategy=cfg.mask.strategy,
        alpha=alpha, time_size=student.time_size, grid=student.grid_size, tubelet=student.tubelet_size,
        patch=student.patch_size, labels=list(labels) if labels is not None else [f"#{i}" for i in range(len(clips))],
    )
