"""``hpm data pack`` and ShardDataset: contents, random access, damage, resume and refusals."""

from __future__ import annotations

import io
import json
import os
import tarfile
from pathlib import Path

import numpy as np
import pytest
import torch
import webdataset as wds
from PIL import Image

from hpm.cli import main
from hpm.data import ImageFolderDataset, ShardDataset, Unreadable, open_image_dataset
from hpm.data import pack as pack_module
from hpm.data.pack import PackOptions, pack_folder
from hpm.data.shards import INDEX_NAME
from hpm.errors import DataError, HpmError


def make_folder(
    root: Path, per_class: int = 12, val: int = 3, size: tuple[int, int] = (48, 36),
    formats: tuple[str, ...] = ("png", "jpg"),
) -> Path:
    """``root/{train,val}/{a,b,c}``: images of varying size, their formats taken in turn from ``formats``."""
    rng = np.random.default_rng(0)
    for split, n in (("train", per_class), ("val", val)):
        for label in ("a", "b", "c"):
            folder = root / split / label
            folder.mkdir(parents=True)
            for i in range(n):
                array = rng.integers(0, 256, (size[1] + i, size[0] + 2 * i, 3), dtype=np.uint8)
                Image.fromarray(array).save(folder / f"{i:03d}.{formats[i % len(formats)]}")
    return root


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    return make_folder(tmp_path / "images")


def test_original_bytes_pack_reads_like_the_folder(folder: Path, tmp_path: Path) -> None:
    pack_folder(folder, tmp_path / "shards", PackOptions(keep_original=True, samples_per_shard=10), progress=False)
    for split in ("train", "val"):
        plain, shards = ImageFolderDataset(folder, split), open_image_dataset(tmp_path / "shards", split)
        assert isinstance(shards, ShardDataset)
        assert shards.classes == plain.classes and shards.labels.tolist() == plain.labels.tolist()
        for i in range(len(plain)):
            (a, la), (b, lb) = plain[i], shards[i]
            assert la == lb and torch.equal(a, b), i
    shard_files = sorted(p.name for p in (tmp_path / "shards").glob("train-*.tar"))
    assert shard_files == ["train-000000.tar", "train-000001.tar", "train-000002.tar", "train-000003.tar"]


def test_shards_are_webdataset_tars_with_index(folder: Path, tmp_path: Path) -> None:
    out = tmp_path / "shards"
    pack_folder(folder, out, PackOptions(max_side=40, samples_per_shard=16), progress=False)
    index = json.loads((out / INDEX_NAME).read_text())
    assert index["complete"] and index["source"] == str(folder.resolve())
    assert index["options"]["max_side"] == 40 and index["options"]["quality"] == 90
    assert index["classes"] == ["a", "b", "c"] and index["splits"]["train"]["counts"] == [12, 12, 12]
    assert [s["num_samples"] for s in index["splits"]["train"]["shards"]] == [16, 16, 4]
    samples = list(wds.WebDataset(str(out / "train-000000.tar"), shardshuffle=False))
    assert len(samples) == 16
    images = []
    for s in samples:  # one image, re-encoded with the longer side at most 40, and the label as text
        (ext,) = set(s) - {"__key__", "__url__", "__local_path__", "cls"}
        image = Image.open(io.BytesIO(s[ext]))
        assert (ext, image.format) in {("jpg", "JPEG"), ("png", "PNG")} and max(image.size) <= 40  # JPEG / PNG source
        assert s["__key__"].split("/")[1] == index["classes"][int(s["cls"])]
        images.append(s[ext])
    shard = index["splits"]["train"]["shards"][0]
    assert shard["bytes"] == (out / "train-000000.tar").stat().st_size
    with open(out / "train-000000.tar", "rb") as f:  # the index's offsets point at the members
        f.seek(shard["offsets"][0])
        assert f.read(shard["sizes"][0]) == images[0]


def _damage_member(shard: Path, member: str) -> None:
    with tarfile.open(shard) as tar:
        info = tar.getmember(member)
    with open(shard, "r+b") as f:
        f.seek(info.offset_data)
        f.write(b"\x00" * info.size)  # same size: the index still matches, the image does not decode


def test_a_corrupt_member_is_skipped_and_named(folder: Path, tmp_path: Path) -> None:
    out = tmp_path / "shards"
    pack_folder(folder, out, PackOptions(samples_per_shard=16), progress=False)
    dataset = ShardDataset(out, "train")
    victim = 5
    shard_path, member = dataset.name(victim).rsplit(":", 1)
    _damage_member(Path(shard_path), member)
    item = ShardDataset(out, "train")[victim]
    assert isinstance(item, Unreadable)
    assert item.path == f"{out}/{Path(shard_path).name}:{member}" and member.startswith("train/")
    source = ImageFolderDataset(folder, "train").samples[victim][0]  # a file kept as it is: the member is named as it
    assert member == os.path.relpath(source, folder)
    assert not isinstance(dataset[victim + 1], Unreadable)


