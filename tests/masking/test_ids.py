"""MaskIds, num_masked and split_by_order."""

from __future__ import annotations

import pytest
import torch

from hpm.masking import MaskIds, num_masked, split_by_order


@pytest.mark.parametrize(
    ("num_patches", "ratio", "expected"),
    [(196, 0.75, 147), (64, 0.75, 48), (256, 0.75, 192), (36, 0.75, 27), (196, 0.6, 118), (49, 0.5, 25)],
)
def test_num_masked(num_patches: int, ratio: float, expected: int) -> None:
    assert num_masked(num_patches, ratio) == expected
    assert num_patches - num_masked(num_patches, ratio) == int(num_patches * (1 - ratio))


def test_split_by_order() -> None:
    order = torch.tensor([[3, 0, 2, 1], [1, 2, 3, 0]])
    ids = split_by_order(order, 3)
    torch.testing.assert_close(ids.ids_mask, torch.tensor([[3, 0, 2], [1, 2, 3]]))
    torch.testing.assert_close(ids.ids_keep, torch.tensor([[1], [0]]))


def test_rows_and_as_bool() -> None:
    ids_mask = torch.tensor([[0, 2], [1, 3], [3, 0]])
    ids_keep = torch.tensor([[1, 3], [0, 2], [1, 2]])
    ids = MaskIds(ids_keep, ids_mask)
    part = ids.rows(1, 3)
    assert isinstance(part, MaskIds)
    torch.testing.assert_close(part.ids_mask, ids_mask[1:3])
    torch.testing.assert_close(part.ids_keep, ids_keep[1:3])
    expected = torch.tensor(
        [[True, False, True, False], [False, True, False, True], [True, False, False, True]]
    )
    got = ids.as_bool(4)
    assert got.dtype == torch.bool
    torch.testing.assert_close(got, expected)
    torch.testing.assert_close(part.as_bool(4), expected[1:3])
