"""The files a study leaves: one per finished piece of work, so that a re-run continues."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from hpm.io import atomic_write_text
from hpm.study.spec import StudySpec


def read_json(path: Path) -> dict[str, Any] | None:
    """The JSON object in ``path``, or None if there is no such file."""
    return json.loads(path.read_text()) if path.is_file() else None


def write_json(path: Path, data: dict[str, Any]) -> None:
    """Write ``data`` as indented JSON, atomically."""
    atomic_write_text(path, json.dumps(data, indent=2) + "\n")


def done_file(d: Path) -> Path:
    """A finished pre-training's summary (its presence marks the run as done)."""
    return d / "study_pretrain.json"


def eval_file(d: Path, what: str) -> Path:
    """A run's result of one evaluation (``knn``, ``linear``, ``ranking``, ...)."""
    return d / "eval" / f"study_{what}.json"


def finetune_file(d: Path, recipe: str) -> Path:
    """A run's fine-tune result under a recipe (its checkpoints: the same path without .json)."""
    return eval_file(d, f"finetune_{recipe}")


def floor_dir(spec: StudySpec) -> Path:
    """Where the floors' results (random-init encoder, raw pixels) live."""
    return Path(spec.runs_dir) / "floors"


def floor_finetune_file(spec: StudySpec, seed: int) -> Path:
    """A random-init encoder's fine-tune result under the study's recipe."""
    return floor_dir(spec) / f"random_init_finetune_{spec.eval.finetune_recipe}_seed_{seed}.json"


def result(path: Path, *keys: str) -> float | None:
    """A figure of an evaluation file's ``result`` (``keys`` walk into it); None if missing."""
    data = read_json(path)
    if data is None:
        return None
    node: Any = data["result"]
    for key in keys:
        node = node.get(key) if isinstance(node, dict) else None
    return None if node is None else float(node)
