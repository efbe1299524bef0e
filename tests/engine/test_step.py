"""PretrainStep: masks, forward/backward and optimizer step for random, block and HPM masking."""

from __future__ import annotations

import pytest
import torch

from hpm.config import build_config
from hpm.engine.optim import build_optimizer
from hpm.engine.step import PretrainStep
from hpm.errors import ConfigError
from hpm.masking import MaskIds, random_mask
from hpm.models import build_model

CPU = torch.device("cpu")
L, K = 64, 48  # small preset: 8x8 patches, ratio 0.75


def _cfg(strategy: str = "hpm", predictor: str = "relative", batch: int = 4, **extra):
    overrides = {
        "model": {"in_chans": 1, "depth": 2, "decoder_depth": 2},
        "mask": {"strategy": strategy, "teacher_view": "full"},  # the paper's teacher unless a test says otherwise
        "loss": {"predictor": predictor},
        "train": {"batch_size": batch, "seed": 3},
    }
    for key, value in extra.items():
        overrides[key] = {**overrides.get(key, {}), **value}
    return build_config(overrides=overrides)


def _step(strategy: str = "hpm", predictor: str = "relative", batch: int = 4, rank: int = 0,
          world_size: int = 1, seed: int = 0, **extra) -> PretrainStep:
    cfg = _cfg(strategy, predictor, batch, **extra)
    torch.manual_seed(seed)
    model = build_model(cfg.model, loss_predictor=predictor != "none")
    opt = build_optimizer(model, cfg.train, lr=1e-3)
    return PretrainStep(cfg, model, opt, CPU, "fp32", rank=rank, world_size=world_size)


def _images(n: int, seed: int = 0) -> torch.Tensor:
    return torch.randn(n, 1, 32, 32, generator=torch.Generator().manual_seed(seed))


def _assert_masks(masks: MaskIds, n: int) -> None:
    assert masks.ids_mask.shape == (n, K) and masks.ids_keep.shape == (n, L - K)
    both = torch.cat([masks.ids_keep, masks.ids_mask], 1).sort(1).values
    torch.testing.assert_close(both, torch.arange(L).expand(n, -1))


@pytest.mark.parametrize("strategy", ["random", "block", "hpm"])
def test_full_step(strategy: str) -> None:
    step = _step(strategy)
    assert (step.teacher is not None) == (strategy == "hpm")
    imgs = _images(4)
    masks, scores = step.generate_mask(imgs, num_hard=12 if strategy == "hpm" else 0)
    _assert_masks(masks, 4)
    if strategy == "hpm":
        assert scores is not None and scores.shape == (4, L) and scores.dtype == torch.float32
        top = scores.topk(12, dim=1).indices
        assert bool(masks.as_bool(L).gather(1, top).all()), "the teacher's hardest patches are masked"
    else:
        assert scores is None
    before = {n: p.detach().clone() for n, p in step.model.named_parameters()}
    out = step.forward_backward(imgs, masks, scores, want_metrics=True)
    expected_keys = {"loss", "loss_rec", "loss_pred", "pred_spearman", "pred_top25"}
    if strategy == "hpm":
        expected_keys.add("teacher_spearman")
    assert set(out) == expected_keys
    for key, value in out.items():
        assert value.shape == () and torch.isfinite(value) and not value.requires_grad, key
    torch.testing.assert_close(out["loss"], out["loss_rec"] + step.cfg.loss.weight * out["loss_pred"])
    assert out["loss_pred"] > 0
    for key in ("pred_spearman", "teacher_spearman"):
        if key in out:
            assert -1.0 <= float(out[key]) <= 1.0
    assert 0.0 <= float(out["pred_top25"]) <= 1.0
    assert step.model.blocks[0].attn.qkv.weight.grad is not None
    step.optimizer_step(ema_decay=0.9)
    assert all(p.grad is None for p in step.model.parameters())  # cleared
    changed = [n for n, p in step.model.named_parameters() if not torch.equal(p, before[n])]
    assert "blocks.0.attn.qkv.weight" in changed and "decoder_pred.weight" in changed
    assert "predictor_pred.weight" in changed


def test_loss_weight_and_metrics_off() -> None:
    step = _step("random", loss={"weight": 0.25})
    imgs = _images(4, seed=1)
    masks, _ = step.generate_mask(imgs)
    out = step.forward_backward(imgs, masks)
    assert set(out) == {"loss", "loss_rec", "loss_pred"}
    torch.testing.assert_close(out["loss"], out["loss_rec"] + 0.25 * out["loss_pred"])


