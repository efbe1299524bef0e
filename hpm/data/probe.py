"""Try to open a few files spread evenly over a data set, so that a folder of unreadable files
fails before training starts rather than as a stream of skipped samples."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np


def probe_spread(count: int, max_files: int, open_one: Callable[[int], str | None]) -> tuple[int, list[str]]:
    """Call ``open_one`` on up to ``max_files`` indices spread evenly over ``range(count)``.

    Args:
        count: The data set's length (at least 1).
        max_files: How many indices to try at most.
        open_one: Opens sample ``index``; returns None when it reads, else what went wrong (one line).

    Returns:
        ``(tried, failures)``: how many indices were tried and the failures' lines.
    """
    n = min(count, max(1, max_files))
    picks = np.unique(np.linspace(0, count - 1, num=n).round().astype(int))
    failures = [line for line in (open_one(int(i)) for i in picks) if line is not None]
    return len(picks), failures
