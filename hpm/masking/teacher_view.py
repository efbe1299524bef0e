"""The EMA teacher's partial views (``mask.teacher_view: masked``) and how their scores combine.

The loss predictor is trained at mask-token positions of a partial view, so the teacher scores
patches the same way: it encodes a random partial view and reads its predictor at the hidden
positions. ``V`` views keep disjoint patch sets (chunks of one random permutation per image),
so with ``V >= 2`` every patch is hidden, and scored, in at least one view.
"""

from __future__ import annotations

from collections.abc import Iterable

import torch
from torch import Tensor

from hpm.masking.ids import MaskIds, split_by_order


def teacher_views(noise: Tensor, num_mask: int, num_views: int = 1) -> list[MaskIds]:
    """``num_views`` partial views per image whose visible patches are disjoint.

    Args:
        noise: [N, L] i.i.d. uniform noise (from the global-batch mask generator).
        num_mask: K_t, patches each view hides.
        num_views: V; needs ``V * (L - K_t) <= L``.

    Returns:
        V MaskIds, each [N, L - K_t] visible / [N, K_t] hidden. View 0 is exactly
        ``random_mask(noise, K_t)``.
    """
    num_patches = noise.shape[1]
    keep = num_patches - num_mask
    if num_views < 1 or num_views * keep > num_patches:
        raise ValueError(
            f"{num_views} teacher views of {keep} visible patches do not fit in {num_patches} patches "
            f"(need teacher_views * visible <= patches)"
        )
    order = torch.argsort(noise, dim=1, descending=True)  # [N, L]
    # rolling by v * keep moves the v-th chunk before the last keep entries into the visible part
    return [split_by_order(torch.roll(order, v * keep, dims=1), num_mask) for v in range(num_views)]


def znorm(scores: Tensor) -> Tensor:
    """Z-normalise each row (the relative objective fixes scores up to a shift per image and view)."""
    scores = scores.float()
    return (scores - scores.mean(1, keepdim=True)) / scores.std(1, keepdim=True).clamp(min=1e-6)


def average_at_masked(
    values: Iterable[tuple[Tensor, Tensor]], num_images: int, num_patches: int, device: torch.device
) -> tuple[Tensor, Tensor]:
    """Per-patch mean of values [N, K] given at hidden ids [N, K], over several views or masks.

    Args:
        values: (ids_mask [N, K], values [N, K]) pairs.

    Returns:
        ``(mean, count)``: float32 [N, L] (NaN where no view hid the patch), int64 [N, L].
    """
    total = torch.zeros(num_images, num_patches, device=device)
    count = torch.zeros(num_images, num_patches, dtype=torch.long, device=device)
    for ids_mask, vals in values:
        total.scatter_add_(1, ids_mask, vals.float())
        count.scatter_add_(1, ids_mask, torch.ones_like(ids_mask))
    mean = total / count.clamp(min=1)
    return mean.masked_fill(count == 0, float("nan")), count


@torch.no_grad()
def score_teacher_views(teacher, imgs: Tensor, views: list[MaskIds]) -> Tensor:
    """The teacher's scores from its partial views, one batched pass over all views.

    Args:
        teacher: a :class:`~hpm.models.mae.MaskedAutoencoder` with a loss predictor.
        imgs: [N, C, H, W].
        views: from :func:`teacher_views`.

    Returns:
        float32 [N, L]: each view's scores of its hidden patches z-normalised per image,
        averaged over the views that hid the patch; NaN for a patch no view hid.
    """
    n, v = imgs.shape[0], len(views)
    ids_keep = torch.cat([view.ids_keep for view in views])  # [V*N, L-K]
    ids_mask = torch.cat([view.ids_mask for view in views])  # [V*N, K]
    batch = imgs if v == 1 else imgs.repeat(v, *[1] * (imgs.dim() - 1))  # [V*N, C, H, W] (video: [V*N, C, T, H, W])
    scores = znorm(teacher.score_masked_view(batch, ids_keep, ids_mask))  # [V*N, K]
    pairs = [(ids_mask[i * n : (i + 1) * n], scores[i * n : (i + 1) * n]) for i in range(v)]
    return average_at_masked(pairs, n, teacher.num_patches, imgs.device)[0]
