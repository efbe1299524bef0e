"""Training curves of one or more runs from their ``metrics.jsonl`` (``hpm plot``).

The x axis is in epochs. A training record logged after optimizer step ``s`` sits at
``s / steps_per_epoch`` (fractional: the epochs of training done when it was logged); a k-NN
record, logged at the end of an epoch, sits on that epoch's whole number. ``steps_per_epoch`` is
read from the records themselves (they hold ``epoch``, 0-based, and ``step``, the steps done),
not from ``config.yaml``, which lacks the number of processes and, for image folders, the number
of images: it is the smallest whole number with ``step / (epoch + 1) <= steps_per_epoch`` for every
record. That is exact for a finished run (its last record is the last step of the last epoch)
and for any run with a k-NN record; for a run stopped mid-way it may be a few steps short.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import yaml
from matplotlib.figure import Figure

from hpm.engine.logger import read_metrics
from hpm.errors import DataError

# (metrics.jsonl key, panel title), in drawing order
CURVES: tuple[tuple[str, str], ...] = (
    ("loss_rec", "loss_rec: reconstruction loss (masked patches)"),
    ("loss_pred", "loss_pred: loss-predictor objective"),
    ("pred_spearman", "pred_spearman: predicted vs real loss"),
    ("lr", "lr: learning rate"),
    ("knn_top1", "knn_top1: k-NN top-1 (%)"),
)


@dataclass
class RunCurves:
    """The plotted series of one run.

    Attributes:
        name: Legend label.
        run_dir: Where ``metrics.jsonl`` was read.
        steps_per_epoch: Optimizer steps per epoch, derived from the records.
        series: Metric key -> ``(epochs [M], values [M])`` for each key the run logged.
    """

    name: str
    run_dir: Path
    steps_per_epoch: int
    series: dict[str, tuple[np.ndarray, np.ndarray]] = field(default_factory=dict)


def steps_per_epoch(records: Sequence[dict[str, Any]]) -> int:
    """The smallest steps-per-epoch consistent with every record's ``epoch`` and ``step``."""
    bounds = [r["step"] / (r["epoch"] + 1) for r in records if "step" in r and "epoch" in r]
    if not bounds:
        raise DataError("no record of metrics.jsonl holds both 'epoch' and 'step'")
    return max(1, math.ceil(max(bounds) - 1e-9))


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        return None
    return float(value)


def _has_no_predictor(run_dir: Path) -> bool:
    """Whether the run's ``config.yaml`` says it trained without a loss predictor (MAE)."""
    try:
        cfg = yaml.safe_load((run_dir / "config.yaml").read_text()) or {}
    except (OSError, yaml.YAMLError):
        return False
    return (cfg.get("loss") or {}).get("predictor") == "none"


def load_curves(run_dir: str | Path, name: str | None = None) -> RunCurves:
    """Read the plotted series of one run directory.

    Raises:
        DataError: The directory or its ``metrics.jsonl`` is missing, or it logged none of the
            plotted metrics.
    """
    run_dir = Path(run_dir)
    path = run_dir / "metrics.jsonl"
    if not run_dir.is_dir():
        raise DataError(f"{run_dir} does not exist; pass the run directory of an `hpm pretrain` run")
    if not path.is_file():
        raise DataError(f"{run_dir} holds no metrics.jsonl; pass the run directory of an `hpm pretrain` run")
    try:
        records = read_metrics(path)
    except ValueError as exc:
        raise DataError(f"{path} is not valid JSON lines: {exc}") from None
    keys = [key for key, _ in CURVES]
    if not any(_number(r.get(key)) is not None for r in records for key in keys):
        found = sorted({k for r in records for k in r})
        raise DataError(
            f"{path} holds none of the plotted metrics ({', '.join(keys)}); found: {found or 'no records'}. "
            "Is the run still starting? Curves need at least one logged training step."
        )
    spe = steps_per_epoch(records)
    curves = RunCurves(name or run_dir.name, run_dir, spe)
    if _has_no_predictor(run_dir):
        keys = [k for k in keys if k != "loss_pred"]  # runs made before MAE stopped logging a zero
    for key in keys:
        points = [(r["step"] / spe, v) for r in records if "step" in r and (v := _number(r.get(key))) is not None]
        if points:
            xy = np.asarray(sorted(points), dtype=np.float64)  # [M, 2]
            curves.series[key] = (xy[:, 0], xy[:, 1])
    return curves


def draw_curves(runs: Sequence[RunCurves]) -> Figure:
    """One panel per metric of :data:`CURVES`, every run on the same axes, plus a legend panel."""
    fig = Figure(figsize=(13.0, 7.0), dpi=100, layout="constrained")
    axes = fig.subplots(2, 3).ravel()
    colors = [f"C{i % 10}" for i in range(len(runs))]
    x_max = max((float(x.max()) for run in runs for x, _ in run.series.values()), default=1.0)
    for ax, (key, title) in zip(axes, CURVES):
        ax.set_title(title, fontsize=10)
        ax.set_xlabel("epoch")
        ax.grid(alpha=0.3)
        drawn = 0
        for run, color in zip(runs, colors):
            if key not in run.series:
                continue
            x, y = run.series[key]
            style = "o-" if key == "knn_top1" else "-"
            ax.plot(x, y, style, color=color, label=run.name, markersize=4, linewidth=1.3)
            if key == "knn_top1":  # few points (often one, at the end): print the last
                ax.annotate(f"{y[-1]:.1f}", (x[-1], y[-1]), textcoords="offset points", xytext=(4, 4),
                            color=color, fontsize=8)
            drawn += 1
        if not drawn:
            ax.text(0.5, 0.5, "not logged by " + ("this run" if len(runs) == 1 else "any run"),
                    ha="center", va="center", transform=ax.transAxes, color="0.4")
        ax.set_xlim(0.0, x_max * 1.03)  # one epoch axis for every panel, from the start
        if key == "lr":
            ax.ticklabel_format(axis="y", style="sci", scilimits=(-3, 3))
    legend = axes[len(CURVES)]
    legend.axis("off")
    handles = [
        legend.plot([], [], "-", color=color, label=f"{run.name} ({run.steps_per_epoch} steps/epoch)")[0]
        for run, color in zip(runs, colors)
    ]
    legend.legend(handles=handles, loc="center", frameon=False, fontsize=9, title="runs")
    return fig


def plot_runs(run_dirs: Sequence[str | Path], out: str | Path, names: Sequence[str] | None = None) -> Path:
    """Draw the training curves of ``run_dirs`` into the PNG ``out``.

    Args:
        run_dirs: Run directories of ``hpm pretrain`` (each with ``metrics.jsonl``).
        out: The PNG to write (parent folders are created).
        names: Legend labels, one per run (default: the directory names).

    Raises:
        DataError: No run given, a missing directory or ``metrics.jsonl``, or a run that
            logged none of the plotted metrics.
    """
    if not run_dirs:
        raise DataError("no run directory given")
    if names is not None and len(names) != len(run_dirs):
        raise DataError(f"{len(names)} names for {len(run_dirs)} runs; give one name per run")
    labels = list(names) if names is not None else _default_names([Path(d) for d in run_dirs])
    runs = [load_curves(d, label) for d, label in zip(run_dirs, labels)]
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    draw_curves(runs).savefig(out, format="png")
    return out


def _default_names(dirs: Sequence[Path]) -> list[str]:
    """Directory names, or the last two path parts where names repeat (``study/hpm/seed_0``)."""
    names = [d.name for d in dirs]
    if len(set(names)) == len(names):
        return names
    return [str(Path(*d.resolve().parts[-2:])) for d in dirs]
