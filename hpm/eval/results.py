"""Evaluation results: one JSON file per protocol next to what was evaluated, and a summary line.

``hpm eval knn RUN_DIR`` writes ``RUN_DIR/eval/knn.json``; a checkpoint folder gets its own
``eval/``. The file name records the variant: ``knn_avg.json`` (average pooling),
``linear_teacher.json`` (HPM's EMA teacher), ``finetune_random_init.json`` (the floor),
``knn_raw_pixels.json`` (pixels), ``knn_l600.json`` / ``finetune_l1pct.json`` (few labels).
"""

from __future__ import annotations

import datetime as _dt
import json
import platform
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

from hpm.io import atomic_write_text

RANDOM_INIT_DIR = Path("runs") / "random_init"


def result_path(
    protocol: str,
    source: str | Path | None,
    weights: str = "student",
    pool: str = "cls",
    preset: str = "small",
    labels: str | None = None,
) -> Path:
    """Where a result goes: ``SOURCE/eval/<protocol>[_avg][_teacher|_random_init|_raw_pixels][_l<N>].json``.

    Args:
        protocol: ``"knn"``, ``"linear"`` or ``"finetune"``.
        source: The run directory or checkpoint folder given by the user; None for a random
            initialisation without one (then ``runs/random_init/<preset>/eval/``).
        weights: ``"student"``, ``"teacher"`` or ``"random"``.
        pool: ``"cls"`` or ``"avg"`` (k-NN and linear probe).
        preset: Model preset, names the folder of a random initialisation without a source.
        labels: The few-label tag (``l600``, ``l1pct``: :attr:`~hpm.data.labels.LabelCount.tag`).
    """
    name = protocol + ("_avg" if pool == "avg" and protocol != "finetune" else "")
    name += {"student": "", "teacher": "_teacher", "random": "_random_init"}.get(weights, f"_{weights}")
    name += f"_{labels}" if labels else ""
    folder = Path(source) if source is not None else RANDOM_INIT_DIR / preset
    return folder / "eval" / f"{name}.json"


def _versions() -> dict[str, str]:
    out = {"python": platform.python_version()}
    for pkg in ("hpm", "torch", "timm"):
        try:
            out[pkg] = version(pkg)
        except PackageNotFoundError:
            out[pkg] = "unknown"
    return out


def write_result(path: str | Path, record: dict[str, Any]) -> Path:
    """Write ``record`` (plus a timestamp and package versions) as indented JSON, atomically."""
    path = Path(path)
    full = {
        **record,
        "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "versions": _versions(),
    }
    atomic_write_text(path, json.dumps(full, indent=2) + "\n")
    return path


def summary_line(record: dict[str, Any]) -> str:
    """One line for the console: protocol, accuracy, data, what was evaluated and the time."""
    res, src, data = record["result"], record["source"], record["data"]
    if src.get("kind") == "raw_pixels":
        what = "raw pixels"
    else:
        what = "random init" if src["random_init"] else f"{src['weights']} @ step {src['step']}"
    labelled = data.get("labels")
    where = f"{data['num_train']} train / {data['num_test']} {data['test_split']}"
    if labelled:
        where = f"{labelled['count']} labelled ({labelled['asked']} of {labelled['of']}, seed {labelled['seed']}) / " \
                f"{data['num_test']} {data['test_split']}"
    protocol = record["protocol"]
    pool = "pixels" if src.get("kind") == "raw_pixels" else res.get("pool")
    if protocol == "knn":
        accs = " | ".join(f"k={k} {v:.2f}%" for k, v in res["top1"].items())
        head = f"k-NN top-1 ({pool}, T={res['temperature']}): {accs}"
    elif protocol == "linear":
        head = (
            f"linear probe top-1 {res['top1']:.2f}% (train {res['train_top1']:.2f}%, {pool}, "
            f"{res['probe']['epochs']} epochs)"
        )
    else:
        head = f"fine-tune top-1 {res['top1']:.2f}% ({res['history'][-1]['epoch']} epochs, final loss {res['final_loss']:.4f})"
    return f"{head} | {where} | {what} | {record['seconds']:.1f} s"
