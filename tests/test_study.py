"""The study runner: plan order, validation, a tiny end-to-end study that resumes, the report."""

from __future__ import annotations

import json
import statistics
from pathlib import Path
from typing import Any

import pytest
import torch
import yaml

from hpm.errors import ConfigError
from hpm.study import collect, load_study, plan, run_study
from tests.conftest import needs_fmnist

TINY_BASE: dict[str, Any] = {
    "model": {"embed_dim": 32, "depth": 1, "num_heads": 2, "decoder_embed_dim": 16,
              "decoder_depth": 1, "decoder_num_heads": 2},
    "data": {"subset": 128, "subset_seed": 0, "fit": "pad", "num_workers": 0},
    "train": {"epochs": 2, "batch_size": 32, "warmup_epochs": 0.5, "precision": "fp32", "log_every": 1},
    "eval": {"knn_at_end": False},
}


def _write_study(tmp_path: Path, variants: list[dict[str, Any]], **extra: Any) -> Path:
    spec = {
        "name": "tiny",
        "runs_dir": str(tmp_path / "runs"),
        "report_dir": str(tmp_path / "report"),
        "base": TINY_BASE,
        "eval": {"train_subset": 200, "test_subset": 100, "ranking_images": 16, "ranking_masks": 3,
                 "finetune_overrides": {"epochs": 1, "train_subset": 64, "test_subset": 100, "batch_size": 32,
                                        "num_workers": 0},
                 "floor_finetune_seeds": extra.pop("floor_finetune_seeds", [])},
        "variants": variants,
        **extra,
    }
    path = tmp_path / "study.yaml"
    path.write_text(yaml.safe_dump(spec))
    return path


def test_plan_runs_priority_first_then_seed_major(tmp_path: Path) -> None:
    path = _write_study(tmp_path, [
        {"name": "a", "config": "configs/ablations/mae.yaml", "seeds": [0, 1], "priority": 0},
        {"name": "b", "config": "configs/ablations/easy_to_hard.yaml", "seeds": [0, 1, 2], "priority": 0},
        {"name": "c", "config": "configs/ablations/hardest.yaml", "seeds": [5]},
    ])
    order = [(j.variant.name, j.seed) for j in plan(load_study(path))]
    assert order == [("a", 0), ("b", 0), ("a", 1), ("b", 1), ("b", 2), ("c", 5)]
    job = plan(load_study(path))[-1]
    assert job.run_dir == tmp_path / "runs" / "c" / "seed_5"


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
    path = _write_study(tmp_path, variants)
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
    path = _write_study(tmp_path, [{"name": "a", "config": str(variant)}])
    with pytest.raises(ConfigError) as info:
        load_study(path)
    message = str(info.value)
    assert message.startswith(f"{variant}:3:9: malformed YAML: mapping values are not allowed here")
    assert "\n" not in message
    assert not (tmp_path / "runs").exists()


def _eval_top1(run: Path, what: str, k: str | None = None) -> float:
    result = json.loads((run / "eval" / f"study_{what}.json").read_text())["result"]
    return float(result["top1"][k] if k else result["top1"])


