"""Every reconstruction target trains from the CLI on the bundled data (tiny model), shows in
``hpm visualize``, and a run can teach a second one through ``hpm export`` (loss.target=model)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
from matplotlib.figure import Figure

from hpm.cli import main
from hpm.engine.logger import read_metrics
from hpm.eval.patch_loss import load_pretrained
from hpm.viz.panels import compute_maps, draw_panels
from tests.conftest import needs_fmnist, pretrain_args, tiny_overrides

pytestmark = needs_fmnist


def _train(tmp_path: Path, name: str, **sections) -> Path:
    overrides = tiny_overrides(tmp_path / name, train={"epochs": 1}, **sections)
    assert main(pretrain_args(overrides)) == 0
    return Path(overrides["output_dir"])


def _panels(run: Path) -> Figure:
    models = load_pretrained(run)
    import torch

    imgs = torch.randn(2, 1, 32, 32, generator=torch.Generator().manual_seed(0))
    maps = compute_maps(models, imgs, [0.5], [0.5], num_masks=2)
    return draw_panels(maps), maps


@pytest.mark.parametrize(("target", "strategy", "width"), [("pix", "random", 16), ("hog", "hpm", 36), ("ema", "hpm", 64)])
def test_target_trains_end_to_end(tmp_path: Path, target: str, strategy: str, width: int) -> None:
    predictor = "none" if strategy == "random" else "relative"
    run = _train(tmp_path, target, loss={"target": target, "predictor": predictor}, mask={"strategy": strategy})
    records = [r for r in read_metrics(run / "metrics.jsonl") if "loss" in r]
    assert len(records) == 256 // 32 and all(r["loss"] == r["loss"] for r in records)  # finite, not NaN
    saved = yaml.safe_load((run / "config.yaml").read_text())
    assert saved["loss"]["target"] == target and saved["loss"]["target_dim"] == width
    fig, maps = _panels(run)
    titles = [ax.get_title() for ax in fig.axes if ax.get_label() == "panel:reconstruction:0"]
    assert maps.real_loss.shape == (2, 64)
    if target == "pix":
        assert "reconstruction" in titles[0] and maps.reconstruction.shape == (2, 1, 32, 32)
    elif target == "hog":
        assert "HOG" in titles[0] and maps.reconstruction.shape[1] == 1  # oriented bars
    else:
        assert "features" in titles[0] and maps.reconstruction.shape == (2, 3, 32, 32)  # PCA map


def test_an_exported_run_teaches_a_second_one(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    first = _train(tmp_path, "first", mask={"strategy": "random"}, loss={"predictor": "none"})
    assert main(["export", str(first)]) == 0
    weights = first / "export" / "encoder.safetensors"
    second = _train(tmp_path, "second", loss={"target": "model", "target_weights": str(weights)})
    saved = yaml.safe_load((second / "config.yaml").read_text())
    assert saved["loss"]["target_dim"] == json.loads(weights.with_suffix(".json").read_text())["timm_kwargs"]["embed_dim"]
    fig, maps = _panels(second)
    assert maps.reconstruction.shape[1] == 3
    capsys.readouterr()

    # a file of another architecture (no JSON naming it) is refused before anything is written
    weights.with_suffix(".json").unlink()
    bad = tiny_overrides(tmp_path / "third", train={"epochs": 1},
                         loss={"target": "model", "target_weights": str(weights), "target_model": "vit_tiny_patch16_224"})
    assert main(pretrain_args(bad)) == 2
    err = capsys.readouterr().err
    assert "does not fit timm's vit_tiny_patch16_224" in err and "loss.target_model" in err
    assert not Path(bad["output_dir"]).exists()
    missing = tiny_overrides(tmp_path / "fourth", loss={"target": "model", "target_weights": str(tmp_path / "nope.pth")})
    assert main(pretrain_args(missing)) == 2
    assert "does not exist" in capsys.readouterr().err and not Path(missing["output_dir"]).exists()
