"""The study pictures' layout: titled columns of images, one row per example (matplotlib)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

# (column title, one image per row, colour map or "" for RGB images)
Panel = tuple[str, list[Any], str]


def save_panels(panels: list[Panel], out: Path, cell: float = 1.9, dpi: int = 110) -> Path:
    """Write ``out`` (PNG): ``panels`` side by side, each image ``cell`` inches square, the column
    titles above the first row."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = max(len(images) for _, images, _ in panels)
    fig, axes = plt.subplots(rows, len(panels), figsize=(cell * len(panels), cell * rows), squeeze=False)
    for c, (title, images, cmap) in enumerate(panels):
        for r in range(rows):
            ax = axes[r][c]
            ax.set_axis_off()
            if r < len(images):
                ax.imshow(images[r], cmap=cmap or None, interpolation="nearest")
            if r == 0:
                ax.set_title(title, fontsize=7)
    fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=dpi)
    plt.close(fig)
    return out
