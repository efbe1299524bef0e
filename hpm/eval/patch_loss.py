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
    n, num_patches = imgs.shape[0], model.num_patches
    k = num_masked(num_patches, mask_ratio)
    targets_all = model.patchify(imgs)  # [N, L, P]
    for _ in range(num_masks):
        noise = torch.rand(n, num_patches, generator=generator).to(imgs.device)  # [N, L]
        ids = random_mask(noise, k)
        if with_scores:
            pred, scores = model(imgs, ids.ids_keep, ids.ids_mask)  # [N, K, P], [N, L]
        else:  # the reconstructor alone
            ids_restore = torch.argsort(torch.cat([ids.ids_keep, ids.ids_mask], dim=1), dim=1)  # [N, L]
            x = model.forward_decoder_input(model.forward_encoder(imgs, ids.ids_keep), ids_restore)
            pred, scores = model.forward_decoder(x, ids.ids_mask), None  # [N, K, P]
        target = torch.gather(targets_all, 1, ids.ids_mask.unsqueeze(-1).expand(-1, -1, targets_all.shape[-1]))
        per_patch = (pred.float() - patch_targets(target, norm_pix)).pow(2).mean(dim=-1)  # [N, K]
        yield ids.ids_mask, per_patch, scores


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
    n, num_patches = imgs.shape[0], model.num_patches
    total = torch.zeros(n, num_patches, device=imgs.device)
    count = torch.zeros(n, num_patches, dtype=torch.long, device=imgs.device)
    for ids_mask, per_patch, _ in _random_mask_losses(model, imgs, num_masks, mask_ratio, generator, norm_pix):
        total.scatter_add_(1, ids_mask, per_patch)
        count.scatter_add_(1, ids_mask, torch.ones_like(ids_mask))
    loss = total / count.clamp(min=1)
    return loss.masked_fill(count == 0, float("nan")), count


@torch.no_grad()
def predicted_patch_loss(model: MaskedAutoencoder, imgs: Tensor) -> Tensor:
    """The loss predictor's score of every patch on the full image. [N, C, H, W] -> [N, L]."""
    if not model.has_predictor:
        raise CheckpointError("this model has no loss predictor (an MAE run); there is no predicted loss")
    return model.score_patches(imgs).float()


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
        predictor is trained on); empty for an MAE run.
    """
    student, teacher = models.student, models.teacher
    if not student.has_predictor:
        return {}
    generator = torch.Generator().manual_seed(seed)
    sums: dict[str, float] = {}
    for start in range(0, imgs.shape[0], batch_size):
        batch = imgs[start : start + batch_size]
        real, _ = real_patch_loss(
            student, batch, num_masks, models.cfg.mask.ratio, generator, models.cfg.model.norm_pix_loss
        )
        real = _fill_nan(real)
        masked = masked_view_spearman(
            student, batch, num_masks, models.cfg.mask.ratio, generator, models.cfg.model.norm_pix_loss
        )
        sums["student_masked_spearman"] = sums.get("student_masked_spearman", 0.0) + float(masked.sum())
        for name, model in (("student", student), ("teacher", teacher)):
            if model is None:
                continue
            pred = predicted_patch_loss(model, batch)
            sums[f"{name}_spearman"] = sums.get(f"{name}_spearman", 0.0) + float(spearman(pred, real).sum())
            sums[f"{name}_top25"] = sums.get(f"{name}_top25", 0.0) + float(top_fraction_overlap(pred, real).sum())
    return {key: value / imgs.shape[0] for key, value in sums.items()}
