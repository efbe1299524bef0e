"""Laying out the video picture's tiles: a PNG (per clip one row per map type, one column per
shown frame) and an animated GIF (per clip one row, one column per map type, the frames over time)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from matplotlib.figure import Figure
from PIL import Image, ImageDraw
from torch import Tensor

from hpm.viz.video.maps import ClipMaps
from hpm.viz.video.tiles import ROW_NAMES, ROWS, ClipTiles

TILE_INCHES = 1.1  # side of one tile in the PNG
DPI = 100
GIF_TILE_PX = 96  # a GIF tile's side is at least this, in whole multiples of the frame side
_GAP_PX = 2
_BAR_PX = 4  # the GIF's time bar under the tiles
_HEADER_PX = 14  # the GIF's column names above the tiles


def _row_label(name: str, tiles: ClipTiles) -> str:
    """A row's label: the map type and its colour scale (or why it is empty)."""
    if name in tiles.empty:
        return {"predicted_loss": "no loss predictor", "reconstruction": "target is not pixels"}.get(name, "none")
    if name in tiles.scales:
        low, high = tiles.scales[name]
        return f"{ROW_NAMES[name]}\n{low:.3g} .. {high:.3g}"
    return ROW_NAMES[name]


def draw_clip_figure(maps: ClipMaps, tiles: ClipTiles, title: str) -> Figure:
    """The PNG's figure: ``N * R`` rows (each clip's map types) by ``F`` shown frames."""
    n, r, f = tiles.rgb.shape[:3]
    fig = Figure(figsize=(max(f * TILE_INCHES + 1.6, 5.0), n * r * TILE_INCHES + 1.3), dpi=DPI)
    axes = fig.subplots(n * r, f, squeeze=False)
    for clip in range(n):
        for row, name in enumerate(ROWS):
            for col in range(f):
                ax = axes[clip * r + row, col]
                ax.imshow(tiles.rgb[clip, row, col].numpy(), interpolation="nearest")
                ax.set_xticks([])
                ax.set_yticks([])
                ax.set_label(f"tile:{clip}:{name}:{tiles.frames[col]}")
                if clip == 0 and row == 0:
                    ax.set_title(f"frame {tiles.frames[col]}", fontsize=8)
            label = _row_label(name, tiles)
            axes[clip * r + row, 0].set_ylabel(f"{maps.labels[clip]}\n{label}" if row == 0 else label, fontsize=7)
    height = fig.get_figheight()
    fig.suptitle(title, fontsize=9, y=1 - 0.08 / height, va="top")  # its lines above the frames' titles
    fig.subplots_adjust(left=1.4 / fig.get_figwidth(), right=0.99, top=1 - (0.4 + 0.16 * (title.count("\n") + 1)) / height,
                        bottom=0.01, wspace=0.05, hspace=0.08)
    return fig


def gif_frames(tiles: ClipTiles) -> list[Image.Image]:
    """One image per shown frame: ``N`` rows (clips) by ``R`` columns (map types) of tiles, each
    upscaled by a whole factor to at least :data:`GIF_TILE_PX`, the map types named above them and
    a bar under them that grows with time (it also keeps two equal consecutive frames apart: a
    GIF writer merges those)."""
    n, r, f, h, w = tiles.rgb.shape[:5]
    scale = max(1, -(-GIF_TILE_PX // max(h, w)))
    th, tw = h * scale, w * scale
    height, width = _HEADER_PX + n * (th + _GAP_PX) + _GAP_PX + _BAR_PX, r * (tw + _GAP_PX) + _GAP_PX
    up: Tensor = tiles.rgb.repeat_interleave(scale, 3).repeat_interleave(scale, 4)  # [N, R, F, th, tw, 3]
    pixels = (up * 255).round().clamp(0, 255).to(torch.uint8).numpy()
    out: list[Image.Image] = []
    for frame in range(f):
        canvas = np.full((height, width, 3), 255, dtype=np.uint8)
        for clip in range(n):
            for col in range(r):
                y, x = _HEADER_PX + _GAP_PX + clip * (th + _GAP_PX), _GAP_PX + col * (tw + _GAP_PX)
                canvas[y : y + th, x : x + tw] = pixels[clip, col, frame]
        canvas[height - _BAR_PX :, : round(width * (frame + 1) / f)] = (60, 60, 60)
        image = Image.fromarray(canvas)
        draw = ImageDraw.Draw(image)
        for col, name in enumerate(ROWS):
            draw.text((_GAP_PX + col * (tw + _GAP_PX) + 2, 2), ROW_NAMES[name], fill=(0, 0, 0))
        out.append(image)
    return out


def write_gif(tiles: ClipTiles, path: Path, duration_ms: int = 400) -> int:
    """Write :func:`gif_frames` as an endlessly looping GIF, ``duration_ms`` per frame.

    Returns:
        The frames written.
    """
    frames = gif_frames(tiles)
    path.parent.mkdir(parents=True, exist_ok=True)
    frames[0].save(path, format="GIF", save_all=True, append_images=frames[1:], duration=duration_ms, loop=0)
    return len(frames)