@needs_fmnist
def test_tiny_study_resumes_evaluates_and_reports(tmp_path: Path) -> None:
    path = _write_study(tmp_path, [
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
    knn = [_eval_top1(runs / "mae" / f"seed_{s}", "knn", "20") for s in (0, 1)]
    assert mae["knn_top1"]["mean"] == pytest.approx(statistics.fmean(knn))
    assert mae["knn_top1"]["std"] == pytest.approx(statistics.stdev(knn))
    assert mae["finetune_top1"]["n"] == 1
    assert mae["finetune_top1"]["mean"] == pytest.approx(_eval_top1(runs / "mae" / "seed_0", "finetune_reference"))
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


def test_study_report_lists_variants_not_run_yet(tmp_path: Path) -> None:
    path = _write_study(tmp_path, [{"name": "mae", "config": "configs/ablations/mae.yaml", "seeds": [0, 1]}],
                        floors=False)
    from hpm.study import format_report

    text = format_report(collect(load_study(path)))
    assert "| mae | 0/2 | – | not run yet |" in text


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
    from hpm.study import variant_config

    cfg = variant_config(spec, spec.variants[1], 0)
    assert (cfg.train.epochs, cfg.train.warmup_epochs, cfg.data.subset, cfg.data.fit) == (20, 2, 10000, "pad")
    assert (cfg.mask.strategy, cfg.loss.predictor) == ("hpm", "relative")


def test_runs_of_an_earlier_report_whose_directories_are_gone_are_kept_not_retrained(tmp_path: Path) -> None:
    """A fresh machine has the report but not runs_dir: the study keeps those runs (and floors)
    in its report, marked archived, and trains nothing for them."""
    path = _write_study(tmp_path, [{"name": "mae", "config": "configs/ablations/mae.yaml", "seeds": [0, 1]}])
    spec = load_study(path)
    run = {"variant": "mae", "seed": 0, "epochs": 2, "precision": "fp32", "knn_top1": 70.0, "linear_top1": 75.0,
           "finetune_top1": None, "pred_spearman": None, "teacher_spearman_train": None,
           "teacher_rank_spearman": None, "teacher_rank_top25": None, "student_rank_spearman": None,
           "student_masked_spearman": None, "real_retest_spearman": None, "teacher_masked_avg_spearman": None,
           "teacher_masked_avg_top25": None, "final_loss_rec": 0.5, "img_per_s": 100.0, "threads": 2,
           "train_time_s": 60.0, "est_time_s": 60.0}
    floors = {"random_init": {"knn_top1": 60.0, "linear_top1": 65.0}, "raw_pixels": {"knn_top1": 80.0, "linear_top1": 81.0}}
    report = tmp_path / "report"
    report.mkdir()
    (report / "results.json").write_text(json.dumps({"study": "tiny", "runs": [run], "floors": floors}))

    results = collect(spec)
    kept = results["runs"]
    assert len(kept) == 1 and kept[0]["archived"] is True and kept[0]["knn_top1"] == 70.0
    assert kept[0]["teacher_top25_train"] is None  # keys added since are filled
    no_finetune = {kind: {**row, "finetune_top1": None} for kind, row in floors.items()}  # none was kept
    assert results["floors"] == no_finetune
    mae = results["variants"][0]
    assert mae["seeds_done"] == 1 and mae["knn_top1"]["mean"] == 70.0
    run_study(spec, only=["mae"], max_jobs=0)  # nothing to train or evaluate: floors are kept, seed 1 not started
    assert not (tmp_path / "runs" / "floors").exists() and not (tmp_path / "runs" / "mae").exists()
    again = json.loads((report / "results.json").read_text())
    assert again["runs"][0]["knn_top1"] == 70.0 and again["floors"] == no_finetune
    assert not (report / "curves.png").exists()  # no curves of runs that are not here
    # another study's report is not taken for this one's
    (report / "results.json").write_text(json.dumps({"study": "other", "runs": [run], "floors": floors}))
    assert collect(spec)["runs"] == []


def test_random_init_fine_tunes_of_an_earlier_report_are_kept_per_seed(tmp_path: Path) -> None:
    """Floor fine-tunes finished on an earlier machine stay in the report (per seed, same recipe);
    only the missing seeds are fine-tuned, and a kept figure of another recipe is not taken."""
    path = _write_study(tmp_path, [{"name": "mae", "config": "configs/ablations/mae.yaml", "seeds": [0]}],
                        floor_finetune_seeds=[0, 1])
    spec = load_study(path)
    floors = {"random_init": {"knn_top1": 60.0, "linear_top1": 65.0,
                              "finetune_top1": {"mean": 70.0, "std": None, "n": 1, "recipe": "reference",
                                                "per_seed": {"0": 70.0, "1": None}}},
              "raw_pixels": {"knn_top1": 80.0, "linear_top1": 81.0, "finetune_top1": None}}
    report = tmp_path / "report"
    report.mkdir()
    (report / "results.json").write_text(json.dumps({"study": "tiny", "runs": [], "floors": floors}))
    kept = collect(spec)["floors"]["random_init"]["finetune_top1"]
    assert kept["n"] == 1 and kept["mean"] == 70.0 and kept["per_seed"] == {"0": 70.0, "1": None}

    run_study(spec, only=["floors"], max_jobs=0)
    floor_dir = tmp_path / "runs" / "floors"
    assert not (floor_dir / "random_init_finetune_reference_seed_0.json").exists()  # kept, not redone
    seed_1 = json.loads((floor_dir / "random_init_finetune_reference_seed_1.json").read_text())["result"]["top1"]
    ft = json.loads((report / "results.json").read_text())["floors"]["random_init"]["finetune_top1"]
    assert ft["n"] == 2 and ft["per_seed"] == {"0": 70.0, "1": seed_1}
    assert ft["mean"] == pytest.approx((70.0 + seed_1) / 2)

    floors["random_init"]["finetune_top1"]["recipe"] = "small"  # another recipe's figure is not this one's
    (report / "results.json").write_text(json.dumps({"study": "tiny", "runs": [], "floors": floors}))
    assert collect(spec)["floors"]["random_init"]["finetune_top1"]["per_seed"] == {"0": None, "1": seed_1}


def test_seed_differences_pair_runs_of_the_same_seed() -> None:
    from hpm.study import format_report, seed_differences

    runs = [{"variant": v, "seed": s, "knn_top1": k, "linear_top1": lin, "finetune_top1": ft}
            for v, s, k, lin, ft in [("mae", 0, 70.0, 75.0, 80.0), ("mae", 1, 71.0, 76.0, None), ("new", 0, 72.5, 74.0, 81.5),
                                     ("new", 1, 70.0, None, None), ("new", 2, 73.0, 77.0, None)]]
    random_ft = {"per_seed": {"0": 78.0, "1": 77.0}}
    diffs = seed_differences(runs, ["mae"], random_ft)
    assert diffs == [
        {"variant": "mae", "seed": 0, "finetune_top1_minus_random_init": 2.0},  # the reference's own gain
        {"variant": "new", "seed": 0, "finetune_top1_minus_random_init": 3.5, "knn_top1_minus_mae": 2.5,
         "linear_top1_minus_mae": -1.0, "finetune_top1_minus_mae": 1.5},
        {"variant": "new", "seed": 1, "finetune_top1_minus_random_init": None, "knn_top1_minus_mae": -1.0,
         "linear_top1_minus_mae": None, "finetune_top1_minus_mae": None},
        {"variant": "new", "seed": 2, "finetune_top1_minus_random_init": None, "knn_top1_minus_mae": None,
         "linear_top1_minus_mae": None, "finetune_top1_minus_mae": None},  # no MAE seed 2
    ]
    text = format_report({"study": "x", "description": "", "knn_k": 20, "variants": [], "runs": [], "floors": {},
                          "differences": diffs})
    assert "| new | 0 | +2.50 | -1.00 | +1.50 | +3.50 |" in text and "| new | 1 | -1.00 | – | – | – |" in text
    assert "| mae | 0 | – | – | – | +2.00 |" in text
    assert "| new | 2 |" not in text  # nothing to compare
    plain = seed_differences([r for r in runs if r["variant"] != "mae" or r["seed"]], ["mae"])  # no fine-tunes compared
    text = format_report({"study": "x", "description": "", "knn_k": 20, "variants": [], "runs": [], "floors": {},
                          "differences": [d for d in plain if d["seed"] == 1]})
    assert "| new | 1 | -1.00 | – |" in text and "fine-tune" not in text.split("Per-seed")[1].split("Per run")[0]


@needs_fmnist
def test_a_variant_can_reuse_another_studys_finished_run(tmp_path: Path) -> None:
    """The target study reports the reference study's norm-pix runs beside its own, untrained."""
    for sub in ("a", "b"):
        (tmp_path / sub).mkdir()
    first = load_study(_write_study(tmp_path / "a", [{"name": "mae", "config": "configs/ablations/mae.yaml"}]))
    run_study(first)
    reused = tmp_path / "a" / "runs" / "mae" / "seed_{seed}"
    second = load_study(_write_study(tmp_path / "b", [
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
