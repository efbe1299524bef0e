"""A tiny study for the study tests: one-block model, 128 images, quick evaluation settings."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import yaml

TINY_BASE: dict[str, Any] = {
    "model": {"embed_dim": 32, "depth": 1, "num_heads": 2, "decoder_embed_dim": 16,
              "decoder_depth": 1, "decoder_num_heads": 2},
    "data": {"subset": 128, "subset_seed": 0, "fit": "pad", "num_workers": 0},
    "train": {"epochs": 2, "batch_size": 32, "warmup_epochs": 0.5, "precision": "fp32", "log_every": 1},
    "eval": {"knn_at_end": False},
}


def write_study(tmp_path: Path, variants: list[dict[str, Any]], **extra: Any) -> Path:
    """A study file in ``tmp_path`` (runs and report there too) with the tiny base and ``variants``."""
    spec = {
        "name": "tiny",
        "runs_dir": str(tmp_path / "runs"),
        "report_dir": str(tmp_path / "report"),
        "base": TINY_BASE,
        "eval": {"train_subset": 200, "test_subset": 100, "ranking_images": 16, "ranking_masks": 3,
                 "finetune_overrides": {"epochs": 1, "train_subset": 64, "test_subset": 100, "batch_size": 32,
                                        "num_workers": 0},
                 "floor_finetune_seeds": extra.pop("floor_finetune_seeds", [])},
        "variants": variants,
        **extra,
    }
    path = tmp_path / "study.yaml"
    path.write_text(yaml.safe_dump(spec))
    return path


def eval_top1(run: Path, what: str, k: str | None = None) -> float:
    """The top-1 of a run's study evaluation file (``k``: the k-NN's k)."""
    result = json.loads((run / "eval" / f"study_{what}.json").read_text())["result"]
    return float(result["top1"][k] if k else result["top1"])
