"""Reconstruction targets: widths, pixel targets as before, feature targets from the EMA teacher
and from an exported encoder, and the errors a wrong file gives before training."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from hpm.config import build_config, config_from_dict
from hpm.engine.optim import build_optimizer
from hpm.engine.step import PretrainStep
from hpm.errors import ConfigError
from hpm.export import export_encoder
from hpm.losses import patch_targets
from hpm.losses.hog import hog_targets
from hpm.losses.targets import build_target, load_target_model, resolve_target_dim
from hpm.models import build_model

CPU = torch.device("cpu")
TINY = {"in_chans": 1, "embed_dim": 32, "depth": 1, "num_heads": 2, "decoder_embed_dim": 16, "decoder_depth": 1,
        "decoder_num_heads": 2}


def _cfg(target: str = "norm_pix", strategy: str = "random", predictor: str = "none", **loss):
    return build_config(overrides={
        "model": TINY, "mask": {"strategy": strategy, "teacher_view": "full"},
        "loss": {"predictor": predictor, "target": target, **loss}, "train": {"batch_size": 2},
    })


def _images(n: int = 2, seed: int = 0) -> torch.Tensor:
    return torch.randn(n, 1, 32, 32, generator=torch.Generator().manual_seed(seed))


def _exported(tmp_path: Path, seed: int = 1, **model) -> tuple[Path, torch.nn.Module]:
    cfg = config_from_dict({"model": {**TINY, **model}})
    torch.manual_seed(seed)
    mae = build_model(cfg.model, loss_predictor=False).eval()
    return export_encoder(mae, cfg, tmp_path / "enc.safetensors").weights, mae


@pytest.mark.parametrize(("target", "dim"), [("norm_pix", 16), ("pix", 16), ("hog", 36), ("ema", 32)])
def test_target_widths(target: str, dim: int) -> None:
    assert build_target(_cfg(target)).dim == dim
    cfg = resolve_target_dim(_cfg(target), build_target(_cfg(target)))
    assert cfg.loss.target_dim == dim
    assert build_model(cfg.model, False, cfg.loss.target_dim).decoder_pred.out_features == dim


def test_pixel_targets_are_the_masked_patches() -> None:
    imgs = _images()
    ids = torch.tensor([[0, 5, 63], [1, 2, 3]])
    model = build_model(_cfg().model, False)
    patches = torch.gather(model.patchify(imgs), 1, ids.unsqueeze(-1).expand(-1, -1, 16))
    torch.testing.assert_close(build_target(_cfg("norm_pix"))(imgs, ids), patch_targets(patches, True))
    torch.testing.assert_close(build_target(_cfg("pix"))(imgs, ids), patches)
    hog = build_target(_cfg("hog", hog_bins=6, hog_cell=4))  # one 4-px cell per patch
    assert hog.dim == 6
    torch.testing.assert_close(hog(imgs, ids), torch.gather(hog_targets(imgs, 4, 4, 6), 1, ids.unsqueeze(-1).expand(-1, -1, 6)))


def test_model_target_of_an_exported_encoder_is_its_normalised_tokens(tmp_path: Path) -> None:
    file, mae = _exported(tmp_path)
    cfg = _cfg("model", target_weights=str(file))
    target = build_target(cfg)
    assert target.dim == 32 and target.frozen is not None and not any(p.requires_grad for p in target.frozen.parameters())
    imgs, ids = _images(), torch.tensor([[3, 4], [60, 0]])
    want = F.layer_norm(mae.forward_encoder(imgs)[:, 1:], (32,))
    torch.testing.assert_close(target(imgs, ids), torch.gather(want, 1, ids.unsqueeze(-1).expand(-1, -1, 32)),
                               atol=1e-5, rtol=1e-4)


def test_model_target_errors_say_what_to_fix(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="does not exist"):
        build_target(_cfg("model", target_weights=str(tmp_path / "missing.safetensors")))
    bad = tmp_path / "bad.safetensors"
    bad.write_bytes(b"not a tensor file")
    with pytest.raises(ConfigError, match="cannot be read"):
        build_target(_cfg("model", target_weights=str(bad), target_model="vit_tiny_patch16_224"))
    with pytest.raises(ConfigError, match="hpm export JSON"):  # no JSON, no name
        build_target(_cfg("model", target_weights=str(bad)))
    file, _ = _exported(tmp_path / "big")
    file.with_suffix(".json").unlink()  # a bare state dict: the named architecture is another
    with pytest.raises(ConfigError, match="does not fit timm"):
        build_target(_cfg("model", target_weights=str(file), target_model="vit_tiny_patch16_224"))
    other, _ = _exported(tmp_path / "grid", patch_size=8)  # 4x4 tokens for the student's 8x8 patches
    with pytest.raises(ConfigError, match="token grid"):
        load_target_model(_cfg("model", target_weights=str(other)))
    with pytest.raises(ConfigError, match="target_weights"):
        _cfg("model")
    with pytest.raises(ConfigError, match="only read with loss.target=model"):
        _cfg("hog", target_weights=str(file))


def test_old_norm_pix_key_maps_to_the_target() -> None:
    assert config_from_dict({"model": {"norm_pix_loss": False}}).loss.target == "pix"
    cfg = config_from_dict({"model": {"norm_pix_loss": True}})
    assert cfg.loss.target == "norm_pix" and cfg.model.norm_pix_loss is None


def _step(cfg) -> PretrainStep:
    target = build_target(cfg)
    cfg = resolve_target_dim(cfg, target)
    torch.manual_seed(0)
    model = build_model(cfg.model, cfg.loss.predictor != "none", cfg.loss.target_dim)
    return PretrainStep(cfg, model, build_optimizer(model, cfg.train, 1e-3), CPU, "fp32", target=target)


def test_ema_target_shares_the_full_view_teachers_encoder_pass(monkeypatch: pytest.MonkeyPatch) -> None:
    step = _step(_cfg("ema", strategy="hpm", predictor="relative"))
    assert step.teacher is not None
    calls: list[int] = []
    encode = step.teacher.forward_encoder
    monkeypatch.setattr(step.teacher, "forward_encoder", lambda x, ids=None: calls.append(1) or encode(x, ids))
    imgs = _images()
    masks, scores = step.generate_mask(imgs, num_hard=6)
    out = step.forward_backward(imgs, masks, scores, 6)
    assert len(calls) == 1  # one full-image teacher pass serves the scores and the target
    want = F.layer_norm(encode(imgs)[:, 1:], (32,))
    got = step.targets(imgs, masks.ids_mask)  # no cached tokens now: a fresh teacher pass
    torch.testing.assert_close(got, torch.gather(want, 1, masks.ids_mask.unsqueeze(-1).expand(-1, -1, 32)))
    assert torch.isfinite(out["loss"])


def test_mae_with_an_ema_target_keeps_a_moving_teacher() -> None:
    step = _step(_cfg("ema"))
    assert step.teacher is not None and not step.uses_teacher  # a teacher for the target, not for masks
    before = step.teacher.blocks[0].attn.qkv.weight.clone()
    imgs = _images()
    masks, scores = step.generate_mask(imgs)
    assert scores is None
    step.forward_backward(imgs, masks)
    step.optimizer_step(ema_decay=0.5)
    assert not torch.equal(before, step.teacher.blocks[0].attn.qkv.weight)


def test_a_model_built_for_another_width_is_refused() -> None:
    cfg = _cfg("hog")
    model = build_model(cfg.model, False)  # pixel width
    with pytest.raises(ConfigError, match="target_dim=36"):
        PretrainStep(cfg, model, build_optimizer(model, cfg.train, 1e-3), CPU, "fp32")
