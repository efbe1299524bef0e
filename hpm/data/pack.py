"""``hpm data pack``: write an image folder as WebDataset tar shards with a random-access index.

Each split folder (``train/``, ``val/``) becomes ``<split>-NNNNNN.tar`` shards of
``samples_per_shard`` samples in a seeded shuffled order (so streaming readers such as timm's
and OpenCLIP's see mixed classes). A sample is two members, ``<key>.<ext>`` (the image) and
``<key>.cls`` (the label as text), ``<key>`` being the file's path below the folder without
its extension. What is stored for an image (its own bytes, or a lossless or JPEG re-encoding
shrunk to ``max_side``) follows :mod:`hpm.data.encoding`; the index counts how many images
were stored each way. The index :data:`~hpm.data.shards.INDEX_NAME` is written first
(incomplete) and again at the end; each finished shard is written under a temporary name,
renamed, and recorded in ``<shard>.json`` beside it, so a re-run skips the finished shards.
"""

from __future__ import annotations

import hashlib
import json
import logging
import multiprocessing
import os
import tarfile
from collections import Counter
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import webdataset as wds
from tqdm import tqdm

from hpm.data.encoding import STORAGES, Policy, encode_image
from hpm.data.folder import ImageFolderDataset
from hpm.data.shards import FORMAT, INDEX_NAME, VERSION, read_index
from hpm.errors import DataError, HpmError

_LOG = logging.getLogger(__name__)
SPLITS: tuple[str, ...] = ("train", "val")


@dataclass(frozen=True)
class PackOptions:
    """How images are stored; a pack is only resumed with the same options.

    Attributes:
        max_side: Images with a longer side (px) above this are shrunk to it.
        quality: JPEG quality of lossy re-encodes.
        keep_original: Store every file's original bytes, never shrunk.
        lossy: Store every image as JPEG (the smallest pack) instead of keeping lossless sources lossless.
        samples_per_shard: Samples per tar shard (the last one of a split may hold fewer).
        shuffle_seed: Seeds the order of the samples over the shards.
    """

    max_side: int = 320
    quality: int = 90
    keep_original: bool = False
    lossy: bool = False
    samples_per_shard: int = 2000
    shuffle_seed: int = 0

    def __post_init__(self) -> None:
        if self.max_side < 1 or self.samples_per_shard < 1 or not 1 <= self.quality <= 100:
            raise HpmError(
                f"--max-side ({self.max_side}) and --shard-size ({self.samples_per_shard}) must be >= 1 and "
                f"--quality ({self.quality}) in 1..100"
            )
        if self.keep_original and self.lossy:
            raise HpmError("--keep-original and --lossy exclude each other: keep every file's bytes, or make JPEGs")

    @property
    def policy(self) -> Policy:
        """How :func:`~hpm.data.encoding.encode_image` stores images under these options."""
        return "original" if self.keep_original else "lossy" if self.lossy else "auto"


@dataclass(frozen=True)
class _ShardTask:
    out: str
    file: str
    items: list[tuple[int, str, str, int]]  # (position in the folder, source path, key, label)
    options: PackOptions


def _pack_shard(task: _ShardTask) -> dict[str, Any]:
    """Write one shard (temporary name, then renamed) and return its index entry."""
    final = Path(task.out) / task.file
    tmp = final.with_name(final.name + ".tmp")
    unreadable: list[str] = []
    stored: Counter[str] = Counter()
    options = task.options
    with open(tmp, "wb") as stream:
        writer = wds.TarWriter(stream, encoder=False, mtime=0.0)
        for _, path, key, label in task.items:
            encoded = encode_image(path, options.max_side, options.quality, options.policy)
            stored[encoded.storage] += 1
            if not encoded.readable:
                unreadable.append(path)
            writer.write({"__key__": key, encoded.ext: encoded.data, "cls": str(label).encode()})
        writer.close()
    members: dict[str, tuple[int, int]] = {}
    with tarfile.open(tmp) as tar:  # where the writer put each member's data
        for info in tar:
            if not info.name.endswith(".cls"):
                members[info.name.rsplit(".", 1)[0]] = (info.name, info.offset_data, info.size)  # type: ignore[assignment]
    located = [members[key] for _, _, key, _ in task.items]
    entry = {
        "file": task.file,
        "bytes": os.path.getsize(tmp),
        "num_samples": len(task.items),
        "positions": [pos for pos, _, _, _ in task.items],
        "labels": [label for _, _, _, label in task.items],
        "members": [name for name, _, _ in located],
        "offsets": [offset for _, offset, _ in located],
        "sizes": [size for _, _, size in located],
        "unreadable": unreadable,
        "stored": {storage: stored[storage] for storage in STORAGES},
    }
    os.replace(tmp, final)
    _write_json(final.with_name(final.name + ".json"), entry)
    return entry