def test_absolute_predictor_and_no_predictor() -> None:
    step = _step("hpm", "absolute")
    imgs = _images(4, seed=2)
    masks, scores = step.generate_mask(imgs, num_hard=5)
    out = step.forward_backward(imgs, masks, scores)
    assert torch.isfinite(out["loss"]) and out["loss_pred"] > 0
    plain = _step("random", "none")
    assert not plain.model.has_predictor and plain.teacher is None
    masks, _ = plain.generate_mask(imgs)
    out = plain.forward_backward(imgs, masks, want_metrics=True)
    assert set(out) == {"loss", "loss_rec", "loss_pred"}
    assert float(out["loss_pred"]) == 0.0
    torch.testing.assert_close(out["loss"], out["loss_rec"])


def test_hpm_without_loss_predictor_raises() -> None:
    with pytest.raises(ValueError, match="loss predictor"):
        _step("hpm", "none")


def test_predictor_configured_but_model_without_branch_raises() -> None:
    cfg = _cfg("random", "relative")
    model = build_model(cfg.model, loss_predictor=False)
    with pytest.raises(ValueError, match="loss-predictor"):
        PretrainStep(cfg, model, build_optimizer(model, cfg.train, 1e-3), CPU, "fp32")


def test_reconstruction_loss_uses_norm_pix_targets_of_masked_patches() -> None:
    """loss_rec equals the MSE between the student's predictions and the norm-pix targets."""
    step = _step("random", "none")
    imgs = _images(2, seed=4)
    masks, _ = step.generate_mask(imgs)
    with torch.no_grad():
        pred = step.model(imgs, masks.ids_keep, masks.ids_mask).pred
    patches = step.model.patchify(imgs)
    target = torch.stack([patches[n, masks.ids_mask[n]] for n in range(2)])
    target = (target - target.mean(-1, keepdim=True)) / (target.var(-1, keepdim=True) + 1e-6).sqrt()
    out = step.forward_backward(imgs, masks)
    torch.testing.assert_close(out["loss_rec"], ((pred - target) ** 2).mean())


@pytest.mark.parametrize("strategy", ["random", "block", "hpm"])
def test_masks_independent_of_world_size(strategy: str) -> None:
    """Ranks 0 and 1 of world size 2 (batch 4 each) see the masks of one process with batch 8."""
    single = _step(strategy, batch=8)
    ranks = [_step(strategy, batch=4, rank=r, world_size=2) for r in (0, 1)]
    for batch_seed in (10, 11):  # two successive global batches: the generators stay in step
        imgs = _images(8, seed=batch_seed)
        whole, _ = single.generate_mask(imgs, num_hard=12 if strategy == "hpm" else 0)
        parts = [s.generate_mask(imgs[4 * r:4 * (r + 1)], num_hard=12 if strategy == "hpm" else 0)[0]
                 for r, s in enumerate(ranks)]
        torch.testing.assert_close(torch.cat([p.ids_mask for p in parts]), whole.ids_mask)
        torch.testing.assert_close(torch.cat([p.ids_keep for p in parts]), whole.ids_keep)
    # and the rows differ between the two ranks (not the same draw twice)
    assert not torch.equal(parts[0].as_bool(L), parts[1].as_bool(L))


def test_masks_depend_on_the_seed() -> None:
    a = _step("random")
    b = _step("random", train={"seed": 4})
    imgs = _images(4)
    assert not torch.equal(a.generate_mask(imgs)[0].ids_mask, b.generate_mask(imgs)[0].ids_mask)


def test_state_dict_restores_the_mask_generator() -> None:
    step = _step("block")
    imgs = _images(4, seed=5)
    step.generate_mask(imgs)
    state = step.state_dict()
    first = step.generate_mask(imgs)[0]
    second = step.generate_mask(imgs)[0]
    assert not torch.equal(first.ids_mask, second.ids_mask)
    step.load_state_dict(state)
    torch.testing.assert_close(step.generate_mask(imgs)[0].ids_mask, first.ids_mask)


