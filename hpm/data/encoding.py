"""What ``hpm data pack`` stores for one image file: its bytes as they are, or a shrunk re-encoding.

Policy ``"auto"`` (the default) never loses pixels it does not have to:

- an image other than a JPEG whose longer side is at most ``max_side`` is kept as it is (its
  original bytes: PNG, BMP, TIFF, WebP, ... in whatever mode);
- a larger one is shrunk to ``max_side`` and re-encoded losslessly (see :func:`encode_lossless`:
  RGB of at least 96 px as lossless WebP, the rest as PNG);
- a JPEG (a photograph: already lossy) is kept as it is when within ``max_side`` and in
  greyscale or RGB, and otherwise shrunk and re-encoded as JPEG at ``quality``.

Policy ``"lossy"`` stores every image as JPEG: a JPEG that may be kept is kept, every other
image is re-encoded as JPEG at ``quality`` (shrunk if needed), for the smallest pack. Policy
``"original"`` keeps every file's bytes. A shrunk image is the one the folder reader would see
(8-bit greyscale or RGB, alpha dropped) with its longer side made ``max_side`` (bicubic), so
decoding a losslessly re-encoded image gives exactly those pixels. A file that cannot be
decoded is kept as it is, so training skips and names it as it would in the folder.
"""

from __future__ import annotations

import io
import os
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from PIL import Image

from hpm.data.folder import _to_8bit

Policy = Literal["auto", "lossy", "original"]
Storage = Literal["kept", "lossless", "lossy"]
STORAGES: tuple[Storage, ...] = ("kept", "lossless", "lossy")

JPEG_FORMATS = frozenset({"JPEG", "MPO"})  # MPO: a camera's JPEG with extra frames (the first is read)
WEBP_SIDES = (96, 16383)  # RGB images with a longer side in this range are stored as WebP
WEBP_LOSSLESS: dict[str, Any] = {"format": "WEBP", "lossless": True, "method": 0, "quality": 0}  # the least effort


@dataclass(frozen=True)
class Encoded:
    """The bytes stored for one image file.

    Attributes:
        data: The bytes.
        ext: Their extension (the tar member's suffix), e.g. ``"png"``.
        storage: ``"kept"`` (the file's own bytes), ``"lossless"`` or ``"lossy"`` (re-encoded).
        readable: Whether the file decodes; an unreadable one is kept as it is.
    """

    data: bytes
    ext: str
    storage: Storage
    readable: bool


def shrink(image: Image.Image, max_side: int) -> Image.Image:
    """An opened image as the reader sees it ("L" or "RGB", 8-bit), its longer side at most ``max_side``."""
    image.draft(image.mode, (max_side, max_side))  # JPEG: decode at >= the target, at a fraction of the cost
    converted = _to_8bit(image)
    converted = converted.convert("L" if converted.mode in ("1", "L", "LA") else "RGB")
    converted.thumbnail((max_side, max_side), Image.Resampling.BICUBIC)
    return converted


def _save(image: Image.Image, **params: Any) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, **params)
    return buffer.getvalue()


def encode_lossless(image: Image.Image) -> tuple[bytes, str]:
    """An "L" or "RGB" image encoded losslessly, in the format that decodes faster, and its extension.

    From ``benchmarks/pack_decode.py`` (decoded images/s of the same images, one core):
    lossless WebP decodes RGB 1.4x faster than PNG at 224 px and 1.15x at 112 px (files 9-12%
    larger), PNG 1.1x faster at 64 px. Greyscale stays PNG: 1.5-2x faster up to 64 px, and at
    224 px WebP's 1.3x faster decode comes with 1.5x larger files. WebP's sides end at 16383 px.
    """
    low, high = WEBP_SIDES
    if image.mode == "RGB" and low <= max(image.size) <= high:
        return _save(image, **WEBP_LOSSLESS), "webp"
    return _save(image, format="PNG"), "png"


def _keeps(image: Image.Image, max_side: int, policy: Policy) -> bool:
    """Whether an opened image is stored as its own bytes under ``policy``."""
    if policy == "original":
        return True
    if max(image.size) > max_side:
        return False
    if image.format in JPEG_FORMATS:
        return image.mode in ("L", "RGB")
    return policy == "auto"


def encode_image(path: str, max_side: int, quality: int, policy: Policy = "auto") -> Encoded:
    """The bytes to store for one image file (see the module's rules).

    Args:
        path: The image file.
        max_side: Longer side (px) above which an image is shrunk.
        quality: JPEG quality of lossy re-encodes.
        policy: ``"auto"``, ``"lossy"`` or ``"original"``.

    Returns:
        The bytes, their extension, how they were stored and whether the file decodes.
    """
    raw = Path(path).read_bytes()
    original_ext = os.path.splitext(path)[1].lower().lstrip(".") or "bin"
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            with Image.open(io.BytesIO(raw)) as image:
                jpeg = image.format in JPEG_FORMATS
                if _keeps(image, max_side, policy):
                    image.verify()  # cheap integrity check, no full decode
                    return Encoded(raw, "jpg" if jpeg else original_ext, "kept", True)
                small = shrink(image, max_side)
                if jpeg or policy == "lossy":
                    return Encoded(_save(small, format="JPEG", quality=quality), "jpg", "lossy", True)
                data, ext = encode_lossless(small)
                return Encoded(data, ext, "lossless", True)
    except Exception:  # noqa: BLE001 - stored as is; training skips and names it
        return Encoded(raw, original_ext, "kept", False)
