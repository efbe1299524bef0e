"""Pre-training and evaluation transforms."""

from __future__ import annotations

import pytest
import torch

from hpm.data.transforms import build_eval_transform, build_pretrain_transform


@pytest.mark.parametrize("channels", [1, 3])
def test_pretrain_output(channels: int) -> None:
    transform = build_pretrain_transform(32, [0.5] * channels, [0.25] * channels)
    image = torch.randint(0, 256, (channels, 45, 28), dtype=torch.uint8)  # [C, H, W]
    out = transform(image)
    assert out.shape == (channels, 32, 32) and out.dtype == torch.float32
    assert out.min() >= (0 - 0.5) / 0.25 - 1e-5 and out.max() <= (1 - 0.5) / 0.25 + 1e-5


def test_pretrain_is_random() -> None:
    transform = build_pretrain_transform(16, [0.5], [0.5])
    image = torch.randint(0, 256, (1, 40, 40), dtype=torch.uint8)
    torch.manual_seed(0)
    first = transform(image)
    second = transform(image)
    torch.manual_seed(0)
    assert not torch.equal(first, second)
    assert torch.equal(first, transform(image))


def test_full_crop_without_flip_is_a_resize() -> None:
    transform = build_pretrain_transform(8, [0.0], [1.0], crop_scale=(1.0, 1.0), hflip=0.0)
    image = torch.full((1, 8, 8), 51, dtype=torch.uint8)
    torch.testing.assert_close(transform(image), torch.full((1, 8, 8), 0.2))


def test_eval_is_deterministic_and_normalised() -> None:
    mean, std = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
    transform = build_eval_transform(24, mean, std)
    image = torch.full((3, 30, 50), 128, dtype=torch.uint8)
    out = transform(image)
    assert out.shape == (3, 24, 24) and out.dtype == torch.float32
    expected = (128 / 255 - torch.tensor(mean)) / torch.tensor(std)
    torch.testing.assert_close(out[:, 12, 12], expected)
    random = torch.randint(0, 256, (3, 30, 50), dtype=torch.uint8)
    assert torch.equal(transform(random), transform(random))


def test_mismatched_stats() -> None:
    with pytest.raises(ValueError):
        build_pretrain_transform(8, [0.5, 0.5], [0.5])
    with pytest.raises(ValueError):
        build_eval_transform(8, [0.5], [0.0])


def test_pad_to_centres_and_zero_fills() -> None:
    from hpm.data.transforms import PadTo

    image = torch.randint(1, 256, (1, 28, 27), dtype=torch.uint8)  # [C, H, W]
    out = PadTo(32)(image)
    assert out.shape == (1, 32, 32)
    assert torch.equal(out[:, 2:30, 2:29], image)  # 4 rows: 2 + 2; 5 columns: 2 left, 3 right
    assert int(out.sum()) == int(image.sum())  # everything else is zero
    big = torch.ones(3, 40, 33, dtype=torch.uint8)
    assert PadTo(32)(big) is big  # larger images are left alone


def test_eval_transform_pads_instead_of_resizing() -> None:
    image = torch.randint(0, 256, (1, 28, 28), dtype=torch.uint8)
    padded = build_eval_transform(32, [0.5], [0.25], fit="pad")(image)
    resized = build_eval_transform(32, [0.5], [0.25])(image)
    expected_centre = (image.float() / 255 - 0.5) / 0.25
    torch.testing.assert_close(padded[:, 2:30, 2:30], expected_centre)
    assert torch.all(padded[:, :2] == (0 - 0.5) / 0.25)  # zero pixels at the border
    assert not torch.allclose(resized[:, 2:30, 2:30], expected_centre)


def test_pretrain_transform_pads_before_cropping() -> None:
    image = torch.full((1, 28, 28), 255, dtype=torch.uint8)
    transform = build_pretrain_transform(32, [0.0], [1.0], crop_scale=(1.0, 1.0), fit="pad")
    torch.manual_seed(0)
    out = transform(image)  # the whole padded image, resized to 32: a white square on black
    assert out.shape == (1, 32, 32)
    assert out[0, 0, 0] < 0.05 and out[0, 16, 16] > 0.95
    with pytest.raises(ValueError, match="fit"):
        build_pretrain_transform(32, [0.0], [1.0], fit="stretch")