def test_bf16_step_on_cpu() -> None:
    """bf16 autocast (plain-matmul attention on the CPU) gives finite fp32 losses and a step."""
    cfg = _cfg("hpm")
    torch.manual_seed(0)
    model = build_model(cfg.model)
    step = PretrainStep(cfg, model, build_optimizer(model, cfg.train, 1e-3), CPU, "bf16")
    assert not any(getattr(m, "fused_attn", False) for m in model.modules())
    assert not any(getattr(m, "fused_attn", False) for m in step.teacher.modules())
    imgs = _images(4, seed=6)
    masks, scores = step.generate_mask(imgs, num_hard=24)
    assert scores.dtype == torch.float32
    out = step.forward_backward(imgs, masks, scores, want_metrics=True)
    for key, value in out.items():
        assert value.dtype == torch.float32 and torch.isfinite(value), key
    assert model.blocks[0].attn.qkv.weight.grad.dtype == torch.float32
    step.optimizer_step(ema_decay=0.99)


# ------------------------------------------------------------ masked-view teacher
def _masked_step(batch: int = 4, views: int = 1, rank: int = 0, world_size: int = 1, **mask) -> PretrainStep:
    return _step("hpm", batch=batch, rank=rank, world_size=world_size,
                 mask={"teacher_view": "masked", "teacher_views": views, **mask})


@pytest.mark.parametrize("views", [1, 2])
def test_masked_view_masks_have_exact_counts_and_mask_every_chosen_hard_patch(views: int) -> None:
    step = _masked_step(views=views)
    imgs = _images(4, seed=7)
    num_hard = 24
    masks, scores = step.generate_mask(imgs, num_hard=num_hard)
    _assert_masks(masks, 4)
    scored = torch.isfinite(scores)
    # one view scores the 48 patches it hides; two disjoint views score every patch
    assert scored.sum(1).tolist() == [48 if views == 1 else L] * 4
    chosen = masks.ids_mask[:, :num_hard]  # the score-chosen patches come first
    assert bool(scored.gather(1, chosen).all()), "only scored patches are chosen as hard"
    expected = scores.nan_to_num(float("-inf")).topk(num_hard, dim=1).indices
    assert torch.equal(chosen.sort(1).values, expected.sort(1).values), "the teacher's highest-scored patches"
    assert bool(masks.as_bool(L).gather(1, expected).all()), "every chosen hard patch is masked"
    out = step.forward_backward(imgs, masks, scores, num_hard, want_metrics=True)
    assert {"teacher_spearman", "teacher_top25"} <= set(out)
    assert -1.0 <= float(out["teacher_spearman"]) <= 1.0 and 0.0 <= float(out["teacher_top25"]) <= 1.0


def test_masked_view_easiest_takes_the_lowest_scored_of_the_scored_patches() -> None:
    step = _masked_step(select="easiest")
    masks, scores = step.generate_mask(_images(4, seed=8), num_hard=12)
    expected = (-scores).nan_to_num(float("-inf")).topk(12, dim=1).indices  # lowest scores, never NaN ones
    assert torch.equal(masks.ids_mask[:, :12].sort(1).values, expected.sort(1).values)


def test_teacher_view_is_independent_of_the_student_mask() -> None:
    """The teacher's view and the student's random part come from separate draws of the mask
    generator: with no hard patches the student's mask is the random mask of the second draw."""
    step = _masked_step(batch=16)
    imgs = _images(16, seed=9)
    masks, scores = step.generate_mask(imgs, num_hard=0)
    g = torch.Generator().manual_seed(step.cfg.train.seed)
    view_noise = torch.rand(16, L, generator=g)
    student = random_mask(torch.rand(16, L, generator=g), K)
    assert torch.equal(masks.ids_mask, student.ids_mask) and torch.equal(masks.ids_keep, student.ids_keep)
    teacher_hidden = random_mask(view_noise, K).as_bool(L)
    assert torch.equal(torch.isfinite(scores), teacher_hidden)
    # the two views differ, and the student's random part also takes patches the teacher saw
    assert not torch.equal(teacher_hidden, masks.as_bool(L))
    state = step.generator.get_state()
    masks, _ = step.generate_mask(imgs, num_hard=12)
    g.set_state(state)
    teacher_saw = ~random_mask(torch.rand(16, L, generator=g), K).as_bool(L)
    random_part = torch.zeros(16, L, dtype=torch.bool).scatter_(1, masks.ids_mask[:, 12:], True)
    assert bool((random_part & teacher_saw).any()), "random masked patches are not confined to the teacher's view"


