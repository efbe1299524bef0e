"""A cached file list of one image-folder split, so a restart does not walk every file again.

A labelled split folder holds one folder per class; an unlabelled one (the layouts of
:mod:`hpm.data.layout` without classes) holds image files anywhere below it. The cache holds
the split's class names and image files (relative paths) and the modification times of every
directory it walked (the split folder, each class folder and any sub-folder).
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
        classes: Sorted class folder names; a label indexes into them (``[]`` when unlabelled).
        files: Per class, the image files below its folder (paths relative to the split
            folder, sorted as :func:`os.walk` with sorted names visits them); unlabelled: one
            list of every image file below the split folder.
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


def _walk(top: Path, split_dir: Path, is_image: Callable[[str], bool], dirs: dict[str, int]) -> list[str]:
    """The image files below ``top`` (relative to ``split_dir``); records each directory's mtime in ``dirs``."""
    found: list[str] = []
    for dirpath, dirnames, filenames in os.walk(top, followlinks=True):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        rel = os.path.relpath(dirpath, split_dir)
        dirs[rel] = os.stat(dirpath).st_mtime_ns
        found += [f if rel == "." else os.path.join(rel, f) for f in sorted(filenames) if is_image(f)]
    return found


def walk_split(split_dir: Path, is_image: Callable[[str], bool]) -> FolderListing:
    """List the class folders of ``split_dir`` and their image files, recursively."""
    dirs = {".": os.stat(split_dir).st_mtime_ns}
    classes = sorted(
        e.name for e in os.scandir(split_dir) if e.is_dir() and not e.name.startswith(".")
    )
    files = [_walk(split_dir / name, split_dir, is_image, dirs) for name in classes]
    return FolderListing(classes, files, dirs)


def walk_unlabelled(split_dir: Path, is_image: Callable[[str], bool]) -> FolderListing:
    """List every image file below ``split_dir``, recursively, as one list and no classes."""
    dirs = {".": os.stat(split_dir).st_mtime_ns}
    return FolderListing([], [_walk(split_dir, split_dir, is_image, dirs)], dirs)


def _still_valid(split_dir: Path, dirs: dict[str, int]) -> bool:
    try:
        return all(os.stat(split_dir / rel).st_mtime_ns == mtime for rel, mtime in dirs.items())
    except OSError:  # a folder of the listing is gone
        return False


def _load(path: Path, split_dir: Path, labelled: bool) -> FolderListing | None:
    try:
        raw = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    if raw.get("version") != _VERSION or raw.get("split_dir") != str(split_dir.resolve()):
        return None
    if raw.get("labelled", True) != labelled:  # the same folder read with the other layout
        return None
    listing = FolderListing(raw["classes"], raw["files"], {k: int(v) for k, v in raw["dirs"].items()})
    return listing if _still_valid(split_dir, listing.dirs) else None


def _store(path: Path, split_dir: Path, listing: FolderListing, labelled: bool) -> None:
    payload = {"version": _VERSION, "split_dir": str(split_dir.resolve()), "classes": listing.classes,
               "files": listing.files, "dirs": listing.dirs}
    if not labelled:
        payload["labelled"] = False
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


def list_split(split_dir: Path, is_image: Callable[[str], bool], labelled: bool = True) -> FolderListing:
    """The listing of ``split_dir``, from the cache while the folder is unchanged.

    Args:
        split_dir: A split folder, ``ROOT/<split>`` (or an unlabelled layout's folder).
        is_image: Whether a file name is an image file (applied when walking).
        labelled: False: list every image file below ``split_dir``, no classes.

    Returns:
        The classes and files; walked afresh (and cached) when no valid cache exists.
    """
    path = cache_file(split_dir)
    listing = _load(path, split_dir, labelled)
    if listing is not None:
        _LOG.debug("folder index of %s read from %s", split_dir, path)
        return listing
    listing = (walk_split if labelled else walk_unlabelled)(split_dir, is_image)
    if any(listing.files):
        _store(path, split_dir, listing, labelled)
    return listing
