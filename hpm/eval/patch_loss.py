"""Real and predicted per-patch reconstruction loss of a pre-trained model (the paper's Figure 2).

The *real* loss of a patch is its norm-pix MSE when it is masked, averaged over ``M`` random
masks (each patch is masked in about ``0.75 M`` of them). The *predicted* loss is the loss
predictor's score on the full image (the teacher's view when it chooses masks). How well the
prediction ranks the real loss is the measure of what HPM's teacher has learnt.
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
from hpm.engine.ranking import spearman, top_fraction_overlap
from hpm.errors import CheckpointError
from hpm.eval.encoder import _checkpoint_config
from hpm.losses import patch_targets
from hpm.masking import num_masked, random_mask
from hpm.models import build_model
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
    student = build_model(cfg.model, loss_predictor=cfg.loss.predictor != "none")
    load_weights(student, ckpt / "model.safetensors")
    teacher = None
    if (ckpt / "teacher.safetensors").is_file():
        teacher = build_teacher(student)
        load_weights(teacher, ckpt / "teacher.safetensors")
    for model in (student, teacher):
        if model is not None:
            model.eval().requires_grad_(False)
    return PretrainedModels(student, teacher, cfg, ckpt, int(state.get("step", 0)))


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
        ids_restore = torch.argsort(torch.cat([ids.ids_keep, ids.ids_mask], dim=1), dim=1)  # [N, L]
        yield ids.ids_mask, model.forward_decoder_input(model.forward_encoder(imgs, ids.ids_keep), ids_restore)


def _average_at_masked(passes: Iterator[tuple[Tensor, Tensor]], n: int, num_patches: int, device: torch.device) -> tuple[Tensor, Tensor]:
    """Per-patch mean of values [N, K] given at masked ids [N, K] over several masks.

    Returns ``(mean, count)``: float32 [N, L] (NaN where no mask hid the patch), int64 [N, L].
    """
    total = torch.zeros(n, num_patches, device=device)
    count = torch.zeros(n, num_patches, dtype=torch.long, device=device)
    for ids_mask, values in passes:
        total.scatter_add_(1, ids_mask, values.float())
        count.scatter_add_(1, ids_mask, torch.ones_like(ids_mask))
    mean = total / count.clamp(min=1)
    return mean.masked_fill(count == 0, float("nan")), count


def _random_mask_losses(
    model: MaskedAutoencoder,
    imgs: Tensor,
    num_masks: int,
    mask_ratio: float,
    generator: torch.Generator | None,
    norm_pix: bool,
    with_scores: bool = False,
) -> Iterator[tuple[Tensor, Tensor, Tensor | None]]:
    """For each of ``num_masks`` random masks: masked ids [N, K], their real loss [N, K] and,
    with ``with_scores``, the student's predictor scores [N, L] on that masked view."""
    targets_all = model.patchify(imgs)  # [N, L, P]
    for ids_mask, x in _masked_views(model, imgs, num_masks, mask_ratio, generator):
        pred = model.forward_decoder(x, ids_mask)  # [N, K, P]
        scores = model.forward_loss_predictor(x) if with_scores else None  # [N, L]
        target = torch.gather(targets_all, 1, ids_mask.unsqueeze(-1).expand(-1, -1, targets_all.shape[-1]))
        per_patch = (pred.float() - patch_targets(target, norm_pix)).pow(2).mean(dim=-1)  # [N, K]
        yield ids_mask, per_patch, scores


@torch.no_grad()
def real_patch_loss(
    model: MaskedAutoencoder,
    imgs: Tensor,
    num_masks: int = 10,
    mask_ratio: float = 0.75,
    generator: torch.Generator | None = None,
    norm_pix: bool = True,
) -> tuple[Tensor, Tensor]:
    """Per-patch reconstruction loss averaged over ``num_masks`` random masks.

    Args:
        model: A model with its reconstruction decoder.
        imgs: [N, C, H, W] normalised images.
        num_masks: M, random masks per image.
        mask_ratio: Fraction of patches each mask hides.
        generator: Draws the masks (CPU generator; seeded for reproducible maps).
        norm_pix: Targets normalised per patch (``model.norm_pix_loss`` of the run).

    Returns:
        ``(loss, count)``: float32 [N, L] mean loss over the masks that hid the patch (NaN for a
        patch no mask hid) and int64 [N, L] how many masks hid it.
    """
    if num_masks < 1:
        raise ValueError(f"num_masks must be >= 1, got {num_masks}")
    passes = _random_mask_losses(model, imgs, num_masks, mask_ratio, generator, norm_pix)
    return _average_at_masked(((ids, loss) for ids, loss, _ in passes), imgs.shape[0], model.num_patches, imgs.device)


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
            scores = torch.gather(model.forward_loss_predictor(x).float(), 1, ids_mask)  # [N, K]
            yield ids_mask, (scores - scores.mean(1, keepdim=True)) / scores.std(1, keepdim=True).clamp(min=1e-6)

    return _average_at_masked(passes(), imgs.shape[0], model.num_patches, imgs.device)[0]