def test_masked_view_masks_independent_of_world_size() -> None:
    single = _masked_step(batch=8)
    ranks = [_masked_step(batch=4, rank=r, world_size=2) for r in (0, 1)]
    for batch_seed in (12, 13):
        imgs = _images(8, seed=batch_seed)
        whole, _ = single.generate_mask(imgs, num_hard=12)
        parts = [s.generate_mask(imgs[4 * r:4 * (r + 1)], num_hard=12)[0] for r, s in enumerate(ranks)]
        assert torch.equal(torch.cat([p.ids_mask for p in parts]).sort(1).values, whole.ids_mask.sort(1).values)


def test_masked_view_settings_that_cannot_work_are_refused() -> None:
    from hpm.errors import ConfigError

    with pytest.raises(ConfigError, match="teacher_views=2"):  # alpha 1 needs 48 scored patches of one view of 0.5
        _masked_step(teacher_ratio=0.5, schedule="fixed", alpha=1.0)
    with pytest.raises(ConfigError, match="do not fit"):
        _masked_step(views=5)


# ------------------------------------------------------------ attention (AttMask)
def _train_a_little(step: PretrainStep, steps: int = 3) -> None:
    """Move the student away from its EMA teacher."""
    for i in range(steps):
        imgs = _images(4, seed=10 + i)
        masks, scores = step.generate_mask(imgs, num_hard=12)
        step.forward_backward(imgs, masks, scores, num_hard=12)
        step.optimizer_step(ema_decay=0.9)


@pytest.mark.parametrize("predictor", ["relative", "none"])
@pytest.mark.parametrize("mode", ["high", "low", "hints"])
def test_attention_scores_come_from_the_teacher(predictor: str, mode: str) -> None:
    step = _step("attention", predictor, mask={"attention_mode": mode})
    assert step.teacher is not None and step.teacher.has_predictor == (predictor != "none")
    _train_a_little(step)
    imgs = _images(4, seed=99)
    masks, scores = step.generate_mask(imgs, num_hard=12)
    _assert_masks(masks, 4)
    assert scores is not None
    torch.testing.assert_close(scores, step.teacher.attention_scores(imgs))
    assert not torch.allclose(scores, step.model.attention_scores(imgs)), "scores must not be the student's"
    ranked = -scores if mode == "low" else scores
    top = torch.zeros(4, L, dtype=torch.bool).scatter_(1, ranked.topk(12, dim=1).indices, True)
    left_masked = (top & masks.as_bool(L)).sum(1)
    expected = 12 - (int(12 * 0.1) if mode == "hints" else 0)
    assert left_masked.tolist() == [expected] * 4
    assert step.num_chosen(12) == expected
    out = step.forward_backward(imgs, masks, scores, num_hard=12, want_metrics=True)
    assert "teacher_spearman" in out and "teacher_top25" in out
    assert ("pred_spearman" in out) == (predictor != "none")


def test_attention_masked_view_scores_the_shown_patches() -> None:
    step = _step("attention", "none", mask={"teacher_view": "masked", "teacher_views": 2})
    imgs = _images(4)
    masks, scores = step.generate_mask(imgs, num_hard=12)
    _assert_masks(masks, 4)
    assert scores is not None and int(torch.isfinite(scores).sum(1).min()) == 32  # 2 views x 16 shown
    chosen = masks.ids_mask[:, : step.num_chosen(12)]
    assert bool(torch.isfinite(scores.gather(1, chosen)).all()), "only scored patches are chosen by score"


def test_attention_defaults_to_the_full_view_and_refuses_what_cannot_work() -> None:
    cfg = build_config(overrides={"mask": {"strategy": "attention"}})
    assert cfg.mask.teacher_view == "full"
    assert build_config(overrides={"mask": {"strategy": "hpm"}}).mask.teacher_view == "masked"
    with pytest.raises(ConfigError, match="teacher_view=full"):
        _step("attention", "none", mask={"teacher_view": "masked", "teacher_views": 1})
    with pytest.raises(ConfigError, match="attention_mode=low"):
        _step("attention", "none", mask={"select": "easiest"})
    with pytest.raises(ConfigError, match="attention_hints"):
        build_config(overrides={"mask": {"strategy": "attention", "attention_hints": 1.0}})
