"""Masks of video tokens: tube (VideoMAE), hpm_tube (HPM on tubes), and random / hpm per token."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from hpm.config import build_config
from hpm.engine.optim import build_optimizer
from hpm.engine.step import PretrainStep
from hpm.errors import ConfigError
from hpm.masking import STRATEGIES, MaskRequest, cell_scores, get_strategy, hard_tube_mask, tube_mask
from hpm.models import build_run_model
from tests.masking.helpers import assert_valid_masks

GRID, T, S = (4, 4), 3, 16  # 3 time steps of 4 x 4 cells: 48 tokens
L = T * S
MODEL = {"preset": "video_small", "in_chans": 1, "num_frames": 4, "tubelet_size": 2, "img_size": 8,
         "patch_size": 2, "embed_dim": 32, "depth": 1, "num_heads": 2, "decoder_embed_dim": 16,
         "decoder_depth": 1, "decoder_num_heads": 2}


def _request(strategy: str, n: int = 5, ratio: float = 0.75, num_hard: int = 0, scores: torch.Tensor | None = None,
             rows: tuple[int, int] | None = None, num_global: int | None = None, seed: int = 0, **mask) -> MaskRequest:
    cfg = build_config(overrides={"model": MODEL, "mask": {"strategy": strategy, "ratio": ratio, **mask}}).mask
    k = get_strategy(strategy).masked_count(L, ratio, T)
    return MaskRequest(cfg, GRID, k, torch.Generator().manual_seed(seed), num_global or n, rows or (0, n), "cpu",
                       num_hard, scores, time_size=T)


def _per_time(masks, n: int) -> torch.Tensor:
    return masks.as_bool(L).view(n, T, S)  # [N, T', S]


def test_tube_masks_are_equal_across_time_with_exact_counts() -> None:
    request = _request("tube")
    assert request.num_mask == T * (S - int(S * 0.25)) == 36
    masks = get_strategy("tube").mask(request)
    assert_valid_masks(masks, 5, L, 36)
    per_time = _per_time(masks, 5)
    assert bool((per_time == per_time[:, :1]).all())
    assert bool((per_time[:, 0].sum(1) == 12).all())
    assert not torch.equal(per_time[0], per_time[1])  # each clip its own mask
    again = get_strategy("tube").mask(_request("tube"))
    assert torch.equal(again.ids_mask, masks.ids_mask)  # from the request's generator only


def test_tube_mask_is_the_spatial_random_mask_repeated() -> None:
    noise = torch.rand(2, S, generator=torch.Generator().manual_seed(3))
    masks = tube_mask(noise, 5, T)
    top = noise.topk(5, dim=1).indices  # the largest noise is hidden
    hidden = masks.ids_mask % S
    for n in range(2):
        assert set(hidden[n].tolist()) == set(top[n].tolist())


@pytest.mark.parametrize("select", ["hardest", "easiest"])
def test_hpm_tube_alpha_one_masks_the_tubes_of_highest_mean_score(select: str) -> None:
    scores = torch.randn(4, L, generator=torch.Generator().manual_seed(7))
    k = get_strategy("hpm_tube").masked_count(L, 0.5, T)  # 8 cells, 24 tokens
    masks = get_strategy("hpm_tube").mask(_request("hpm_tube", n=4, ratio=0.5, num_hard=k, scores=scores, select=select))
    assert_valid_masks(masks, 4, L, k)
    per_time = _per_time(masks, 4)
    assert bool((per_time == per_time[:, :1]).all())
    mean = scores.view(4, T, S).mean(1)  # [N, S]
    top = (mean if select == "hardest" else -mean).topk(k // T, dim=1).indices
    chosen = get_strategy("hpm_tube").chosen_count(build_config().mask, k, T)
    assert chosen == k
    for n in range(4):
        assert set((masks.ids_mask[n, :chosen] % S).tolist()) == set(top[n].tolist())


def test_hpm_tube_chooses_whole_tubes_first_then_random_ones() -> None:
    scores = torch.randn(3, L, generator=torch.Generator().manual_seed(8))
    k, num_hard = 24, 10  # 8 tubes hidden; 10 // 3 = 3 chosen by score
    masks = get_strategy("hpm_tube").mask(_request("hpm_tube", n=3, ratio=0.5, num_hard=num_hard, scores=scores))
    assert_valid_masks(masks, 3, L, k)
    chosen = get_strategy("hpm_tube").chosen_count(build_config().mask, num_hard, T)
    assert chosen == 9
    top = cell_scores(scores, T).topk(3, dim=1).indices
    for n in range(3):
        assert set((masks.ids_mask[n, :chosen] % S).tolist()) == set(top[n].tolist())
        assert masks.ids_mask[n, :chosen].view(3, T).unique(dim=1).shape[1] == T  # each tube's T tokens together


def test_hpm_tube_never_chooses_an_unscored_cell_by_score() -> None:
    scores = torch.randn(2, L, generator=torch.Generator().manual_seed(9))
    scores.view(2, T, S)[:, :, 0] = float("nan")  # cell 0 never scored ...
    scores.view(2, T, S)[:, 1:, 1] = float("nan")  # ... cell 1 scored at time 0 only
    scores.view(2, T, S)[:, 0, 1] = 100.0
    key = cell_scores(scores, T)
    assert bool(key[:, 0].isnan().all()) and bool((key[:, 1] == 100.0).all())
    masks = hard_tube_mask(scores, torch.rand(2, S), num_mask_cells=S - 1, num_hard_cells=S - 1, time_size=T)
    assert bool((masks.ids_mask[:, :T] % S == 1).all())  # the hardest first
    assert not bool((masks.ids_mask % S == 0).any())


@pytest.mark.parametrize("name", ["tube", "hpm_tube", "random", "hpm"])
def test_a_rank_gets_its_rows_of_the_global_video_masks(name: str) -> None:
    scores = torch.randn(6, L, generator=torch.Generator().manual_seed(5))
    num_hard = 12 if STRATEGIES[name].uses_teacher else 0
    given = scores if STRATEGIES[name].uses_teacher else None
    whole = get_strategy(name).mask(_request(name, n=6, num_hard=num_hard, scores=given))
    for lo, hi in ((0, 2), (2, 6)):
        part = _request(name, n=6, num_hard=num_hard, scores=given, rows=(lo, hi), num_global=6)
        part = dataclasses.replace(part, scores=None if given is None else given[lo:hi])
        got = get_strategy(name).mask(part)
        assert torch.equal(got.ids_mask, whole.ids_mask[lo:hi]) and torch.equal(got.ids_keep, whole.ids_keep[lo:hi])


def test_random_and_hpm_work_per_token_on_video() -> None:
    assert get_strategy("random").masked_count(L, 0.75, T) == L - int(L * 0.25) == 36
    masks = get_strategy("random").mask(_request("random"))
    assert_valid_masks(masks, 5, L, 36)
    per_time = _per_time(masks, 5)
    assert not bool((per_time == per_time[:, :1]).all())  # not tubes
    scores = torch.randn(5, L, generator=torch.Generator().manual_seed(6))
    masks = get_strategy("hpm").mask(_request("hpm", num_hard=36, scores=scores))
    top = scores.topk(36, dim=1).indices
    assert bool(torch.isin(masks.ids_mask, top).all())


def _step(strategy: str, **model: object) -> PretrainStep:
    cfg = build_config(overrides={"model": {**MODEL, **model}, "mask": {"strategy": strategy, "ratio": 0.75},
                                  "train": {"batch_size": 3}})
    torch.manual_seed(0)
    student = build_run_model(cfg)
    return PretrainStep(cfg, student, build_optimizer(student, cfg.train, 1e-3), torch.device("cpu"), "fp32")


@pytest.mark.parametrize("strategy", ["tube", "hpm_tube"])
def test_the_step_masks_video_clips_in_tubes(strategy: str) -> None:
    step = _step(strategy)
    assert step.model.num_patches == 2 * 4 * 4 and step.num_mask == 2 * 12
    clips = torch.randn(3, 1, 4, 8, 8, generator=torch.Generator().manual_seed(1))  # [N, C, T, H, W]
    masks, scores = step.generate_mask(clips, num_hard=12)
    assert_valid_masks(masks, 3, 32, 24)
    per_time = masks.as_bool(32).view(3, 2, 16)
    assert bool((per_time == per_time[:, :1]).all())
    assert (scores is not None) == (strategy == "hpm_tube")
    out = step.forward_backward(clips, masks, scores, 12, want_metrics=True)
    assert torch.isfinite(out["loss"])
    if strategy == "hpm_tube":
        assert "teacher_top25" in out and step.num_chosen(12) == 12


def test_strategies_refuse_a_model_of_the_other_kind() -> None:
    with pytest.raises(ConfigError, match="mask.strategy=tube masks tubes over time and needs a video model"):
        get_strategy("tube").check_config(build_config(overrides={"mask": {"strategy": "tube"}}))
    with pytest.raises(ConfigError, match="mask.strategy=hpm_tube masks tubes"):
        get_strategy("hpm_tube").check_config(build_config(overrides={"mask": {"strategy": "hpm_tube"}}))
    with pytest.raises(ConfigError, match="mask.strategy=block masks an image's patch grid"):
        _step("block")
    with pytest.raises(ValueError, match="needs a loss predictor"):
        get_strategy("hpm_tube").check_config(build_config(overrides={
            "model": MODEL, "mask": {"strategy": "hpm_tube"}, "loss": {"predictor": "none"}}))
    for name in ("random", "hpm", "attention"):
        get_strategy(name).check_config(build_config(overrides={"model": MODEL, "mask": {"strategy": name}}))
