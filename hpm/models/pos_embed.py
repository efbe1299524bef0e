"""Fixed 2-D sin-cos position embeddings with a leading zero slot for the class token."""

from __future__ import annotations

import torch
from timm.layers import build_sincos2d_pos_embed


def sincos_pos_embed_with_cls(grid_size: tuple[int, int], dim: int) -> torch.Tensor:
    """Fixed 2-D sin-cos embedding for a patch grid, class-token row first.

    Args:
        grid_size: patch rows and columns.
        dim: embedding width (divisible by 4).

    Returns:
        float32 tensor [1, 1 + rows * cols, dim]; row 0 (class token) is zero.
    """
    if dim % 4:
        raise ValueError(f"sin-cos position embedding needs a width divisible by 4, got {dim}")
    grid = build_sincos2d_pos_embed(list(grid_size), dim=dim)  # [L, dim]
    cls = torch.zeros(1, dim)
    return torch.cat([cls, grid], dim=0).unsqueeze(0)
