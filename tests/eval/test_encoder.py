"""Loading frozen encoders (checkpoint, teacher, random init, other sizes) and extracting features."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file
from torch.utils.data import TensorDataset

from hpm.engine.checkpoint import latest_checkpoint
from hpm.errors import CheckpointError, ConfigError, DataError
from hpm.engine.integrity import seal
from hpm.eval.encoder import FrozenEncoder, extract_features, load_encoder, load_model_from_checkpoint, pool_tokens
from hpm.models import build_model
from tests.eval.conftest import save_random_run, tiny_config


def test_loads_the_newest_checkpoint_of_a_run(random_run: Path) -> None:
    model, cfg = load_model_from_checkpoint(random_run)
    saved = load_file(str(latest_checkpoint(random_run) / "model.safetensors"))
    assert cfg.model.embed_dim == 32 and cfg.model.in_chans == 1
    assert not model.training and not any(p.requires_grad for p in model.parameters())
    for name, value in model.state_dict().items():
        if name.startswith(("patch_embed", "blocks", "norm", "cls_token")):
            assert torch.equal(value, saved[name]), name


def test_teacher_weights_differ_from_the_student(tmp_path: Path) -> None:
    run = save_random_run(tmp_path / "run", tiny_config())
    ckpt = latest_checkpoint(run)
    teacher = load_file(str(ckpt / "teacher.safetensors"))
    teacher["norm.weight"] = teacher["norm.weight"] + 1.0
    save_file(teacher, str(ckpt / "teacher.safetensors"))
    seal(ckpt)  # a deliberate edit, not damage
    enc = load_encoder(run, weights="teacher")
    assert enc.weights == "teacher" and enc.step == 7
    assert torch.allclose(enc.model.norm.weight, torch.full((32,), 2.0))


def test_random_init_keeps_the_architecture_and_is_seeded(random_run: Path) -> None:
    enc = load_encoder(random_run, random_init=True, seed=3)
    trained, _ = load_model_from_checkpoint(random_run)
    again = load_encoder(random_run, random_init=True, seed=3)
    assert enc.weights == "random" and enc.cfg.model.embed_dim == 32 and enc.checkpoint is not None
    assert not torch.equal(enc.model.blocks[0].attn.qkv.weight, trained.blocks[0].attn.qkv.weight)
    assert torch.equal(enc.model.blocks[0].attn.qkv.weight, again.model.blocks[0].attn.qkv.weight)


def test_random_init_from_a_config_resolves_channels() -> None:
    enc = load_encoder(None, random_init=True, cfg=tiny_config(in_chans=None))
    assert enc.model.in_chans == 1 and enc.checkpoint is None


def test_frozen_encoder_matches_forward_encoder() -> None:
    torch.manual_seed(0)
    model = build_model(tiny_config(depth=2).model).eval()
    x = torch.randn(3, 1, 32, 32)
    with torch.no_grad():
        ref = model.forward_encoder(x)  # [3, 65, 32]
        assert torch.allclose(FrozenEncoder(model)(x), ref, atol=1e-6)
        fast = FrozenEncoder(model, torch.bfloat16, fused_attention=False)(x)
    assert fast.dtype == torch.bfloat16
    assert (fast.float() - ref).abs().max() < 0.1  # bf16 rounding only


def test_extract_features_pools_and_keeps_labels() -> None:
    torch.manual_seed(0)
    model = build_model(tiny_config().model).train()
    images, labels = torch.randn(5, 1, 32, 32), torch.tensor([3, 1, 4, 1, 5])
    data = TensorDataset(images, labels)
    cls, y = extract_features(model, data, "cls", batch_size=2)
    avg, _ = extract_features(model, data, "avg", batch_size=5)
    with torch.no_grad():
        tokens = model.eval().forward_encoder(images)
    assert cls.shape == (5, 32) and cls.dtype == torch.float32 and y.tolist() == labels.tolist()
    assert torch.allclose(cls, tokens[:, 0], atol=1e-5)
    assert torch.allclose(avg, tokens[:, 1:].mean(1), atol=1e-5)
    assert torch.allclose(pool_tokens(tokens, "avg"), avg, atol=1e-5)


def test_extract_features_leaves_the_model_alone() -> None:
    model = build_model(tiny_config().model).train()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    extract_features(model, TensorDataset(torch.randn(2, 1, 32, 32), torch.tensor([0, 1])), "cls", precision="bf16")
    assert model.training and all(p.dtype == torch.float32 for p in model.parameters())
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())


def test_images_of_the_wrong_size_are_refused() -> None:
    model = build_model(tiny_config().model)
    data = TensorDataset(torch.randn(2, 1, 28, 28), torch.tensor([0, 1]))
    with pytest.raises(DataError, match=r"\(1, 28, 28\).*\(1, 32, 32\)"):
        extract_features(model, data, "cls")


def test_other_image_size_rebuilds_the_position_embedding(random_run: Path) -> None:
    enc = load_encoder(random_run, img_size=48)
    model, cfg = enc.model, enc.cfg
    assert cfg.model.img_size == 48 and model.pos_embed.shape == (1, 1 + 12 * 12, 32)
    with torch.no_grad():
        assert model.forward_encoder(torch.randn(1, 1, 48, 48)).shape == (1, 145, 32)


def test_incompatible_image_size_says_which_sizes_work(random_run: Path) -> None:
    with pytest.raises(ConfigError, match="image size 30 is incompatible with the encoder's patch size 4.*28 or 32"):
        load_encoder(random_run, img_size=30)


# --------------------------------------------------------------------------- errors
def test_missing_path(tmp_path: Path) -> None:
    with pytest.raises(CheckpointError, match="does not exist"):
        load_encoder(tmp_path / "nope")


def test_run_without_checkpoint(tmp_path: Path) -> None:
    with pytest.raises(CheckpointError, match="holds no checkpoint"):
        load_encoder(tmp_path)


def test_missing_weights_file(random_run: Path) -> None:
    ckpt = latest_checkpoint(random_run)
    (ckpt / "model.safetensors").unlink()
    with pytest.raises(CheckpointError, match="holds no checkpoint.*model.safetensors and state.pt"):
        load_encoder(ckpt)


def test_corrupt_weights_file(random_run: Path) -> None:
    ckpt = latest_checkpoint(random_run)
    (ckpt / "model.safetensors").write_bytes(b"not a safetensors file")
    with pytest.raises(CheckpointError, match="every checkpoint .* is damaged"):
        load_encoder(random_run)
    with pytest.raises(CheckpointError, match="damaged: model.safetensors has 22 bytes"):
        load_encoder(ckpt)
    seal(ckpt)  # written so (no manifest could tell): the reader names the file
    with pytest.raises(CheckpointError, match="cannot read .*model.safetensors"):
        load_encoder(random_run)


def test_teacher_of_an_mae_run(tmp_path: Path) -> None:
    run = save_random_run(tmp_path / "run", tiny_config(), teacher=False)
    with pytest.raises(CheckpointError, match="no EMA teacher"):
        load_encoder(run, weights="teacher")


def test_weights_of_another_architecture(tmp_path: Path) -> None:
    run = save_random_run(tmp_path / "run", tiny_config())
    other = save_random_run(tmp_path / "other", tiny_config(embed_dim=48, depth=2))
    shutil.copy(latest_checkpoint(other) / "model.safetensors", latest_checkpoint(run) / "model.safetensors")
    seal(latest_checkpoint(run))  # a valid file of another architecture, not damage
    with pytest.raises(CheckpointError, match="another architecture.*unexpected encoder keys.*blocks.1.*shape mismatches"):
        load_encoder(run)


def test_state_without_config(tmp_path: Path) -> None:
    from hpm.engine.checkpoint import save_checkpoint

    save_checkpoint(tmp_path, 1, build_model(tiny_config().model), None, {"epoch": 0})
    with pytest.raises(CheckpointError, match="holds no 'config'"):
        load_encoder(tmp_path)


def test_no_source_at_all() -> None:
    with pytest.raises(ConfigError, match="run directory or checkpoint"):
        load_encoder(None)


def test_options_removed_since_are_ignored_but_model_keys_are_not(tmp_path: Path) -> None:
    from hpm.config import config_to_dict
    from hpm.engine.checkpoint import save_checkpoint

    model = build_model(tiny_config().model)
    raw = config_to_dict(tiny_config())
    raw["train"]["channels_last"] = True  # an option of an older version (or a newer one)
    save_checkpoint(tmp_path / "old", 1, model, None, {"config": raw})
    assert load_encoder(tmp_path / "old").cfg.model.embed_dim == 32
    raw["model"]["qk_norm"] = True  # would change the architecture
    save_checkpoint(tmp_path / "new", 1, model, None, {"config": raw})
    with pytest.raises(CheckpointError, match=r"keys this version does not know \(\['model.qk_norm'\]\)"):
        load_encoder(tmp_path / "new")
