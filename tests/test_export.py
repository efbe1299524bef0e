"""``hpm export``: the encoder loads into ``timm.create_model`` strictly and computes the same features."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import timm
import torch
from safetensors.torch import load_file

from hpm.cli import main
from hpm.config import build_config
from hpm.engine.checkpoint import latest_checkpoint
from hpm.errors import CheckpointError
from hpm.eval.encoder import load_model_from_checkpoint
from hpm.export import build_timm_encoder, encoder_state_dict, export_checkpoint, timm_spec
from hpm.models import build_model
from tests.eval.conftest import save_random_run, tiny_config


def _timm_from_export(weights: Path) -> tuple[torch.nn.Module, dict]:
    meta = json.loads(weights.with_suffix(".json").read_text())
    model = timm.create_model(meta["timm_model"], pretrained=False, **meta["timm_kwargs"])
    model.load_state_dict(load_file(str(weights)), strict=True)  # no missing or unexpected key
    return model.eval(), meta


@pytest.mark.parametrize("model_cfg", [dict(), dict(img_size=24, patch_size=6, embed_dim=48, depth=2, num_heads=4, mlp_ratio=2.0)])
def test_export_round_trip_features_match(tmp_path: Path, model_cfg: dict) -> None:
    run = save_random_run(tmp_path / "run", tiny_config(**model_cfg))
    result = export_checkpoint(run, tmp_path / "out" / "enc.safetensors")
    assert result.weights.is_file() and result.metadata == tmp_path / "out" / "enc.json"
    vit, meta = _timm_from_export(result.weights)
    ours, cfg = load_model_from_checkpoint(run)
    x = torch.randn(4, 1, cfg.model.img_size, cfg.model.img_size)
    with torch.no_grad():
        theirs = vit.forward_features(x)  # [4, 1 + L, D]
        mine = ours.forward_encoder(x)
        pooled = vit(x)  # global_pool="token", no head: the class token
    assert theirs.shape == mine.shape
    assert (theirs - mine).abs().max() < 1e-5
    assert torch.allclose(pooled, mine[:, 0], atol=1e-5)
    assert meta["timm_kwargs"]["in_chans"] == 1 and meta["timm_kwargs"]["num_classes"] == 0
    assert meta["source"]["step"] == 7 and meta["source"]["weights"] == "student"
    assert meta["mean"] == [0.286] and meta["std"] == [0.353]


def test_position_embedding_keeps_the_zero_class_row(tmp_path: Path) -> None:
    run = save_random_run(tmp_path / "run", tiny_config())
    weights = load_file(str(export_checkpoint(run, tmp_path / "e.safetensors").weights))
    assert weights["pos_embed"].shape == (1, 65, 32)
    assert torch.all(weights["pos_embed"][:, 0] == 0)
    assert not any(k.startswith(("decoder", "predictor", "mask_token")) for k in weights)


def test_teacher_export_and_default_location(tmp_path: Path) -> None:
    run = save_random_run(tmp_path / "run", tiny_config())
    result = export_checkpoint(run, weights="teacher")
    assert result.weights == run / "export" / "encoder_teacher.safetensors"
    teacher = load_file(str(latest_checkpoint(run) / "teacher.safetensors"))
    exported = load_file(str(result.weights))
    assert all(torch.equal(exported[k], teacher[k]) for k in exported)


def test_paper_presets_use_timm_names() -> None:
    for preset, name in (("vit_b16", "vit_base_patch16_224"), ("vit_l16", "vit_large_patch16_224")):
        cfg = build_config(overrides={"model": {"preset": preset, "in_chans": 3}}).model
        assert timm_spec(cfg)[0] == name
    small = build_config(overrides={"model": {"in_chans": 1}}).model
    name, kwargs = timm_spec(small)
    assert name == "vit_base_patch16_224" and kwargs["embed_dim"] == 192 and kwargs["patch_size"] == 4


@pytest.mark.slow
def test_vit_b16_export_loads_into_the_named_timm_model(tmp_path: Path) -> None:
    cfg = build_config(overrides={"model": {"preset": "vit_b16", "in_chans": 3}})
    model = build_model(cfg.model, loss_predictor=False)
    vit = timm.create_model("vit_base_patch16_224", pretrained=False, num_classes=0)
    vit.load_state_dict(encoder_state_dict(model), strict=True)


def test_finetune_model_takes_all_but_head_and_fc_norm() -> None:
    torch.manual_seed(0)
    model = build_model(tiny_config().model)
    vit = build_timm_encoder(model, global_pool="avg", num_classes=5)
    assert vit.global_pool == "avg" and isinstance(vit.norm, torch.nn.Identity)
    assert torch.equal(vit.blocks[0].attn.qkv.weight, model.blocks[0].attn.qkv.weight)
    assert vit(torch.randn(2, 1, 32, 32)).shape == (2, 5)


def test_out_must_be_safetensors(tmp_path: Path) -> None:
    run = save_random_run(tmp_path / "run", tiny_config())
    with pytest.raises(CheckpointError, match=r"\.safetensors"):
        export_checkpoint(run, tmp_path / "enc.pt")


def test_cli_export(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    run = save_random_run(tmp_path / "run", tiny_config())
    out = tmp_path / "encoder.safetensors"
    assert main(["export", str(run), "--out", str(out)]) == 0
    assert "timm.create_model('vit_base_patch16_224'" in capsys.readouterr().out
    _timm_from_export(out)
    assert main(["export", str(tmp_path / "missing")]) == 2
    assert "does not exist" in capsys.readouterr().err
