"""hpm data scenes: Fashion-MNIST items on cluttered backgrounds, ADE20K layout plus COCO JSON."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from pycocotools import mask as mask_utils
from pycocotools.coco import COCO

from hpm.config import FASHION_MNIST_ROOT
from hpm.data.fashion_mnist import FASHION_MNIST_CLASSES, load_fashion_mnist
from hpm.data.scenes import SPLITS, CocoInstances, Scene, SceneOptions, write_scenes
from hpm.data.scenes.occlusion import class_index_map, visible_masks
from hpm.errors import ConfigError, DataError
from tests.data.conftest import needs_fashion_mnist

# pycocotools' decode calls numpy's __array__ the pre-2.0 way; its masks are right.
pytestmark = pytest.mark.filterwarnings("ignore:__array__ implementation doesn't accept a copy keyword")

SMALL = SceneOptions(num_train=8, num_val=8, size=64, seed=0)


def _files(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def _load(out: Path, split: str) -> dict:
    return json.loads((out / "annotations" / f"instances_{split}.json").read_text())


def _index_map(out: Path, split: str, file_name: str) -> np.ndarray:
    with Image.open(out / "annotations" / split / file_name) as image:
        assert image.mode in ("L", "P")
        return np.asarray(image)  # [H, W] uint8


@pytest.fixture(scope="module")
def scenes(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """8 training and 8 validation scenes of 64 px, seed 0."""
    if not (Path(FASHION_MNIST_ROOT) / "t10k-images-idx3-ubyte.gz").is_file():
        pytest.skip("Debian package dataset-fashion-mnist is not installed")
    out = tmp_path_factory.mktemp("scenes") / "out"
    write_scenes(out, SMALL, progress=False)
    return out


def test_layout(scenes: Path) -> None:
    for split in SPLITS:
        images = sorted((scenes / "images" / split).glob("*.png"))
        maps = sorted((scenes / "annotations" / split).glob("*.png"))
        assert [p.name for p in images] == [p.name for p in maps] == [f"{i:06d}.png" for i in range(8)]
        with Image.open(images[0]) as image:
            assert image.mode == "RGB" and image.size == (64, 64)
        coco = _load(scenes, split)
        assert [c["id"] for c in coco["categories"]] == list(range(1, 11))
        assert [c["name"] for c in coco["categories"]] == list(FASHION_MNIST_CLASSES)
        assert [im["file_name"] for im in coco["images"]] == [p.name for p in images]


@needs_fashion_mnist
def test_same_seed_same_bytes_other_seed_differs(scenes: Path, tmp_path: Path) -> None:
    write_scenes(tmp_path / "again", SMALL, progress=False)
    assert _files(tmp_path / "again") == _files(scenes)
    other = SceneOptions(num_train=8, num_val=8, size=64, seed=1)
    write_scenes(tmp_path / "other", other, progress=False)
    theirs = _files(tmp_path / "other")
    ours = _files(scenes)
    assert theirs.keys() == ours.keys()
    assert all(theirs[k] != ours[k] for k in ours if k.startswith("images/"))


@needs_fashion_mnist
def test_a_scene_does_not_depend_on_how_many_are_written(scenes: Path, tmp_path: Path) -> None:
    write_scenes(tmp_path / "few", SceneOptions(num_train=3, num_val=2, size=64, seed=0), progress=False)
    few = _files(tmp_path / "few")
    ours = _files(scenes)
    pngs = [k for k in few if k.endswith(".png")]
    assert len(pngs) == 2 * (3 + 2)
    assert all(few[k] == ours[k] for k in pngs)


def test_map_masks_boxes_and_areas_agree(scenes: Path) -> None:
    for split in SPLITS:
        coco = _load(scenes, split)
        for entry in coco["images"]:
            index_map = _index_map(scenes, split, entry["file_name"])
            anns = [a for a in coco["annotations"] if a["image_id"] == entry["id"]]
            assert 1 <= len(anns) <= len(entry["source_indices"]) <= 4
            union = np.zeros_like(index_map)  # [H, W], the class painted by the annotations
            for ann in anns:
                mask = mask_utils.decode(ann["segmentation"]).astype(bool)  # [H, W]
                assert ann["area"] == int(mask.sum()) > 0 and ann["iscrowd"] == 0
                rows, cols = np.nonzero(mask)
                x, y = cols.min(), rows.min()
                assert ann["bbox"] == [x, y, cols.max() - x + 1, rows.max() - y + 1]
                assert not union[mask].any(), "instances overlap"
                union[mask] = ann["category_id"]
            np.testing.assert_array_equal(union, index_map)


def test_coco_api_loads_the_json(scenes: Path) -> None:
    for split in SPLITS:
        path = scenes / "annotations" / f"instances_{split}.json"
        api = COCO(str(path))
        assert sorted(api.getCatIds()) == list(range(1, 11))
        assert len(api.getImgIds()) == 8
        ann = api.loadAnns(api.getAnnIds(imgIds=[1]))[0]
        expected = mask_utils.decode(ann["segmentation"])
        np.testing.assert_array_equal(api.annToMask(ann), expected)


def test_validation_items_come_from_the_test_split(scenes: Path) -> None:
    for split, source in (("training", "train"), ("validation", "test")):
        _, labels = load_fashion_mnist(FASHION_MNIST_ROOT, source)
        coco = _load(scenes, split)
        assert coco["info"]["source"] == f"fashion-mnist {source}"
        assert len(coco["annotations"]) >= 8
        for ann in coco["annotations"]:
            assert labels[ann["source_index"]] + 1 == ann["category_id"]
        placed = {i for im in coco["images"] for i in im["source_indices"] + im["fragment_indices"]}
        assert max(placed) < len(labels)


def test_background_is_not_zero_and_not_flat(scenes: Path) -> None:
    for split in SPLITS:
        for name in sorted(p.name for p in (scenes / "images" / split).glob("*.png")):
            with Image.open(scenes / "images" / split / name) as image:
                pixels = np.asarray(image)  # [H, W, 3]
            background = pixels[_index_map(scenes, split, name) == 0]  # [P, 3]
            assert len(background) > 0
            assert (background > 0).all()
            assert background.std(axis=0).min() > 3.0


def test_a_fully_covered_item_is_dropped() -> None:
    masks = np.zeros((3, 8, 8), dtype=bool)  # [K, H, W]
    masks[0, 2:4, 2:4] = True  # hidden under item 1
    masks[1, 1:6, 1:6] = True
    masks[2, 4:8, 4:8] = True  # covers a corner of item 1
    visible = visible_masks(masks)
    assert not visible[0].any()
    assert visible[1].sum() == 25 - 4 and visible[2].sum() == 16
    index_map = class_index_map(visible, np.array([3, 5, 7]))
    assert set(np.unique(index_map)) == {0, 5, 7}
    scene = Scene(
        image=np.zeros((8, 8, 3), np.uint8), index_map=index_map, visible=visible,
        category_ids=(3, 5, 7), source_indices=(10, 11, 12), fragment_indices=(),
    )
    coco = CocoInstances(info={})
    coco.add(scene, image_id=1, file_name="000000.png")
    assert [a["source_index"] for a in coco.annotations] == [11, 12]
    assert [a["category_id"] for a in coco.annotations] == [5, 7]
    assert coco.images[0]["source_indices"] == [10, 11, 12]


@needs_fashion_mnist
def test_non_empty_out_is_refused_unless_overwrite(scenes: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    write_scenes(out, SceneOptions(num_train=3, num_val=1, size=32), progress=False)
    with pytest.raises(ConfigError, match="--overwrite"):
        write_scenes(out, SMALL, progress=False)
    (out / "notes.txt").write_text("kept")
    write_scenes(out, SceneOptions(num_train=2, num_val=1, size=32, seed=0), overwrite=True, progress=False)
    assert len(list((out / "images" / "training").glob("*.png"))) == 2
    assert (out / "notes.txt").read_text() == "kept"


def test_missing_fashion_mnist_says_what_to_install(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="dataset-fashion-mnist"):
        write_scenes(tmp_path / "out", SMALL, root=tmp_path / "nothing", progress=False)
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize(
    "kwargs", [{"num_train": -1}, {"num_train": 0, "num_val": 0}, {"size": 16}, {"seed": -1}]
)
def test_bad_options_are_config_errors(kwargs: dict[str, int]) -> None:
    with pytest.raises(ConfigError):
        SceneOptions(**kwargs)


@needs_fashion_mnist
def test_cli_writes_the_layout(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from hpm.cli import main

    out = tmp_path / "scenes"
    args = ["data", "scenes", str(out), "--num-train", "3", "--num-val", "2", "--size", "48", "--seed", "4"]
    assert main(args) == 0
    assert "training 3 scenes" in capsys.readouterr().out
    for split, count in (("training", 3), ("validation", 2)):
        assert len(list((out / "images" / split).glob("*.png"))) == count
        assert len(list((out / "annotations" / split).glob("*.png"))) == count
        assert len(_load(out, split)["images"]) == count
    assert main(args) == 2
    err = capsys.readouterr().err.strip()
    assert "--overwrite" in err and len(err.splitlines()) == 1
    assert main([*args, "--overwrite"]) == 0


def test_cli_missing_fashion_mnist_is_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from hpm.cli import main

    code = main(["data", "scenes", str(tmp_path / "o"), "--num-train", "2", "--data-root", str(tmp_path)])
    assert code == 2
    assert "dataset-fashion-mnist" in capsys.readouterr().err
