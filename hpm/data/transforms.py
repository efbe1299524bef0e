"""Image transforms (torchvision.transforms.v2) from uint8 ``[C, H, W]`` to normalised float32."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torchvision.transforms import InterpolationMode
from torchvision.transforms import v2


class PadTo(torch.nn.Module):
    """Zero-pad a ``[C, H, W]`` image, centred, to at least ``size x size`` (larger sides untouched).

    Zero is black before normalisation, which is the background of Fashion-MNIST; this is
    how the HPM / MAE reference runs fit 28 px images into 32 px models.
    """

    def __init__(self, size: int) -> None:
        super().__init__()
        self.size = size

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        h, w = image.shape[-2:]
        dh, dw = max(self.size - h, 0), max(self.size - w, 0)
        if not dh and not dw:
            return image
        # torch pad order: (left, right, top, bottom)
        return torch.nn.functional.pad(image, (dw // 2, dw - dw // 2, dh // 2, dh - dh // 2))


def _fit(img_size: int, fit: str) -> list[torch.nn.Module]:
    if fit == "pad":
        return [PadTo(img_size)]
    if fit != "resize":
        raise ValueError(f"fit must be 'resize' or 'pad', got {fit!r}")
    return []


def _check_stats(mean: Sequence[float], std: Sequence[float]) -> None:
    if len(mean) != len(std) or not mean:
        raise ValueError(f"mean {tuple(mean)} and std {tuple(std)} need the same, non-zero length")
    if any(s <= 0 for s in std):
        raise ValueError(f"std must be positive, got {tuple(std)}")


def build_pretrain_transform(
    img_size: int,
    mean: Sequence[float],
    std: Sequence[float],
    crop_scale: tuple[float, float] = (0.2, 1.0),
    hflip: float = 0.5,
    fit: str = "resize",
) -> v2.Compose:
    """Random resized crop and flip used for pre-training.

    Args:
        img_size: Side of the square output.
        mean: Per-channel mean used to normalise (one entry per channel).
        std: Per-channel standard deviation.
        crop_scale: Range of the crop's area as a fraction of the image.
        hflip: Probability of a horizontal flip.
        fit: ``"resize"`` crops from the image as it is; ``"pad"`` first zero-pads a smaller
            image to ``img_size`` (the crop then covers the padding too).

    Returns:
        A transform from uint8 ``[C, H, W]`` to float32 ``[C, img_size, img_size]``.
    """
    _check_stats(mean, std)
    return v2.Compose(
        _fit(img_size, fit)
        + [
            v2.RandomResizedCrop(
                img_size,
                scale=tuple(crop_scale),
                interpolation=InterpolationMode.BICUBIC,
                antialias=True,
            ),
            v2.RandomHorizontalFlip(hflip),
            v2.ToDtype(torch.float32, scale=True),
            v2.Normalize(list(mean), list(std)),
        ]
    )


def build_eval_transform(
    img_size: int, mean: Sequence[float], std: Sequence[float], fit: str = "resize"
) -> v2.Compose:
    """Deterministic resize (shorter side) and centre crop used for evaluation.

    Args:
        img_size: Side of the square output.
        mean: Per-channel mean used to normalise.
        std: Per-channel standard deviation.
        fit: ``"pad"`` zero-pads a smaller image to ``img_size`` instead of enlarging it.

    Returns:
        A transform from uint8 ``[C, H, W]`` to float32 ``[C, img_size, img_size]``.
    """
    _check_stats(mean, std)
    return v2.Compose(
        _fit(img_size, fit)
        + [
            v2.Resize(img_size, interpolation=InterpolationMode.BICUBIC, antialias=True),
            v2.CenterCrop(img_size),
            v2.ToDtype(torch.float32, scale=True),
            v2.Normalize(list(mean), list(std)),
        ]
    )
