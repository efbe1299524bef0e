"""Config resolution: defaults -> preset -> YAML -> overrides, validated with clear errors."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from hpm.config import (
    PRESETS,
    Config,
    build_config,
    config_to_dict,
    deep_merge,
    load_yaml_file,
    parse_overrides,
    save_config,
)
from hpm.errors import ConfigError


# --------------------------------------------------------------------------- errors
def test_unknown_key_lists_valid_keys() -> None:
    with pytest.raises(ConfigError) as info:
        build_config(overrides={"train": {"epochz": 3}})
    msg = str(info.value)
    assert "train.epochz" in msg
    for key in ("epochs", "batch_size", "blr", "warmup_epochs", "precision"):
        assert key in msg


def test_unknown_section_lists_sections() -> None:
    with pytest.raises(ConfigError) as info:
        build_config(overrides={"trian": {"epochs": 3}})
    msg = str(info.value)
    assert "trian" in msg
    for key in ("model", "mask", "loss", "ema", "data", "train", "output_dir"):
        assert key in msg


def test_bad_literal_names_valid_values() -> None:
    with pytest.raises(ConfigError) as info:
        build_config(overrides={"mask": {"strategy": "grid"}})
    msg = str(info.value)
    assert "mask.strategy" in msg and "grid" in msg
    for value in ("random", "block", "hpm"):
        assert value in msg
    with pytest.raises(ConfigError, match="fp32"):
        build_config(overrides={"train": {"precision": "fp8"}})


def test_bad_values_are_config_errors() -> None:
    for overrides in (
        {"mask": {"ratio": 1.0}},
        {"mask": {"alpha_end": 1.5}},
        {"ema": {"decay_end": 1.0}},
        {"train": {"epochs": 0}},
        {"train": {"batch_size": "many"}},
        {"model": {"embed_dim": 100, "num_heads": 3}},
        {"data": {"channels": 2}},
        {"train": 5},
    ):
        with pytest.raises(ConfigError):
            build_config(overrides=overrides)


def test_img_size_not_divisible_by_patch_size() -> None:
    with pytest.raises(ConfigError, match="divisible"):
        build_config(overrides={"model": {"img_size": 30, "patch_size": 4}})
    with pytest.raises(ConfigError, match="divisible"):
        build_config(overrides={"model": {"preset": "vit_b16", "patch_size": 15}})
    assert build_config(overrides={"model": {"preset": "vit_b16", "patch_size": 14}}).model.patch_size == 14
    assert build_config(overrides={"model": {"preset": "vit_b16", "img_size": 448}}).model.img_size == 448


def test_width_not_divisible_by_four_is_a_config_error() -> None:
    with pytest.raises(ConfigError):
        build_config(overrides={"model": {"embed_dim": 198, "num_heads": 3}})


def test_unknown_preset() -> None:
    with pytest.raises(ConfigError) as info:
        build_config(overrides={"model": {"preset": "vit_g14"}})
    for name in PRESETS:
        assert name in str(info.value)


# --------------------------------------------------------------------------- presets
def test_defaults() -> None:
    cfg = build_config()
    assert isinstance(cfg, Config)
    assert cfg.model.preset == "small" and cfg.model.in_chans is None
    assert (cfg.model.img_size, cfg.model.patch_size) == (32, 4)
    assert cfg.mask.strategy == "hpm" and cfg.loss.predictor == "relative"
    assert cfg.train.betas == (0.9, 0.95) and cfg.train.weight_decay == 0.05


@pytest.mark.parametrize("preset", list(PRESETS))
def test_preset_fills_model_keys(preset: str) -> None:
    model = build_config(overrides={"model": {"preset": preset}}).model
    for key, value in PRESETS[preset].items():
        assert getattr(model, key) == value, key


def test_explicit_keys_override_the_preset() -> None:
    model = build_config(overrides={"model": {"preset": "vit_b16", "depth": 2, "decoder_depth": 1}}).model
    assert (model.depth, model.decoder_depth) == (2, 1)
    assert (model.embed_dim, model.img_size, model.patch_size, model.num_heads) == (768, 224, 16, 12)


# --------------------------------------------------------------------------- overrides
def test_parse_overrides_types() -> None:
    got = parse_overrides([
        "train.epochs=5",
        "train.blr=0.001",
        "model.norm_pix_loss=true",
        "train.clip_grad=null",
        "data.mean=[0.5, 0.25]",
        "model.preset=vit_s16",
        "output_dir=runs/x",
        "data.subset=",
    ])
    assert got == {
        "train": {"epochs": 5, "blr": 0.001, "clip_grad": None},
        "data": {"mean": [0.5, 0.25], "subset": None},
        "model": {"norm_pix_loss": True, "preset": "vit_s16"},
        "output_dir": "runs/x",
    }
    assert type(got["train"]["epochs"]) is int
    assert type(got["train"]["blr"]) is float
    assert got["model"]["norm_pix_loss"] is True


def test_parse_overrides_errors() -> None:
    for bad in (["train.epochs"], ["=5"], ["train=5", "train.epochs=3"]):
        with pytest.raises(ConfigError):
            parse_overrides(bad)


def test_overrides_through_build_config() -> None:
    """Exponent floats (YAML reads 1e-4 as a string) still end up as floats."""
    cfg = build_config(overrides=parse_overrides(
        ["train.blr=1e-4", "train.clip_grad=5", "train.epochs=3", "data.crop_scale=[0.5, 1.0]", "mask.ratio=0.6"]
    ))
    assert cfg.train.blr == pytest.approx(1e-4) and isinstance(cfg.train.blr, float)
    assert cfg.train.clip_grad == 5.0
    assert cfg.train.epochs == 3
    assert cfg.data.crop_scale == (0.5, 1.0)
    assert cfg.mask.ratio == 0.6


# --------------------------------------------------------------------------- files
def test_yaml_file_and_overrides_precedence(tmp_path: Path) -> None:
    file = tmp_path / "run.yaml"
    file.write_text(yaml.safe_dump({
        "model": {"preset": "vit_s16", "depth": 4},
        "train": {"epochs": 3, "batch_size": 16},
        "mask": {"strategy": "block"},
    }))
    cfg = build_config(file)
    assert (cfg.model.embed_dim, cfg.model.depth, cfg.train.epochs, cfg.mask.strategy) == (384, 4, 3, "block")
    cfg = build_config(file, overrides={"train": {"epochs": 7}, "model": {"preset": "vit_b16"}})
    assert cfg.train.epochs == 7  # override beats the file
    assert cfg.train.batch_size == 16  # the file's other keys stay
    assert cfg.model.embed_dim == 768  # the override's preset
    assert cfg.model.depth == 4  # the file's explicit key beats the preset
    assert cfg.mask.strategy == "block"


def test_missing_or_bad_config_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="does not exist"):
        build_config(tmp_path / "nope.yaml")
    lst = tmp_path / "list.yaml"
    lst.write_text("- 1\n- 2\n")
    with pytest.raises(ConfigError, match="mapping"):
        build_config(lst)
    empty = tmp_path / "empty.yaml"
    empty.write_text("")
    assert build_config(empty) == build_config()
    bad_key = tmp_path / "bad.yaml"
    bad_key.write_text("train:\n  epochz: 3\n")
    with pytest.raises(ConfigError, match="epochs"):
        build_config(bad_key)


def test_malformed_yaml_is_one_line_naming_file_line_and_column(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("model: {preset: small\ntrain: [1, 2")
    with pytest.raises(ConfigError) as info:
        build_config(bad)
    message = str(info.value)
    # the parser stops at line 2, column 6 (the ':' after 'train'); the unclosed '{' is line 1, column 8
    assert message.startswith(f"{bad}:2:6: malformed YAML: expected ',' or '}}', but got ':'")
    assert "line 1, column 8" in message
    assert "\n" not in message and "<unicode string>" not in message


def test_malformed_yaml_positions_are_one_based(tmp_path: Path) -> None:
    tab = tmp_path / "tab.yaml"
    tab.write_text("train:\n  epochs: 3\n\tblr: 1\n")
    with pytest.raises(ConfigError, match=rf"^{tab}:3:1: malformed YAML: found character '\\t'"):
        load_yaml_file(tab)
    colon = tmp_path / "colon.yaml"
    colon.write_text("a: b: c\n")
    with pytest.raises(ConfigError, match=rf"^{colon}:1:5: malformed YAML: mapping values are not allowed here$"):
        load_yaml_file(colon)


def test_unparseable_file_without_position_is_one_line(tmp_path: Path) -> None:
    binary = tmp_path / "photo.yaml"
    binary.write_bytes(b"\x89PNG\r\n\x1a\n\xff\xfe\x00\x00garbage")
    with pytest.raises(ConfigError) as info:
        build_config(binary)
    message = str(info.value)
    assert message.startswith(f"{binary}: malformed YAML: ") and "\n" not in message
    assert "at offset 0; YAML must be UTF-8 text" in message


def test_load_yaml_file_reads_valid_files(tmp_path: Path) -> None:
    good = tmp_path / "good.yaml"
    good.write_text("train:\n  epochs: 3\n  betas: [0.9, 0.95]\n")
    assert load_yaml_file(good) == {"train": {"epochs": 3, "betas": [0.9, 0.95]}}
    (tmp_path / "empty.yaml").write_text("")
    assert load_yaml_file(tmp_path / "empty.yaml") is None
    with pytest.raises(ConfigError, match=rf"cannot read YAML file {tmp_path}"):
        load_yaml_file(tmp_path)  # a folder, not a file


def test_save_and_reload(tmp_path: Path) -> None:
    cfg = build_config(overrides={"model": {"preset": "vit_s16", "in_chans": 3}, "train": {"blr": 3e-4}})
    save_config(cfg, tmp_path / "cfg" / "config.yaml")
    again = build_config(tmp_path / "cfg" / "config.yaml")
    assert again == cfg
    assert config_to_dict(again) == config_to_dict(cfg)


def test_deep_merge_merges_mappings_key_by_key() -> None:
    base = {"train": {"epochs": 5, "blr": 1e-4}, "output_dir": "a"}
    merged = deep_merge(base, {"train": {"epochs": 7}, "output_dir": {"x": 1}})
    assert merged == {"train": {"epochs": 7, "blr": 1e-4}, "output_dir": {"x": 1}}
    assert base == {"train": {"epochs": 5, "blr": 1e-4}, "output_dir": "a"}  # not modified


def test_folder_data_dir_sets_dataset() -> None:
    cfg = build_config(overrides={"data": {"data_dir": "/some/images"}})
    assert cfg.data.dataset == "folder"


def test_keep_epochs_lie_within_the_run() -> None:
    assert build_config(overrides={"train": {"epochs": 10, "keep_epochs": [1, 2, 5]}}).train.keep_epochs == [1, 2, 5]
    for kept in ([0], [11]):
        with pytest.raises(ConfigError, match=r"keep_epochs must lie in 1..epochs \(10\)"):
            build_config(overrides={"train": {"epochs": 10, "keep_epochs": kept}})


def test_load_yaml_mapping_names_the_file_and_what_it_must_hold(tmp_path: Path) -> None:
    from hpm.config import load_yaml_mapping

    with pytest.raises(ConfigError, match=r"^study file .*nope.yaml does not exist \(see configs/study/\)$"):
        load_yaml_mapping(tmp_path / "nope.yaml", "study file", hint=" (see configs/study/)")
    (tmp_path / "list.yaml").write_text("- a\n- b\n")
    with pytest.raises(ConfigError, match=r"^variant 'a': config file .*list.yaml must hold a mapping of sections$"):
        load_yaml_mapping(tmp_path / "list.yaml", "variant 'a': config file", "sections")
    (tmp_path / "empty.yaml").write_text("")
    assert load_yaml_mapping(tmp_path / "empty.yaml") == {}
    (tmp_path / "ok.yaml").write_text("train: {epochs: 2}\n")
    assert load_yaml_mapping(tmp_path / "ok.yaml") == {"train": {"epochs": 2}}
