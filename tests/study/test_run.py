"""A tiny end-to-end study: it resumes, evaluates, reports, and reuses another study's runs."""

from __future__ import annotations

import json
import statistics
from pathlib import Path

import pytest
import torch
import yaml

from hpm.study import collect, load_study, plan, run_study
from tests.conftest import needs_fmnist
from tests.study.helpers import eval_top1, write_study


@needs_fmnist
def test_tiny_study_resumes_evaluates_and_reports(tmp_path: Path) -> None:
    path = write_study(tmp_path, [
        {"name": "mae", "config": "configs/ablations/mae.yaml", "seeds": [0, 1], "priority": 0, "finetune_seeds": [0]},
        {"name": "hpm", "config": "configs/ablations/easy_to_hard.yaml", "seeds": [0], "priority": 0},
        {"name": "mae_same_time", "config": "configs/ablations/mae.yaml", "seeds": [0],
         "match_time_of": "hpm", "time_reference": "mae"},
    ], floor_finetune_seeds=[0, 1], compare_to=["mae"])
    spec = load_study(path)
    runs = tmp_path / "runs"

    # an interrupted study: one run only
    run_study(spec, max_jobs=1)
    assert (runs / "mae" / "seed_0" / "study_pretrain.json").is_file()
    assert not (runs / "hpm" / "seed_0").exists()
    first = (runs / "mae" / "seed_0" / "study_pretrain.json").stat().st_mtime_ns
    knn_first = (runs / "mae" / "seed_0" / "eval" / "study_knn.json").stat().st_mtime_ns

    # continuing does not redo the finished run or its evaluations
    report = run_study(spec)
    assert (runs / "mae" / "seed_0" / "study_pretrain.json").stat().st_mtime_ns == first
    assert (runs / "mae" / "seed_0" / "eval" / "study_knn.json").stat().st_mtime_ns == knn_first
    for name, seed in (("mae", 1), ("hpm", 0), ("mae_same_time", 0)):
        assert (runs / name / f"seed_{seed}" / "study_pretrain.json").is_file()
    assert (runs / "mae" / "seed_0" / "eval" / "study_finetune_reference.json").is_file()  # the recipe's name
    assert (runs / "mae" / "seed_0" / "eval" / "study_finetune_reference" / "classifier.safetensors").is_file()
    assert not (runs / "mae" / "seed_1" / "eval" / "study_finetune_reference.json").exists()
    ft = json.loads((runs / "mae" / "seed_0" / "eval" / "study_finetune_reference.json").read_text())
    assert ft["result"]["recipe"]["blr"] == 1e-2 and ft["result"]["recipe"]["epochs"] == 1  # recipe + overrides

    # compute-matched MAE: epochs scaled by the measured training-time ratio
    t = {n: json.loads((runs / n / "seed_0" / "study_pretrain.json").read_text()) for n in ("mae", "hpm")}
    matched = json.loads((runs / "mae_same_time" / "seed_0" / "study_pretrain.json").read_text())
    assert matched["epochs"] == max(1, round(2 * t["mae"]["img_per_s"] / t["hpm"]["img_per_s"]))
    assert matched["epochs"] >= 2  # MAE steps are cheaper than HPM's
    # the CPU threads a run had are recorded (images/s compare only at equal threads)
    assert t["mae"]["threads"] == torch.get_num_threads()

    # the report's figures are the evaluation files' figures
    results = json.loads((report / "results.json").read_text())
    assert results == json.loads(json.dumps(collect(spec)))
    mae = next(v for v in results["variants"] if v["variant"] == "mae")
    knn = [eval_top1(runs / "mae" / f"seed_{s}", "knn", "20") for s in (0, 1)]
    assert mae["knn_top1"]["mean"] == pytest.approx(statistics.fmean(knn))
    assert mae["knn_top1"]["std"] == pytest.approx(statistics.stdev(knn))
    assert mae["finetune_top1"]["n"] == 1
    assert mae["finetune_top1"]["mean"] == pytest.approx(eval_top1(runs / "mae" / "seed_0", "finetune_reference"))
    # the random-init floor: one random encoder per seed (init seed = recipe seed), the same test images
    floor_ft = results["floors"]["random_init"]["finetune_top1"]
    assert floor_ft["n"] == 2 and floor_ft["recipe"] == "reference" and floor_ft["std"] is not None
    per_seed = [json.loads((runs / "floors" / f"random_init_finetune_reference_seed_{s}.json").read_text()) for s in (0, 1)]
    assert per_seed[0]["data"] == per_seed[1]["data"] and per_seed[0]["result"]["recipe"]["seed"] == 0
    assert per_seed[1]["result"]["recipe"]["seed"] == 1
    gain = next(d for d in results["differences"] if d["variant"] == "mae" and d["seed"] == 0)
    assert gain["finetune_top1_minus_random_init"] == pytest.approx(
        mae["finetune_top1"]["mean"] - per_seed[0]["result"]["top1"])
    hpm = next(v for v in results["variants"] if v["variant"] == "hpm")
    assert hpm["teacher_rank_spearman"]["mean"] is not None and -1 <= hpm["teacher_rank_spearman"]["mean"] <= 1
    assert mae["teacher_rank_spearman"]["mean"] is None  # MAE has no predictor
    assert results["floors"]["raw_pixels"]["knn_top1"] is not None
    assert results["floors"]["random_init"]["linear_top1"] is not None
    table = (report / "results.md").read_text()
    assert "| mae | 2/2 |" in table and "| hpm | 1/1 |" in table and "raw pixels" in table
    assert "fine-tune − random init" in table and "`reference` recipe" in table
    assert mae["threads"] == [torch.get_num_threads()]
    assert f"| {torch.get_num_threads()} |" in table

    # a ranking file of older code (no version) is redone; --max-runs 0 evaluates finished runs only
    ranking = runs / "hpm" / "seed_0" / "eval" / "study_ranking.json"
    old = {k: v for k, v in json.loads(ranking.read_text()).items() if k in ("available", "teacher_spearman")}
    ranking.write_text(json.dumps(old))
    knn_file = runs / "hpm" / "seed_0" / "eval" / "study_knn.json"
    knn_mtime = knn_file.stat().st_mtime_ns
    run_study(spec, max_jobs=0)
    redone = json.loads(ranking.read_text())
    assert redone["version"] >= 2 and "real_retest_spearman" in redone
    assert redone["teacher_spearman"] == pytest.approx(old["teacher_spearman"])  # same masks, same figure
    assert knn_file.stat().st_mtime_ns == knn_mtime


