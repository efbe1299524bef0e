"""``hpm eval``: results saved as JSON next to the run, one summary line, clear errors (exit 2)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from hpm.cli import main
from hpm.engine.checkpoint import latest_checkpoint
from hpm.engine.integrity import seal
from tests.conftest import needs_fmnist
from tests.eval.conftest import save_random_run, tiny_config, write_image_folder

SMALL = ["--subset", "200", "--test-subset", "100", "--precision", "fp32"]


@needs_fmnist
def test_knn_writes_json_next_to_the_run(random_run: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["eval", "knn", str(random_run), *SMALL]) == 0
    line = capsys.readouterr().out.strip()
    path = random_run / "eval" / "knn.json"
    assert line.startswith("k-NN top-1 (cls, T=0.07): k=10 ") and line.endswith(f"-> {path}")
    assert "200 train / 100 test" in line and "student @ step 7" in line
    record = json.loads(path.read_text())
    assert record["protocol"] == "knn" and record["source"]["step"] == 7
    assert record["data"] == record["data"] | {"dataset": "fashion_mnist", "num_train": 200, "num_test": 100}
    assert set(record["result"]["top1"]) == {"10", "20", "100", "200"}
    assert {"created", "versions", "seconds", "precision"} <= set(record)


@needs_fmnist
def test_random_init_and_avg_pool_get_their_own_files(random_run: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["eval", "knn", str(random_run), "--random-init", "--pool", "avg", "--ks", "5", *SMALL]) == 0
    assert "random init" in capsys.readouterr().out
    record = json.loads((random_run / "eval" / "knn_avg_random_init.json").read_text())
    assert record["source"]["random_init"] and record["result"]["pool"] == "avg"
    assert list(record["result"]["top1"]) == ["5"]


@needs_fmnist
def test_random_init_without_a_checkpoint(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "floor.json"
    args = ["eval", "linear", "--random-init", "--preset", "small", "--epochs", "3", "--out", str(out), *SMALL]
    assert main(args) == 0
    assert "linear probe top-1" in capsys.readouterr().out
    record = json.loads(out.read_text())
    assert record["source"]["checkpoint"] is None and record["source"]["model"]["embed_dim"] == 192
    assert record["result"]["top1"] > 20.0  # chance 10%


@needs_fmnist
def test_linear_on_a_checkpoint_folder(random_run: Path, capsys: pytest.CaptureFixture[str]) -> None:
    ckpt = latest_checkpoint(random_run)
    assert main(["eval", "linear", str(ckpt), "--epochs", "2", "--weights", "teacher", *SMALL]) == 0
    record = json.loads((ckpt / "eval" / "linear_teacher.json").read_text())
    assert record["source"]["weights"] == "teacher" and record["result"]["probe"]["epochs"] == 2


def test_finetune_on_an_image_folder(random_run: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    root = write_image_folder(tmp_path / "sq", {"a": 8, "b": 8})
    write_image_folder(root, {"a": 4, "b": 4}, split="val")
    args = ["eval", "finetune", str(random_run), "--data-dir", str(root), "--epochs", "1",
            "--subset", "all", "--test-subset", "all", "batch_size=8", "num_workers=0"]
    assert main(args) == 0
    assert "fine-tune top-1" in capsys.readouterr().out
    record = json.loads((random_run / "eval" / "finetune.json").read_text())
    assert record["data"]["dataset"] == "folder" and record["data"]["num_test"] == 8
    assert record["result"]["recipe"]["batch_size"] == 8 and record["result"]["steps"] == 2
    ft_dir = random_run / "eval" / "finetune"  # the fine-tune directory: the result file without .json
    assert latest_checkpoint(ft_dir).name == "step_00000002"
    assert (ft_dir / "classifier.safetensors").is_file() and (ft_dir / "classifier.json").is_file()
    assert latest_checkpoint(random_run).name == "step_00000007"  # the encoder's run is untouched


# --------------------------------------------------------------------------- errors
def _fails(args: list[str], capsys: pytest.CaptureFixture[str]) -> str:
    assert main(args) == 2
    return capsys.readouterr().err


def test_missing_checkpoint(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    err = _fails(["eval", "knn", str(tmp_path / "nope")], capsys)
    assert "hpm eval: error:" in err and "does not exist" in err


def test_no_path_without_random_init(capsys: pytest.CaptureFixture[str]) -> None:
    assert "--random-init" in _fails(["eval", "knn"], capsys)


def test_incompatible_image_size(random_run: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert "incompatible with the encoder's patch size 4" in _fails(["eval", "knn", str(random_run), "--img-size", "30"], capsys)


def test_checkpoint_of_another_architecture(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    run = save_random_run(tmp_path / "run", tiny_config())
    other = save_random_run(tmp_path / "other", tiny_config(depth=3))
    shutil.copy(latest_checkpoint(other) / "model.safetensors", latest_checkpoint(run) / "model.safetensors")
    seal(latest_checkpoint(run))  # a valid file of another architecture, not damage
    for cmd in (["eval", "linear", str(run)], ["export", str(run)]):
        assert "another architecture" in _fails(cmd, capsys)


def test_data_without_labels(random_run: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    root = write_image_folder(tmp_path / "one", {"only": 3})
    write_image_folder(root, {"only": 2}, split="val")
    err = _fails(["eval", "knn", str(random_run), "--data-dir", str(root)], capsys)
    assert "single class" in err


def test_finetune_key_typo(random_run: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert "unknown fine-tuning key 'layerdecay'" in _fails(["eval", "finetune", str(random_run), "layerdecay=0.7"], capsys)


def test_bad_subset_value(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main(["eval", "knn", "x", "--subset", "lots"])
    assert "number of images or 'all'" in capsys.readouterr().err
