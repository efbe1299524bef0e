"""Decode speed of the lossless formats `hpm data pack` may store a shrunk image in: PNG vs lossless WebP.

A lossless source larger than ``--max-side`` is shrunk to it and re-encoded losslessly; training
then decodes it every epoch. This times that decode (what the loader does:
:func:`hpm.data.folder.read_image` on the stored bytes) for the same shrunk images stored as PNG
and as lossless WebP, and checks that both give back the pixels exactly. Content:

- photo-like: 500x375 textured RGB images (``scripts/make_imagenet_like.py``) shrunk to 224, 112
  and 64 px, in RGB and in greyscale;
- digits-like: Fashion-MNIST images (smooth random blobs when it is not installed) drawn at
  56 px greyscale and shrunk to 28 px.

WebP is timed as ``hpm data pack`` writes it (:data:`hpm.data.encoding.WEBP_LOSSLESS`, the least
encoding effort) and at Pillow's default effort (method 4). Printed per format: decoded images/s
(the fastest of ``--repeats`` passes, the least disturbed by other work on the machine), bytes
per image and the encode time::

    OMP_NUM_THREADS=1 python benchmarks/pack_decode.py
    OMP_NUM_THREADS=1 python benchmarks/pack_decode.py --images 400 --repeats 9

The figures that chose the rule of :func:`hpm.data.encoding.encode_lossless` are in its module.
"""

from __future__ import annotations

import argparse
import importlib.util
import io
import time
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from hpm.data.encoding import WEBP_LOSSLESS
from hpm.data.folder import read_image, to_tensor

_SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "make_imagenet_like.py"

FORMATS: dict[str, dict[str, Any]] = {
    "PNG": {"format": "PNG"},
    "WebP, as packed": WEBP_LOSSLESS,
    "WebP, method 4": {"format": "WEBP", "lossless": True},
}


def photos(count: int) -> list[Image.Image]:
    """``count`` seeded 500x375 textured RGB images, about as busy as photographs."""
    spec = importlib.util.spec_from_file_location("make_imagenet_like", _SCRIPT)
    module = importlib.util.module_from_spec(spec)  # type: ignore[arg-type]
    spec.loader.exec_module(module)  # type: ignore[union-attr]
    rng = np.random.default_rng(0)
    return [Image.fromarray(module.textured_image(rng)) for _ in range(count)]


def digits(count: int) -> list[Image.Image]:
    """``count`` 28x28 greyscale Fashion-MNIST images drawn at 56 px (random blobs if it is not installed)."""
    try:
        from hpm.config import FASHION_MNIST_ROOT
        from hpm.data.fashion_mnist import load_fashion_mnist

        arrays = load_fashion_mnist(FASHION_MNIST_ROOT, "test")[0][:count]  # [count, 28, 28] uint8
    except Exception:  # noqa: BLE001 - not installed
        arrays = np.random.default_rng(0).integers(0, 256, (count, 7, 7), dtype=np.uint8)  # [count, 7, 7]
    return [Image.fromarray(np.asarray(a, dtype=np.uint8)).resize((56, 56), Image.Resampling.BICUBIC) for a in arrays]


def shrunk(images: list[Image.Image], side: int, mode: str) -> list[Image.Image]:
    """The images in ``mode`` with their longer side made ``side`` (bicubic), as the pack shrinks them."""
    out = []
    for image in images:
        small = image.convert(mode)
        small.thumbnail((side, side), Image.Resampling.BICUBIC)
        out.append(small)
    return out


def _encode(image: Image.Image, params: dict[str, Any]) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, **params)
    return buffer.getvalue()


def measure(images: list[Image.Image], params: dict[str, Any], repeats: int) -> dict[str, float]:
    """Encode ``images`` with ``params``, check the decode is lossless, and time decoding them all."""
    channels = 1 if images[0].mode == "L" else 3
    start = time.perf_counter()
    blobs = [_encode(image, params) for image in images]
    encode_s = time.perf_counter() - start
    for image, blob in zip(images, blobs):
        assert np.array_equal(read_image(io.BytesIO(blob), channels), to_tensor(image, channels)), params
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        for blob in blobs:
            read_image(io.BytesIO(blob), channels)
        times.append(time.perf_counter() - start)
    return {
        "img_per_s": len(blobs) / min(times),
        "bytes": sum(map(len, blobs)) / len(blobs),
        "encode_ms": 1e3 * encode_s / len(blobs),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", type=int, default=150, help="images of each kind")
    parser.add_argument("--repeats", type=int, default=5, help="timed decode passes (the fastest is printed)")
    args = parser.parse_args()
    sources = photos(args.images)
    kinds = [(f"{side} px {name}, photo-like", shrunk(sources, side, mode))
             for mode, name in (("RGB", "RGB"), ("L", "greyscale")) for side in (224, 112, 64)]
    kinds.append(("28 px greyscale, digits-like", shrunk(digits(args.images), 28, "L")))
    for name, images in kinds:
        print(f"{name}, {len(images)} images:")
        for label, params in FORMATS.items():
            r = measure(images, params, args.repeats)
            print(f"  {label:<16} decode {r['img_per_s']:8.0f} img/s   {r['bytes'] / 1e3:7.1f} KB/img   "
                  f"encode {r['encode_ms']:6.2f} ms/img")


if __name__ == "__main__":
    main()