@needs_fmnist
def test_a_variant_can_reuse_another_studys_finished_run(tmp_path: Path) -> None:
    """The target study reports the reference study's norm-pix runs beside its own, untrained."""
    for sub in ("a", "b"):
        (tmp_path / sub).mkdir()
    first = load_study(write_study(tmp_path / "a", [{"name": "mae", "config": "configs/ablations/mae.yaml"}]))
    run_study(first)
    reused = tmp_path / "a" / "runs" / "mae" / "seed_{seed}"
    second = load_study(write_study(tmp_path / "b", [
        {"name": "mae_norm_pix", "config": "configs/ablations/mae.yaml", "reuse": str(reused)},
        {"name": "mae_hog", "config": "configs/ablations/mae.yaml", "overrides": {"loss": {"target": "hog"}}},
        {"name": "gone", "config": "configs/ablations/mae.yaml", "reuse": str(tmp_path / "nowhere" / "seed_{seed}")},
    ], compare_to=["mae_norm_pix"]))
    assert plan(second)[0].run_dir == tmp_path / "a" / "runs" / "mae" / "seed_0"
    run_study(second)
    assert not (tmp_path / "b" / "runs" / "mae_norm_pix").exists() and not (tmp_path / "nowhere").exists()
    rows = {r["variant"]: r for r in json.loads((tmp_path / "b" / "report" / "results.json").read_text())["runs"]}
    original = json.loads((tmp_path / "a" / "report" / "results.json").read_text())["runs"][0]
    assert rows["mae_norm_pix"]["knn_top1"] == original["knn_top1"]  # the same run, evaluated once
    assert rows["mae_hog"]["knn_top1"] is not None and "gone" not in rows
    assert yaml.safe_load((tmp_path / "b" / "runs" / "mae_hog" / "seed_0" / "config.yaml").read_text())["loss"]["target"] == "hog"
