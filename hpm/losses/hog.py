"""Histograms of oriented gradients per patch (MaskFeat's HOG target), computed in torch.

Per channel: central-difference gradients (reflect padding), unsigned orientation in
``[0, pi)`` split into ``bins`` equal bins, each pixel's gradient magnitude added to its bin
(hard assignment, as MaskFeat), summed over square cells of ``cell`` pixels. A patch's target
is its cells' histograms, channels and cells concatenated, L2-normalised over the whole patch.
For a ``p``-px patch of ``C`` channels the target has ``C * bins * (p // cell)**2`` values:
MaskFeat's ViT-B/16 setting (RGB, 8-px cells, 9 bins) gives 108, the reference setting here
(greyscale, 4-px patches, 2-px cells) 36.

:func:`hog_targets` is vectorised (one convolution, one scatter, one pooling for the whole
batch, no Python loop over images); :func:`hog_reference` is the plain per-cell loop it is
tested against (and timed against in ``benchmarks/hog_speed.py``).
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = ["default_cell", "hog_dim", "hog_reference", "hog_targets"]


def default_cell(patch_size: int) -> int:
    """The cell side for a patch size: half the patch (2x2 cells per patch; 8 px for 16-px
    patches as MaskFeat, 2 px for the 4-px patches of the bundled data), at least 1."""
    return max(1, patch_size // 2)


def hog_dim(patch_size: int, channels: int, cell: int, bins: int) -> int:
    """Width of one patch's HOG target."""
    return channels * bins * (patch_size // cell) ** 2


def _check(patch_size: int, cell: int, bins: int) -> None:
    if bins < 1:
        raise ValueError(f"HOG needs at least one orientation bin, got {bins}")
    if cell < 1 or patch_size % cell:
        raise ValueError(f"the HOG cell ({cell} px) must divide the patch size ({patch_size} px)")


def hog_targets(images: Tensor, patch_size: int, cell: int, bins: int = 9, eps: float = 1e-6) -> Tensor:
    """HOG target of every patch. [N, C, H, W] -> [N, L, C * bins * (p / cell)²], fp32.

    Patches are in row-major order (as ``MaskedAutoencoder.patchify``); within a patch the
    values run over channel, cell row, cell column, then bin.
    """
    _check(patch_size, cell, bins)
    n, c, h, w = images.shape
    x = F.pad(images.float(), (1, 1, 1, 1), mode="reflect")  # [N, C, H+2, W+2]
    gx = x[..., 1:-1, 2:] - x[..., 1:-1, :-2]  # [N, C, H, W]
    gy = x[..., 2:, 1:-1] - x[..., :-2, 1:-1]
    magnitude = torch.sqrt(gx * gx + gy * gy)
    angle = torch.remainder(torch.atan2(gy, gx), math.pi)  # unsigned, [0, pi]
    bin_idx = torch.clamp((angle * (bins / math.pi)).long(), max=bins - 1)  # [N, C, H, W]
    hist = torch.zeros(n, c, bins, h, w, device=images.device)
    hist.scatter_(2, bin_idx.unsqueeze(2), magnitude.unsqueeze(2))  # one bin per pixel
    cells = F.avg_pool2d(hist.view(n, c * bins, h, w), cell) * (cell * cell)  # sums [N, C*bins, H/cell, W/cell]
    k = patch_size // cell  # cells per patch side
    gh, gw = h // patch_size, w // patch_size
    cells = cells.view(n, c, bins, gh, k, gw, k)
    per_patch = cells.permute(0, 3, 5, 1, 4, 6, 2).reshape(n, gh * gw, c * k * k * bins)  # [N, L, D]
    return per_patch / (per_patch.norm(dim=-1, keepdim=True) + eps)


def hog_reference(images: Tensor, patch_size: int, cell: int, bins: int = 9, eps: float = 1e-6) -> Tensor:
    """The same as :func:`hog_targets` with plain loops over images, channels and cells (NumPy
    inside a cell): the reference the vectorised version is tested against."""
    _check(patch_size, cell, bins)
    imgs = images.detach().float().cpu().numpy()
    n, c, h, w = imgs.shape
    k = patch_size // cell
    gh, gw = h // patch_size, w // patch_size
    out = np.zeros((n, gh * gw, c, k, k, bins), dtype=np.float32)
    for i in range(n):
        for ch in range(c):
            x = np.pad(imgs[i, ch], 1, mode="reflect")
            for cy in range(h // cell):
                for cx in range(w // cell):
                    ys, xs = slice(1 + cy * cell, 1 + (cy + 1) * cell), slice(1 + cx * cell, 1 + (cx + 1) * cell)
                    gx = x[ys, xs.start + 1:xs.stop + 1] - x[ys, xs.start - 1:xs.stop - 1]
                    gy = x[ys.start + 1:ys.stop + 1, xs] - x[ys.start - 1:ys.stop - 1, xs]
                    mag = np.sqrt(gx * gx + gy * gy)
                    ang = np.remainder(np.arctan2(gy, gx), np.float32(math.pi))
                    idx = np.minimum((ang * np.float32(bins / math.pi)).astype(np.int64), bins - 1)
                    hist = np.bincount(idx.ravel(), weights=mag.ravel(), minlength=bins)
                    patch = (cy // k) * gw + cx // k
                    out[i, patch, ch, cy % k, cx % k] = hist
    flat = torch.from_numpy(out.reshape(n, gh * gw, -1))
    return flat / (flat.norm(dim=-1, keepdim=True) + eps)
