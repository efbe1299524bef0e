"""A tiny few-label study end to end: label keys per run, variant and floor, per-seed differences,
the budget curve from kept checkpoints, and a report rebuilt once the runs are gone."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pytest
import yaml

from hpm.cli import main
from hpm.engine.checkpoint import list_checkpoints
from hpm.errors import ConfigError
from hpm.study import collect, load_study, run_study
from tests.conftest import needs_fmnist
from tests.study.helpers import TINY_BASE, write_study

LABELS = [20, 40]  # 2 and 4 per class of Fashion-MNIST's 60 000 training images
FEW_LABELS: dict[str, Any] = {
    "labels": LABELS, "labels_test_subset": 100, "labels_floor_seeds": [0, 1],
    "labels_finetune_overrides": {"images_seen": 40, "batch_size": 10, "num_workers": 0},
}


def _write(tmp_path: Path, **extra: Any) -> Path:
    base = {**TINY_BASE, "train": {**TINY_BASE["train"], "keep_ckpts": 1}}
    path = write_study(tmp_path, [
        {"name": "mae", "config": "configs/ablations/mae.yaml", "seeds": [0, 1], "priority": 0},
        {"name": "hpm", "config": "configs/ablations/efficient.yaml", "seeds": [0], "priority": 0},
    ], compare_to=["mae"], budget_curve={"variant": "hpm", "seed": 0, "epochs": [1, 2], "labels": 20}, **extra)
    spec = yaml.safe_load(path.read_text())
    spec["base"] = base
    spec["eval"].update(FEW_LABELS)
    path.write_text(json.dumps(spec))
    return path


def _top1(path: Path, protocol: str) -> float:
    result = json.loads(path.read_text())["result"]
    return float(result["top1"]["20"] if protocol == "knn" else result["top1"])


@needs_fmnist
def test_a_tiny_few_label_study_measures_reports_and_survives_the_loss_of_its_runs(tmp_path: Path) -> None:
    path = _write(tmp_path)
    spec = load_study(path)
    runs = tmp_path / "runs"
    run_study(spec)

    # the labelled images: chosen from the whole train split, the same for every run and floor
    hpm = runs / "hpm" / "seed_0"
    knn = json.loads((hpm / "eval" / "study_knn_l20.json").read_text())
    assert knn["data"]["labels"] == {"count": 20, "asked": "20", "seed": 0, "of": 60000}
    assert knn["result"]["num_train"] == 20 and knn["data"]["num_test"] == 100
    floor = json.loads((runs / "floors" / "random_init_knn_l20_seed_1.json").read_text())
    assert floor["data"] == knn["data"] and floor["source"]["random_init"]
    ft = json.loads((hpm / "eval" / "study_finetune_few_labels_l40.json").read_text())["result"]
    assert (ft["recipe"]["epochs"], ft["recipe"]["seed"], ft["num_train"]) == (1, 0, 40)  # 40 images seen / 40

    results = json.loads((tmp_path / "report" / "results.json").read_text())
    assert results == json.loads(json.dumps(collect(spec)))
    mae = next(v for v in results["variants"] if v["variant"] == "mae")
    for protocol in ("knn", "linear", "finetune"):
        for n in LABELS:
            key = f"{protocol}_top1_l{n}"
            name = f"finetune_few_labels_l{n}" if protocol == "finetune" else f"{protocol}_l{n}"
            per_seed = {str(s): _top1(runs / "mae" / f"seed_{s}" / "eval" / f"study_{name}.json", protocol) for s in (0, 1)}
            assert mae[key]["per_seed"] == per_seed and mae[key]["n"] == 2 and mae[key]["std"] is not None
            assert mae[key]["mean"] == pytest.approx(sum(per_seed.values()) / 2)
            random_init = results["floors"]["random_init"][key]
            assert random_init["n"] == 2 and set(random_init["per_seed"]) == {"0", "1"}
            pixels = results["floors"]["raw_pixels"].get(key)
            assert (pixels is None) == (protocol == "finetune")
    diffs = {(d["variant"], d["seed"]): d for d in results["few_labels"]["differences"]}
    hpm_run = next(r for r in results["runs"] if r["variant"] == "hpm")
    mae_run = next(r for r in results["runs"] if r["variant"] == "mae" and r["seed"] == 0)
    assert diffs[("hpm", 0)]["finetune_top1_l20_minus_mae"] == pytest.approx(
        hpm_run["finetune_top1_l20"] - mae_run["finetune_top1_l20"])
    assert diffs[("mae", 1)]["finetune_top1_l20_minus_random_init"] == pytest.approx(
        mae["finetune_top1_l20"]["per_seed"]["1"] - results["floors"]["random_init"]["finetune_top1_l20"]["per_seed"]["1"])
    assert diffs[("mae", 0)]["knn_top1_l40_minus_raw_pixels"] == pytest.approx(
        mae_run["knn_top1_l40"] - results["floors"]["raw_pixels"]["knn_top1_l40"]["mean"])
    assert "knn_top1_l20_minus_mae" not in diffs[("mae", 0)]

    # the budget curve: hpm seed 0 kept its epoch-1 checkpoint (keep_ckpts 1), mae did not
    assert [p.name for p in list_checkpoints(runs / "mae" / "seed_0")] == ["step_00000008"]
    assert [p.name for p in list_checkpoints(hpm)] == ["step_00000004", "step_00000008"]
    curve = results["budget_curve"]
    assert [(r["epochs"], r["pretrain_steps"]) for r in curve] == [(1, 4), (2, 8)]
    assert curve[1]["knn_top1_l20"] == hpm_run["knn_top1_l20"]  # the final epoch is the run's own result
    first = json.loads((hpm / "eval" / "study_budget_e1_finetune_few_labels_l20.json").read_text())
    assert first["source"]["step"] == 4 and curve[0]["finetune_top1_l20"] == first["result"]["top1"]
    table = (tmp_path / "report" / "results.md").read_text()
    assert "Few labels: only 20 or 40 training images" in table and "| raw pixels | 1 |" in table
    assert "Per-seed differences at 20 labels" in table and "fine-tune − mae" in table
    assert "Budget curve: `hpm` seed 0" in table and "| 0 (random init) | 0 | 0 |" in table

    # a fresh machine: the report alone; --report-only and a re-run keep every figure, redo nothing
    shutil.rmtree(runs)
    assert main(["study", str(path), "--report-only"]) == 0
    again = json.loads((tmp_path / "report" / "results.json").read_text())
    for section in ("variants", "floors", "few_labels"):
        assert again[section] == results[section]
    assert all(r["archived"] for r in again["runs"]) and all(r["archived"] for r in again["budget_curve"])
    assert [{k: v for k, v in r.items() if k != "archived"} for r in again["budget_curve"]] == \
        [{k: v for k, v in r.items() if k != "archived"} for r in curve]
    run_study(spec, max_jobs=0)
    assert sorted(p.name for p in runs.iterdir()) == ["study.yaml"]  # no floor or run redone
    assert json.loads((tmp_path / "report" / "results.json").read_text())["few_labels"] == results["few_labels"]

    # a call narrowed to some of the work (the docs' way to run one missing cell) still writes the
    # whole report: the figures that live only in it (their files are gone) are not dropped
    assert main(["study", str(path), "eval.labels=[40]", "eval.labels_protocols=[finetune]",
                 "eval.labels_floor_seeds=[1]", "budget_curve=null", "--max-runs", "0"]) == 0
    narrowed = json.loads((tmp_path / "report" / "results.json").read_text())
    for section in ("variants", "runs", "floors", "few_labels", "budget_curve"):
        assert narrowed[section] == again[section], section
    assert sorted(p.name for p in runs.iterdir()) == ["study.yaml"]


@pytest.mark.parametrize(
    ("budget", "message"),
    [({"variant": "nope", "epochs": [1], "labels": 20}, "has no run of seed 0"),
     ({"variant": "hpm", "seed": 3, "epochs": [1], "labels": 20}, "has no run of seed 3"),
     ({"variant": "hpm", "epochs": [1, 3], "labels": 20}, "go beyond the 2 epochs"),
     ({"variant": "hpm", "epochs": [0], "labels": 20}, "epochs >= 1")],
)
def test_a_bad_budget_curve_is_refused_before_any_work(tmp_path: Path, budget: dict[str, Any], message: str) -> None:
    path = _write(tmp_path)
    spec = json.loads(path.read_text())
    spec["budget_curve"] = budget
    path.write_text(json.dumps(spec))
    with pytest.raises(ConfigError, match=message):
        load_study(path)


def test_bad_label_counts_and_recipes_are_refused(tmp_path: Path) -> None:
    path = _write(tmp_path)
    original = path.read_text()
    for change, message in (({"labels": [20, 20]}, "distinct positive"), ({"labels": [0]}, "distinct positive"),
                            ({"labels_recipe": "nope"}, "unknown fine-tuning recipe 'nope'"),
                            ({"labels_finetune_overrides": {"epoch": 3}}, "unknown fine-tuning key 'epoch'")):
        spec = json.loads(original)
        spec["eval"].update(change)
        path.write_text(json.dumps(spec))
        with pytest.raises(ConfigError, match=message):
            load_study(path)


def test_the_shipped_few_label_study() -> None:
    from hpm.study import variant_config

    spec = load_study("configs/study/fmnist_fewlabel.yaml")
    assert {v.name: v.seeds for v in spec.variants} == {"mae": [0, 1, 2], "hpm": [0, 1, 2], "hpm_paper": [0]}
    assert spec.eval.labels == [600, 6000] and spec.eval.labels_floor_seeds == [0, 1, 2]
    assert spec.eval.labels_test_subset is None and spec.eval.labels_recipe == "few_labels"
    assert "5 epochs" in spec.description
    for v in spec.variants:
        cfg = variant_config(spec, v, 0)
        assert (cfg.data.subset, cfg.train.epochs) == (None, 5)  # all 60 000 training images
    hpm, paper = (variant_config(spec, v, 0) for v in spec.variants[1:])
    assert (hpm.mask.teacher_view, hpm.model.predictor_depth) == ("masked", 1)  # the default, efficient HPM
    assert (paper.mask.teacher_view, paper.model.predictor_depth) == ("full", None)
    assert hpm.train.keep_epochs == [1, 2] and variant_config(spec, spec.variants[1], 1).train.keep_epochs == []


def test_a_figure_of_fewer_seeds_than_its_row_says_its_n() -> None:
    from hpm.study.few_labels_collect import per_seed_cell
    from hpm.study.few_labels_report import few_label_sections

    full = per_seed_cell({"0": 77.0, "1": 76.0, "2": 78.0})
    partial = per_seed_cell({"0": 77.0, "1": 76.0, "2": None})
    results = {"knn_k": 20, "variants": [], "few_labels": {
        "labels": [600], "protocols": ["knn", "finetune"], "recipe": "few_labels", "test_subset": None,
        "label_seed": 0, "floor_seeds": [0, 1, 2], "differences": []},
        "floors": {"random_init": {"knn_top1_l600": full, "finetune_top1_l600": partial}, "raw_pixels": {}}}
    row = next(line for line in few_label_sections(results) if line.startswith("| random init"))
    assert row == "| random init | 3 | 77.00 ± 1.00 | 76.50 ± 0.71 (n=2) |"
