"""``hpm data pack``: lossless sources stay lossless, JPEGs are stored as before, ``--lossy``, the counts
and packs of an older version."""

from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from hpm.cli import main
from hpm.data import ImageFolderDataset, ShardDataset
from hpm.data.pack import PackOptions, pack_folder, pack_summary
from hpm.data.shards import INDEX_NAME, read_index
from hpm.errors import HpmError


def _modes(seed: int, size: tuple[int, int] = (30, 20)) -> dict[str, Image.Image]:
    """One random image per mode the reader must map: RGB, L, RGBA, LA, 1, palette with
    transparency, 16-bit greyscale."""
    rng = np.random.default_rng(seed)
    w, h = size
    rgb = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
    grey = rng.integers(0, 256, (h, w), dtype=np.uint8)
    palette = Image.fromarray(rgb).quantize(32)
    palette.info["transparency"] = 3
    return {
        "rgb": Image.fromarray(rgb),
        "l": Image.fromarray(grey),
        "rgba": Image.fromarray(rng.integers(0, 256, (h, w, 4), dtype=np.uint8)),
        "la": Image.fromarray(grey).convert("LA"),
        "bw": Image.fromarray(grey).convert("1"),
        "palette": palette,
        "g16": Image.fromarray(rng.integers(0, 65536, (h, w), dtype=np.uint16)),
    }


def _png_folder(root: Path, size: tuple[int, int] = (30, 20)) -> Path:
    """``root/train/{a,b}/<mode>.png`` (and ``root/val/a``) in every mode of :func:`_modes`."""
    for split, classes in (("train", ("a", "b")), ("val", ("a",))):
        for k, label in enumerate(classes):
            (root / split / label).mkdir(parents=True)
            for name, image in _modes(seed=10 * k + len(split), size=size).items():
                image.save(root / split / label / f"{name}.png")
    return root


def _members(out: Path, split: str = "train") -> list[bytes]:
    """The stored image bytes of every sample of a split, in the folder's order."""
    shards = ShardDataset(out, split)
    return [shards.source(i)[0].getvalue() for i in range(len(shards))]


def _assert_same_pixels(folder: Path, out: Path, split: str = "train") -> None:
    for channels in (1, 3):
        plain, packed = ImageFolderDataset(folder, split, channels), ShardDataset(out, split, channels)
        assert len(plain) == len(packed)
        for i in range(len(plain)):
            (a, la), (b, lb) = plain[i], packed[i]
            assert la == lb and torch.equal(a, b), (plain.samples[i][0], channels)


def test_a_png_folder_packed_with_defaults_keeps_every_pixel(tmp_path: Path) -> None:
    folder = _png_folder(tmp_path / "images")
    out = tmp_path / "shards"
    pack_folder(folder, out, PackOptions(samples_per_shard=5), progress=False)
    _assert_same_pixels(folder, out)
    _assert_same_pixels(folder, out, "val")
    sources = ImageFolderDataset(folder, "train").samples
    assert _members(out) == [Path(path).read_bytes() for path, _ in sources]  # the files themselves
    assert read_index(out)["stored"] == {"kept": 21, "lossless": 0, "lossy": 0}


