"""HPM's hard-patch masking: the teacher's highest-scored patches plus random ones."""

from __future__ import annotations

import torch
from torch import Tensor

from hpm.config import Config
from hpm.masking.ids import MaskIds, split_by_order
from hpm.masking.strategy import MaskRequest, MaskStrategy


def hard_patch_mask(scores: Tensor, noise: Tensor, num_mask: int, num_hard: int) -> MaskIds:
    """Mask the ``num_hard`` highest-scored patches and ``num_mask - num_hard`` random others.

    Args:
        scores: [N, L] teacher scores (higher = predicted harder). Pass ``-scores`` to mask the
            easiest patches instead.
        noise: [N, L] i.i.d. uniform noise in [0, 1) for the random part.
        num_mask: K, patches hidden per image.
        num_hard: H <= K, patches chosen by score; H = 0 gives random masking.
    """
    if not 0 <= num_hard <= num_mask:
        raise ValueError(f"num_hard must be in [0, {num_mask}], got {num_hard}")
    key = noise.clone()  # [N, L]
    if num_hard > 0:
        hard = scores.topk(num_hard, dim=1).indices  # [N, H]
        key.scatter_(1, hard, 2.0)  # above any noise value: always masked
    order = torch.argsort(key, dim=1, descending=True)
    return split_by_order(order, num_mask)


def _hpm_request(request: MaskRequest) -> MaskIds:
    """The H hardest (``mask.select=easiest``: easiest) scored patches plus random ones."""
    scores = request.teacher_scores()  # [N, L]
    key = scores if request.cfg.select == "hardest" else -scores
    # patches the teacher did not score (visible in its only view) are never chosen
    key = torch.nan_to_num(key, nan=float("-inf"))
    return hard_patch_mask(key, request.noise(), request.num_mask, request.num_hard)


def _needs_predictor(cfg: Config) -> None:
    """HPM's teacher scores patches with its loss predictor."""
    if cfg.loss.predictor == "none":
        raise ValueError(
            "mask.strategy=hpm needs a loss predictor to score patches; "
            "set loss.predictor=relative or absolute (or use mask.strategy=random or attention)"
        )


HPM = MaskStrategy("hpm", _hpm_request, scores="loss", check=_needs_predictor)
