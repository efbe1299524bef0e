"""Pictures of a reconstruction target that is not pixels (``hpm visualize``).

- HOG: each cell's orientation histogram drawn as bars through the cell's centre, one bar per
  bin along the edge orientation (perpendicular to the gradient), brightness the bin's weight
  (summed over channels), as scikit-image's ``hog(visualize=True)`` draws it.
- Features (``ema``, ``model``): the first three principal components of the patch features of
  all shown images, each scaled to [0, 1] (2nd-98th percentile), as RGB per patch.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

TILE = 12  # pixels per HOG cell in the picture


def _bar_stencils(bins: int, size: int = TILE) -> Tensor:
    """[bins, size, size]: a line through the tile's centre along each bin's edge orientation
    (soft, 1 px wide)."""
    c = (size - 1) / 2
    yy, xx = torch.meshgrid(torch.arange(size, dtype=torch.float32) - c, torch.arange(size, dtype=torch.float32) - c,
                            indexing="ij")
    out = []
    for b in range(bins):
        grad = (b + 0.5) * math.pi / bins  # gradient orientation of the bin's centre
        edge = grad + math.pi / 2
        # distance of each pixel from the line through the centre along `edge` (image y points down)
        dist = (xx * math.sin(edge) + yy * math.cos(edge)).abs()
        along = (xx * math.cos(edge) - yy * math.sin(edge)).abs()
        out.append(torch.clamp(1.0 - dist, min=0.0) * (along <= c).float())
    return torch.stack(out)


def hog_picture(hog: Tensor, grid: tuple[int, int], channels: int, bins: int) -> Tensor:
    """Oriented-bar picture of per-patch HOG targets.

    Args:
        hog: [N, L, C * k * k * bins] targets (:func:`hpm.losses.hog.hog_targets` layout).
        grid: Patches per column and per row.
        channels: C.
        bins: Orientation bins.

    Returns:
        [N, 1, gh * k * TILE, gw * k * TILE] in [0, 1], each image scaled by its largest bin.
    """
    n, num_patches, dim = hog.shape
    k = int(round(math.sqrt(dim // (channels * bins))))
    gh, gw = grid
    cells = hog.float().view(n, gh, gw, channels, k, k, bins).sum(3)  # [N, gh, gw, k, k, bins]
    cells = cells.permute(0, 1, 3, 2, 4, 5).reshape(n, gh * k, gw * k, bins)  # cell grid
    tiles = torch.einsum("nyxb,bij->nyixj", cells, _bar_stencils(bins))  # [N, Y, TILE, X, TILE]
    pic = tiles.reshape(n, 1, gh * k * TILE, gw * k * TILE)
    peak = pic.flatten(1).amax(1).clamp_min(1e-12).view(n, 1, 1, 1)
    return (pic / peak).clamp(0.0, 1.0)


def pca_picture(features: Tensor, grid: tuple[int, int], size: tuple[int, int]) -> Tensor:
    """First three principal components of patch features as RGB.

    Args:
        features: [N, L, D] per-patch features.
        grid: Patches per column and per row.
        size: (H, W) of the picture; each patch is a block of pixels.

    Returns:
        [N, 3, H, W] in [0, 1]; components fitted on all ``N * L`` patches together.
    """
    n, num_patches, d = features.shape
    flat = features.float().reshape(-1, d)
    flat = flat - flat.mean(0, keepdim=True)
    q = min(3, d, flat.shape[0])
    _, _, v = torch.linalg.svd(flat, full_matrices=False)
    comps = flat @ v[:q].T  # [N*L, q]
    if q < 3:
        comps = torch.cat([comps, comps.new_zeros(comps.shape[0], 3 - q)], 1)
    lo = torch.quantile(comps, 0.02, dim=0)
    hi = torch.quantile(comps, 0.98, dim=0)
    comps = ((comps - lo) / (hi - lo).clamp_min(1e-12)).clamp(0.0, 1.0)
    rgb = comps.view(n, grid[0], grid[1], 3).permute(0, 3, 1, 2)  # [N, 3, gh, gw]
    return torch.nn.functional.interpolate(rgb, size=size, mode="nearest")