@torch.no_grad()
def masked_view_spearman(
    model: MaskedAutoencoder,
    imgs: Tensor,
    num_masks: int = 10,
    mask_ratio: float = 0.75,
    generator: torch.Generator | None = None,
    norm_pix: bool = True,
) -> Tensor:
    """The student's ranking where it is trained: its scores of the masked patches of a random
    mask against their real loss under that same mask. Returns [N]: Spearman per image, mean
    over the masks."""
    total = torch.zeros(imgs.shape[0], device=imgs.device)
    passes = _random_mask_losses(model, imgs, num_masks, mask_ratio, generator, norm_pix, with_scores=True)
    for ids_mask, real, scores in passes:
        total += spearman(torch.gather(scores.float(), 1, ids_mask), real)  # [N]
    return total / num_masks


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
    """How well the predicted loss on the full image ranks the real (mask-averaged) loss.

    Args:
        models: Student (its reconstructor gives the real loss) and, for HPM, the teacher.
        imgs: [N, C, H, W] normalised images (e.g. a fixed slice of the test split).
        num_masks: M, random masks averaged per image.
        batch_size: Images per forward pass.
        seed: Seeds the masks.

    Returns:
        Mean over images of the Spearman correlation and of the top-25% overlap (chance 0.25)
        between the full-image prediction and the real loss, for the student's predictor
        (``student_*``) and the teacher's (``teacher_*``) where they exist, and
        ``student_masked_spearman`` (:func:`masked_view_spearman`: the partial view the
        predictor is trained on); empty for an MAE run. Two diagnostics of the full-view ranking,
        from masks drawn by a second generator (so the figures above do not change with them):
        ``real_retest_spearman``, the real loss against itself from ``num_masks`` other masks
        (the ceiling any ranking of a mask-averaged loss can reach), and ``*_masked_avg_spearman`` /
        ``*_masked_avg_top25``, the ranking by :func:`masked_view_scores` (scores from partial
        views averaged per patch) instead of one full-view pass.
    """
    student, teacher = models.student, models.teacher
    if not student.has_predictor:
        return {}
    generator = torch.Generator().manual_seed(seed)
    extra = torch.Generator().manual_seed(seed + 1)
    ratio, norm_pix = models.cfg.mask.ratio, models.cfg.model.norm_pix_loss
    scorers = [(name, model) for name, model in (("student", student), ("teacher", teacher)) if model is not None]
    sums: dict[str, float] = {}

    def add(key: str, values: Tensor) -> None:
        sums[key] = sums.get(key, 0.0) + float(values.sum())

    for start in range(0, imgs.shape[0], batch_size):
        batch = imgs[start : start + batch_size]
        real = _fill_nan(real_patch_loss(student, batch, num_masks, ratio, generator, norm_pix)[0])  # [B, L]
        add("student_masked_spearman", masked_view_spearman(student, batch, num_masks, ratio, generator, norm_pix))
        retest = _fill_nan(real_patch_loss(student, batch, num_masks, ratio, extra, norm_pix)[0])
        add("real_retest_spearman", spearman(retest, real))
        for name, model in scorers:
            for view, pred in (("", predicted_patch_loss(model, batch)),
                               ("_masked_avg", _fill_nan(masked_view_scores(model, batch, num_masks, ratio, extra)))):
                add(f"{name}{view}_spearman", spearman(pred, real))
                add(f"{name}{view}_top25", top_fraction_overlap(pred, real))
    return {key: value / imgs.shape[0] for key, value in sums.items()}
