"""Fixed sin-cos position embeddings (2-D for images, 3-D for video) with a leading zero slot for the class token."""

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


def sincos_1d(positions: torch.Tensor, dim: int) -> torch.Tensor:
    """1-D sin-cos embedding of positions [L] (float): [L, dim], sines then cosines (dim even)."""
    omega = 1.0 / 10000 ** (torch.arange(dim // 2, dtype=torch.float64) / (dim // 2))  # [dim/2]
    angles = positions.double()[:, None] * omega[None]  # [L, dim/2]
    return torch.cat([torch.sin(angles), torch.cos(angles)], dim=1).float()


def spacetime_split(dim: int) -> tuple[int, int]:
    """Widths ``(space, time)`` of :func:`sincos_3d_pos_embed_with_cls`: about two thirds for
    space (divisible by 4, for the 2-D embedding) and the rest, about a third, for time."""
    space = (dim * 2 // 3) // 4 * 4
    return space, dim - space


def sincos_3d_pos_embed_with_cls(grid_size: tuple[int, int, int], dim: int) -> torch.Tensor:
    """Fixed spatio-temporal sin-cos embedding for a tubelet grid, class-token row first.

    Each token's embedding concatenates the 2-D sin-cos embedding of its spatial cell (about two
    thirds of the width, :func:`spacetime_split`) and the 1-D sin-cos embedding of its time
    index (the rest), as MAE-ST splits the width between space and time. Tokens are in
    time-major order: token ``t * H * W + h * W + w`` is time ``t``, row ``h``, column ``w``.

    Args:
        grid_size: tubelet positions in time, rows and columns.
        dim: embedding width (divisible by 4).

    Returns:
        float32 tensor [1, 1 + T * H * W, dim]; row 0 (class token) is zero.
    """
    if dim % 4:
        raise ValueError(f"sin-cos position embedding needs a width divisible by 4, got {dim}")
    t, h, w = grid_size
    space_dim, time_dim = spacetime_split(dim)
    space = build_sincos2d_pos_embed([h, w], dim=space_dim)  # [H*W, space_dim]
    time = sincos_1d(torch.arange(t), time_dim)  # [T, time_dim]
    grid = torch.cat([space.repeat(t, 1), time.repeat_interleave(h * w, dim=0)], dim=1)  # [T*H*W, dim]
    return torch.cat([torch.zeros(1, dim), grid], dim=0).unsqueeze(0)
