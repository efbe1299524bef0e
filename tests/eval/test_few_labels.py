"""``--labels``: the evaluations see only the labelled images, the holdout is disjoint, bad input fails clearly."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest
import torch
from torch.utils.data import Subset

from hpm.cli import main
from hpm.config import DataConfig
from hpm.data.labels import label_holdout, labelled_subset
from hpm.errors import ConfigError
from hpm.eval.data import build_eval_data
from hpm.eval.encoder import extract_pixels
from hpm.eval.knn import knn_classify
from hpm.eval.linear import LinearProbeConfig, probe_accuracy, train_linear_probe
from hpm.eval.run import EvalOptions, run_eval
from tests.eval.conftest import tiny_config, write_image_folder

CLASSES = {"a": 30, "b": 30, "c": 30}


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    """90 labelled train images of 3 classes, 15 val images."""
    root = write_image_folder(tmp_path / "sq", CLASSES)
    write_image_folder(root, {name: 5 for name in CLASSES}, split="val", seed=1)
    return root


def _indices(split: object) -> np.ndarray:
    assert isinstance(split, Subset)
    return np.asarray(split.indices)


def test_the_train_split_is_the_labelled_set_and_the_holdout_lies_outside_it(folder: Path) -> None:
    cfg = DataConfig(data_dir=str(folder))
    data = build_eval_data(cfg, 8, 3, labels=9, seed=3, val_holdout=6)
    assert np.bincount(data.train.labels).tolist() == [3, 3, 3]
    full = build_eval_data(cfg, 8, 3)
    assert np.array_equal(_indices(data.train.base), labelled_subset(full.train.labels, 9, seed=3))
    held = _indices(data.test.base)
    assert data.test.name == "holdout" and np.bincount(data.test.labels).tolist() == [2, 2, 2]
    assert np.intersect1d(held, _indices(data.train.base)).size == 0
    assert np.array_equal(held, label_holdout(full.train.labels, 9, 6, seed=3))
    assert data.describe()["labels"] == {"count": 9, "asked": "9", "seed": 3, "of": 90}
    more = build_eval_data(cfg, 8, 3, labels="30%", seed=3)  # 27 images
    assert set(_indices(data.train.base)) < set(_indices(more.train.base))  # nested
    assert len(more.test) == 15 and more.test.name == "val"
    assert "labels" not in full.describe()  # plain subsets describe themselves as before


def test_labels_and_a_train_subset_exclude_each_other(folder: Path) -> None:
    with pytest.raises(ConfigError, match="excludes a train subset"):
        build_eval_data(DataConfig(data_dir=str(folder)), 8, 3, train_subset=30, labels=9)


def _pixels(folder: Path, n: int, seed: int) -> tuple[torch.Tensor, ...]:
    """Pixels and labels of the n labelled train images (chosen independently) and of the val split."""
    data = build_eval_data(DataConfig(data_dir=str(folder)), 32, 1)
    chosen = labelled_subset(data.train.labels, n, seed)
    train = Subset(data.train.with_transform(data.transform()), chosen.tolist())
    train_x, train_y = extract_pixels(train, 64, 0)
    test_x, test_y = extract_pixels(data.test.with_transform(data.transform()), 64, 0)
    return train_x, train_y, test_x, test_y


def _options(folder: Path, tmp_path: Path, **kw: object) -> EvalOptions:
    return EvalOptions(raw_pixels=True, cfg=tiny_config(), data_dir=str(folder), precision="fp32",
                       out=tmp_path / "r.json", **kw)  # type: ignore[arg-type]


def test_knn_votes_with_the_labelled_images_only(folder: Path, tmp_path: Path) -> None:
    record, _ = run_eval("knn", None, _options(folder, tmp_path, labels=6, seed=2, ks=(1, 5, 50)))
    train_x, train_y, test_x, test_y = _pixels(folder, 6, seed=2)
    expected = knn_classify(train_x, train_y, test_x, test_y, (1, 5, 50), num_classes=3)
    assert record["result"]["num_train"] == 6 and record["result"]["num_test"] == 15
    assert record["result"]["top1"] == {str(k): v for k, v in expected.items()}
    assert record["source"]["kind"] == "raw_pixels" and record["data"]["labels"]["count"] == 6


def test_the_probe_trains_on_the_labelled_images_only(folder: Path, tmp_path: Path) -> None:
    probe = LinearProbeConfig(epochs=5, batch_size=4, warmup_epochs=1)
    record, _ = run_eval("linear", None, _options(folder, tmp_path, labels="10%", seed=1, probe=probe))
    train_x, train_y, test_x, test_y = _pixels(folder, 9, seed=1)
    expected = probe_accuracy(train_linear_probe(train_x, train_y, 3, probe), test_x, test_y)
    assert record["result"]["num_train"] == 9 and record["result"]["top1"] == pytest.approx(expected)


def test_a_few_label_fine_tune_stretches_its_schedule_to_the_images_seen(
    random_run: Path, folder: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    args = ["eval", "finetune", str(random_run), "--data-dir", str(folder), "--labels", "6", "--seed", "1",
            "images_seen=24", "batch_size=2", "num_workers=0"]
    assert main(args) == 0
    assert "6 labelled (6 of 90, seed 1) / 15 val" in capsys.readouterr().out
    record = json.loads((random_run / "eval" / "finetune_l6.json").read_text())
    recipe = record["result"]["recipe"]
    assert (recipe["epochs"], recipe["images_seen"], record["result"]["steps"]) == (4, 24, 12)  # 24 / 6 images
    assert recipe["warmup_epochs"] == pytest.approx(0.2 * 4 / 10)  # the few_labels recipe's share, 2 %
    assert record["data"]["num_train"] == 6 and record["data"]["num_test"] == 15  # the whole val split
    # tuning: the holdout comes out of the rest of the train split, the val split is not read
    out = random_run / "eval" / "tune.json"
    assert main([*args, "val_holdout=6", "--out", str(out)]) == 0
    tuned = json.loads(out.read_text())["data"]
    assert (tuned["test_split"], tuned["num_test"], tuned["num_train"]) == ("holdout", 6, 6)


def test_raw_pixels_and_labels_name_their_result_file(folder: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                      capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.chdir(tmp_path)
    assert main(["eval", "knn", "--raw-pixels", "--preset", "small", "--data-dir", str(folder), "--labels", "10%",
                 "--ks", "3", "--precision", "fp32"]) == 0
    line = capsys.readouterr().out
    assert "raw pixels" in line and "9 labelled (10% of 90" in line
    assert (tmp_path / "runs" / "random_init" / "small" / "eval" / "knn_raw_pixels_l10pct.json").is_file()


@pytest.mark.parametrize(
    ("extra", "message"),
    [(["--labels", "0"], "at least 1"), (["--labels", "150%"], r"in \(0, 100\] %"), (["--labels", "lots"], "a count"),
     (["--labels", "2"], "cannot cover the 3 classes"), (["--labels", "91"], "has only 90"),
     (["--labels", "9", "--subset", "30"], "drop --subset"), (["--raw-pixels", "--random-init"], "choose one floor")],
)
def test_bad_label_requests_fail_clearly(folder: Path, extra: list[str], message: str,
                                         capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["eval", "knn", "--random-init", "--preset", "small", "--data-dir", str(folder), *extra]) == 2
    err = capsys.readouterr().err
    assert "hpm eval: error:" in err and len(err.strip().splitlines()) == 1
    assert re.search(message, err)


def test_a_train_subset_key_is_refused_with_labels(random_run: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["eval", "finetune", str(random_run), "--labels", "600", "train_subset=100"]) == 2
    assert "drop --subset / train_subset" in capsys.readouterr().err


def test_raw_pixels_have_no_fine_tune() -> None:
    with pytest.raises(ConfigError, match="nothing to fine-tune"):
        run_eval("finetune", None, EvalOptions(raw_pixels=True, cfg=tiny_config()))
