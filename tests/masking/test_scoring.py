"""The teacher's scorers (full image, partial views) and the check of the partial views' settings."""

from __future__ import annotations

import pytest
import torch

from hpm.config import build_config
from hpm.engine.ema import build_teacher
from hpm.errors import ConfigError
from hpm.masking import (
    attention_view_scores, check_teacher_views, score_full_view, score_partial_views, score_teacher_views,
    teacher_views,
)
from hpm.models import build_model
from tests.eval.conftest import tiny_config

L = 64


@pytest.fixture(scope="module")
def teacher():  # type: ignore[no-untyped-def]
    torch.manual_seed(0)
    return build_teacher(build_model(tiny_config().model))


def test_full_view_scores_and_the_tokens_an_ema_target_reuses(teacher) -> None:  # type: ignore[no-untyped-def]
    imgs = torch.randn(3, 1, 32, 32, generator=torch.Generator().manual_seed(1))
    scores, tokens = score_full_view(teacher, imgs, "loss")
    assert tokens is None and scores.dtype == torch.float32 and scores.shape == (3, L)
    torch.testing.assert_close(scores, teacher.score_patches(imgs).float())
    same, tokens = score_full_view(teacher, imgs, "loss", keep_tokens=True)
    torch.testing.assert_close(same, scores)
    with torch.no_grad():
        torch.testing.assert_close(tokens, teacher.forward_encoder(imgs)[:, 1:])
    attention, none = score_full_view(teacher, imgs, "attention", keep_tokens=True)
    assert none is None
    torch.testing.assert_close(attention, teacher.attention_scores(imgs))


@pytest.mark.parametrize("source", ["loss", "attention"])
def test_partial_views_score_as_the_view_functions(teacher, source: str) -> None:  # type: ignore[no-untyped-def]
    imgs = torch.randn(3, 1, 32, 32, generator=torch.Generator().manual_seed(2))
    noise = torch.rand(3, L, generator=torch.Generator().manual_seed(3))
    got = score_partial_views(teacher, imgs, noise, source, 48, 2)
    views = teacher_views(noise, 48, 2)
    expected = (attention_view_scores if source == "attention" else score_teacher_views)(teacher, imgs, views)
    assert torch.equal(torch.isnan(got), torch.isnan(expected))
    torch.testing.assert_close(got.nan_to_num(), expected.nan_to_num())


def _mask(**mask):  # type: ignore[no-untyped-def]
    return build_config(overrides={"mask": {"teacher_view": "masked", **mask}}).mask


def test_teacher_view_settings_that_cannot_work_are_refused() -> None:
    check_teacher_views(_mask(), L, "loss")  # the default: alpha 0.5 of one view's 48 hidden patches
    check_teacher_views(_mask(teacher_views=2), L, "attention")  # 24 chosen of 32 shown
    with pytest.raises(ConfigError, match="do not fit"):
        check_teacher_views(_mask(teacher_views=5), L, "loss")
    with pytest.raises(ConfigError, match="teacher_views=2"):
        check_teacher_views(_mask(teacher_ratio=0.5, schedule="fixed", alpha=1.0), L, "loss")
    with pytest.raises(ConfigError, match="teacher_view=full"):
        check_teacher_views(_mask(teacher_views=1), L, "attention")  # 24 chosen of 16 shown
