"""The strategy registry: every strategy masks exactly K patches from a request, without a model;
a new strategy plugs in by one entry; names and score sources resolve."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from hpm.config import build_config
from hpm.errors import ConfigError
from hpm.masking import (
    STRATEGIES, MaskIds, MaskRequest, MaskStrategy, get_strategy, hard_patch_mask, random_mask, score_source,
    split_by_order,
)
from tests.masking.helpers import assert_valid_masks

GRID, L, K = (8, 8), 64, 48


def _request(strategy: str, n: int = 6, num_hard: int = 12, rows: tuple[int, int] | None = None,
             num_global: int | None = None, seed: int = 0, **mask) -> MaskRequest:
    cfg = build_config(overrides={"mask": {"strategy": strategy, **mask}}).mask
    scores = torch.randn(n, L, generator=torch.Generator().manual_seed(100 + seed))
    return MaskRequest(cfg, GRID, K, torch.Generator().manual_seed(seed), num_global or n, rows or (0, n),
                       "cpu", num_hard if STRATEGIES[strategy].uses_teacher else 0,
                       scores if STRATEGIES[strategy].uses_teacher else None)


@pytest.mark.parametrize("name", sorted(STRATEGIES))
def test_every_strategy_masks_exactly_k_patches(name: str) -> None:
    strategy = get_strategy(name)
    assert strategy.name == name
    request = _request(name)
    ids = strategy.mask(request)
    assert_valid_masks(ids, 6, L, K)
    if strategy.uses_teacher:  # the first num_chosen columns are the highest-scored patches
        chosen = strategy.num_chosen(request.cfg, 12)
        assert 0 < chosen <= 12
        top = request.scores.topk(12, dim=1).indices
        assert bool(torch.isin(ids.ids_mask[:, :chosen], top).all())


@pytest.mark.parametrize("name", sorted(STRATEGIES))
def test_every_strategy_gives_a_rank_its_rows_of_the_global_masks(name: str) -> None:
    whole = get_strategy(name).mask(_request(name, n=8))
    for lo, hi in ((0, 3), (3, 8)):
        part_request = _request(name, n=8, rows=(lo, hi), num_global=8)
        if part_request.scores is not None:
            part_request = dataclasses.replace(part_request, scores=part_request.scores[lo:hi])
        part = get_strategy(name).mask(part_request)
        assert torch.equal(part.ids_mask, whole.ids_mask[lo:hi]) and torch.equal(part.ids_keep, whole.ids_keep[lo:hi])


def test_random_and_hpm_requests_are_the_pure_functions_on_one_noise_draw() -> None:
    request = _request("hpm", select="easiest")
    noise = torch.rand(6, L, generator=torch.Generator().manual_seed(0))
    expected = hard_patch_mask(-request.scores, noise, K, 12)
    got = get_strategy("hpm").mask(request)
    assert torch.equal(got.ids_mask, expected.ids_mask)
    assert torch.equal(get_strategy("random").mask(_request("random")).ids_mask, random_mask(noise, K).ids_mask)


def test_a_scored_strategy_without_scores_is_refused() -> None:
    request = dataclasses.replace(_request("hpm"), scores=None)
    with pytest.raises(ValueError, match="teacher's scores"):
        get_strategy("hpm").mask(request)


def test_a_new_strategy_is_one_entry(monkeypatch: pytest.MonkeyPatch) -> None:
    def lowest_noise(request: MaskRequest) -> MaskIds:
        return split_by_order(torch.argsort(request.noise(), dim=1), request.num_mask)

    monkeypatch.setitem(STRATEGIES, "lowest_noise", MaskStrategy("lowest_noise", lowest_noise))
    ids = get_strategy("lowest_noise").mask(_request("random"))
    assert_valid_masks(ids, 6, L, K)
    assert not get_strategy("lowest_noise").uses_teacher and score_source("lowest_noise") == "loss"


def test_names_and_score_sources() -> None:
    assert set(STRATEGIES) == {"random", "block", "hpm", "attention", "tube", "hpm_tube"}
    assert {n for n, s in STRATEGIES.items() if s.uses_teacher} == {"hpm", "attention", "hpm_tube"}
    assert score_source("attention") == "attention"
    assert score_source("hpm") == score_source("random") == score_source("block") == "loss"
    with pytest.raises(ConfigError, match="unknown mask.strategy 'tubes'"):
        get_strategy("tubes")


def test_strategy_checks_refuse_what_cannot_work() -> None:
    with pytest.raises(ValueError, match="needs a loss predictor"):
        get_strategy("hpm").check(build_config(overrides={"mask": {"strategy": "hpm"}, "loss": {"predictor": "none"}}))
    with pytest.raises(ConfigError, match="attention_mode=low"):
        get_strategy("attention").check(build_config(overrides={"mask": {"strategy": "attention", "select": "easiest"}}))
    assert get_strategy("random").check is None and get_strategy("block").check is None
