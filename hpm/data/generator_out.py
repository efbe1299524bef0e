"""The output folder of a data generator (``hpm data scenes``, ``hpm data moving``): checked before
anything is written, and the generator's earlier outputs removed when it is replaced."""

from __future__ import annotations

import shutil
from collections.abc import Iterable
from pathlib import Path

from hpm.errors import ConfigError


def check_generator_out(out: Path, overwrite: bool, what: str) -> None:
    """Refuse an ``out`` that is not a folder, or one that holds anything unless ``overwrite``.

    Args:
        out: The output folder (it may not exist yet).
        overwrite: Allow a folder that holds files (the generator replaces its own outputs).
        what: What the generator writes, for the message (``"scenes"``, ``"clips"``).

    Raises:
        ConfigError: Saying what to pass or choose instead.
    """
    if out.exists() and not out.is_dir():
        raise ConfigError(f"{out} exists and is not a directory; choose another OUT")
    if not overwrite and out.is_dir() and any(out.iterdir()):
        raise ConfigError(f"{out} is not empty; pass --overwrite to replace its {what}, or choose another OUT")


def remove_outputs(paths: Iterable[Path]) -> None:
    """Remove these files and folders where they exist (a generator's earlier outputs; other files stay)."""
    for path in paths:
        if path.is_dir():
            shutil.rmtree(path)
        elif path.exists():
            path.unlink()
