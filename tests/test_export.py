"""``hpm export``: the encoder loads into ``timm.create_model`` strictly and computes the same features."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Literal

import pytest
import timm
import torch
from safetensors.torch import load_file

from hpm.cli import main
from hpm.config import DataConfig, build_config
from hpm.engine.checkpoint import latest_checkpoint, list_checkpoints
from hpm.errors import CheckpointError
from hpm.eval.data import build_eval_data
from hpm.eval.encoder import load_model_from_checkpoint
from hpm.eval.finetune import FinetuneConfig, classifier_spec, run_finetune
from hpm.export import (
    build_timm_encoder, encoder_state_dict, export_checkpoint, export_classifier, export_finetuned, timm_spec,
)
from hpm.models import build_model
from tests.eval.conftest import save_random_run, tiny_config, write_image_folder


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


# --------------------------------------------------------------------------- fine-tuned classifier
def _squares(root: Path) -> Path:
    write_image_folder(root, {"left": 12, "right": 12, "top": 12})
    write_image_folder(root, {"left": 4, "right": 4, "top": 4}, split="val", seed=1)
    return root


def _timm_classifier(weights: Path) -> tuple[torch.nn.Module, dict]:
    """Load an exported classifier the documented way: a local file, nothing downloaded."""
    meta = json.loads(weights.with_suffix(".json").read_text())
    model = timm.create_model(
        meta["timm_model"], pretrained=True, pretrained_cfg_overlay=dict(file=str(weights)), **meta["timm_kwargs"]
    )
    return model.eval(), meta


@pytest.mark.parametrize("pool", ["avg", "token"])
def test_finetuned_classifier_loads_in_timm_with_its_head(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, pool: Literal["avg", "token"]
) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")  # a download attempt fails
    data = build_eval_data(DataConfig(data_dir=str(_squares(tmp_path / "sq")), channels=1), 32, 1)
    torch.manual_seed(0)
    encoder = build_model(tiny_config().model)
    cfg = FinetuneConfig(epochs=1, batch_size=12, num_workers=0, head_init_std=0.5, global_pool=pool)
    _, model = run_finetune(encoder, data, cfg, torch.device("cpu"), "fp32", progress=False)
    result = export_classifier(model, classifier_spec(encoder, data, pool), tmp_path / "out" / "classifier.safetensors")
    assert result.metadata == tmp_path / "out" / "classifier.json"
    vit, meta = _timm_classifier(result.weights)
    assert torch.equal(vit.head.weight, model.head.weight)  # the fine-tuned head, not a fresh one
    x = torch.randn(5, 1, 32, 32)  # [B, C, H, W]
    with torch.no_grad():
        theirs, mine = vit(x), model.eval()(x)  # [5, 3] logits
    assert theirs.shape == (5, 3) and (theirs - mine).abs().max() < 1e-5
    kwargs = meta["timm_kwargs"]
    assert (kwargs["num_classes"], kwargs["global_pool"], kwargs["in_chans"], kwargs["img_size"]) == (3, pool, 1, 32)
    assert (kwargs["patch_size"], kwargs["embed_dim"], kwargs["depth"], kwargs["num_heads"]) == (4, 32, 1, 2)
    assert meta["class_names"] == ["left", "right", "top"] and meta["mean"] == [0.5] and meta["std"] == [0.5]
    assert list(vit.pretrained_cfg["label_names"]) == meta["class_names"]
    assert tuple(timm.data.resolve_data_config(model=vit)["mean"]) == (0.5,)  # timm finds the normalisation
    assert set(load_file(str(result.weights))) == set(model.state_dict())  # timm names, head included


def test_cli_finetune_writes_the_classifier_and_export_finetuned_rewrites_it(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    run = save_random_run(tmp_path / "run", tiny_config())
    root = _squares(tmp_path / "sq")
    assert main(["export", str(run), "--finetuned"]) == 2
    assert "holds no fine-tune" in capsys.readouterr().err
    args = ["eval", "finetune", str(run), "--data-dir", str(root), "--epochs", "1", "--subset", "all",
            "--test-subset", "all", "batch_size=12", "num_workers=0"]
    assert main(args) == 0
    ft_dir = run / "eval" / "finetune"
    final = load_file(str(latest_checkpoint(ft_dir) / "model.safetensors"))
    written = load_file(str(ft_dir / "classifier.safetensors"))
    assert all(torch.equal(written[k], final[k]) for k in final) and set(written) == set(final)
    capsys.readouterr()

    assert main(["export", str(run), "--finetuned"]) == 0
    assert "pretrained_cfg_overlay=dict(file=" in capsys.readouterr().out
    vit, meta = _timm_classifier(run / "export" / "classifier.safetensors")
    assert torch.equal(vit.head.bias, final["head.bias"]) and meta["source"]["step"] == 3
    assert meta["source"]["finetune_dir"] == str(ft_dir) and meta["class_names"] == ["left", "right", "top"]
    record = json.loads((run / "eval" / "finetune.json").read_text())
    assert meta["source"]["top1"] == record["result"]["top1"]
    out = tmp_path / "elsewhere" / "clf.safetensors"
    assert main(["export", str(ft_dir), "--finetuned", "--out", str(out)]) == 0  # the fine-tune directory itself
    assert out.is_file() and out.with_suffix(".json").is_file()
    assert main(["export", str(run), "--finetuned", "--weights", "teacher"]) == 2
    assert "--weights applies to the encoder export" in capsys.readouterr().err


def test_export_finetuned_refuses_an_unfinished_fine_tune(tmp_path: Path) -> None:
    data = build_eval_data(DataConfig(data_dir=str(_squares(tmp_path / "sq")), channels=1), 32, 1)
    cfg = FinetuneConfig(epochs=2, batch_size=12, num_workers=0)
    encoder = build_model(tiny_config().model)
    run_finetune(encoder, data, cfg, torch.device("cpu"), "fp32", progress=False, run_dir=tmp_path / "ft")
    for ckpt in list_checkpoints(tmp_path / "ft")[1:]:
        shutil.rmtree(ckpt)  # as if stopped after the first epoch
    with pytest.raises(CheckpointError, match=r"stopped at step 3 of 6; re-run the same `hpm eval finetune`"):
        export_finetuned(tmp_path / "ft")


# --------------------------------------------------------------------------- MAE's checkpoint layout
def _mae_checkpoint(path: Path) -> dict[str, torch.Tensor]:
    """The ``model`` entry of an MAE-layout ``.pth``, loaded as MAE's and ViTDet's code load it."""
    checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    assert set(checkpoint) == {"model"}
    return checkpoint["model"]


@pytest.mark.parametrize("weights", ["student", "teacher"])
def test_mae_format_loads_strictly_into_the_runs_timm_model(tmp_path: Path, weights: str) -> None:
    run = save_random_run(tmp_path / "run", tiny_config())
    result = export_checkpoint(run, weights=weights, file_format="mae")  # type: ignore[arg-type]
    stem = "encoder" if weights == "student" else "encoder_teacher"
    assert result.weights == run / "export" / f"{stem}.pth" and result.metadata == run / "export" / f"{stem}.json"
    state = _mae_checkpoint(result.weights)
    meta = json.loads(result.metadata.read_text())
    assert meta["format"] == "mae" and meta["weights"] == f"{stem}.pth" and meta["source"]["weights"] == weights
    vit = timm.create_model(meta["timm_model"], pretrained=False, **meta["timm_kwargs"])
    expected = vit.state_dict()
    assert {k: v.shape for k, v in state.items()} == {k: v.shape for k, v in expected.items()}
    vit.load_state_dict(state, strict=True)
    stored = "model.safetensors" if weights == "student" else "teacher.safetensors"
    saved = load_file(str(latest_checkpoint(run) / stored))
    assert all(torch.equal(state[k], saved[k]) for k in state)  # the run's encoder weights, unchanged
    encoder = ("cls_token", "pos_embed", "patch_embed.", "blocks.", "norm.")
    assert set(state) == {k for k in saved if k in encoder or k.startswith(encoder[2:])}


def test_mae_format_loads_as_maes_finetuning_code_loads_it(tmp_path: Path) -> None:
    run = save_random_run(tmp_path / "run", tiny_config())
    state = _mae_checkpoint(export_checkpoint(run, tmp_path / "mae" / "vit.pth", file_format="mae").weights)
    _, kwargs = timm_spec(tiny_config().model)
    # MAE's main_finetune.py: a new head, and fc_norm after average pooling in place of norm
    vit = timm.create_model("vit_base_patch16_224", pretrained=False, **(kwargs | {"num_classes": 5, "global_pool": "avg"}))
    missing, unexpected = vit.load_state_dict(state, strict=False)
    assert set(missing) == {"head.weight", "head.bias", "fc_norm.weight", "fc_norm.bias"}
    assert set(unexpected) == {"norm.weight", "norm.bias"}
    with_head = timm.create_model("vit_base_patch16_224", pretrained=False, **(kwargs | {"num_classes": 5}))
    missing, unexpected = with_head.load_state_dict(state, strict=False)
    assert set(missing) == {"head.weight", "head.bias"} and not unexpected
    assert torch.equal(with_head.blocks[0].mlp.fc2.weight, state["blocks.0.mlp.fc2.weight"])


def test_cli_export_format_mae(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    run = save_random_run(tmp_path / "run", tiny_config())
    assert main(["export", str(run), "--format", "mae"]) == 0
    out = capsys.readouterr().out
    assert f"to {run / 'export' / 'encoder.pth'} (+ encoder.json) in MAE's layout" in out
    assert "torch.load(...)['model']" in out
    assert not (run / "export" / "encoder.safetensors").exists()
    assert main(["export", str(run), "--format", "mae", "--out", str(tmp_path / "e.safetensors")]) == 2
    assert "--out must name a .pth file for --format mae" in capsys.readouterr().err
    assert main(["export", str(run), "--finetuned", "--format", "mae"]) == 2
    assert "a fine-tuned classifier is exported as safetensors" in capsys.readouterr().err
