"""scripts/digits_to_folder.py: scikit-learn's digits as a class-per-folder image set hpm reads."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pytest

from hpm.data import ImageFolderDataset

pytest.importorskip("sklearn")
SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "digits_to_folder.py"


def _module():  # type: ignore[no-untyped-def]
    spec = importlib.util.spec_from_file_location("digits_to_folder", SCRIPT)
    module = importlib.util.module_from_spec(spec)  # type: ignore[arg-type]
    spec.loader.exec_module(module)  # type: ignore[union-attr]
    return module


def test_digits_become_a_split_image_folder(tmp_path: Path) -> None:
    from sklearn.datasets import load_digits

    counts = _module().write_digits(tmp_path / "digits")
    assert counts == {"train": 1438, "val": 359} and sum(counts.values()) == 1797
    train = ImageFolderDataset(str(tmp_path / "digits"), "train", channels=1)
    val = ImageFolderDataset(str(tmp_path / "digits"), "val", channels=1)
    assert train.classes == val.classes == [str(d) for d in range(10)]
    image, label = train[0]
    assert tuple(image.shape) == (1, 8, 8)
    index = int(Path(train.samples[0][0]).stem)  # files are named by their index in the data set
    want = np.round(load_digits().images[index] * 255 / 16).astype(np.uint8)  # 0-16 -> 0-255
    assert np.array_equal(image[0].numpy(), want) and label == load_digits().target[index]
    assert np.bincount(val.labels).min() >= 35  # about a fifth of every class
    with pytest.raises(SystemExit, match="already holds images"):
        _module().write_digits(tmp_path / "digits")
