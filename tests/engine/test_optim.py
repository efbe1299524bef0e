"""AdamW parameter groups, the warm-up + cosine schedule and the lr scaling rule."""

from __future__ import annotations

import math

import pytest
import torch

from hpm.config import TrainConfig, build_config
from hpm.engine.optim import absolute_lr, build_lr_schedule, build_optimizer, effective_batch
from hpm.models import build_model


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    return build_model(build_config(overrides={"model": {"in_chans": 1, "depth": 2, "decoder_depth": 2}}).model)


def _no_decay_expected(name: str, p: torch.Tensor) -> bool:
    return name.endswith(".bias") or p.ndim <= 1 or name in ("cls_token", "mask_token")


def test_param_groups(model) -> None:
    opt = build_optimizer(model, TrainConfig(), lr=1e-3)
    decay_of = {}
    for group in opt.param_groups:
        for p in group["params"]:
            assert id(p) not in decay_of, "a parameter is in two groups"
            decay_of[id(p)] = group["weight_decay"]
    named = dict(model.named_parameters())
    assert len(decay_of) == len(named), "every trainable parameter in exactly one group"
    for name, p in named.items():
        expected = 0.0 if _no_decay_expected(name, p) else 0.05
        assert decay_of[id(p)] == expected, name
    # spot checks by kind
    assert decay_of[id(model.cls_token)] == 0.0 and model.cls_token.ndim == 3
    assert decay_of[id(model.mask_token)] == 0.0
    assert decay_of[id(model.norm.weight)] == 0.0
    assert decay_of[id(model.blocks[0].norm1.weight)] == 0.0
    assert decay_of[id(model.blocks[0].attn.qkv.bias)] == 0.0
    assert decay_of[id(model.predictor_norm.weight)] == 0.0
    assert decay_of[id(model.patch_embed.proj.weight)] == 0.05 and model.patch_embed.proj.weight.ndim == 4
    assert decay_of[id(model.blocks[0].attn.qkv.weight)] == 0.05
    assert decay_of[id(model.decoder_pred.weight)] == 0.05
    assert decay_of[id(model.predictor_pred.weight)] == 0.05
    # buffers (fixed position embeddings) are not optimised
    all_params = {id(p) for g in opt.param_groups for p in g["params"]}
    assert id(model.pos_embed) not in all_params


def test_frozen_parameters_are_left_out() -> None:
    torch.manual_seed(0)
    m = build_model(build_config(overrides={"model": {"in_chans": 1, "depth": 1, "decoder_depth": 1}}).model)
    m.patch_embed.requires_grad_(False)
    opt = build_optimizer(m, TrainConfig(), lr=1e-3)
    ids = {id(p) for g in opt.param_groups for p in g["params"]}
    assert id(m.patch_embed.proj.weight) not in ids
    assert len(ids) == sum(1 for p in m.parameters() if p.requires_grad)


def test_optimizer_is_fused_adamw(model) -> None:
    cfg = TrainConfig(weight_decay=0.1, betas=(0.8, 0.9))
    opt = build_optimizer(model, cfg, lr=2e-3)
    assert type(opt) is torch.optim.AdamW
    assert opt.defaults["fused"] is True
    assert opt.defaults["betas"] == (0.8, 0.9)
    assert {g["weight_decay"] for g in opt.param_groups} == {0.0, 0.1}
    default = build_optimizer(model, TrainConfig(), lr=2e-3)
    assert default.defaults["betas"] == (0.9, 0.95)
    assert all(g["lr"] == 2e-3 for g in default.param_groups)


def test_fused_step_runs_on_cpu() -> None:
    torch.manual_seed(0)
    m = build_model(build_config(overrides={"model": {"in_chans": 1, "depth": 1, "decoder_depth": 1}}).model)
    opt = build_optimizer(m, TrainConfig(), lr=1e-2)
    before = m.blocks[0].attn.qkv.weight.detach().clone()
    m.forward_encoder(torch.randn(2, 1, 32, 32)).pow(2).mean().backward()
    opt.step()
    assert not torch.equal(before, m.blocks[0].attn.qkv.weight)
    assert torch.isfinite(m.blocks[0].attn.qkv.weight).all()


def _lrs(total: int, warmup: int, peak: float, min_lr: float, steps: list[int]) -> list[float]:
    p = torch.nn.Parameter(torch.zeros(2, 2))
    opt = torch.optim.AdamW([{"params": [p], "weight_decay": 0.0}, {"params": [torch.nn.Parameter(torch.zeros(2))]}], lr=peak)
    sched = build_lr_schedule(opt, total, warmup, min_lr)
    out = []
    for step in steps:
        sched.step_update(step)
        assert opt.param_groups[0]["lr"] == opt.param_groups[1]["lr"]
        out.append(opt.param_groups[0]["lr"])
    return out


def _expected(step: int, total: int, warmup: int, peak: float, min_lr: float) -> float:
    if step < warmup:
        return peak * step / warmup
    if step >= total:
        return min_lr
    t = (step - warmup) / (total - warmup)
    return min_lr + 0.5 * (peak - min_lr) * (1 + math.cos(math.pi * t))


@pytest.mark.parametrize(("total", "warmup", "min_lr"), [(100, 10, 0.0), (100, 10, 1e-5), (50, 0, 0.0), (30, 29, 1e-6)])
def test_lr_schedule_formula(total: int, warmup: int, min_lr: float) -> None:
    peak = 1e-3
    steps = sorted({0, 1, warmup // 2, max(warmup - 1, 0), warmup, warmup + 1, (warmup + total) // 2, total - 1, total, total + 5})
    got = _lrs(total, warmup, peak, min_lr, steps)
    for step, lr in zip(steps, got):
        assert lr == pytest.approx(_expected(step, total, warmup, peak, min_lr), rel=1e-9, abs=1e-12), step


def test_lr_schedule_shape() -> None:
    got = _lrs(100, 10, 1e-3, 1e-5, [0, 5, 10, 55, 100])
    assert got[0] == 0.0  # warm-up from 0
    assert got[1] == pytest.approx(5e-4)
    assert got[2] == pytest.approx(1e-3)  # peak right after warm-up
    assert got[3] == pytest.approx(1e-5 + 0.5 * (1e-3 - 1e-5))  # half-way down the cosine
    assert got[4] == pytest.approx(1e-5)
    seq = _lrs(100, 10, 1e-3, 0.0, list(range(100)))
    assert all(a <= b for a, b in zip(seq[:10], seq[1:11]))  # rises during warm-up
    assert all(a >= b for a, b in zip(seq[10:], seq[11:]))  # then only decreases


def test_absolute_lr_and_effective_batch() -> None:
    cfg = TrainConfig(batch_size=64, accum_steps=2, blr=1.5e-4)
    assert effective_batch(cfg, 1) == 128
    assert effective_batch(cfg, 4) == 512
    assert absolute_lr(cfg, 4) == pytest.approx(1.5e-4 * 512 / 256)
    assert absolute_lr(TrainConfig(batch_size=256, blr=1e-3), 1) == pytest.approx(1e-3)
    assert absolute_lr(TrainConfig(batch_size=128, accum_steps=4, blr=1.5e-4), 8) == pytest.approx(1.5e-4 * 16)
