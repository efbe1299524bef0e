#!/usr/bin/env python3
"""Write scikit-learn's bundled 8x8 handwritten digits as an image folder for ``--data-dir``.

The second data set of the fine-tuning study (issue #15; docs/study.md): 1 797 greyscale
8x8 images of the digits 0-9 that ship inside scikit-learn (``sklearn.datasets.load_digits``
reads them from the installed package, nothing is downloaded). Pixel values 0-16 become
0-255. A seeded, per-class split puts ``--val-fraction`` of each class in ``val/``::

    pip install scikit-learn            # or: pip install -e ".[dev]"
    python scripts/digits_to_folder.py data/digits
    # -> data/digits/train/<digit>/<index>.png (1 438), data/digits/val/<digit>/<index>.png (359)

Then pre-train and evaluate with ``--data-dir data/digits data.channels=1`` (the commands of
docs/study.md).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
from PIL import Image


def write_digits(out: Path, val_fraction: float = 0.2, seed: int = 0) -> dict[str, int]:
    """Write the digits under ``out/train`` and ``out/val``; returns the image count per split.

    Raises:
        SystemExit: scikit-learn is not installed, or ``out`` already holds images.
    """
    try:
        from sklearn.datasets import load_digits
    except ImportError:
        raise SystemExit("scikit-learn is not installed: pip install scikit-learn (or pip install -e '.[dev]')") from None
    if not 0.0 < val_fraction < 1.0:
        raise SystemExit(f"--val-fraction must be in (0, 1), got {val_fraction}")
    if any(out.glob("*/*/*.png")):
        raise SystemExit(f"{out} already holds images; choose an empty folder")
    digits = load_digits()
    images = np.round(digits.images * (255.0 / 16.0)).astype(np.uint8)  # [1797, 8, 8]
    labels = digits.target.astype(np.int64)
    rng = np.random.default_rng(seed)
    counts = {"train": 0, "val": 0}
    for label in np.unique(labels):
        members = rng.permutation(np.flatnonzero(labels == label))
        n_val = int(round(val_fraction * len(members)))
        for split, chosen in (("val", members[:n_val]), ("train", members[n_val:])):
            folder = out / split / str(int(label))
            folder.mkdir(parents=True, exist_ok=True)
            for i in chosen:
                Image.fromarray(images[i], mode="L").save(folder / f"{int(i):04d}.png")
            counts[split] += len(chosen)
    return counts


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("out", type=Path, help="folder to create (train/ and val/ go inside)")
    parser.add_argument("--val-fraction", type=float, default=0.2, help="share of each class in val/ (default 0.2)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the split")
    args = parser.parse_args()
    counts = write_digits(args.out, args.val_fraction, args.seed)
    print(f"{counts['train']} train / {counts['val']} val images of 10 digits -> {args.out}")


if __name__ == "__main__":
    main()
