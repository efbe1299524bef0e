"""The pictures a finished pre-training run writes into ``RUN_DIR/figures/``."""

from __future__ import annotations

import time
from pathlib import Path

from hpm.engine.logger import LOG

FIGURES_DIR = "figures"
CURVES_FILE = "curves.png"
PATCHES_FILE = "patches.png"


def write_run_figures(run_dir: str | Path, video: bool = False) -> list[Path]:
    """Write ``figures/curves.png`` (:func:`~hpm.viz.plot.plot_runs`) and ``figures/patches.png``
    (:func:`~hpm.viz.panels.visualize`, 8 test images spread over the classes, newest checkpoint),
    or for a ``video`` run ``figures/clips.png`` and ``clips.gif``
    (:func:`~hpm.viz.video.visualize_video`, 4 validation clips).

    A picture that fails is logged as a warning and skipped: it must not fail a finished run.

    Returns:
        The files written.
    """
    from hpm.viz.panels import visualize
    from hpm.viz.plot import plot_runs
    from hpm.viz.video.command import DEFAULT_FILE as CLIPS_FILE
    from hpm.viz.video.command import visualize_video

    run_dir = Path(run_dir)
    out = run_dir / FIGURES_DIR
    written: list[Path] = []
    started = time.perf_counter()
    figures = [
        (CURVES_FILE, lambda: plot_runs([run_dir], out / CURVES_FILE)),
        (CLIPS_FILE, lambda: visualize_video(run_dir, out).path) if video else
        (PATCHES_FILE, lambda: visualize(run_dir, out, filename=PATCHES_FILE).path),
    ]
    for name, draw in figures:
        try:
            written.append(draw())
        except Exception as exc:  # noqa: BLE001 - a picture must not fail a finished run
            LOG.warning("%s not written: %s", out / name, exc)
    LOG.info("figures (%.1f s): %s", time.perf_counter() - started, ", ".join(str(p) for p in written) or "none")
    return written