def _write_json(path: Path, payload: dict[str, Any]) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(payload, separators=(",", ":")))
    os.replace(tmp, path)


def _keys(dataset: ImageFolderDataset, src: Path) -> list[str]:
    """WebDataset keys: the path below ``src`` without extension, dots of the name made ``_``
    (a key ends at the first dot of the file name), made unique with a ``~N`` suffix."""
    seen: set[str] = set()
    keys = []
    for path, _ in dataset.samples:
        rel = os.path.relpath(path, src)
        folder, name = os.path.split(os.path.splitext(rel)[0])
        key = os.path.join(folder, name.replace(".", "_"))
        base, n = key, 1
        while key in seen:
            key, n = f"{base}~{n}", n + 1
        seen.add(key)
        keys.append(key)
    return keys


def plan_split(src: Path, split: str, options: PackOptions) -> tuple[dict[str, Any], list[_ShardTask]]:
    """The split's description (classes, counts, a fingerprint of the file list) and its shards."""
    dataset = ImageFolderDataset(src, split)
    keys = _keys(dataset, src)
    order = np.random.default_rng(options.shuffle_seed).permutation(len(dataset))  # [N]
    items = [(int(i), dataset.samples[i][0], keys[i], int(dataset.samples[i][1])) for i in order]
    step = options.samples_per_shard
    tasks = [
        _ShardTask("", f"{split}-{k // step:06d}.tar", items[k : k + step], options)
        for k in range(0, len(items), step)
    ]
    listing = "\n".join(f"{os.path.relpath(p, src)}\t{label}" for p, label in dataset.samples)
    info = {
        "classes": dataset.classes,
        "counts": np.bincount(dataset.labels, minlength=dataset.num_classes).tolist(),
        "num_samples": len(dataset),
        "num_shards": len(tasks),
        "fingerprint": hashlib.sha1(listing.encode()).hexdigest(),
    }
    return info, tasks


def _check_same_pack(out: Path, header: dict[str, Any]) -> None:
    """Refuse to add to a pack of another folder, with other options or of a changed folder."""
    old = read_index(out)
    old_options = old.get("options", {})
    old_options = {"lossy": not old_options.get("keep_original", False), **old_options}  # older packs: JPEG or original
    diffs = []
    if old.get("source") != header["source"]:
        diffs.append(f"source folder: {old.get('source')} (pack) vs {header['source']} (now)")
    for key, value in header["options"].items():
        if old_options.get(key) != value:
            diffs.append(f"{key}: {old_options.get(key)} (pack) vs {value} (now)")
    for split, info in header["splits"].items():
        before = old.get("splits", {}).get(split, {})
        if before.get("fingerprint") not in (None, info["fingerprint"]):
            diffs.append(f"{split}/: the folder's files changed since it was packed ({before.get('num_samples')} then, "
                         f"{info['num_samples']} now)")
    if set(old.get("splits", {})) != set(header["splits"]):
        diffs.append(f"splits: {sorted(old.get('splits', {}))} (pack) vs {sorted(header['splits'])} (now)")
    if diffs:
        raise HpmError(
            f"{out} holds a pack made differently, so it is not resumed or overwritten:\n  " + "\n  ".join(diffs)
            + f"\nPack into another --out, or delete {out} to pack again."
        )


def _finished(out: Path, task: _ShardTask) -> dict[str, Any] | None:
    """The recorded entry of a shard that is complete on disk, else None (also for a shard of an
    older version, which did not count how images were stored: it is written again)."""
    record = out / (task.file + ".json")
    try:
        entry = json.loads(record.read_text())
        complete = os.path.getsize(out / task.file) == entry["bytes"] and entry["num_samples"] == len(task.items)
        complete = complete and set(entry["stored"]) == set(STORAGES)
    except (OSError, ValueError, KeyError):
        return None
    return entry if complete else None


