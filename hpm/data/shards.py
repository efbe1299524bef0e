"""Random access to WebDataset tar shards written by ``hpm data pack`` (see :mod:`hpm.data.pack`).

A pack is a folder of ``<split>-NNNNNN.tar`` shards and one index, :data:`INDEX_NAME`, that
records for every sample its shard, the byte offset and size of its image member inside the
tar, its label and its position in the source folder's order. :class:`ShardDataset` reads a
sample with one ``pread`` at that offset, so it is a map-style data set like
:class:`~hpm.data.folder.ImageFolderDataset`, with the same sample order (position ``i`` is the
folder's sample ``i``): the seeded global-batch sampler, exact resume and torchrun work as they
do on the folder. Shard files are opened lazily, once per process.
"""

from __future__ import annotations

import io
import json
import os
from pathlib import Path
from typing import Any

import numpy as np
import torch

from hpm.data.folder import Unreadable, read_or_unreadable
from hpm.errors import DataError

INDEX_NAME = "hpm-shards.json"
FORMAT = "hpm-shards"
VERSION = 1


def is_shard_dir(path: str | Path) -> bool:
    """Whether ``path`` is a pack of ``hpm data pack`` (it holds :data:`INDEX_NAME`)."""
    return (Path(path) / INDEX_NAME).is_file()


def read_index(root: str | Path) -> dict[str, Any]:
    """The parsed index of a pack.

    Raises:
        DataError: The index is missing, unreadable or of another format.
    """
    path = Path(root) / INDEX_NAME
    try:
        index = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise DataError(f"cannot read the shard index {path} ({exc}); re-run `hpm data pack SRC --out {root}`") from None
    if index.get("format") != FORMAT or index.get("version") != VERSION:
        raise DataError(f"{path} is not an index of `hpm data pack` (format {FORMAT} version {VERSION})")
    return index


class _Names:
    """Member names of all samples in one bytes buffer (no Python object per sample: workers
    forked from the main process then share the memory instead of copying it on access)."""

    def __init__(self, names: list[str]) -> None:
        encoded = [n.encode() for n in names]
        self.blob = np.frombuffer(b"".join(encoded), dtype=np.uint8)  # [total bytes]
        self.ends = np.cumsum([len(e) for e in encoded], dtype=np.int64)  # [N]

    def __getitem__(self, index: int) -> str:
        start = int(self.ends[index - 1]) if index > 0 else 0
        return self.blob[start : int(self.ends[index])].tobytes().decode()


class ShardDataset(torch.utils.data.Dataset):
    """Labelled images of one split of a pack; an unreadable member gives :class:`Unreadable`.

    The member is named ``<shard path>:<member name>``, e.g. ``/data/in1k/train-000003.tar:
    train/n01440764/n01440764_10026.jpg``.

    Args:
        root: The pack folder (holding :data:`INDEX_NAME`).
        split: ``"train"``, ``"val"``, ... (a split of the packed folder).
        channels: 1 (greyscale) or 3 (RGB); every image is converted to it.

    Raises:
        DataError: The pack is incomplete, lacks the split, or a shard is missing or has
            another size than the index records (truncated or overwritten).
    """

    def __init__(self, root: str | Path, split: str = "train", channels: int = 3) -> None:
        if channels not in (1, 3):
            raise DataError(f"channels must be 1 or 3, got {channels}")
        self.root = Path(root)
        self.split = split
        self.channels = channels
        index = read_index(self.root)
        repack = f"re-run `hpm data pack {index.get('source', 'SRC')} --out {self.root}`"
        if not index.get("complete"):
            raise DataError(f"the pack {self.root} is incomplete (packing was interrupted); {repack} to finish it")
        if split not in index["splits"]:
            raise DataError(
                f"the pack {self.root} has no split {split!r} (it has {sorted(index['splits'])}); "
                f"pack a folder with {split}/<class>/ sub-folders"
            )
        entry = index["splits"][split]
        self.classes: list[str] = list(entry["classes"])
        self.num_classes = len(self.classes)
        self.paths: list[str] = [str(self.root / shard["file"]) for shard in entry["shards"]]
        _check_shards(self.paths, [int(s["bytes"]) for s in entry["shards"]], repack)
        n = int(entry["num_samples"])
        self.shard_of = np.empty(n, dtype=np.int32)  # [N] shard of each sample
        self.offsets = np.empty(n, dtype=np.int64)  # [N] byte offset of the image member's data
        self.sizes = np.empty(n, dtype=np.int64)  # [N] its size in bytes
        self.labels = np.empty(n, dtype=np.int64)  # [N]
        names: list[str] = [""] * n
        for k, shard in enumerate(entry["shards"]):
            pos = np.asarray(shard["positions"], dtype=np.int64)
            self.shard_of[pos] = k
            self.offsets[pos] = shard["offsets"]
            self.sizes[pos] = shard["sizes"]
            self.labels[pos] = shard["labels"]
            for p, member in zip(pos.tolist(), shard["members"]):
                names[p] = member
        self.members = _Names(names)
        self._fds: dict[int, int] = {}
        self._pid = os.getpid()

    def __len__(self) -> int:
        return len(self.labels)

    def __getstate__(self) -> dict[str, Any]:
        return {**self.__dict__, "_fds": {}}  # file descriptors do not travel to spawned workers

    def _fd(self, shard: int) -> int:
        if self._pid != os.getpid():  # a forked worker: open its own descriptors
            self._fds, self._pid = {}, os.getpid()
        fd = self._fds.get(shard)
        if fd is None:
            fd = self._fds[shard] = os.open(self.paths[shard], os.O_RDONLY)
        return fd

    def source(self, index: int) -> tuple[io.BytesIO, int]:
        """``(encoded image bytes, label)`` of a sample, read with one ``pread``.

        Raises:
            OSError: The shard is shorter than the index says.
        """
        size = int(self.sizes[index])
        data = os.pread(self._fd(int(self.shard_of[index])), size, int(self.offsets[index]))
        if len(data) != size:
            raise OSError(f"read {len(data)} of {size} bytes: the shard is truncated")
        return io.BytesIO(data), int(self.labels[index])

    def name(self, index: int) -> str:
        """``<shard path>:<member name>`` of a sample."""
        return f"{self.paths[int(self.shard_of[index])]}:{self.members[index]}"

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int] | Unreadable:
        """Return ``(image, label)`` (uint8 ``[C, H, W]``, int), or ``Unreadable(shard:member)``."""
        return read_or_unreadable(self, index)


def _check_shards(paths: list[str], sizes: list[int], repack: str) -> None:
    """Every shard exists with the size the index records."""
    for path, expected in zip(paths, sizes):
        try:
            actual = os.stat(path).st_size
        except OSError:
            raise DataError(f"shard {path} is missing; restore it or {repack} to rewrite it") from None
        if actual != expected:
            raise DataError(
                f"shard {path} has {actual} bytes but the index records {expected} (truncated or overwritten); "
                f"restore it or delete it and {repack} to rewrite it"
            )
