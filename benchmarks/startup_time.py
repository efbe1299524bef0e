"""Start-up time of pre-training data on a large folder: first start, second start, shards.

"Start" is the time :func:`hpm.data.build_pretrain_data` takes to build the pre-training data
object (list the files or read the index, probe 64 images, attach the augmentation) -- what a
run or a resumed run waits for before its first step. Writes a folder of small JPEGs (default
200 000 in 1 000 classes, 32x32), times a first start (empty folder-index cache), a second start
(cache valid: what a resume sees), ``hpm data pack`` and a start from the shards, prints the
figures and deletes everything it wrote.

    OMP_NUM_THREADS=1 python benchmarks/startup_time.py --images 200000 --classes 1000
"""

from __future__ import annotations

import argparse
import io
import os
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image


def write_folder(root: Path, images: int, classes: int) -> None:
    """``root/train/cNNNN/NNNNNN.jpg``: 32x32 JPEGs (64 distinct contents, written as bytes)."""
    rng = np.random.default_rng(0)
    payloads = []
    for _ in range(64):
        buffer = io.BytesIO()
        Image.fromarray(rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)).save(buffer, format="JPEG", quality=90)
        payloads.append(buffer.getvalue())
    per_class = images // classes
    for c in range(classes):
        folder = root / "train" / f"c{c:04d}"
        folder.mkdir(parents=True)
        for i in range(per_class):
            (folder / f"{i:06d}.jpg").write_bytes(payloads[(c + i) % 64])


def timed_start(data_dir: Path) -> tuple[float, int]:
    """Seconds to build the pre-training data object, and its number of images."""
    from hpm.config import DataConfig
    from hpm.data import build_pretrain_data

    start = time.perf_counter()
    data = build_pretrain_data(DataConfig(data_dir=str(data_dir)), 224, seed=0)
    return time.perf_counter() - start, data.num_images


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=200_000)
    parser.add_argument("--classes", type=int, default=1000)
    parser.add_argument("--workers", type=int, default=1, help="processes of `hpm data pack`")
    parser.add_argument("--tmp", default=None, help="where to write (default: the system's temporary folder)")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="hpm-startup-", dir=args.tmp))
    os.environ["HPM_CACHE_DIR"] = str(work / "cache")  # a cold cache, removed at the end
    try:
        t0 = time.perf_counter()
        write_folder(work / "folder", args.images, args.classes)
        print(f"wrote {args.images} JPEGs in {args.classes} classes in {time.perf_counter() - t0:.1f} s")
        first, n = timed_start(work / "folder")
        second, _ = timed_start(work / "folder")
        from hpm.data.pack import PackOptions, pack_folder

        t0 = time.perf_counter()
        pack_folder(work / "folder", work / "shards", PackOptions(), workers=args.workers, progress=False)
        pack_s = time.perf_counter() - t0
        shards, _ = timed_start(work / "shards")
        print(f"build_pretrain_data on {n} images:")
        print(f"  first start (walks the folder, writes the index cache): {first:.2f} s")
        print(f"  second start (cached index; a resume):                  {second:.2f} s")
        print(f"  start from shards (their own index):                    {shards:.2f} s")
        print(f"  hpm data pack ({args.workers} worker(s)):                         {pack_s:.1f} s")
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
