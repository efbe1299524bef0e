"""Drawing the panel figure: one row per image, one column per map, one colour scale per map type."""

from __future__ import annotations

import matplotlib
import numpy as np
import torch
from matplotlib.axes import Axes
from matplotlib.colors import Colormap, Normalize
from matplotlib.figure import Figure
from matplotlib.image import AxesImage
from torch import Tensor

from hpm.viz.panels.maps import COLUMNS, PatchMaps
from hpm.viz.panels.titles import NO_PREDICTOR, NO_PREDICTOR_ATTENTION, column_titles

PANEL_INCHES = 2.0  # side of one panel
DPI = 100
_HARD_RGB = (0.9, 0.2, 0.15)  # masked, chosen by the predictor
_RANDOM_RGB = (0.55, 0.55, 0.55)  # masked at random
_HINT_RGB = (1.0, 0.85, 0.1)  # frame of a most-attended patch shown back (attention hints)
_SCALED = {"real_loss": "real loss", "predicted_loss": "predicted score", "attention": "attention"}  # colour bars


def figure_size(rows: int, columns: int = len(COLUMNS)) -> tuple[float, float]:
    """Figure size in inches for ``rows`` images of ``columns`` panels (titles, suptitle and colour bars included)."""
    return (columns * PANEL_INCHES + 0.8, rows * PANEL_INCHES + 2.0)


def _hwc(x: Tensor) -> np.ndarray:
    """[C, H, W] in [0, 1] -> [H, W, 3] for imshow."""
    if x.shape[0] == 1:
        x = x.expand(3, -1, -1)
    return x.permute(1, 2, 0).numpy()


def _mask_picture(
    pixels: Tensor, masked: Tensor, hard: Tensor | None, grid: tuple[int, int], hints: Tensor | None = None
) -> np.ndarray:
    """The input with its masked patches painted: red when chosen by score, grey when random;
    ``hints`` (visible patches shown back by attention masking) get a yellow frame."""
    img = _hwc(pixels).copy()  # [H, W, 3]
    ph, pw = img.shape[0] // grid[0], img.shape[1] // grid[1]

    def up(patch_bool: Tensor) -> np.ndarray:  # [L] -> [H, W]
        cells = patch_bool.view(grid).numpy()
        return np.kron(cells, np.ones((ph, pw), dtype=bool)).astype(bool)

    random_part = masked if hard is None else masked & ~hard
    img[up(random_part)] = _RANDOM_RGB
    if hard is not None:
        img[up(hard)] = _HARD_RGB
    if hints is not None and bool(hints.any()):
        inner = np.zeros((ph, pw), dtype=bool)
        inner[1:-1, 1:-1] = True
        frame = up(hints) & ~np.kron(hints.view(grid).numpy(), inner).astype(bool)
        img[frame] = _HINT_RGB
    return img


def _empty(ax: Axes, text: str) -> None:
    ax.text(0.5, 0.5, text.replace(" (", "\n("), ha="center", va="center", transform=ax.transAxes,
            fontsize=8, color="0.35")
    ax.set_facecolor("0.95")


def _scale(values: Tensor) -> Normalize:
    """One colour scale over the finite entries of a map (NaN: not scored)."""
    finite = values[torch.isfinite(values)]
    return Normalize(float(finite.min()), float(finite.max())) if finite.numel() else Normalize(0, 1)


def _scored_map(maps: PatchMaps, column: str) -> Tensor | None:
    """[N, L] the map a colour-scaled column shows, or None (no such map in this run)."""
    return {"real_loss": maps.real_loss, "predicted_loss": maps.predicted, "attention": maps.attention}[column]


def _draw_panel(
    ax: Axes, maps: PatchMaps, column: str, r: int, cmap: Colormap, scales: dict[str, Normalize]
) -> AxesImage | None:
    """Draw row ``r``'s ``column`` panel; returns the image of a colour-scaled map."""
    ax.set_label(f"panel:{column}:{r}")
    ax.set_xticks([])
    ax.set_yticks([])
    if column == "input":
        ax.imshow(_hwc(maps.pixels[r]), interpolation="nearest")
        ax.set_ylabel(maps.labels[r], fontsize=8)
    elif column in _SCALED:
        values = _scored_map(maps, column)
        if values is None:
            _empty(ax, NO_PREDICTOR_ATTENTION if maps.attention is not None else NO_PREDICTOR)
            return None
        extent = (0, maps.pixels.shape[-1], maps.pixels.shape[-2], 0)
        return ax.imshow(values[r].view(maps.grid).numpy(), cmap=cmap, norm=scales[column],
                         interpolation="nearest", extent=extent)
    elif column == "mask":
        if maps.hard is None:
            _empty(ax, NO_PREDICTOR)
        else:
            hints = maps.hints[r] if maps.hints is not None else None
            ax.imshow(_mask_picture(maps.pixels[r], maps.masked[r], maps.hard[r], maps.grid, hints),
                      interpolation="nearest")
    else:
        ax.imshow(_hwc(maps.reconstruction[r]), interpolation="nearest")
    return None


def draw_panels(maps: PatchMaps, title: str | None = None) -> Figure:
    """One row per image, one column per entry of ``maps.columns`` (:data:`COLUMNS`, or
    :data:`ATTENTION_COLUMNS` for an attention run); panel axes are labelled ``panel:<column>:<row>``."""
    rows, columns = maps.pixels.shape[0], maps.columns
    fig = Figure(figsize=figure_size(rows, len(columns)), dpi=DPI, layout="constrained")
    axes = np.asarray(fig.subplots(rows, len(columns), squeeze=False))  # [rows, 5 or 6]
    cmap = matplotlib.colormaps["viridis"].with_extremes(bad="0.85")  # bad: patches no mask hid
    scales = {c: _scale(values) for c in _SCALED if (values := _scored_map(maps, c)) is not None}
    images: dict[str, AxesImage] = {}
    for r in range(rows):
        for c, column in enumerate(columns):
            image = _draw_panel(axes[r, c], maps, column, r, cmap, scales)
            if image is not None:
                images[column] = image  # the last row's, as each column shares one scale
    titles = column_titles(maps)
    for c, column in enumerate(columns):
        axes[0, c].set_title(titles[column], fontsize=8)
    for column, label in _SCALED.items():
        if column in images:  # one colour scale for the whole column
            bar = fig.colorbar(images[column], ax=list(axes[:, columns.index(column)]), location="bottom",
                               shrink=0.9, pad=0.01)
            bar.set_label(f"{label} (scale shared by all rows)", fontsize=7)
            bar.ax.tick_params(labelsize=7)
    if title:
        fig.suptitle(title, fontsize=10)
    return fig
