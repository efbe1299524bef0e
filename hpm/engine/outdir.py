"""Checking, before anything is loaded, that a run's output directory can be written."""

from __future__ import annotations

import os
from pathlib import Path

from hpm.errors import OutputDirError


def _nearest_existing(path: Path) -> Path:
    """``path`` itself or its nearest ancestor that exists."""
    for candidate in (path, *path.parents):
        if candidate.exists():
            return candidate
    return Path("/")


def _why_not_writable(existing: Path) -> str | None:
    """Why files cannot be created in the directory ``existing`` (None: they can)."""
    if not existing.is_dir():
        return f"{existing} is not a directory"
    try:
        if os.statvfs(existing).f_flag & os.ST_RDONLY:
            return "it is on a read-only file system"
    except OSError:
        pass
    if not os.access(existing, os.W_OK | os.X_OK):
        return f"you have no permission to write {existing}"
    return None


def check_output_dir(run_dir: str | Path, option: str = "--output-dir") -> None:
    """Raise :class:`~hpm.errors.OutputDirError` if ``run_dir`` (or the directories above it that
    do not exist yet) cannot be created and written; writes nothing.

    Args:
        run_dir: The directory the run will write.
        option: The flag that chooses it, named in the message.
    """
    run_dir = Path(run_dir).absolute()
    existing = _nearest_existing(run_dir)
    why = _why_not_writable(existing)
    if why is None:
        return
    if existing != run_dir and existing.is_dir():
        why = f"its parent {existing} cannot be written: {why}"
    raise OutputDirError(
        f"cannot write the output directory {run_dir}: {why}. Choose a writable {option} "
        "(or fix the directory's permissions or mount), then re-run"
    )

