"""How well predicted patch losses rank the real ones (batched, on the device)."""

from __future__ import annotations

import torch
from torch import Tensor


def _ranks(x: Tensor) -> Tensor:
    """[N, K] -> [N, K] float ranks 0..K-1 along dim 1 (ties broken by position)."""
    return torch.argsort(torch.argsort(x, dim=1), dim=1).float()


def spearman(pred: Tensor, real: Tensor) -> Tensor:
    """Spearman rank correlation per row. [N, K], [N, K] -> [N]."""
    a = _ranks(pred.float())
    b = _ranks(real.float())
    a = a - a.mean(dim=1, keepdim=True)
    b = b - b.mean(dim=1, keepdim=True)
    denom = (a.pow(2).sum(dim=1) * b.pow(2).sum(dim=1)).sqrt().clamp(min=1e-12)
    return (a * b).sum(dim=1) / denom


def top_fraction_overlap(pred: Tensor, real: Tensor, fraction: float = 0.25) -> Tensor:
    """Share of each row's truly hardest ``fraction`` that ``pred`` also ranks in its top ``fraction``.

    [N, K], [N, K] -> [N] in [0, 1]; chance level is ``fraction``.
    """
    k = max(1, int(real.shape[1] * fraction))
    top_real = torch.zeros_like(real, dtype=torch.bool).scatter_(1, real.topk(k, dim=1).indices, True)
    top_pred = torch.zeros_like(pred, dtype=torch.bool).scatter_(1, pred.topk(k, dim=1).indices, True)
    return (top_real & top_pred).sum(dim=1).float() / k


def masked_spearman(pred: Tensor, real: Tensor, valid: Tensor) -> Tensor:
    """Spearman rank correlation per row over the entries where ``valid`` is True.

    [N, K], [N, K], [N, K] bool -> [N]; NaN for a row with fewer than two valid entries.
    Equals :func:`spearman` on the valid entries (invalid ones are ranked last, then ignored).
    """
    inf = torch.tensor(float("inf"), device=pred.device)
    a = _ranks(torch.where(valid, pred.float(), inf))  # valid entries get ranks 0..n-1
    b = _ranks(torch.where(valid, real.float(), inf))
    v = valid.float()
    n = v.sum(dim=1, keepdim=True)
    mid = (n - 1) / 2
    a = (a - mid) * v
    b = (b - mid) * v
    denom = (a.pow(2).sum(dim=1) * b.pow(2).sum(dim=1)).sqrt().clamp(min=1e-12)
    out = (a * b).sum(dim=1) / denom
    return out.masked_fill(n.squeeze(1) < 2, float("nan"))


def chosen_overlap(real: Tensor, num_chosen: int, fraction: float = 0.25) -> Tensor:
    """Share of the first ``num_chosen`` columns that lie in each row's truly hardest ``fraction``.

    [N, K] real losses (columns in mask order, the score-chosen patches first) -> [N]; chance
    level is ``fraction`` when the chosen patches are random.
    """
    k = max(1, int(real.shape[1] * fraction))
    top_real = torch.zeros_like(real, dtype=torch.bool).scatter_(1, real.topk(k, dim=1).indices, True)
    return top_real[:, :num_chosen].float().mean(dim=1)
