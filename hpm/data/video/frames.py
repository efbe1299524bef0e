"""Videos stored as folders of frames: ``<video>/000001.jpg``, ``000002.jpg``, ... (the frame dumps
of Something-Something or Kinetics), frames in name order, each a PIL-readable image file."""

from __future__ import annotations

import os
import re
import warnings
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from hpm.data.folder import IMAGE_EXTENSIONS, to_tensor
from hpm.data.video.decode import UnreadableVideo

_DIGITS = re.compile(r"(\d+)")


def is_frame_file(name: str) -> bool:
    """Whether a file name is a frame of a frame folder (an image file, by extension; not hidden)."""
    return not name.startswith(".") and os.path.splitext(name)[1].lower() in IMAGE_EXTENSIONS


def frame_order(name: str) -> tuple[tuple[int, int | str], ...]:
    """The sort key of a frame name: digit runs compare as numbers, so ``img_2`` precedes ``img_10``."""
    return tuple((0, int(part)) if part.isdigit() else (1, part) for part in _DIGITS.split(name) if part)


def is_frame_folder(path: str | Path) -> bool:
    """Whether ``path`` is a folder that directly holds at least one image file (it stops at the first)."""
    try:
        with os.scandir(path) as entries:
            return any(is_frame_file(entry.name) and entry.is_file() for entry in entries)
    except OSError:  # not a folder, or one that cannot be listed
        return False


def frame_names(folder: str | Path) -> list[str]:
    """The image files directly in ``folder``, in frame order (:func:`frame_order`).

    Raises:
        UnreadableVideo: The folder cannot be listed or holds no image file.
    """
    try:
        with os.scandir(folder) as entries:
            names = [entry.name for entry in entries if is_frame_file(entry.name) and entry.is_file()]
    except OSError as exc:
        raise UnreadableVideo(f"cannot list the frame folder {folder}: {exc.strerror}") from None
    if not names:
        raise UnreadableVideo(f"frame folder {folder} holds no image files")
    return sorted(names, key=frame_order)


def _open_frame(path: str) -> Image.Image:
    """Open one frame lazily (its header read, its pixels not yet decoded)."""
    try:
        return Image.open(path)
    except Exception as exc:  # noqa: BLE001 - PIL raises OSError, ValueError, SyntaxError, ...
        raise UnreadableVideo(f"cannot read frame {path}: {exc}; replace or remove the frame") from None


class FrameFolder:
    """A folder of frames opened as a video: its frame count, and any of its frames by index.

    Only the frames asked for are decoded, each once however often a clip repeats it. The
    frames of one read must share one size.

    Args:
        folder: The frame folder.

    Raises:
        UnreadableVideo: The folder cannot be listed or holds no image file.
    """

    def __init__(self, folder: str | Path) -> None:
        self.path = str(folder)
        self.names = frame_names(folder)
        self.length = len(self.names)

    def _check_sizes(self, images: dict[int, Image.Image]) -> None:
        """Refuse frames of two sizes, naming the folder, the two frames and their sizes."""
        first, *rest = sorted(images)
        for index in rest:
            if images[index].size != images[first].size:
                (w0, h0), (w1, h1) = images[first].size, images[index].size
                raise UnreadableVideo(
                    f"frame folder {self.path} mixes frame sizes: {self.names[first]} is {w0}x{h0}, "
                    f"{self.names[index]} is {w1}x{h1}; resize its frames to one size"
                )

    def frames(self, indices: np.ndarray, channels: int = 3) -> torch.Tensor:
        """Decode frames ``indices`` (int ``[T]``, each below ``length``) as uint8 ``[T, channels, H, W]``.

        Raises:
            UnreadableVideo: A frame cannot be decoded, or the frames have two sizes.
        """
        wanted = [int(i) for i in indices]
        images: dict[int, Image.Image] = {}
        try:
            for i in sorted(set(wanted)):
                images[i] = _open_frame(os.path.join(self.path, self.names[i]))
            self._check_sizes(images)
            decoded = {i: self._decode(i, image, channels) for i, image in images.items()}  # [C, H, W] each
        finally:
            for image in images.values():
                image.close()
        return torch.stack([decoded[i] for i in wanted])  # [T, C, H, W] uint8

    def _decode(self, index: int, image: Image.Image, channels: int) -> torch.Tensor:
        """The pixels of one opened frame as uint8 ``[channels, H, W]``."""
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # e.g. EXIF or DecompressionBomb warnings
                return to_tensor(image, channels)
        except Exception as exc:  # noqa: BLE001
            frame = os.path.join(self.path, self.names[index])
            raise UnreadableVideo(f"cannot decode frame {frame}: {exc}; replace or remove the frame") from None
