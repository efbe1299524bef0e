"""Whether ``--data-dir`` gives class labels, told without listing its files."""

from __future__ import annotations

from pathlib import Path

from hpm.data.layout import detect_layout
from hpm.data.shards import is_shard_dir
from hpm.errors import DataError


def has_class_labels(root: str | Path) -> bool:
    """Whether ``root`` gives class labels: a pack of shards or the classes layout of :mod:`hpm.data.layout`.

    Lets a caller skip an evaluation that needs labels (k-NN, linear, fine-tune) up front; a
    missing or ambiguous folder counts as labelled, leaving its error to whoever reads it.
    """
    path = Path(root)
    if is_shard_dir(path) or not path.is_dir():
        return True
    try:
        return detect_layout(path) == "classes"
    except DataError:
        return True
