"""Draft decoding: the crop distribution, output size and values of MAE's augmentation are kept."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from scipy.stats import ks_2samp

from hpm.config import DataConfig
from hpm.data import build_pretrain_data
from hpm.data.augmented import SeededTransformDataset
from hpm.data import draft as draft_module
from hpm.data.draft import DraftCropDataset, draft_reduction
from hpm.data.pack import PackOptions, pack_folder


def _smooth_folder(root: Path, n: int = 8, size: tuple[int, int] = (320, 240), ext: str = "jpg") -> Path:
    """Photographs-like (smooth) images, so that a reduced decode is close to a full one."""
    rng = np.random.default_rng(0)
    for i in range(n):
        coarse = rng.integers(0, 256, (6, 8, 3), dtype=np.uint8)
        image = Image.fromarray(coarse).resize(size, Image.Resampling.BICUBIC)
        folder = root / "train" / ("a" if i % 2 else "b")
        folder.mkdir(parents=True, exist_ok=True)
        image.save(folder / f"{i}.{ext}", quality=95)
    return root


def test_draft_reduction() -> None:
    assert draft_reduction(100, 100, 224) == 1
    assert draft_reduction(448, 500, 224) == 2
    assert draft_reduction(447, 900, 224) == 1  # the shorter side decides
    assert draft_reduction(900, 1000, 224) == 4
    assert draft_reduction(4000, 3000, 224) == 8  # libjpeg stops at 1/8


def _boxes(dataset: SeededTransformDataset, crop: torch.nn.Module, keys: list[tuple[int, int]]) -> list[dict]:
    seen: list[dict] = []
    real = crop.make_params

    def recording(flat):  # type: ignore[no-untyped-def]
        params = real(flat)
        height, width = flat[0].shape[-2:]
        seen.append({**params, "H": height, "W": width})
        return params

    crop.make_params = recording  # type: ignore[method-assign]
    outputs = [dataset[key] for key in keys]
    del crop.make_params
    return seen, torch.stack([o[0] for o in outputs])  # [N, C, S, S]


def test_draft_keeps_the_crop_distribution_and_the_values(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    root = _smooth_folder(tmp_path / "imgs", size=(321, 241))  # odd sides, as ImageNet's 500x375
    decoded: list[tuple[int, int]] = []
    real_to_tensor = draft_module.to_tensor
    monkeypatch.setattr(draft_module, "to_tensor", lambda image, c: (decoded.append(image.size), real_to_tensor(image, c))[1])
    plain = build_pretrain_data(DataConfig(data_dir=str(root), draft=False), 32, 0).dataset
    draft = build_pretrain_data(DataConfig(data_dir=str(root), draft=True), 32, 0).dataset
    assert isinstance(draft, DraftCropDataset) and not isinstance(plain, DraftCropDataset)
    n = 1500
    keys_a = [(i % 8, 10_000 + i) for i in range(n)]
    keys_b = [(i % 8, 90_000 + i) for i in range(n)]  # other seeds: a test of the distribution
    boxes_a, out_a = _boxes(plain, plain.transform.transforms[0], keys_a)
    boxes_b, out_b = _boxes(draft, draft.crop, keys_b)
    assert all(b["H"] == 241 and b["W"] == 321 for b in boxes_b)  # sampled on the full-size image
    reductions = [draft_reduction(b["height"], b["width"], 32) for b in boxes_b]
    assert np.mean([r > 1 for r in reductions]) > 0.9 and 4 in reductions  # the draft path is taken...
    assert [(321 + r - 1) // r for r in reductions] == [w for w, _ in decoded]  # ...and decodes at 1/r
    for stat in (lambda b: b["height"] * b["width"] / (b["H"] * b["W"]), lambda b: np.log(b["width"] / b["height"]),
                 lambda b: (b["left"] + b["width"] / 2) / b["W"]):
        result = ks_2samp([stat(b) for b in boxes_a], [stat(b) for b in boxes_b])
        assert result.pvalue > 0.001, result
    assert out_a.shape == out_b.shape == (n, 3, 32, 32) and out_b.dtype == torch.float32
    lo = (0 - torch.tensor([0.485, 0.456, 0.406])) / torch.tensor([0.229, 0.224, 0.225])
    hi = (1 - torch.tensor([0.485, 0.456, 0.406])) / torch.tensor([0.229, 0.224, 0.225])
    for out in (out_a, out_b):
        assert (out.amin(dim=(0, 2, 3)) >= lo - 1e-5).all() and (out.amax(dim=(0, 2, 3)) <= hi + 1e-5).all()
    assert abs(out_a.mean() - out_b.mean()) < 0.05 and abs(out_a.std() - out_b.std()) < 0.05
    # the same seed: the same crop and flip; only the decoder's down-scaling differs (a few grey
    # levels of 255, i.e. < 0.1 in normalised units), far less than between two different crops
    same_plain = torch.stack([plain[k][0] for k in keys_b[:100]])
    assert (same_plain - out_b[:100]).abs().mean() < 0.1 < 0.5 < (out_a[:100] - out_b[:100]).abs().mean()


@pytest.mark.parametrize("case", ["png", "no_reduction", "pad"])
def test_without_a_reduction_draft_is_bit_identical(case: str, tmp_path: Path) -> None:
    root = _smooth_folder(tmp_path / "imgs", ext="png" if case == "png" else "jpg",
                          size=(20, 14) if case == "pad" else (320, 240))
    img_size = 128 if case == "no_reduction" else 32  # 240 px high: never 2 x 128 tall
    cfg = {"data_dir": str(root), "fit": "pad" if case == "pad" else "resize"}
    plain = build_pretrain_data(DataConfig(**cfg, draft=False), img_size, 0).dataset
    draft = build_pretrain_data(DataConfig(**cfg, draft=True), img_size, 0).dataset
    for i in range(40):
        a, b = plain[(i % 8, 500 + i)], draft[(i % 8, 500 + i)]
        assert a[1] == b[1] and torch.equal(a[0], b[0]), i


def test_draft_on_shards_and_subsets(tmp_path: Path) -> None:
    root = _smooth_folder(tmp_path / "imgs")
    pack_folder(root, tmp_path / "shards", PackOptions(keep_original=True, samples_per_shard=3), progress=False)
    folder = build_pretrain_data(DataConfig(data_dir=str(root), subset=4), 32, 0)
    shards = build_pretrain_data(DataConfig(data_dir=str(tmp_path / "shards"), subset=4), 32, 0)
    assert isinstance(shards.dataset, DraftCropDataset)
    for i in range(4):  # the same files, the same seeds: the same tensors
        assert torch.equal(folder.dataset[(i, i)][0], shards.dataset[(i, i)][0])
