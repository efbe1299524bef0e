"""EMA teacher: decay ramp, the update rule and the frozen, decoder-less copy."""

from __future__ import annotations

import pytest
import torch

from hpm.config import EmaConfig, build_config
from hpm.engine.ema import EmaUpdater, build_teacher, ema_decay_at
from hpm.engine.optim import build_optimizer
from hpm.engine.step import PretrainStep
from hpm.models import build_model


def _cfg(**sections):
    base = {"model": {"in_chans": 1, "depth": 2, "decoder_depth": 2}, "train": {"batch_size": 4}}
    for key, value in sections.items():
        base[key] = {**base.get(key, {}), **value}
    return build_config(overrides=base)


def _student(seed: int = 0, loss_predictor: bool = True):
    torch.manual_seed(seed)
    return build_model(_cfg().model, loss_predictor=loss_predictor)


# --------------------------------------------------------------------------- decay ramp
def test_decay_ramp_default_half_the_run() -> None:
    cfg = EmaConfig(decay_start=0.99, decay_end=0.999)  # ramp_epochs None: epochs / 2
    assert ema_decay_at(cfg, 0.0, 10) == pytest.approx(0.99)
    assert ema_decay_at(cfg, 2.5, 10) == pytest.approx(0.9945)
    assert ema_decay_at(cfg, 1.0, 10) == pytest.approx(0.99 + 0.2 * 0.009)
    assert ema_decay_at(cfg, 5.0, 10) == pytest.approx(0.999)
    assert ema_decay_at(cfg, 7.3, 10) == pytest.approx(0.999)
    assert ema_decay_at(cfg, 10.0, 10) == pytest.approx(0.999)


def test_decay_ramp_paper_recipe() -> None:
    """0.999 -> 0.9999 over the first 100 epochs, then flat (spec section 2.7)."""
    cfg = EmaConfig(decay_start=0.999, decay_end=0.9999, ramp_epochs=100)
    for epoch, expected in ((0, 0.999), (25, 0.999225), (50, 0.99945), (99.5, 0.999 + 0.995 * 0.0009),
                            (100, 0.9999), (400, 0.9999)):
        assert ema_decay_at(cfg, epoch, 800) == pytest.approx(expected, rel=0, abs=1e-12)


def test_decay_ramp_zero_length() -> None:
    cfg = EmaConfig(decay_start=0.9, decay_end=0.99, ramp_epochs=0)
    assert ema_decay_at(cfg, 0.0, 10) == pytest.approx(0.99)


# --------------------------------------------------------------------------- update rule
def test_update_follows_the_ema_rule_for_every_parameter() -> None:
    student = _student()
    teacher = build_teacher(student)
    ema = EmaUpdater(teacher, student)
    g = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for p in student.parameters():
            p.add_(torch.randn(p.shape, generator=g))
    names = [n for n, _ in teacher.named_parameters()]
    assert len(ema.teacher_params) == len(names) > 0
    before = {n: p.detach().clone() for n, p in teacher.named_parameters()}
    student_now = {n: p.detach().clone() for n, p in student.named_parameters()}
    for decay in (0.9, 0.5):
        ema.update(decay)
        for name, p in teacher.named_parameters():
            expected = decay * before[name] + (1 - decay) * student_now[name]
            torch.testing.assert_close(p, expected, msg=lambda m, n=name: f"{n}: {m}")
            before[name] = p.detach().clone()
    for name, p in student.named_parameters():  # the student is not touched
        torch.testing.assert_close(p, student_now[name], rtol=0, atol=0)


def test_update_extremes() -> None:
    student = _student()
    teacher = build_teacher(student)
    with torch.no_grad():
        for p in student.parameters():
            p.mul_(2).add_(0.1)
    t0 = {n: p.clone() for n, p in teacher.named_parameters()}
    ema = EmaUpdater(teacher, student)
    ema.update(1.0)
    for n, p in teacher.named_parameters():
        torch.testing.assert_close(p, t0[n], rtol=0, atol=0)
    ema.update(0.0)
    s = dict(student.named_parameters())
    for n, p in teacher.named_parameters():
        torch.testing.assert_close(p, s[n])


def test_updater_rejects_a_teacher_with_extra_parameters() -> None:
    teacher = build_teacher(_student())
    with pytest.raises(ValueError, match="predictor"):
        EmaUpdater(teacher, _student(loss_predictor=False))


# --------------------------------------------------------------------------- teacher
def test_teacher_is_frozen_and_has_no_reconstructor() -> None:
    student = _student()
    teacher = build_teacher(student)
    assert all(not p.requires_grad for p in teacher.parameters())
    assert not teacher.training
    assert teacher.decoder_blocks is None
    assert not [k for k in teacher.state_dict() if k.startswith(("decoder_blocks", "decoder_norm", "decoder_pred"))]
    assert [k for k in teacher.state_dict() if k.startswith("predictor_")]
    assert all(p.requires_grad for p in student.parameters())  # the student is untouched
    assert student.decoder_blocks is not None
    imgs = torch.randn(2, 1, 32, 32, generator=torch.Generator().manual_seed(2))
    torch.testing.assert_close(teacher.score_patches(imgs), student.eval().score_patches(imgs))
    # a copy, not shared storage
    assert teacher.blocks[0].attn.qkv.weight.data_ptr() != student.blocks[0].attn.qkv.weight.data_ptr()


def test_teacher_gets_no_gradient_from_a_training_step() -> None:
    cfg = _cfg(mask={"strategy": "hpm"})
    student = _student()
    step = PretrainStep(cfg, student, build_optimizer(student, cfg.train, 1e-3), torch.device("cpu"), "fp32")
    teacher = step.teacher
    assert teacher is not None
    t0 = {n: p.detach().clone() for n, p in teacher.named_parameters()}
    imgs = torch.randn(4, 1, 32, 32, generator=torch.Generator().manual_seed(3))
    masks, scores = step.generate_mask(imgs, num_hard=12)
    step.forward_backward(imgs, masks, scores)
    assert all(p.grad is None for p in teacher.parameters())
    assert any(p.grad is not None for p in student.parameters())
    step.optimizer_step(ema_decay=0.5)
    assert all(p.grad is None for p in teacher.parameters())
    moved = [n for n, p in teacher.named_parameters() if not torch.equal(p, t0[n])]
    assert "blocks.0.attn.qkv.weight" in moved and "predictor_pred.weight" in moved
