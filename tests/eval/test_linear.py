"""Linear probe: the MAE head, learning on separable features, beating chance on a pre-trained model."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from hpm.errors import ConfigError
from hpm.eval.data import build_eval_data
from hpm.eval.encoder import load_encoder
from hpm.eval.linear import LinearProbe, LinearProbeConfig, probe_accuracy, run_linear, train_linear_probe


def test_probe_is_batchnorm_without_affine_then_linear() -> None:
    probe = LinearProbe(16, 3)
    bn, fc = probe
    assert isinstance(bn, torch.nn.BatchNorm1d) and not bn.affine and bn.eps == 1e-6
    assert isinstance(fc, torch.nn.Linear) and fc.out_features == 3
    assert [n for n, _ in probe.named_parameters()] == ["1.weight", "1.bias"]
    assert fc.weight.std() < 0.02 and torch.all(fc.bias == 0)


def test_linearly_separable_features_are_learned() -> None:
    g = torch.Generator().manual_seed(0)
    w = torch.randn(20, 4, generator=g)
    x = torch.randn(1200, 20, generator=g) * 3 + 5  # off-centre and scaled: the BatchNorm copes
    y = (x @ w).argmax(1)  # [N], a linear rule
    probe = train_linear_probe(x[:1000], y[:1000], 4, LinearProbeConfig(epochs=30, warmup_epochs=2))
    assert probe_accuracy(probe, x[1000:], y[1000:]) > 90.0


def test_random_labels_are_not_learned() -> None:
    g = torch.Generator().manual_seed(1)
    x = torch.randn(1400, 8, generator=g)
    y = torch.randint(0, 4, (1400,), generator=g)
    probe = train_linear_probe(x[:1000], y[:1000], 4, LinearProbeConfig(epochs=10, warmup_epochs=1))
    assert abs(probe_accuracy(probe, x[1000:], y[1000:]) - 25.0) < 10.0


def test_training_is_seeded() -> None:
    g = torch.Generator().manual_seed(2)
    x, y = torch.randn(300, 8, generator=g), torch.randint(0, 3, (300,), generator=g)
    cfg = LinearProbeConfig(epochs=3, batch_size=64)
    a, b = train_linear_probe(x, y, 3, cfg), train_linear_probe(x, y, 3, cfg)
    assert torch.equal(a[1].weight, b[1].weight)


def test_bad_recipe() -> None:
    with pytest.raises(ConfigError, match="batch_size >= 2"):
        LinearProbeConfig(batch_size=1)
    with pytest.raises(ConfigError, match="at least 2 training images"):
        train_linear_probe(torch.randn(1, 4), torch.zeros(1, dtype=torch.long), 2)


def test_probe_on_a_pre_trained_model_beats_chance(pretrained_run: Path) -> None:
    enc = load_encoder(pretrained_run)
    data = build_eval_data(enc.cfg.data, enc.cfg.model.img_size, 1, 1000, 500, seed=0)
    out = run_linear(enc.model, data, "cls", LinearProbeConfig(epochs=20, warmup_epochs=2))
    assert out["num_train"] == 1000 and out["num_test"] == 500
    assert out["top1"] > 40.0  # chance: 10%
    assert out["train_top1"] >= out["top1"] - 5.0
