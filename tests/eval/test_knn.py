"""Weighted k-NN: known answers on synthetic features, DINO's vote, and k-NN of a model."""

from __future__ import annotations

import math

import pytest
import torch

from hpm.errors import ConfigError
from hpm.eval.data import build_eval_data
from hpm.eval.knn import knn_classify, knn_eval, knn_predict
from hpm.models import build_model
from tests.conftest import needs_fmnist
from tests.eval.conftest import tiny_config


def _clusters(n_per_class: int, classes: int, dim: int, noise: float, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    centers = torch.nn.functional.normalize(torch.randn(classes, dim, generator=torch.Generator().manual_seed(99)), dim=1)
    labels = torch.arange(classes).repeat_interleave(n_per_class)  # [N]
    feats = centers[labels] + noise * torch.randn(len(labels), dim, generator=g)  # [N, D]
    return feats, labels


def test_separable_features_give_100_percent() -> None:
    train_x, train_y = _clusters(30, 10, 32, 0.05, seed=0)
    test_x, test_y = _clusters(10, 10, 32, 0.05, seed=1)
    top1 = knn_classify(train_x, train_y, test_x, test_y, ks=(10, 20, 100, 200))
    assert top1 == {10: 100.0, 20: 100.0, 100: 100.0, 200: 100.0}


def test_random_labels_give_chance() -> None:
    g = torch.Generator().manual_seed(0)
    train_x, test_x = torch.randn(3000, 16, generator=g), torch.randn(2000, 16, generator=g)
    train_y = torch.randint(0, 10, (3000,), generator=g)
    test_y = torch.randint(0, 10, (2000,), generator=g)
    top1 = knn_classify(train_x, train_y, test_x, test_y, ks=(10, 200), num_classes=10)
    sd = 100 * math.sqrt(0.1 * 0.9 / 2000)  # ~0.67 points
    for acc in top1.values():
        assert abs(acc - 10.0) < 5 * sd


def test_shuffled_labels_of_separable_features_give_chance() -> None:
    train_x, train_y = _clusters(200, 10, 32, 0.05, seed=0)
    test_x, test_y = _clusters(200, 10, 32, 0.05, seed=1)
    shuffled = train_y[torch.randperm(len(train_y), generator=torch.Generator().manual_seed(3))]
    top1 = knn_classify(train_x, shuffled, test_x, test_y, ks=(10, 20))
    assert all(acc < 25.0 for acc in top1.values())  # vs 100% with the true labels


def test_weighting_follows_dino() -> None:
    """Two close neighbours of class 0 outvote three distant ones of class 1 at T = 0.07."""
    query = torch.tensor([[1.0, 0.0]])
    angles = torch.tensor([0.05, 0.1, 0.6, 0.65, 0.7])  # radians from the query
    bank = torch.stack([angles.cos(), angles.sin()], dim=1)  # [5, 2], unit norm
    labels = torch.tensor([0, 0, 1, 1, 1])
    pred = knn_predict(bank, labels, query, ks=(1, 5), temperature=0.07)
    assert pred[1].tolist() == [0] and pred[5].tolist() == [0]
    # unweighted majority voting (a huge temperature) picks class 1 with k = 5
    assert knn_predict(bank, labels, query, ks=(5,), temperature=1e6)[5].tolist() == [1]
    # features are normalised inside: scaling a row changes nothing
    scaled = bank * torch.tensor([[3.0], [0.1], [5.0], [1.0], [2.0]])
    assert knn_predict(scaled, labels, query * 7, ks=(1, 5))[5].tolist() == [0]


def test_batching_does_not_change_the_answer() -> None:
    g = torch.Generator().manual_seed(1)
    train_x, test_x = torch.randn(300, 8, generator=g), torch.randn(101, 8, generator=g)
    train_y = torch.randint(0, 4, (300,), generator=g)
    one = knn_predict(train_x, train_y, test_x, ks=(3, 20), batch_size=7)
    many = knn_predict(train_x, train_y, test_x, ks=(3, 20))
    assert all(torch.equal(one[k], many[k]) for k in (3, 20))


def test_k_larger_than_the_bank_uses_all_of_it() -> None:
    train_x, train_y = _clusters(3, 2, 4, 0.01, seed=0)  # 6 points
    test_x, test_y = _clusters(2, 2, 4, 0.01, seed=1)
    assert knn_classify(train_x, train_y, test_x, test_y, ks=(200,)) == {200: 100.0}


def test_bad_k_is_refused() -> None:
    x, y = _clusters(3, 2, 4, 0.01, seed=0)
    with pytest.raises(ConfigError, match="k must be >= 1"):
        knn_classify(x, y, x, y, ks=(0, 10))


@needs_fmnist
def test_knn_eval_on_an_in_memory_model_restores_its_mode() -> None:
    cfg = tiny_config()
    torch.manual_seed(0)
    model = build_model(cfg.model).train()
    data = build_eval_data(cfg.data, cfg.model.img_size, 1, 300, 100, seed=0)
    cfg.train.precision = "fp32"
    out = knn_eval(model, cfg, data)
    assert model.training
    assert set(out["top1"]) == {"10", "20", "100", "200"} and out["num_train"] == 300 and out["num_test"] == 100
    # even a random encoder is far above chance on Fashion-MNIST (pixels carry the class)
    assert all(acc > 30.0 for acc in out["top1"].values())


@needs_fmnist
def test_raw_pixels_are_the_flattened_evaluation_images() -> None:
    from hpm.eval.encoder import split_features
    from hpm.eval.knn import run_knn

    cfg = tiny_config()
    data = build_eval_data(cfg.data, cfg.model.img_size, 1, 200, 50, seed=0)
    train_x, train_y, test_x, test_y = split_features(None, data, "cls")
    transform = data.transform()
    first, label = data.test.base[0]
    assert train_x.shape == (200, 32 * 32) and test_x.shape == (50, 32 * 32)
    torch.testing.assert_close(test_x[0], transform(first).flatten())
    assert int(test_y[0]) == int(label)
    out = run_knn(None, data, ks=(20,))
    assert out["top1"]["20"] == knn_classify(train_x, train_y, test_x, test_y, (20,), num_classes=10)[20]
    assert out["top1"]["20"] > 60.0  # Fashion-MNIST pixels carry the class