def _write_shards(todo: list[_ShardTask], workers: int, bar: tqdm) -> dict[str, dict[str, Any]]:
    """Write the shards of ``todo`` (in ``workers`` processes) and return their entries by file."""
    entries: dict[str, dict[str, Any]] = {}
    if workers > 1 and len(todo) > 1:
        with multiprocessing.get_context("fork").Pool(min(workers, len(todo))) as pool:
            for entry in pool.imap_unordered(_pack_shard, todo):
                entries[entry["file"]] = entry
                bar.update(entry["num_samples"])
    else:
        for task in todo:
            entries[task.file] = _pack_shard(task)
            bar.update(len(task.items))
    return entries


def pack_folder(
    src: str | Path, out: str | Path, options: PackOptions = PackOptions(), workers: int = 1, progress: bool = True
) -> Path:
    """Pack the ``train/`` (and ``val/``) split of an image folder into shards; resumes.

    Args:
        src: The image folder (``src/<split>/<class>/<files>``).
        out: The pack folder (created).
        options: How images are stored.
        workers: Processes that write shards in parallel.
        progress: Show a progress bar (images).

    Returns:
        The path of the index.

    Raises:
        DataError: ``src`` is not an image folder.
        HpmError: ``out`` holds another pack (other folder, options or files) or other files.
    """
    src, out = Path(src).resolve(), Path(out).resolve()
    if not (src / "train").is_dir():
        raise DataError(f"{src} has no train/ folder; `hpm data pack` reads SRC/train/<class>/... (and SRC/val/)")
    splits = [s for s in SPLITS if (src / s).is_dir()]
    planned = {split: plan_split(src, split, options) for split in splits}
    header = {
        "format": FORMAT, "version": VERSION, "complete": False, "source": str(src), "options": asdict(options),
        "classes": planned["train"][0]["classes"], "splits": {s: info for s, (info, _) in planned.items()},
    }
    if (out / INDEX_NAME).is_file():
        _check_same_pack(out, header)
    elif out.is_dir() and any(out.iterdir()):
        raise HpmError(f"{out} is not empty and holds no pack ({INDEX_NAME}); choose an empty or new --out")
    out.mkdir(parents=True, exist_ok=True)
    tasks = [_ShardTask(str(out), t.file, t.items, t.options) for _, ts in planned.values() for t in ts]
    entries = {t.file: e for t in tasks if (e := _finished(out, t)) is not None}
    todo = [t for t in tasks if t.file not in entries]
    if not entries or todo:
        _write_json(out / INDEX_NAME, header)
    if entries:
        _LOG.info("%d of %d shards already packed in %s; packing the other %d", len(entries), len(tasks), out, len(todo))
    with tqdm(total=sum(len(t.items) for t in todo), unit="img", desc=f"packing {src.name}",
              disable=not progress or not todo) as bar:
        entries.update(_write_shards(todo, workers, bar))
    for split, (_, split_tasks) in planned.items():
        header["splits"][split]["shards"] = [entries[t.file] for t in split_tasks]
        header["splits"][split]["stored"] = _total_stored(entries[t.file] for t in split_tasks)
        bad = [p for t in split_tasks for p in entries[t.file]["unreadable"]]
        if bad:
            _LOG.warning("%d file(s) of %s/ could not be decoded and were stored as they are (training skips them), "
                         "e.g. %s", len(bad), split, bad[0])
    header["stored"] = _total_stored(header["splits"].values())
    header["complete"] = True
    _write_json(out / INDEX_NAME, header)
    return out / INDEX_NAME


def _total_stored(parts: Iterable[dict[str, Any]]) -> dict[str, int]:
    """The sum of the ``stored`` counts of shards or splits."""
    total: Counter[str] = Counter()
    for part in parts:
        total.update(part["stored"])
    return {storage: total[storage] for storage in STORAGES}


def pack_summary(index: dict[str, Any]) -> str:
    """One line saying how the images of a pack were stored, e.g. ``"36 images: 24 kept as they are,
    12 re-encoded losslessly, 0 re-encoded as JPEG"`` (a pack of an older version does not say)."""
    total = sum(int(split["num_samples"]) for split in index["splits"].values())
    stored = index.get("stored")
    if stored is None:
        return f"{total} images (how they were stored is not recorded: packed by an older version)"
    return (f"{total} images: {stored['kept']} kept as they are, {stored['lossless']} re-encoded losslessly, "
            f"{stored['lossy']} re-encoded as JPEG")