def test_a_missing_or_truncated_shard_is_a_clear_error(folder: Path, tmp_path: Path) -> None:
    out = tmp_path / "shards"
    pack_folder(folder, out, PackOptions(samples_per_shard=16), progress=False)
    shard = out / "train-000001.tar"
    data = shard.read_bytes()
    shard.write_bytes(data[: len(data) // 2])
    with pytest.raises(DataError, match=r"train-000001\.tar has \d+ bytes but the index records \d+ \(truncated"):
        ShardDataset(out, "train")
    shard.unlink()
    with pytest.raises(DataError, match=r"shard .*train-000001\.tar is missing.*hpm data pack"):
        ShardDataset(out, "train")
    pack_folder(folder, out, PackOptions(samples_per_shard=16), progress=False)  # re-running rewrites it
    assert shard.read_bytes() == data and len(ShardDataset(out, "train")) == 36


def test_an_interrupted_pack_is_refused_then_resumed(folder: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    out = tmp_path / "shards"
    written: list[str] = []
    real = pack_module._pack_shard

    def failing(task):  # type: ignore[no-untyped-def]
        if len(written) == 2:
            raise KeyboardInterrupt  # the process dies after two shards
        written.append(task.file)
        return real(task)

    monkeypatch.setattr(pack_module, "_pack_shard", failing)
    with pytest.raises(KeyboardInterrupt):
        pack_folder(folder, out, PackOptions(samples_per_shard=8), progress=False)
    with pytest.raises(DataError, match="incomplete"):
        ShardDataset(out, "train")
    finished = {name: (out / name).stat().st_mtime_ns for name in written}
    written.clear()
    monkeypatch.setattr(pack_module, "_pack_shard", lambda task: (written.append(task.file), real(task))[1])
    pack_folder(folder, out, PackOptions(samples_per_shard=8), progress=False)
    assert not set(written) & set(finished) and len(written) == 5 + 2 - 2  # 5 train + 2 val shards in all
    assert {name: (out / name).stat().st_mtime_ns for name in finished} == finished  # left untouched
    assert not list(out.glob("*.tmp"))
    fresh = tmp_path / "fresh"
    pack_folder(folder, fresh, PackOptions(samples_per_shard=8), progress=False)
    for name in sorted(p.name for p in fresh.glob("*.tar")):  # a resumed pack equals an uninterrupted one
        assert (out / name).read_bytes() == (fresh / name).read_bytes(), name


def test_pack_refuses_another_folder_or_other_options(folder: Path, tmp_path: Path) -> None:
    out = tmp_path / "shards"
    assert main(["data", "pack", str(folder), "--out", str(out), "--shard-size", "16"]) == 0
    other = make_folder(tmp_path / "other", per_class=4)
    with pytest.raises(HpmError, match=r"source folder: .*images \(pack\) vs .*other \(now\)"):
        pack_folder(other, out, PackOptions(samples_per_shard=16), progress=False)
    with pytest.raises(HpmError, match=r"max_side: 320 \(pack\) vs 256 \(now\)[\s\S]*another --out, or delete"):
        pack_folder(folder, out, PackOptions(max_side=256, samples_per_shard=16), progress=False)
    (folder / "train" / "a" / "999.png").write_bytes((folder / "train" / "a" / "000.png").read_bytes())
    with pytest.raises(HpmError, match="files changed since it was packed"):
        pack_folder(folder, out, PackOptions(samples_per_shard=16), progress=False)
    busy = tmp_path / "busy"
    busy.mkdir()
    (busy / "notes.txt").write_text("mine")
    with pytest.raises(HpmError, match="not empty and holds no pack"):
        pack_folder(folder, busy, progress=False)


def test_cli_pack_error_is_one_line(folder: Path, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    out = tmp_path / "shards"
    assert main(["data", "pack", str(folder), "--out", str(out), "--shard-size", "16"]) == 0
    assert main(["data", "pack", str(folder), "--out", str(out), "--max-side", "100"]) == 2
    err = capsys.readouterr().err
    assert "hpm data: error:" in err and "max_side: 320 (pack) vs 100 (now)" in err


def test_evaluation_reads_the_shards(folder: Path, tmp_path: Path) -> None:
    from hpm.config import DataConfig
    from hpm.eval.data import build_eval_data

    pack_folder(folder, tmp_path / "shards", PackOptions(keep_original=True, samples_per_shard=10), progress=False)
    plain = build_eval_data(DataConfig(data_dir=str(folder)), 32, 3)
    packed = build_eval_data(DataConfig(data_dir=str(tmp_path / "shards")), 32, 3)
    assert packed.describe() == plain.describe() and packed.classes == plain.classes
    transform = plain.transform()
    for split in ("train", "test"):
        a, b = getattr(plain, split).with_transform(transform), getattr(packed, split).with_transform(transform)
        for i in range(len(a)):
            assert torch.equal(a[i][0], b[i][0]) and a[i][1] == b[i][1]
