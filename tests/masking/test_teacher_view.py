"""The masked-view teacher's partial views and how their scores combine."""

from __future__ import annotations

import pytest
import torch

from hpm.engine.ema import build_teacher
from hpm.masking import random_mask, score_teacher_views, teacher_views
from hpm.models import build_model
from tests.eval.conftest import tiny_config

L = 64


def _noise(n: int, seed: int = 0) -> torch.Tensor:
    return torch.rand(n, L, generator=torch.Generator().manual_seed(seed))


@pytest.mark.parametrize("num_views", [1, 2, 4])
def test_views_have_exact_counts_and_disjoint_visible_patches(num_views: int) -> None:
    noise = _noise(5)
    views = teacher_views(noise, 48, num_views)
    assert len(views) == num_views
    visible = torch.zeros(5, L, dtype=torch.long)
    for view in views:
        assert view.ids_keep.shape == (5, 16) and view.ids_mask.shape == (5, 48)
        both = torch.cat([view.ids_keep, view.ids_mask], 1).sort(1).values
        assert torch.equal(both, torch.arange(L).expand(5, -1))  # a partition of the patches
        visible.scatter_add_(1, view.ids_keep, torch.ones_like(view.ids_keep))
    assert int(visible.max()) == 1, "no patch is visible in two views"
    assert int(visible.sum()) == 5 * 16 * num_views
    first = random_mask(noise, 48)
    assert torch.equal(views[0].ids_mask, first.ids_mask) and torch.equal(views[0].ids_keep, first.ids_keep)


def test_too_many_views_are_refused() -> None:
    with pytest.raises(ValueError, match="do not fit"):
        teacher_views(_noise(2), 48, 5)  # 5 x 16 visible > 64 patches


@pytest.mark.parametrize("num_views", [1, 2])
def test_view_scores_equal_a_plain_loop(num_views: int) -> None:
    torch.manual_seed(0)
    teacher = build_teacher(build_model(tiny_config().model))  # no reconstructor: scoring must not need one
    imgs = torch.randn(3, 1, 32, 32)
    views = teacher_views(_noise(3, seed=4), 48, num_views)
    got = score_teacher_views(teacher, imgs, views)  # [N, L]

    sums, hits = torch.zeros(3, L), torch.zeros(3, L)
    with torch.no_grad():
        for view in views:
            for i in range(3):
                keep, hide = view.ids_keep[i], view.ids_mask[i]
                restore = torch.argsort(torch.cat([keep, hide]))[None]
                x = teacher.forward_decoder_input(teacher.forward_encoder(imgs[i : i + 1], keep[None]), restore)
                scores = teacher.forward_loss_predictor(x)[0, hide]  # [K]
                sums[i, hide] += (scores - scores.mean()) / scores.std()
                hits[i, hide] += 1
    assert torch.equal(torch.isnan(got), hits == 0)
    assert int((hits == 0).sum()) == (3 * 16 if num_views == 1 else 0)  # two views score every patch
    torch.testing.assert_close(got[hits > 0], (sums / hits)[hits > 0], rtol=1e-4, atol=1e-5)
