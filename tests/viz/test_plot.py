"""Training curves: the plotted points are the values of metrics.jsonl, on an epoch axis."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from hpm.engine.logger import read_metrics
from hpm.errors import DataError
from hpm.viz.plot import CURVES, _default_names, draw_curves, load_curves, plot_runs, steps_per_epoch
from tests.viz.conftest import fake_records, write_metrics

KEYS = [key for key, _ in CURVES]


def _axes_by_key(fig) -> dict:  # type: ignore[no-untyped-def]
    return {key: ax for ax, key in zip(fig.axes, KEYS)}


def test_steps_per_epoch_from_the_records() -> None:
    assert steps_per_epoch(fake_records(13, 3, log_every=5)) == 13  # finished run: exact
    unfinished = [r for r in fake_records(13, 3, log_every=5) if r["step"] <= 20 and "loss" in r]
    assert unfinished[-1]["step"] == 20 and steps_per_epoch(unfinished) == 10  # a lower bound: 10 / 1, 20 / 2
    with_knn = [r for r in fake_records(13, 3, log_every=5) if r["step"] <= 20]
    assert steps_per_epoch(with_knn) == 13  # the k-NN record at the end of epoch 0 pins it


def test_plotted_series_equal_the_metrics(tmp_path: Path) -> None:
    hpm = write_metrics(tmp_path / "hpm", fake_records(8, 3, log_every=3))
    mae = write_metrics(tmp_path / "mae", fake_records(5, 2, log_every=2, predictor=False))
    runs = [load_curves(hpm, "HPM"), load_curves(mae, "MAE")]
    assert [r.steps_per_epoch for r in runs] == [8, 5]
    fig = draw_curves(runs)
    axes = _axes_by_key(fig)
    for run, spe in ((hpm, 8), (mae, 5)):
        records = read_metrics(run / "metrics.jsonl")
        for key in KEYS:
            want = np.array([(r["step"] / spe, r[key]) for r in records if key in r])
            lines = [line for line in axes[key].lines if line.get_label() == ("HPM" if run is hpm else "MAE")]
            if len(want) == 0:
                assert not lines, key
                continue
            assert len(lines) == 1, key
            np.testing.assert_allclose(lines[0].get_xydata(), want, rtol=0, atol=1e-12)
    # k-NN records sit on whole epochs; the last training record on the last epoch
    knn = axes["knn_top1"].lines[0].get_xydata()
    assert knn[:, 0].tolist() == [1.0, 2.0, 3.0] and knn[:, 1].tolist() == [40.0, 45.0, 50.0]
    assert axes["loss_rec"].lines[0].get_xydata()[-1, 0] == 3.0
    assert [t.get_text() for t in fig.axes[len(KEYS)].get_legend().get_texts()] == [
        "HPM (8 steps/epoch)", "MAE (5 steps/epoch)"]


def test_plot_runs_writes_a_png(tmp_path: Path) -> None:
    a = write_metrics(tmp_path / "a", fake_records(4, 2, log_every=1))
    b = write_metrics(tmp_path / "b", fake_records(4, 3, log_every=2, predictor=False))
    out = plot_runs([a, b], tmp_path / "out" / "curves.png", names=["first", "second"])
    assert out == tmp_path / "out" / "curves.png"
    with Image.open(out) as image:
        assert image.format == "PNG" and image.size == (1300, 700)


def test_a_metric_no_run_logged_is_said_in_its_panel(tmp_path: Path) -> None:
    run = write_metrics(tmp_path / "mae", fake_records(4, 2, log_every=1, predictor=False))
    axes = _axes_by_key(draw_curves([load_curves(run)]))
    assert not axes["loss_pred"].lines
    assert [t.get_text() for t in axes["loss_pred"].texts] == ["not logged by this run"]


def test_repeated_directory_names_get_their_parents(tmp_path: Path) -> None:
    a = write_metrics(tmp_path / "hpm" / "seed_0", fake_records(4, 1, log_every=1))
    b = write_metrics(tmp_path / "mae" / "seed_0", fake_records(4, 1, log_every=1))
    assert _default_names([a, b]) == ["hpm/seed_0", "mae/seed_0"]
    assert _default_names([a, tmp_path / "hpm"]) == ["seed_0", "hpm"]


def test_errors(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="does not exist"):
        plot_runs([tmp_path / "missing"], tmp_path / "c.png")
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="holds no metrics.jsonl"):
        plot_runs([tmp_path / "empty"], tmp_path / "c.png")
    started = write_metrics(tmp_path / "started", [{"epoch": 0, "step": 1, "skipped_images": 0}])
    with pytest.raises(DataError, match="none of the plotted metrics .*loss_rec.*knn_top1"):
        plot_runs([started], tmp_path / "c.png")
    (tmp_path / "broken").mkdir()
    (tmp_path / "broken" / "metrics.jsonl").write_text('{"epoch": 0, "step": 1, "lr"\n')
    with pytest.raises(DataError, match="not valid JSON lines"):
        plot_runs([tmp_path / "broken"], tmp_path / "c.png")
    good = write_metrics(tmp_path / "good", fake_records(4, 1, log_every=1))
    with pytest.raises(DataError, match="one name per run"):
        plot_runs([good], tmp_path / "c.png", names=["a", "b"])
    assert not (tmp_path / "c.png").exists()


def test_a_real_run_is_plotted_from_its_metrics(finished_run: Path) -> None:
    records = read_metrics(finished_run / "metrics.jsonl")
    curves = load_curves(finished_run)
    assert curves.steps_per_epoch == 4  # 128 images / 32
    for key in KEYS:
        want = np.array([(r["step"] / 4, r[key]) for r in records if key in r])
        np.testing.assert_allclose(np.stack(curves.series[key], axis=1), want)
    assert json.loads((finished_run / "metrics.jsonl").read_text().splitlines()[-1])["knn_top1"] is not None


def test_an_old_mae_run_logging_zero_loss_pred_is_not_drawn(tmp_path: Path) -> None:
    records = fake_records(4, 2, log_every=1, predictor=False)
    for r in records:
        if "loss" in r:
            r["loss_pred"] = 0.0  # what MAE runs logged before
    run = write_metrics(tmp_path / "mae", records)
    (run / "config.yaml").write_text("loss: {predictor: none}\n")
    assert "loss_pred" not in load_curves(run).series
    (run / "config.yaml").write_text("loss: {predictor: relative}\n")
    assert "loss_pred" in load_curves(run).series
