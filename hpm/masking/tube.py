"""Tube masking for video tokens: one spatial mask repeated at every time step.

``tube`` is VideoMAE's: ``K_s`` spatial positions drawn at random are hidden in every frame, so
a clip hides ``K = T' * K_s`` tokens. ``hpm_tube`` is HPM on tubes: the teacher's predicted loss
of each token is averaged over time per spatial position (NaN, a token no teacher view scored,
is left out of the mean) and the ``H_s = H // T'`` hardest positions, plus random ones up to
``K_s``, are hidden in every frame. Tokens are time-major (:mod:`hpm.models.tubelet`): token
``t * S + s`` is spatial position ``s`` at time ``t``, ``S`` positions per time step.
"""

from __future__ import annotations

import torch
from torch import Tensor

from hpm.masking.hard import _needs_predictor, hard_patch_mask
from hpm.masking.ids import MaskIds, split_by_order
from hpm.masking.strategy import MaskRequest, MaskStrategy


def tube_order(cell_order: Tensor, time_size: int) -> Tensor:
    """Token order [N, S * T'] of a spatial order [N, S]: each position's ``T'`` tokens, in
    time order, in the place of the position (its tube stays together)."""
    n, cells = cell_order.shape
    offsets = cells * torch.arange(time_size, device=cell_order.device)  # [T']
    return (cell_order.unsqueeze(2) + offsets).reshape(n, cells * time_size)  # [N, S, T'] -> [N, S*T']


def to_tubes(cell_masks: MaskIds, time_size: int) -> MaskIds:
    """Spatial masks ([N, S - K_s] / [N, K_s] positions) as token masks of a clip with ``time_size``
    time steps ([N, (S - K_s) T'] / [N, K_s T'] tokens; the tubes keep the masks' column order)."""
    cells = cell_masks.ids_keep.shape[1] + cell_masks.ids_mask.shape[1]
    order = torch.cat([cell_masks.ids_mask, cell_masks.ids_keep], dim=1)  # [N, S], masked first
    return split_by_order(tube_order(order, time_size), cell_masks.ids_mask.shape[1] * time_size)


def tube_mask(noise: Tensor, num_mask_cells: int, time_size: int) -> MaskIds:
    """Hide ``num_mask_cells`` spatial positions at random, in every time step.

    Args:
        noise: [N, S] i.i.d. uniform noise over the spatial positions; the largest are hidden.
        num_mask_cells: K_s, spatial positions hidden per clip.
        time_size: T', token positions in time.

    Returns:
        MaskIds over the clip's ``S * T'`` tokens: [N, (S - K_s) T'] visible, [N, K_s T'] hidden.
    """
    order = torch.argsort(noise, dim=1, descending=True)  # [N, S]
    return split_by_order(tube_order(order, time_size), num_mask_cells * time_size)


def cell_scores(scores: Tensor, time_size: int) -> Tensor:
    """Per-token scores [N, T' * S] averaged over time per spatial position: [N, S] (fp32).
    NaN (not scored) tokens are left out; a position with no scored token is NaN."""
    n = scores.shape[0]
    return torch.nanmean(scores.float().view(n, time_size, -1), dim=1)  # [N, S]


def hard_tube_mask(scores: Tensor, noise: Tensor, num_mask_cells: int, num_hard_cells: int, time_size: int) -> MaskIds:
    """Hide the ``num_hard_cells`` highest-scored spatial positions and random others, up to
    ``num_mask_cells``, in every time step.

    Args:
        scores: [N, T' * S] per-token scores (higher: harder; NaN never chosen by score).
        noise: [N, S] uniform noise for the random part.
        num_mask_cells: K_s.
        num_hard_cells: H_s <= K_s.
        time_size: T'.

    Returns:
        Token masks; the first ``H_s * T'`` columns of ``ids_mask`` are the chosen tubes.
    """
    key = torch.nan_to_num(cell_scores(scores, time_size), nan=float("-inf"))  # [N, S]
    return to_tubes(hard_patch_mask(key, noise, num_mask_cells, num_hard_cells), time_size)


def _cells_masked(request: MaskRequest) -> int:
    """K_s: the request's K (a whole number of tubes) in spatial positions."""
    return request.num_mask // request.time_size


def _tube_request(request: MaskRequest) -> MaskIds:
    return tube_mask(request.cell_noise(), _cells_masked(request), request.time_size)


def _hpm_tube_request(request: MaskRequest) -> MaskIds:
    """The H // T' hardest (``mask.select=easiest``: easiest) tubes plus random ones."""
    scores = request.teacher_scores()  # [N, L]
    key = scores if request.cfg.select == "hardest" else -scores
    num_hard_cells = request.num_hard // request.time_size
    return hard_tube_mask(key, request.cell_noise(), _cells_masked(request), num_hard_cells, request.time_size)


TUBE = MaskStrategy("tube", _tube_request, tubes=True, takes="video")
HPM_TUBE = MaskStrategy("hpm_tube", _hpm_tube_request, scores="loss", check=_needs_predictor, tubes=True, takes="video")
