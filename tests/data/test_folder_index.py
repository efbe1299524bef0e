"""The cached folder index: reused while the folder is unchanged, rebuilt when it changes."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from hpm.data import folder_index
from hpm.data.folder import ImageFolderDataset

from .conftest import WriteImage


def _count_walks(monkeypatch: pytest.MonkeyPatch) -> list[Path]:
    walked: list[Path] = []
    real = folder_index.walk_split

    def counting(split_dir: Path, is_image):  # type: ignore[no-untyped-def]
        walked.append(split_dir)
        return real(split_dir, is_image)

    monkeypatch.setattr(folder_index, "walk_split", counting)
    return walked


def test_second_start_reads_the_cache(image_tree: Path, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("HPM_CACHE_DIR", str(tmp_path / "cache"))
    walked = _count_walks(monkeypatch)
    first = ImageFolderDataset(image_tree, "train")
    assert folder_index.cache_file(image_tree / "train").is_file()
    assert folder_index.cache_file(image_tree / "train").is_relative_to(tmp_path / "cache")
    second = ImageFolderDataset(image_tree, "train")
    assert len(walked) == 1  # the second start did not walk the folder
    assert second.samples == first.samples and second.classes == first.classes


def test_cached_listing_equals_a_fresh_walk(image_tree: Path, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("HPM_CACHE_DIR", str(tmp_path / "a"))
    ImageFolderDataset(image_tree, "train")
    cached = ImageFolderDataset(image_tree, "train")
    monkeypatch.setenv("HPM_CACHE_DIR", str(tmp_path / "b"))
    fresh = ImageFolderDataset(image_tree, "train")
    assert cached.samples == fresh.samples and cached.labels.tolist() == fresh.labels.tolist()


@pytest.mark.parametrize("change", ["add_file", "remove_file", "add_class", "nested_file"])
def test_a_changed_folder_invalidates_the_cache(
    change: str, image_tree: Path, write_image: WriteImage, monkeypatch: pytest.MonkeyPatch
) -> None:
    walked = _count_walks(monkeypatch)
    before = ImageFolderDataset(image_tree, "train")
    split = image_tree / "train"
    if change == "add_file":
        write_image(split / "dog" / "f.png")
    elif change == "remove_file":
        (split / "dog" / "e.jpg").unlink()
    elif change == "add_class":
        write_image(split / "emu" / "g.png")
    else:
        write_image(split / "cat" / "nested" / "h.png")
    # a file system with coarse timestamps could keep the old mtime; make the change visible
    for d in [split, *(p for p in split.rglob("*") if p.is_dir())]:
        os.utime(d, ns=(os.stat(d).st_atime_ns, os.stat(d).st_mtime_ns + 1_000_000))
    after = ImageFolderDataset(image_tree, "train")
    assert len(walked) == 2
    names = {Path(p).name for p, _ in after.samples}
    expected = {"add_file": 6, "remove_file": 4, "add_class": 6, "nested_file": 6}[change]
    assert len(after) == expected and len(before) == 5
    if change == "add_class":
        assert after.classes == ["cat", "dog", "emu"]
    if change == "remove_file":
        assert "e.jpg" not in names
    ImageFolderDataset(image_tree, "train")
    assert len(walked) == 2  # the rebuilt index is cached in turn


def test_an_unwritable_cache_only_warns(image_tree: Path, monkeypatch: pytest.MonkeyPatch, tmp_path: Path,
                                        caplog: pytest.LogCaptureFixture) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    monkeypatch.setenv("HPM_CACHE_DIR", str(blocker))
    dataset = ImageFolderDataset(image_tree, "train")
    assert len(dataset) == 5 and "could not write the folder index cache" in caplog.text
