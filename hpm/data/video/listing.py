"""Which entries of a folder are videos: video files (by extension) and folders of frames
(:mod:`hpm.data.video.frames`) found where a video file would be, below a class folder or a
flat folder's root; a frame folder is one video, its sub-folders are not searched."""

from __future__ import annotations

import os
from pathlib import Path

from hpm.data.folder_index import FolderListing
from hpm.data.video.decode import VIDEO_EXTENSIONS
from hpm.data.video.frames import is_frame_folder


def is_video_file(name: str) -> bool:
    """Whether a file name is a video file the clip data set reads (by extension)."""
    return not name.startswith(".") and os.path.splitext(name)[1].lower() in VIDEO_EXTENSIONS


def _walk_videos(top: Path, split_dir: Path, dirs: dict[str, int]) -> list[str]:
    """The videos below ``top`` (paths relative to ``split_dir``), each folder's in name order
    before its sub-folders'; records each folder walked, with its mtime, in ``dirs``."""
    found: list[str] = []
    for dirpath, dirnames, filenames in os.walk(top, followlinks=True):
        rel = os.path.relpath(dirpath, split_dir)
        dirs[rel] = os.stat(dirpath).st_mtime_ns
        subdirs = sorted(d for d in dirnames if not d.startswith("."))
        frame_dirs = [d for d in subdirs if is_frame_folder(os.path.join(dirpath, d))]
        dirnames[:] = [d for d in subdirs if d not in frame_dirs]  # a frame folder is one video
        names = sorted([f for f in filenames if is_video_file(f)] + frame_dirs)
        found += [name if rel == "." else os.path.join(rel, name) for name in names]
    return found


def walk_video_split(split_dir: Path) -> FolderListing:
    """The class folders of ``split_dir`` and the videos below each (video files and frame folders)."""
    dirs = {".": os.stat(split_dir).st_mtime_ns}
    classes = sorted(e.name for e in os.scandir(split_dir) if e.is_dir() and not e.name.startswith("."))
    files = [_walk_videos(split_dir / name, split_dir, dirs) for name in classes]
    return FolderListing(classes, files, dirs)


def walk_video_unlabelled(root: Path) -> FolderListing:
    """Every video below ``root`` (video files and frame folders), as one list and no classes."""
    dirs: dict[str, int] = {}
    return FolderListing([], [_walk_videos(root, root, dirs)], dirs)
