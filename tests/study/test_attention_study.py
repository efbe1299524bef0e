"""A tiny study of attention-masking variants: ranked, reported beside the predicted loss."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from hpm.study import collect, load_study, run_study
from tests.conftest import needs_fmnist
from tests.study.helpers import write_study


@needs_fmnist
def test_attention_variants_are_ranked_and_reported(tmp_path: Path) -> None:
    path = write_study(tmp_path, [
        {"name": "mae", "config": "configs/ablations/mae.yaml", "seeds": [0]},
        {"name": "attention_hints", "config": "configs/ablations/attention.yaml", "seeds": [0]},
        {"name": "attention_low_predictor", "config": "configs/ablations/attention_predictor.yaml",
         "overrides": {"mask": {"attention_mode": "low"}}, "seeds": [0]},
    ], floors=False)
    spec = load_study(path)
    report = run_study(spec)
    results = json.loads((report / "results.json").read_text())
    assert results == json.loads(json.dumps(collect(spec)))
    runs = {r["variant"]: r for r in results["runs"]}
    assert "teacher_attention_rank_spearman" not in runs["mae"]  # no teacher: nothing to rank
    for name in ("attention_hints", "attention_low_predictor"):
        r = runs[name]
        assert r["mask_score"] == "attention" and r["teacher_view"] == "full"
        assert -1 <= r["teacher_attention_rank_spearman"] <= 1
        # the scores that chose the masks are the attention (full view): the same figure
        assert r["teacher_rank_spearman"] == pytest.approx(r["teacher_attention_rank_spearman"])
        ranking = json.loads((tmp_path / "runs" / name / "seed_0" / "eval" / "study_ranking.json").read_text())
        assert ranking["available"] and ranking["mask_strategy"] == "attention"
    assert runs["attention_hints"]["teacher_full_rank_spearman"] is None  # no predictor
    assert runs["attention_low_predictor"]["teacher_full_rank_spearman"] is not None
    rows = {v["variant"]: v for v in results["variants"]}
    assert rows["attention_hints"]["teacher_attention_rank_spearman"]["n"] == 1
    assert rows["mae"]["teacher_attention_rank_spearman"]["n"] == 0
    table = (report / "results.md").read_text()
    assert "[CLS] attention" in table and "| attention_hints | attention | full |" in table
    assert "| attention_low_predictor | attention | full |" in table
