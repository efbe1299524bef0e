"""The video picture's tiles as RGB pixels: one per clip, map type and shown frame, each map type
on one colour scale over all clips and frames. The PNG and the GIF are both laid out from them."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import matplotlib
import torch
from torch import Tensor

from hpm.viz.video.maps import ClipMaps

ROWS = ("clip", "real_loss", "predicted_loss", "mask", "reconstruction")
"""The map types, in the order the picture shows them for each clip."""
ROW_NAMES = {"clip": "clip", "real_loss": "real loss", "predicted_loss": "predicted loss", "mask": "mask",
             "reconstruction": "reconstruction"}
HARD_RGB = (0.9, 0.2, 0.15)  # masked, chosen by the teacher's scores (the image panels' colours)
RANDOM_RGB = (0.55, 0.55, 0.55)  # masked at random
EMPTY_RGB = (0.5, 0.5, 0.5)  # not scored (NaN), or a map the run has not
COLOURMAP = "viridis"


@dataclass
class ClipTiles:
    """The tiles and what their colours mean.

    Attributes:
        rgb: [N, R, F, H, W, 3] float in [0, 1]: clip, map type (:data:`ROWS`), shown frame.
        frames: the clip's frame index of each of the ``F`` shown frames.
        scales: ``(low, high)`` of each scaled map type (``real_loss``, ``predicted_loss``) that has values.
        empty: map types the run has not (drawn :data:`EMPTY_RGB`).
    """

    rgb: Tensor
    frames: list[int]
    scales: dict[str, tuple[float, float]]
    empty: list[str]


def _rgb(pixels: Tensor) -> Tensor:
    """[N, C, F, H, W] in [0, 1] (C 1 or 3) -> [N, F, H, W, 3]."""
    return pixels.expand(-1, 3, -1, -1, -1).permute(0, 2, 3, 4, 1) if pixels.shape[1] == 1 else pixels.permute(0, 2, 3, 4, 1)


def _coloured(values: Tensor) -> tuple[Tensor, tuple[float, float]]:
    """Per-pixel values [N, F, H, W] (NaN: not scored) on one colour scale from their finite
    minimum to maximum: ([N, F, H, W, 3], (low, high))."""
    finite = torch.isfinite(values)
    low = float(values[finite].min()) if bool(finite.any()) else 0.0
    high = float(values[finite].max()) if bool(finite.any()) else 1.0
    scaled = ((values - low) / max(high - low, 1e-12)).clamp(0.0, 1.0).nan_to_num(0.0)  # [N, F, H, W]
    rgb = torch.from_numpy(matplotlib.colormaps[COLOURMAP](scaled.numpy())[..., :3]).float()  # [N, F, H, W, 3]
    rgb[~finite] = torch.tensor(EMPTY_RGB)
    return rgb, (low, high)


def _mask_rgb(maps: ClipMaps, frames: list[int]) -> Tensor:
    """The shown frames with the masked tubelets painted: red when chosen by score, grey at random. [N, F, H, W, 3]."""
    rgb = _rgb(maps.pixels[:, :, frames].float()).clone()  # [N, F, H, W, 3]
    hard = maps.frame_map(maps.hard.float())[:, frames].bool()  # [N, F, H, W]
    random_part = maps.frame_map((maps.masked & ~maps.hard).float())[:, frames].bool()  # [N, F, H, W]
    rgb[random_part] = torch.tensor(RANDOM_RGB)
    rgb[hard] = torch.tensor(HARD_RGB)
    return rgb


def clip_tiles(maps: ClipMaps, frames: Sequence[int]) -> ClipTiles:
    """The tiles of ``frames`` (frame indices of the clips) for every clip and map type."""
    shown = list(frames)
    pixels = maps.pixels[:, :, shown].float()  # [N, C, F, H, W]
    empty_tile = torch.empty(*_rgb(pixels).shape).copy_(torch.tensor(EMPTY_RGB))  # [N, F, H, W, 3]
    scales: dict[str, tuple[float, float]] = {}
    empty: list[str] = []
    by_row: dict[str, Tensor] = {"clip": _rgb(pixels), "mask": _mask_rgb(maps, shown)}
    for name, values in (("real_loss", maps.real_loss), ("predicted_loss", maps.predicted)):
        if values is None:
            by_row[name] = empty_tile
            empty.append(name)
            continue
        by_row[name], scales[name] = _coloured(maps.frame_map(values.float())[:, shown])
    if maps.reconstruction is None:  # a target that is not pixels
        by_row["reconstruction"] = empty_tile
        empty.append("reconstruction")
    else:
        by_row["reconstruction"] = _rgb(maps.reconstruction[:, :, shown].float())
    rgb = torch.stack([by_row[name] for name in ROWS], dim=1)  # [N, R, F, H, W, 3]
    return ClipTiles(rgb, shown, scales, empty)
