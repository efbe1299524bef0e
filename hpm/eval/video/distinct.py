"""Views that coincide are encoded once: a video no longer than a clip gives the same clip at every
temporal view, and square frames give the same crop at every spatial view. A batch's distinct views
go through the model; every view then reads the output of its distinct copy."""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor


def distinct_views(views: Tensor) -> tuple[Tensor, Tensor]:
    """``[B, V, ...]`` -> ``(distinct [U, ...], source [B * V])`` with
    ``views.flatten(0, 1)[i]`` equal to ``distinct[source[i]]``; a view equal (exactly) to an
    earlier view of the same video shares its entry, views of different videos never do."""
    batch, per_video = views.shape[:2]
    flat = views.flatten(0, 1)  # [B * V, ...]
    source = torch.empty(batch * per_video, dtype=torch.long)
    keep: list[int] = []  # rows of ``flat`` that are distinct
    for b in range(batch):
        first = len(keep)  # this video's distinct views are keep[first:]
        for v in range(b * per_video, (b + 1) * per_video):
            match = next((u for u in range(first, len(keep)) if torch.equal(flat[keep[u]], flat[v])), None)
            if match is None:
                match = len(keep)
                keep.append(v)
            source[v] = match
    return (flat, source) if len(keep) == flat.shape[0] else (flat[keep], source)  # no copy when all differ


def over_views(fn: Callable[[Tensor], Tensor], views: Tensor) -> Tensor:
    """``fn`` applied to every view of ``views [B, V, ...]``, each distinct view once ->
    ``[B * V, ...]`` (the outputs of ``fn`` on the flattened views, in their order)."""
    distinct, source = distinct_views(views)
    out = fn(distinct)  # [U, ...]
    return out if out.shape[0] == source.shape[0] else out[source.to(out.device)]  # [B * V, ...]
