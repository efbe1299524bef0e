"""``hpm data pack``: write an image folder as WebDataset tar shards with a random-access index.

Each split folder (``train/``, ``val/``) becomes ``<split>-NNNNNN.tar`` shards of
``samples_per_shard`` samples in a seeded shuffled order (so streaming readers such as timm's
and OpenCLIP's see mixed classes). A sample is two members, ``<key>.jpg`` (the image) and
``<key>.cls`` (the label as text), ``<key>`` being the file's path below the folder without
its extension. Images are re-encoded once as JPEG (quality ``quality``) with the longer side at
most ``max_side``; a JPEG already within that size is kept byte for byte (no second
generation loss), and ``keep_original`` keeps every file's bytes (and extension). A file
that cannot be decoded is stored as it is, so training skips and names it as it would in the
folder. The index :data:`~hpm.data.shards.INDEX_NAME` is written first (incomplete) and again
at the end; each finished shard is written under a temporary name, renamed, and recorded
in ``<shard>.json`` beside it, so a re-run skips the finished shards.
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
import multiprocessing
import os
import tarfile
import warnings
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import webdataset as wds
from PIL import Image
from tqdm import tqdm

from hpm.data.folder import ImageFolderDataset, _to_8bit
from hpm.data.shards import FORMAT, INDEX_NAME, VERSION, read_index
from hpm.errors import DataError, HpmError

_LOG = logging.getLogger(__name__)
SPLITS: tuple[str, ...] = ("train", "val")


@dataclass(frozen=True)
class PackOptions:
    """How images are stored; a pack is only resumed with the same options.

    Attributes:
        max_side: Longer side (px) of re-encoded images.
        quality: JPEG quality of re-encoded images.
        keep_original: Store every file's original bytes instead.
        samples_per_shard: Samples per tar shard (the last one of a split may hold fewer).
        shuffle_seed: Seeds the order of the samples over the shards.
    """

    max_side: int = 320
    quality: int = 90
    keep_original: bool = False
    samples_per_shard: int = 2000
    shuffle_seed: int = 0

    def __post_init__(self) -> None:
        if self.max_side < 1 or self.samples_per_shard < 1 or not 1 <= self.quality <= 100:
            raise HpmError(
                f"--max-side ({self.max_side}) and --shard-size ({self.samples_per_shard}) must be >= 1 and "
                f"--quality ({self.quality}) in 1..100"
            )


@dataclass(frozen=True)
class _ShardTask:
    out: str
    file: str
    items: list[tuple[int, str, str, int]]  # (position in the folder, source path, key, label)
    options: PackOptions


def encode_image(path: str, options: PackOptions) -> tuple[bytes, str, bool]:
    """The bytes to store for one image file, their extension, and whether they decode."""
    raw = Path(path).read_bytes()
    original_ext = os.path.splitext(path)[1].lower().lstrip(".") or "bin"
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            with Image.open(io.BytesIO(raw)) as image:
                if options.keep_original or (
                    image.format == "JPEG" and image.mode in ("L", "RGB") and max(image.size) <= options.max_side
                ):
                    image.verify()  # cheap integrity check, no full decode
                    return raw, "jpg" if image.format == "JPEG" else original_ext, True
                image.draft(image.mode, (options.max_side, options.max_side))  # JPEG: decode at >= the target
                converted = _to_8bit(image)
                converted = converted.convert("L" if converted.mode in ("1", "L", "LA") else "RGB")
                converted.thumbnail((options.max_side, options.max_side), Image.Resampling.BICUBIC)
                buffer = io.BytesIO()
                converted.save(buffer, format="JPEG", quality=options.quality)
                return buffer.getvalue(), "jpg", True
    except Exception:  # noqa: BLE001 - stored as is; training skips and names it
        return raw, original_ext, False


def _pack_shard(task: _ShardTask) -> dict[str, Any]:
    """Write one shard (temporary name, then renamed) and return its index entry."""
    final = Path(task.out) / task.file
    tmp = final.with_name(final.name + ".tmp")
    unreadable: list[str] = []
    with open(tmp, "wb") as stream:
        writer = wds.TarWriter(stream, encoder=False, mtime=0.0)
        for _, path, key, label in task.items:
            data, ext, ok = encode_image(path, task.options)
            if not ok:
                unreadable.append(path)
            writer.write({"__key__": key, ext: data, "cls": str(label).encode()})
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
    diffs = []
    if old.get("source") != header["source"]:
        diffs.append(f"source folder: {old.get('source')} (pack) vs {header['source']} (now)")
    for key, value in header["options"].items():
        if old.get("options", {}).get(key) != value:
            diffs.append(f"{key}: {old.get('options', {}).get(key)} (pack) vs {value} (now)")
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
    """The recorded entry of a shard that is complete on disk, else None."""
    record = out / (task.file + ".json")
    try:
        entry = json.loads(record.read_text())
        complete = os.path.getsize(out / task.file) == entry["bytes"] and entry["num_samples"] == len(task.items)
    except (OSError, ValueError, KeyError):
        return None
    return entry if complete else None


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
    total = sum(len(t.items) for t in todo)
    with tqdm(total=total, unit="img", desc=f"packing {src.name}", disable=not progress or not todo) as bar:
        if workers > 1 and len(todo) > 1:
            with multiprocessing.get_context("fork").Pool(min(workers, len(todo))) as pool:
                for entry in pool.imap_unordered(_pack_shard, todo):
                    entries[entry["file"]] = entry
                    bar.update(entry["num_samples"])
        else:
            for task in todo:
                entries[task.file] = _pack_shard(task)
                bar.update(len(task.items))
    for split, (_, split_tasks) in planned.items():
        header["splits"][split]["shards"] = [entries[t.file] for t in split_tasks]
        bad = [p for t in split_tasks for p in entries[t.file]["unreadable"]]
        if bad:
            _LOG.warning("%d file(s) of %s/ could not be decoded and were stored as they are (training skips them), "
                         "e.g. %s", len(bad), split, bad[0])
    header["complete"] = True
    _write_json(out / INDEX_NAME, header)
    return out / INDEX_NAME
