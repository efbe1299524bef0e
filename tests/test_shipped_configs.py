"""Every YAML file shipped in configs/ is a valid config."""

from __future__ import annotations

from pathlib import Path

import pytest

from hpm.config import build_config

CONFIGS = sorted((Path(__file__).parents[1] / "configs").rglob("*.yaml"))


def test_configs_exist() -> None:
    assert len(CONFIGS) >= 8


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.stem)
def test_config_validates(path: Path) -> None:
    cfg = build_config(path)
    assert cfg.mask.strategy in ("random", "block", "hpm")
