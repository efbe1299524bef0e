"""A cached file list of one image-folder split, so a restart does not walk every file again.

The cache holds the split's class names and image files (relative paths) and the modification
times of every directory it walked (the split folder, each class folder and any sub-folder).
Adding, removing or renaming a file or folder changes its parent directory's modification
time, which invalidates the cache; replacing a file's contents under the same name does not
(the list is the same). Cache files live in ``$HPM_CACHE_DIR`` (default ``~/.cache/hpm``) under
``folder-index/``, one per split folder, named by a hash of its absolute path, and are written
under a temporary name and renamed.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

_LOG = logging.getLogger(__name__)
_VERSION = 1


@dataclass(frozen=True)
class FolderListing:
    """What a split folder holds.

    Attributes:
        classes: Sorted class folder names; a label indexes into them.
        files: Per class, the image files below its folder (paths relative to the split
            folder, sorted as :func:`os.walk` with sorted names visits them).
        dirs: Every directory walked (relative to the split folder, ``"."`` for itself) with
            its modification time in nanoseconds.
    """

    classes: list[str]
    files: list[list[str]]
    dirs: dict[str, int]


def cache_dir() -> Path:
    """Where hpm keeps caches: ``$HPM_CACHE_DIR`` or ``~/.cache/hpm``."""
    given = os.environ.get("HPM_CACHE_DIR")
    return Path(given) if given else Path.home() / ".cache" / "hpm"


def cache_file(split_dir: Path) -> Path:
    """The cache file of one split folder."""
    key = hashlib.sha1(str(split_dir.resolve()).encode()).hexdigest()[:20]
    return cache_dir() / "folder-index" / f"{key}.json"


def walk_split(split_dir: Path, is_image: Callable[[str], bool]) -> FolderListing:
    """List the class folders of ``split_dir`` and their image files, recursively."""
    dirs = {".": os.stat(split_dir).st_mtime_ns}
    classes = sorted(
        e.name for e in os.scandir(split_dir) if e.is_dir() and not e.name.startswith(".")
    )
    files: list[list[str]] = []
    for name in classes:
        found: list[str] = []
        for dirpath, dirnames, filenames in os.walk(split_dir / name, followlinks=True):
            dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
            rel = os.path.relpath(dirpath, split_dir)
            dirs[rel] = os.stat(dirpath).st_mtime_ns
            found += [os.path.join(rel, f) for f in sorted(filenames) if is_image(f)]
        files.append(found)
    return FolderListing(classes, files, dirs)


def _still_valid(split_dir: Path, dirs: dict[str, int]) -> bool:
    try:
        return all(os.stat(split_dir / rel).st_mtime_ns == mtime for rel, mtime in dirs.items())
    except OSError:  # a folder of the listing is gone
        return False


def _load(path: Path, split_dir: Path) -> FolderListing | None:
    try:
        raw = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    if raw.get("version") != _VERSION or raw.get("split_dir") != str(split_dir.resolve()):
        return None
    listing = FolderListing(raw["classes"], raw["files"], {k: int(v) for k, v in raw["dirs"].items()})
    return listing if _still_valid(split_dir, listing.dirs) else None


def _store(path: Path, split_dir: Path, listing: FolderListing) -> None:
    payload = {"version": _VERSION, "split_dir": str(split_dir.resolve()), "classes": listing.classes,
               "files": listing.files, "dirs": listing.dirs}
    tmp = path.with_name(f"{path.name}.{os.getpid()}.tmp")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp.write_text(json.dumps(payload, separators=(",", ":")))
        os.replace(tmp, path)
    except OSError as exc:  # a read-only home must not stop training
        _LOG.warning("could not write the folder index cache %s (%s); set HPM_CACHE_DIR to a writable folder", path, exc)
        try:
            tmp.unlink()
        except OSError:
            pass


def list_split(split_dir: Path, is_image: Callable[[str], bool]) -> FolderListing:
    """The listing of ``split_dir``, from the cache while the folder is unchanged.

    Args:
        split_dir: A split folder, ``ROOT/<split>``.
        is_image: Whether a file name is an image file (applied when walking).

    Returns:
        The classes and files; walked afresh (and cached) when no valid cache exists.
    """
    path = cache_file(split_dir)
    listing = _load(path, split_dir)
    if listing is not None:
        _LOG.debug("folder index of %s read from %s", split_dir, path)
        return listing
    listing = walk_split(split_dir, is_image)
    if listing.classes and any(listing.files):
        _store(path, split_dir, listing)
    return listing