def _shrunk(path: Path, max_side: int) -> np.ndarray:
    """What a shrunk source must decode to: 8-bit greyscale or RGB, alpha dropped, bicubic."""
    with Image.open(path) as image:
        if image.mode == "I;16":
            image = Image.fromarray((np.asarray(image) // 257).astype(np.uint8))
        image = image.convert("L" if image.mode in ("1", "L", "LA", "I;16") else "RGB")
        image.thumbnail((max_side, max_side), Image.Resampling.BICUBIC)
        return np.asarray(image)


@pytest.mark.parametrize("max_side", [100, 40])
def test_a_shrunk_png_is_re_encoded_losslessly(tmp_path: Path, max_side: int) -> None:
    folder = _png_folder(tmp_path / "images", size=(120, 100))
    out = tmp_path / "shards"
    pack_folder(folder, out, PackOptions(max_side=max_side, samples_per_shard=8), progress=False)
    sources = ImageFolderDataset(folder, "train").samples
    shards = ShardDataset(out, "train")
    for i, (path, _) in enumerate(sources):
        expected = _shrunk(Path(path), max_side)  # [H, max_side] or [H, max_side, 3]
        stored = Image.open(shards.source(i)[0])
        webp = expected.ndim == 3 and max_side >= 96  # RGB of at least 96 px: WebP, else PNG
        assert shards.name(i).endswith(".webp" if webp else ".png") and stored.format == ("WEBP" if webp else "PNG")
        assert np.array_equal(np.asarray(stored.convert("L" if expected.ndim == 2 else "RGB")), expected), path
    assert read_index(out)["stored"] == {"kept": 0, "lossless": 21, "lossy": 0}


def _jpeg(path: Path, size: tuple[int, int], mode: str = "RGB", seed: int = 0) -> Path:
    rng = np.random.default_rng(seed)
    smooth = Image.fromarray(rng.integers(0, 256, (6, 8, 3), dtype=np.uint8)).resize(size, Image.Resampling.BICUBIC)
    path.parent.mkdir(parents=True, exist_ok=True)
    smooth.convert(mode).save(path, quality=80)
    return path


def _as_before(path: Path, max_side: int, quality: int = 90) -> bytes:
    """What packing stored for a JPEG before lossless sources were kept lossless."""
    with Image.open(path) as image:
        if image.mode in ("L", "RGB") and max(image.size) <= max_side:
            return path.read_bytes()
        image.draft(image.mode, (max_side, max_side))
        converted = image.convert("L" if image.mode == "L" else "RGB")
        converted.thumbnail((max_side, max_side), Image.Resampling.BICUBIC)
        buffer = io.BytesIO()
        converted.save(buffer, format="JPEG", quality=quality)
        return buffer.getvalue()


def _mixed_folder(root: Path) -> Path:
    """``root/train/{a,b}``: small and large JPEGs (RGB, greyscale, CMYK) beside small and large PNGs."""
    for k, label in enumerate(("a", "b")):
        cls = root / "train" / label
        _jpeg(cls / "small.jpg", (40, 30), seed=k)
        _jpeg(cls / "grey.jpg", (36, 30), "L", seed=k)
        _jpeg(cls / "large.jpg", (120, 90), seed=k)
        _jpeg(cls / "large_grey.jpeg", (90, 120), "L", seed=k)
        _jpeg(cls / "cmyk.jpg", (40, 30), "CMYK", seed=k)
        _modes(seed=k, size=(40, 30))["rgb"].save(cls / "small.png")
        _modes(seed=k, size=(120, 90))["l"].save(cls / "large.png")
    return root


def test_jpegs_are_stored_as_before_beside_lossless_pngs(tmp_path: Path) -> None:
    folder = _mixed_folder(tmp_path / "images")
    out = tmp_path / "shards"
    pack_folder(folder, out, PackOptions(max_side=64, samples_per_shard=4), progress=False)
    sources, stored = ImageFolderDataset(folder, "train").samples, _members(out)
    shards = ShardDataset(out, "train")
    for i, (path, _) in enumerate(sources):
        if path.endswith(("jpg", "jpeg")):
            assert stored[i] == _as_before(Path(path), 64) and shards.name(i).endswith(".jpg"), path
        elif path.endswith("small.png"):
            assert stored[i] == Path(path).read_bytes() and shards.name(i).endswith(".png")
        else:
            assert np.array_equal(np.asarray(Image.open(io.BytesIO(stored[i]))), _shrunk(Path(path), 64))
    index = read_index(out)
    assert index["stored"] == {"kept": 6, "lossless": 2, "lossy": 6}  # kept: small.jpg, grey.jpg, small.png
    assert index["splits"]["train"]["stored"] == index["stored"]
    assert sum(s["stored"]["kept"] for s in index["splits"]["train"]["shards"]) == 6
    assert pack_summary(index) == "14 images: 6 kept as they are, 2 re-encoded losslessly, 6 re-encoded as JPEG"


def test_lossy_stores_every_image_as_jpeg(tmp_path: Path) -> None:
    folder = _mixed_folder(tmp_path / "images")
    out = tmp_path / "shards"
    pack_folder(folder, out, PackOptions(max_side=64, quality=70, lossy=True, samples_per_shard=4), progress=False)
    sources, stored = ImageFolderDataset(folder, "train").samples, _members(out)
    shards = ShardDataset(out, "train")
    for i, (path, _) in enumerate(sources):
        assert Image.open(io.BytesIO(stored[i])).format == "JPEG" and shards.name(i).endswith(".jpg")
        if path.endswith(("jpg", "jpeg")):
            assert stored[i] == _as_before(Path(path), 64, quality=70), path
    assert read_index(out)["stored"] == {"kept": 4, "lossless": 0, "lossy": 10}
    with pytest.raises(HpmError, match="--keep-original and --lossy exclude each other"):
        PackOptions(keep_original=True, lossy=True)


def _as_an_older_version(out: Path) -> None:
    """Drop what this version added to the index and the shards' records (the counts, the lossy option)."""
    for record in [out / INDEX_NAME, *out.glob("*.tar.json")]:
        payload = json.loads(record.read_text())
        payload.pop("stored", None)
        payload.get("options", {}).pop("lossy", None)
        for split in payload.get("splits", {}).values():
            split.pop("stored")
            for shard in split["shards"]:
                shard.pop("stored")
        record.write_text(json.dumps(payload))


def test_a_pack_of_an_older_version_is_read_and_resumed(tmp_path: Path) -> None:
    folder = _mixed_folder(tmp_path / "images")
    out = tmp_path / "shards"
    options = PackOptions(max_side=64, lossy=True, samples_per_shard=4)
    pack_folder(folder, out, options, progress=False)
    tars = {p.name: p.read_bytes() for p in out.glob("*.tar")}
    before = [ShardDataset(out, "train")[i] for i in range(14)]
    _as_an_older_version(out)
    assert "stored" not in read_index(out) and "lossy" not in read_index(out)["options"]
    older = ShardDataset(out, "train")
    for i, (image, label) in enumerate(before):
        assert older[i][1] == label and torch.equal(older[i][0], image)
    assert pack_summary(read_index(out)) == "14 images (how they were stored is not recorded: packed by an older version)"
    with pytest.raises(HpmError, match=r"lossy: True \(pack\) vs False \(now\)"):  # older packs were JPEG
        pack_folder(folder, out, PackOptions(max_side=64, samples_per_shard=4), progress=False)
    pack_folder(folder, out, options, progress=False)  # shards without counts are written again, the same
    assert {p.name: p.read_bytes() for p in out.glob("*.tar")} == tars
    assert read_index(out)["stored"] == {"kept": 4, "lossless": 0, "lossy": 10}


def test_cli_pack_flags_and_summary(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    folder = _mixed_folder(tmp_path / "images")
    common = ["--max-side", "64", "--shard-size", "4"]
    assert main(["data", "pack", str(folder), "--out", str(tmp_path / "auto"), *common]) == 0
    assert capsys.readouterr().out.strip().endswith(
        "14 images: 6 kept as they are, 2 re-encoded losslessly, 6 re-encoded as JPEG")
    jpeg = tmp_path / "jpeg"
    assert main(["data", "pack", str(folder), "--out", str(jpeg), "--lossy", "--quality", "70", *common]) == 0
    assert "4 kept as they are, 0 re-encoded losslessly, 10 re-encoded as JPEG" in capsys.readouterr().out
    assert read_index(jpeg)["options"]["lossy"] and read_index(jpeg)["options"]["quality"] == 70
    with pytest.raises(SystemExit):
        main(["data", "pack", str(folder), "--out", str(tmp_path / "both"), "--lossy", "--keep-original"])
    assert "not allowed with argument" in capsys.readouterr().err
