"""Every YAML file shipped in configs/ is a valid config (study files: a valid study)."""

from __future__ import annotations

from pathlib import Path

import pytest

from hpm.config import build_config

ROOT = Path(__file__).parents[1] / "configs"
STUDIES = sorted((ROOT / "study").glob("*.yaml"))
CONFIGS = sorted(p for p in ROOT.rglob("*.yaml") if p not in STUDIES)


def test_configs_exist() -> None:
    assert len(CONFIGS) >= 8


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.stem)
def test_config_validates(path: Path) -> None:
    cfg = build_config(path)
    assert cfg.mask.strategy in ("random", "block", "hpm", "attention", "tube", "hpm_tube")


@pytest.mark.parametrize("path", STUDIES, ids=lambda p: p.stem)
def test_study_file_validates(path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from hpm.study import load_study

    monkeypatch.chdir(ROOT.parent)  # variant configs are relative to the repository root
    spec = load_study(path)
    assert spec.variants
