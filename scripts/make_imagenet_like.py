"""Write a seeded folder of ImageNet-like JPEGs: ``OUT/train/<class>/*.jpg`` (and ``OUT/val/``).

Images are 500x375 (ImageNet's most common size) at JPEG quality 90, with textured content
(smooth colour fields, edges and fine noise) so that their files are about as large as
ImageNet's (~100 KB) and decoding costs what it costs on real photographs. Meant for loader
benchmarks (``hpm bench --data``), not for learning anything.

    python scripts/make_imagenet_like.py /tmp/in1k-like --classes 10 --images 100 --val 10
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
from PIL import Image


def textured_image(rng: np.random.Generator, width: int = 500, height: int = 375) -> np.ndarray:
    """A uint8 ``[height, width, 3]`` image: a blurred random colour field, a few hard edges and noise."""
    coarse = rng.uniform(0, 255, (height // 25 + 2, width // 25 + 2, 3)).astype(np.float32)
    field = np.asarray(Image.fromarray(coarse.astype(np.uint8)).resize((width, height), Image.Resampling.BICUBIC),
                       dtype=np.float32)  # [H, W, 3]
    ys, xs = np.mgrid[0:height, 0:width]
    for _ in range(4):  # half-planes of another tint: edges the encoder must keep
        a, b, c = rng.normal(size=3)
        side = (a * (xs - width / 2) + b * (ys - height / 2) + c * 60) > 0
        field[side] += rng.uniform(-60, 60, 3)
    field += rng.normal(0, rng.uniform(14, 22), field.shape)  # fine texture, like foliage or fur
    return np.clip(field, 0, 255).astype(np.uint8)


def make_folder(out: Path, classes: int, images: int, val: int, seed: int = 0, quality: int = 90) -> int:
    """Write ``classes x images`` training (and ``classes x val`` validation) JPEGs; returns the count."""
    rng = np.random.default_rng(seed)
    count = 0
    for split, per_class in (("train", images), ("val", val)):
        if per_class == 0:
            continue
        for c in range(classes):
            folder = out / split / f"n{c:08d}"
            folder.mkdir(parents=True, exist_ok=True)
            for i in range(per_class):
                Image.fromarray(textured_image(rng)).save(folder / f"n{c:08d}_{i}.JPEG", quality=quality)
                count += 1
    return count


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", type=Path, help="output folder")
    parser.add_argument("--classes", type=int, default=10)
    parser.add_argument("--images", type=int, default=100, help="training images per class")
    parser.add_argument("--val", type=int, default=0, help="validation images per class")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--quality", type=int, default=90)
    args = parser.parse_args()
    n = make_folder(args.out, args.classes, args.images, args.val, args.seed, args.quality)
    size = sum(p.stat().st_size for p in args.out.rglob("*.JPEG"))
    print(f"{n} images, {size / max(n, 1) / 1024:.0f} KB on average -> {args.out}")


if __name__ == "__main__":
    main()
