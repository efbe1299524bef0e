"""Unlabelled image folders (a flat folder, ADE20K's layout): pre-training reads them, evaluations refuse them."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import yaml

from hpm.cli import main
from hpm.config import DataConfig, build_config
from hpm.data import ImageFolderDataset, Unreadable, build_pretrain_data
from hpm.data.folder import NO_LABEL
from hpm.data.labelled import has_class_labels
from hpm.data.layout import detect_layout
from hpm.engine.logger import read_metrics
from hpm.engine.train import pretrain
from hpm.errors import DataError
from tests.conftest import tiny_overrides
from tests.eval.conftest import save_random_run, tiny_config

from .conftest import WriteImage

TINY = {"model": {"img_size": 16, "patch_size": 4}, "train": {"epochs": 2, "batch_size": 8}}


def _flat(root: Path, write_image: WriteImage, corrupt: bool = True) -> Path:
    """16 images at three depths below ``root`` (no class folders), a text file and one corrupt image."""
    for i in range(16):
        sub = ("", "trip", "trip/day2")[i % 3]
        write_image(root / sub / f"{i:02d}.png" if sub else root / f"{i:02d}.png", (20 + i % 5, 18), seed=i)
    (root / "notes.txt").write_text("not an image")
    if corrupt:
        (root / "trip" / "bad.jpg").write_bytes(b"not an image" * 10)
    return root


def _ade20k(root: Path, write_image: WriteImage, n_train: int = 16, n_val: int = 4) -> Path:
    """``images/{training,validation}/`` and the annotation maps beside them (never read)."""
    for split, n in (("training", n_train), ("validation", n_val)):
        for i in range(n):
            write_image(root / "images" / split / f"{i:06d}.png", (24, 20), seed=i)
            write_image(root / "annotations" / split / f"{i:06d}.png", (24, 20), mode="L", seed=i)
    return root


def _run(tmp_path: Path, data_dir: Path) -> tuple[dict, object]:
    overrides = tiny_overrides(tmp_path, data={"data_dir": str(data_dir), "subset": None}, **TINY)
    return overrides, pretrain(build_config(overrides=overrides))


def test_layouts_are_recognised_by_their_folders(tmp_path: Path) -> None:
    for name, folders, layout in (
        ("c", ["train/cat"], "classes"), ("v", ["val/cat"], "classes"), ("a", ["images/training"], "ade20k"),
        ("f", ["photos/2024"], "flat"), ("i", ["images/misc"], "flat"),
    ):
        for folder in folders:
            (tmp_path / name / folder).mkdir(parents=True)
        assert detect_layout(tmp_path / name) == layout, name


def test_a_flat_folder_lists_every_image_below_it_without_labels(tmp_path: Path, write_image: WriteImage) -> None:
    root = _flat(tmp_path / "flat", write_image)
    (tmp_path / "flat" / ".thumbs").mkdir()
    write_image(tmp_path / "flat" / ".thumbs" / "t.png")  # hidden folders are skipped
    data = ImageFolderDataset(root)
    assert data.layout == "flat" and data.classes == [] and data.num_classes == 0
    assert len(data) == 17 and set(data.labels.tolist()) == {NO_LABEL}
    assert data.samples[0][0] == str(root / "00.png")  # no "./" in the names
    assert str(root / "trip" / "day2" / "02.png") in [path for path, _ in data.samples]
    bad = data.samples.index((str(root / "trip" / "bad.jpg"), NO_LABEL))
    assert data[bad] == Unreadable(str(root / "trip" / "bad.jpg"))
    again = ImageFolderDataset(root)  # from the cache
    assert again.samples == data.samples


def test_a_class_folder_read_as_a_flat_folder_does_not_reuse_its_labelled_cache(image_tree: Path) -> None:
    labelled = ImageFolderDataset(image_tree, "train")
    flat = ImageFolderDataset(image_tree / "train")  # the same folder, pointed at directly
    assert labelled.classes == ["cat", "dog"] and flat.classes == []
    assert sorted(p for p, _ in flat.samples) == sorted(p for p, _ in labelled.samples)
    assert ImageFolderDataset(image_tree, "train").classes == ["cat", "dog"]


def test_a_flat_folder_pretrains_skipping_and_naming_the_corrupt_file(tmp_path: Path, write_image: WriteImage) -> None:
    root = _flat(tmp_path / "flat", write_image)
    overrides, summary = _run(tmp_path, root)
    assert summary.skipped_images == 2  # the corrupt file, once per epoch
    run = Path(overrides["output_dir"])
    log = (run / "train.log").read_text()
    assert any(line.endswith(str(root / "trip" / "bad.jpg")) for line in log.splitlines() if "unreadable" in line)
    assert read_metrics(run / "metrics.jsonl")[-1]["skipped_images"] == 2
    saved = yaml.safe_load((run / "config.yaml").read_text())
    assert saved["data"]["dataset"] == "folder" and saved["model"]["in_chans"] == 3


def test_an_ade20k_folder_pretrains_on_its_training_images(tmp_path: Path, write_image: WriteImage) -> None:
    root = _ade20k(tmp_path / "ade", write_image)
    data = build_pretrain_data(DataConfig(data_dir=str(root)), 16, seed=0)
    assert data.num_images == 16 and data.num_classes == 0 and data.classes == ()
    assert all("/images/training/" in path for path, _ in data.base.samples)  # type: ignore[attr-defined]
    val = ImageFolderDataset(root, "val")
    assert len(val) == 4 and val.layout == "ade20k"
    subset = build_pretrain_data(DataConfig(data_dir=str(root), subset=5), 16, seed=0)
    assert subset.num_images == 5 and np.all(subset.labels == NO_LABEL)
    _, summary = _run(tmp_path, root)
    assert summary.steps == 4 and summary.skipped_images == 0


def test_knn_on_an_unlabelled_folder_exits_2_with_one_line(
    tmp_path: Path, write_image: WriteImage, capsys: pytest.CaptureFixture[str]
) -> None:
    run = save_random_run(tmp_path / "run", tiny_config())
    for root in (_flat(tmp_path / "flat", write_image, corrupt=False), _ade20k(tmp_path / "ade", write_image)):
        assert main(["eval", "knn", str(run), "--data-dir", str(root)]) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and err.startswith("hpm eval: error: ")
        assert f"{root} has no class labels" in err and f"{root}/train/<class>/" in err


@pytest.mark.parametrize("content", [[], ["notes.txt", "sub/readme.md"]])
def test_an_empty_folder_is_a_one_line_error_naming_the_layouts(tmp_path: Path, content: list[str]) -> None:
    root = tmp_path / "empty"
    root.mkdir()
    for name in content:
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text("x")
    with pytest.raises(DataError, match=r"^no image files in .*empty or its sub-folders.*accepted layouts: "
                       r"DIR/train/<class>/.*DIR/images/training/.*anywhere below DIR") as err:
        build_pretrain_data(DataConfig(data_dir=str(root)), 16, seed=0)
    assert "\n" not in str(err.value)


def test_an_ambiguous_folder_is_a_one_line_error(tmp_path: Path, write_image: WriteImage) -> None:
    root = _ade20k(tmp_path / "both", write_image)
    write_image(root / "train" / "cat" / "0.png")
    with pytest.raises(DataError, match=r"^\S+both is ambiguous: .*train/.*images/training/.*accepted layouts") as err:
        build_pretrain_data(DataConfig(data_dir=str(root)), 16, seed=0)
    assert "\n" not in str(err.value)


def test_missing_splits_of_unlabelled_layouts(tmp_path: Path, write_image: WriteImage) -> None:
    with pytest.raises(DataError, match="flat folder .*train split only; it has no val split"):
        ImageFolderDataset(_flat(tmp_path / "flat", write_image), "val")
    with pytest.raises(DataError, match="ADE20K's layout but no val split: .*images/validation does not exist"):
        ImageFolderDataset(_ade20k(tmp_path / "ade", write_image, n_val=0), "val")


def test_has_class_labels(tmp_path: Path, image_tree: Path, write_image: WriteImage) -> None:
    assert has_class_labels(image_tree) and has_class_labels(tmp_path / "absent")
    assert not has_class_labels(_flat(tmp_path / "flat", write_image))
    assert not has_class_labels(_ade20k(tmp_path / "ade", write_image))
    (tmp_path / "ade" / "hpm-shards.json").write_text("{}")  # a pack's index: packs always have classes
    assert has_class_labels(tmp_path / "ade")


def test_hpm_pretrain_on_an_ade20k_folder_skips_its_k_nn_and_ends_well(tmp_path: Path, write_image: WriteImage) -> None:
    root = _ade20k(tmp_path / "scenes", write_image)
    overrides = tiny_overrides(tmp_path, data={"data_dir": str(root), "subset": None}, **TINY)
    overrides["eval"].update(knn_at_end=True, knn_every_epochs=1)  # asked for, but there are no labels
    args = ["pretrain", "--output-dir", overrides["output_dir"], *[
        f"{s}.{k}={v if not isinstance(v, bool) else str(v).lower()}"
        for s in ("model", "data", "train", "eval") for k, v in overrides[s].items() if v is not None
    ]]
    assert main(args) == 0
    records = read_metrics(Path(overrides["output_dir"]) / "metrics.jsonl")
    assert records and not any("knn_top1" in r for r in records)
