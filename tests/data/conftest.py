"""Shared fixtures: the installed Fashion-MNIST and small image folders written to tmp_path."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from hpm.config import FASHION_MNIST_ROOT
from hpm.data.fashion_mnist import load_fashion_mnist

HAVE_FASHION_MNIST = (Path(FASHION_MNIST_ROOT) / "train-images-idx3-ubyte.gz").is_file()
needs_fashion_mnist = pytest.mark.skipif(
    not HAVE_FASHION_MNIST, reason="Debian package dataset-fashion-mnist is not installed"
)

WriteImage = Callable[..., Path]


def _write_image(
    path: Path, size: tuple[int, int] = (24, 16), mode: str = "RGB", seed: int = 0
) -> Path:
    """Write a random image of ``size`` (width, height) in ``mode``; format from the suffix."""
    rng = np.random.default_rng(seed)
    width, height = size
    shape = (height, width, 3) if mode == "RGB" else (height, width)
    array = rng.integers(0, 256, size=shape, dtype=np.uint8)
    path.parent.mkdir(parents=True, exist_ok=True)
    fmt = {".jpg": "JPEG", ".jpeg": "JPEG"}.get(path.suffix.lower(), None)
    Image.fromarray(array).save(path, format=fmt)
    return path


@pytest.fixture
def write_image() -> WriteImage:
    """Factory writing one image file (see ``_write_image``)."""
    return _write_image


@pytest.fixture
def image_tree(tmp_path: Path) -> Path:
    """``root/train/{cat,dog}`` with RGB and greyscale PNG/JPEG files of different sizes.

    cat (label 0): a.png (RGB 24x16), b.JPG (L 31x19), nested/c.jpeg (RGB 40x40)
    dog (label 1): d.png (L 17x29), e.jpg (RGB 20x20)
    Also a text file and a hidden file that must be ignored.
    """
    root = tmp_path / "images"
    split = root / "train"
    _write_image(split / "cat" / "a.png", (24, 16), "RGB", seed=1)
    _write_image(split / "cat" / "b.JPG", (31, 19), "L", seed=2)
    _write_image(split / "cat" / "nested" / "c.jpeg", (40, 40), "RGB", seed=3)
    _write_image(split / "dog" / "d.png", (17, 29), "L", seed=4)
    _write_image(split / "dog" / "e.jpg", (20, 20), "RGB", seed=5)
    (split / "dog" / "notes.txt").write_text("not an image")
    (split / "dog" / ".hidden.png").write_bytes(b"junk")
    return root


@pytest.fixture(scope="session")
def fashion_train() -> tuple[np.ndarray, np.ndarray]:
    """The real Fashion-MNIST training split (loaded once per session)."""
    if not HAVE_FASHION_MNIST:
        pytest.skip("Debian package dataset-fashion-mnist is not installed")
    return load_fashion_mnist(FASHION_MNIST_ROOT, "train")
