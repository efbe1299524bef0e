"""HOG targets: the vectorised version equals the per-cell loop; its shape, invariances and errors."""

from __future__ import annotations

import math

import pytest
import torch

from hpm.losses.hog import default_cell, hog_dim, hog_reference, hog_targets


@pytest.mark.parametrize(
    ("shape", "patch", "cell", "bins"),
    [((3, 1, 32, 32), 4, 2, 9), ((2, 3, 32, 32), 16, 8, 9), ((2, 2, 16, 24), 8, 4, 6), ((1, 1, 8, 8), 4, 1, 4)],
)
def test_vectorised_hog_equals_the_per_cell_loop(shape: tuple[int, ...], patch: int, cell: int, bins: int) -> None:
    images = torch.randn(*shape, generator=torch.Generator().manual_seed(sum(shape)))
    got = hog_targets(images, patch, cell, bins)
    want = hog_reference(images, patch, cell, bins)
    n, c, h, w = shape
    assert got.shape == (n, (h // patch) * (w // patch), hog_dim(patch, c, cell, bins))
    torch.testing.assert_close(got, want, atol=1e-5, rtol=1e-4)


def test_each_patch_is_unit_norm_and_flat_patches_are_zero() -> None:
    images = torch.zeros(1, 1, 8, 8)
    images[..., :4, :4] = torch.randn(4, 4, generator=torch.Generator().manual_seed(0))
    out = hog_targets(images, 4, 2)  # patches: 0 textured, 3 flat
    assert out[0, 0].norm().item() == pytest.approx(1.0, abs=1e-5)
    assert out[0, 3].abs().max().item() == 0.0


def test_orientation_bins_of_a_horizontal_and_a_vertical_edge() -> None:
    vertical = torch.zeros(1, 1, 8, 8)
    vertical[..., 4:] = 1.0  # intensity changes along x: gradient angle 0 -> bin 0
    horizontal = vertical.transpose(-1, -2)  # along y: angle pi/2 -> the middle bin
    bins = 4
    v = hog_targets(vertical, 8, 8, bins)[0, 0]
    h = hog_targets(horizontal, 8, 8, bins)[0, 0]
    assert int(v.argmax()) == 0
    assert int(h.argmax()) == int(math.floor((math.pi / 2) / (math.pi / bins)))


def test_hog_is_unchanged_by_brightness_and_contrast() -> None:
    images = torch.randn(2, 1, 16, 16, generator=torch.Generator().manual_seed(3))
    torch.testing.assert_close(hog_targets(images * 3.0 + 1.0, 4, 2), hog_targets(images, 4, 2), atol=1e-5, rtol=1e-4)


def test_default_cell_suits_small_and_paper_patches() -> None:
    assert default_cell(4) == 2 and default_cell(16) == 8 and default_cell(1) == 1
    assert hog_dim(16, 3, 8, 9) == 108  # MaskFeat's ViT-B/16 target width


def test_cell_must_divide_the_patch() -> None:
    with pytest.raises(ValueError, match="must divide the patch size"):
        hog_targets(torch.zeros(1, 1, 8, 8), 4, 3)
    with pytest.raises(ValueError, match="orientation bin"):
        hog_targets(torch.zeros(1, 1, 8, 8), 4, 2, bins=0)
