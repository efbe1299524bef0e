"""Study files: validation before any work, clear errors, the shipped study file."""

from __future__ import annotations

from pathlib import Path

import pytest

from hpm.errors import ConfigError
from hpm.study import load_study, plan, variant_config
from tests.study.helpers import write_study


@pytest.mark.parametrize(
    ("variants", "message"),
    [
        ([{"name": "a", "seeds": [0], "colour": "red"}], "colour"),
        ([{"name": "a"}, {"name": "a"}], "unique"),
        ([{"name": "a", "match_time_of": "zzz", "time_reference": "a"}], "unknown variant 'zzz'"),
        ([{"name": "a", "seeds": [0], "finetune_seeds": [3]}], "finetune_seeds"),
        ([{"name": "a", "config": "configs/ablations/nope.yaml"}], "does not exist"),
        ([{"name": "a", "overrides": {"train": {"epoch": 3}}}], "train.epoch"),
    ],
)
def test_bad_study_files_are_refused_before_any_work(tmp_path: Path, variants: list[dict], message: str) -> None:
    path = write_study(tmp_path, variants)
    with pytest.raises(ConfigError, match=message):
        load_study(path)
    assert not (tmp_path / "runs").exists()


def test_missing_study_file_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="does not exist"):
        load_study(tmp_path / "none.yaml")


def test_malformed_study_file_is_one_line_with_position(tmp_path: Path) -> None:
    bad = tmp_path / "study.yaml"
    bad.write_text("name: s\nvariants: [{name: a, seeds: [0]}\nruns_dir: runs\n")
    with pytest.raises(ConfigError) as info:
        load_study(bad)
    message = str(info.value)
    assert message.startswith(f"{bad}:3:1: malformed YAML: expected ',' or ']', but got '<scalar>'")
    assert "\n" not in message


def test_malformed_variant_config_is_one_line_with_position(tmp_path: Path) -> None:
    variant = tmp_path / "variant.yaml"
    variant.write_text("mask:\n  strategy: block\n   alpha: 1\n")
    path = write_study(tmp_path, [{"name": "a", "config": str(variant)}])
    with pytest.raises(ConfigError) as info:
        load_study(path)
    message = str(info.value)
    assert message.startswith(f"{variant}:3:9: malformed YAML: mapping values are not allowed here")
    assert "\n" not in message
    assert not (tmp_path / "runs").exists()


def test_shipped_study_file_resolves() -> None:
    spec = load_study("configs/study/fmnist_reference.yaml")
    names = [v.name for v in spec.variants]
    for needed in ("mae", "hpm_relative", "random_predictor", "hpm_absolute", "hardest", "hard_to_easy",
                   "mae_same_time", "mae_fp32", "hpm_relative_fp32", "hpm_masked", "hpm_efficient",
                   "hardest_masked", "easiest_masked"):
        assert needed in names
    core = [j for j in plan(spec)][:6]
    assert sorted((j.variant.name, j.seed) for j in core) == sorted(
        [(n, s) for n in ("mae", "hpm_relative") for s in (0, 1, 2)]
    )
    cfg = variant_config(spec, spec.variants[1], 0)
    assert (cfg.train.epochs, cfg.train.warmup_epochs, cfg.data.subset, cfg.data.fit) == (20, 2, 10000, "pad")
    assert (cfg.mask.strategy, cfg.loss.predictor) == ("hpm", "relative")


def test_overrides_that_select_work_narrow_the_work_not_the_report() -> None:
    path = "configs/study/fmnist_fewlabel.yaml"
    spec = load_study(path, {"eval": {"labels": [6000], "labels_protocols": ["finetune"], "labels_floor_seeds": [1]},
                             "budget_curve": None, "base": {"train": {"precision": "fp32"}}})
    full = load_study(path)
    assert (spec.eval.labels, spec.eval.labels_floor_seeds, spec.budget_curve) == ([6000], [1], None)
    report = spec.report_spec
    assert (report.eval.labels, report.eval.labels_protocols, report.eval.labels_floor_seeds) == \
        (full.eval.labels, full.eval.labels_protocols, full.eval.labels_floor_seeds)
    assert report.budget_curve == full.budget_curve
    assert report.base["train"]["precision"] == "fp32"  # what defines the runs stays
    plain = load_study(path, {"base": {"train": {"precision": "fp32"}}})
    assert plain.report_spec is plain
