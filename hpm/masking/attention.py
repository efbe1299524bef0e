"""Attention-guided masking (AttMask): the EMA teacher's [CLS] attention chooses the mask.

Three modes (Kakogeorgiou et al., ECCV 2022), applied to the ``H = int(alpha K)`` patches the
alpha schedule lets a score choose, exactly as HPM's hard patches are (the other ``K - H`` are
random): ``high`` masks the ``H`` most-attended patches, ``low`` the ``H`` least-attended, and
``hints`` the ``H`` most-attended except ``int(hints H)`` of them, drawn at random, which stay
visible ("hints"); the freed places go to random patches, so every mask hides exactly ``K``.
"""

from __future__ import annotations

from typing import Literal

import torch
from torch import Tensor

from hpm.config import Config, MaskConfig
from hpm.errors import ConfigError
from hpm.masking.ids import MaskIds, split_by_order
from hpm.masking.strategy import MaskRequest, MaskStrategy
from hpm.masking.teacher_view import average_at_masked, znorm

AttentionMode = Literal["high", "low", "hints"]


def num_hints(num_hard: int, share: float) -> int:
    """Most-attended patches shown back in ``hints`` mode: ``int(share * H)``."""
    return int(num_hard * share)


def num_chosen(mode: AttentionMode, num_hard: int, share: float) -> int:
    """Masked patches chosen by the score (the first columns of ``ids_mask``): ``H``, or
    ``H - int(share * H)`` in ``hints`` mode."""
    return num_hard - num_hints(num_hard, share) if mode == "hints" else num_hard


def attention_mask(
    scores: Tensor, noise: Tensor, num_mask: int, num_hard: int, mode: AttentionMode, hints: float = 0.1
) -> MaskIds:
    """Mask ``num_mask`` patches per image, ``num_hard`` of them chosen by attention.

    Args:
        scores: [N, L] attention per patch; NaN marks a patch the teacher did not score, which
            is never chosen by score (it may still be masked at random).
        noise: [N, L] i.i.d. uniform noise in [0, 1): the random part and, in ``hints`` mode,
            which of the most-attended patches are shown (those of lowest noise; the two uses
            read disjoint patches, so they are independent).
        num_mask: K, patches hidden per image.
        num_hard: H <= K, patches the attention chooses (before hints).
        mode: ``high``, ``low`` or ``hints``.
        hints: share of the H most-attended patches shown back in ``hints`` mode.

    Returns:
        MaskIds; the first :func:`num_chosen` columns of ``ids_mask`` are the score-chosen patches.
    """
    if mode not in ("high", "low", "hints"):
        raise ValueError(f"attention mode must be high, low or hints, got {mode!r}")
    if not 0 <= num_hard <= num_mask:
        raise ValueError(f"num_hard must be in [0, {num_mask}], got {num_hard}")
    shown = num_hints(num_hard, hints) if mode == "hints" else 0
    if num_mask + shown > noise.shape[1]:
        raise ValueError(f"{num_mask} masked + {shown} shown patches exceed the {noise.shape[1]} patches")
    key = noise.clone()  # [N, L]
    if num_hard > 0:
        ranked = -scores if mode == "low" else scores
        top = torch.nan_to_num(ranked.float(), nan=float("-inf")).topk(num_hard, dim=1).indices  # [N, H]
        key.scatter_(1, top, 2.0)  # above any noise value: masked
        if shown:
            lowest = torch.gather(noise, 1, top).topk(shown, dim=1, largest=False).indices  # [N, h]
            key.scatter_(1, torch.gather(top, 1, lowest), -1.0)  # below any noise value: visible
    return split_by_order(torch.argsort(key, dim=1, descending=True), num_mask)


def shown_hints(scores: Tensor, masks: MaskIds, num_hard: int) -> Tensor:
    """[N, L] bool: the ``num_hard`` most-attended patches that ``hints`` mode left visible.

    Args:
        scores: [N, L] attention per patch (NaN: not scored, never among the most attended).
        masks: the attention mask those scores chose.
        num_hard: H of that mask.
    """
    top = torch.zeros_like(scores, dtype=torch.bool)  # [N, L]
    if num_hard:
        ranked = torch.nan_to_num(scores, nan=float("-inf"))
        top.scatter_(1, ranked.topk(num_hard, dim=1).indices, True)
    return top & ~masks.as_bool(scores.shape[1])


@torch.no_grad()
def attention_view_scores(teacher, imgs: Tensor, views: list[MaskIds]) -> Tensor:
    """The teacher's attention from its partial views (``mask.teacher_view: masked``).

    On a partial view the class token attends only to the patches the view shows, so a view
    scores its *visible* patches; each view's scores are z-normalised per image and averaged
    over the views that showed the patch.

    Args:
        teacher: a :class:`~hpm.models.mae.MaskedAutoencoder`.
        imgs: [N, C, H, W].
        views: from :func:`~hpm.masking.teacher_views` (disjoint visible sets).

    Returns:
        float32 [N, L]; NaN for a patch no view showed.
    """
    n, v = imgs.shape[0], len(views)
    ids_keep = torch.cat([view.ids_keep for view in views])  # [V*N, L-K]
    batch = imgs if v == 1 else imgs.repeat(v, *[1] * (imgs.dim() - 1))  # [V*N, C, H, W] (video: [V*N, C, T, H, W])
    scores = znorm(teacher.attention_scores(batch, ids_keep))  # [V*N, L-K]
    pairs = [(ids_keep[i * n : (i + 1) * n], scores[i * n : (i + 1) * n]) for i in range(v)]
    return average_at_masked(pairs, n, teacher.num_patches, imgs.device)[0]


def _attention_request(request: MaskRequest) -> MaskIds:
    mc = request.cfg
    scores = request.teacher_scores()  # [N, L]
    return attention_mask(scores, request.noise(), request.num_mask, request.num_hard, mc.attention_mode, mc.attention_hints)


def _num_chosen(cfg: MaskConfig, num_hard: int) -> int:
    return num_chosen(cfg.attention_mode, num_hard, cfg.attention_hints)


def _select_is_hardest(cfg: Config) -> None:
    """``mask.select`` is HPM's; attention chooses the least-attended patches by its mode."""
    if cfg.mask.select != "hardest":
        raise ConfigError(
            "mask.select applies to mask.strategy=hpm; for the least-attended patches set "
            "mask.attention_mode=low (and leave mask.select=hardest)"
        )


ATTENTION = MaskStrategy(
    "attention", _attention_request, scores="attention", num_chosen=_num_chosen, check=_select_is_hardest
)
