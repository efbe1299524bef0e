"""Table cells of the study's Markdown report."""

from __future__ import annotations

from typing import Any


def fmt(cell: dict[str, Any] | float | None, digits: int = 2) -> str:
    """``mean ± std`` of an aggregate (``{"mean", "std", ...}``), or a plain figure; ``–`` if none."""
    if cell is None:
        return "–"
    if isinstance(cell, dict):
        if cell["mean"] is None:
            return "–"
        text = f"{cell['mean']:.{digits}f}"
        return text + (f" ± {cell['std']:.{digits}f}" if cell["std"] is not None else "")
    return f"{cell:.{digits}f}"


def signed(x: float | None) -> str:
    """A difference with its sign, two decimals; ``–`` if none."""
    return "–" if x is None else f"{x:+.2f}"


def counted(cell: dict[str, Any] | None, seeds: int) -> str:
    """A figure with ``(n=k)`` when it holds fewer seeds than its row's ``seeds`` column says."""
    n = (cell or {}).get("n", 0)
    return fmt(cell) + (f" (n={n})" if 0 < n < seeds else "")
