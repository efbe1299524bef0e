"""HPM's loss-prediction objectives: learn to rank (relative) or regress (absolute) patch losses."""

from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor


def relative_loss(scores: Tensor, losses: Tensor) -> Tensor:
    """Pairwise ranking loss over the masked patches of each image.

    For every ordered pair (i, j) of masked patches of one image with losses[i] != losses[j]:
    label y = [losses[j] > losses[i]], logit scores[j] - scores[i], binary cross-entropy
    (stable logits form, fp32), averaged over the non-tied pairs.

    Args:
        scores: [N, K] predicted scores of the masked patches.
        losses: [N, K] real per-patch reconstruction losses (treated as constants).
    """
    with torch.autocast(scores.device.type, enabled=False):
        s = scores.float()
        loss = losses.detach().float()
        logits = s.unsqueeze(1) - s.unsqueeze(2)  # [N, K_i, K_j] = s_j - s_i
        labels = (loss.unsqueeze(1) > loss.unsqueeze(2)).float()  # l_j > l_i
        valid = loss.unsqueeze(1) != loss.unsqueeze(2)
        bce = F.binary_cross_entropy_with_logits(logits, labels, reduction="none")
        return (bce * valid).sum() / valid.sum().clamp(min=1)


def absolute_loss(scores: Tensor, losses: Tensor, eps: float = 1e-6) -> Tensor:
    """MSE between the scores and the per-image z-normalised losses of the masked patches.

    Args:
        scores: [N, K] predicted scores.
        losses: [N, K] real per-patch losses (treated as constants); normalised as
            (l - mean) / sqrt(var + eps) over each image's masked patches (unbiased var).
    """
    with torch.autocast(scores.device.type, enabled=False):
        loss = losses.detach().float()
        target = (loss - loss.mean(dim=1, keepdim=True)) / (loss.var(dim=1, keepdim=True) + eps) ** 0.5
        return F.mse_loss(scores.float(), target)


def loss_prediction_loss(
    kind: Literal["relative", "absolute"], scores: Tensor, losses: Tensor
) -> Tensor:
    """Dispatch to :func:`relative_loss` or :func:`absolute_loss`."""
    if kind == "relative":
        return relative_loss(scores, losses)
    if kind == "absolute":
        return absolute_loss(scores, losses)
    raise ValueError(f"unknown loss-prediction objective {kind!r} (relative, absolute)")
