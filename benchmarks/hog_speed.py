"""HOG target speed: the vectorised torch version against the plain per-cell loop it is tested against.

Target (issue #13): at least 10x faster than the loop on a batch of 128. Prints the median of
``--repeats`` timings of each and their ratio, for the reference setting (greyscale 32 px,
4-px patches, 2-px cells, 9 bins) and MaskFeat's (RGB 224 px, 16-px patches, 8-px cells) at a
smaller batch::

    python benchmarks/hog_speed.py
    python benchmarks/hog_speed.py --batch 128 --repeats 5 --threads 1

Figures are recorded in docs/benchmarks.md with the CPU they came from.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from hpm.losses.hog import hog_reference, hog_targets


def _median_s(fn, repeats: int) -> float:  # type: ignore[no-untyped-def]
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} thread(s)")
    settings = [
        ("32 px grey, patch 4, cell 2", (args.batch, 1, 32, 32), 4, 2),
        ("224 px RGB, patch 16, cell 8", (max(1, args.batch // 16), 3, 224, 224), 16, 8),
    ]
    for name, shape, patch, cell in settings:
        images = torch.randn(*shape, generator=torch.Generator().manual_seed(0))
        hog_targets(images, patch, cell)  # warm-up
        fast = _median_s(lambda: hog_targets(images, patch, cell), args.repeats)
        loop = _median_s(lambda: hog_reference(images, patch, cell), max(1, args.repeats // 2))
        print(f"{name}, batch {shape[0]}: vectorised {fast * 1e3:.1f} ms, per-cell loop {loop * 1e3:.0f} ms, "
              f"{loop / fast:.0f}x faster")


if __name__ == "__main__":
    main()
