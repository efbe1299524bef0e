"""Figure-2 panels: the maps are what they claim, one row per image, clear errors."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from hpm.config import build_config
from hpm.errors import CheckpointError, DataError
from hpm.eval.patch_loss import load_pretrained
from hpm.viz.panels import (
    COLUMNS,
    DEFAULT_IMAGES,
    DPI,
    NO_PREDICTOR,
    column_titles,
    compute_maps,
    default_indices,
    draw_panels,
    figure_size,
    split_images,
    visualize,
)
from tests.conftest import needs_fmnist
from tests.eval.conftest import save_random_run, tiny_config

MEAN, STD = (0.3,), (0.4,)


def _imgs(n: int, seed: int = 0) -> torch.Tensor:
    return torch.randn(n, 1, 32, 32, generator=torch.Generator().manual_seed(seed))  # [N, 1, 32, 32]


def _panel_axes(fig) -> list:  # type: ignore[no-untyped-def]
    return [ax for ax in fig.axes if ax.get_label().startswith("panel:")]


def _run(tmp_path: Path, name: str) -> Path:
    """A tiny, randomly initialised HPM run (student with predictor, EMA teacher)."""
    return save_random_run(tmp_path / name, tiny_config())


def _independent_real_loss(  # type: ignore[no-untyped-def]
    model, imgs: torch.Tensor, num_masks: int, ratio: float, seed: int
):
    """Plain loops: for each mask the K patches with the largest noise are hidden; the loss of a
    hidden patch is the MSE of the prediction against the patch's pixels normalised by their own
    mean and (unbiased) variance."""
    n, p = imgs.shape[0], model.patch_size
    gh, gw = model.grid_size
    num_patches = gh * gw
    k = num_patches - int(num_patches * (1 - ratio))
    total = np.zeros((n, num_patches))
    count = np.zeros((n, num_patches), dtype=np.int64)
    g = torch.Generator().manual_seed(seed)
    for _ in range(num_masks):
        noise = torch.rand(n, num_patches, generator=g)
        hidden = noise.topk(k, dim=1).indices  # [N, K]
        keep = torch.stack([torch.tensor(sorted(set(range(num_patches)) - set(row.tolist()))) for row in hidden])
        with torch.no_grad():
            pred = model(imgs, keep, hidden).pred  # [N, K, P]
        for i in range(n):
            for j, patch in enumerate(hidden[i].tolist()):
                r, c = divmod(patch, gw)
                pixels = imgs[i, 0, r * p : (r + 1) * p, c * p : (c + 1) * p].reshape(-1).double()
                target = (pixels - pixels.mean()) / (pixels.var() + 1e-6).sqrt()
                total[i, patch] += float((pred[i, j].double() - target).pow(2).mean())
                count[i, patch] += 1
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(count > 0, total / count, np.nan), count


def test_real_loss_map_equals_an_independent_computation(tmp_path: Path) -> None:
    models = load_pretrained(_run(tmp_path, "hpm"))
    imgs = _imgs(3)
    maps = compute_maps(models, imgs, MEAN, STD, num_masks=3, seed=5)
    want, count = _independent_real_loss(models.student, imgs, 3, models.cfg.mask.ratio, seed=5)
    assert (maps.mask_count.numpy() == count).all()
    assert np.isnan(want).any()  # with 3 masks some patches are never hidden: NaN on both sides
    np.testing.assert_allclose(maps.real_loss.numpy(), want, rtol=1e-4, atol=1e-5, equal_nan=True)
    other = compute_maps(models, imgs, MEAN, STD, num_masks=3, seed=6)
    assert not np.allclose(other.real_loss.numpy(), want, equal_nan=True)  # the seed chooses the masks


def test_hpm_mask_and_reconstruction(tmp_path: Path) -> None:
    full_view = build_config(overrides={"model": tiny_config().model.model_dump(), "mask": {"teacher_view": "full"}})
    models = load_pretrained(save_random_run(tmp_path / "hpm", full_view))
    imgs = _imgs(2)
    maps = compute_maps(models, imgs, MEAN, STD, num_masks=2, alpha=0.5)
    assert maps.predictor == "teacher"
    torch.testing.assert_close(maps.predicted, models.teacher.score_patches(imgs).float())
    num_patches, k = 64, 48
    assert maps.masked.shape == (2, num_patches) and (maps.masked.sum(1) == k).all()
    top = maps.predicted.topk(24, dim=1).indices
    assert (maps.hard.sum(1) == 24).all() and maps.hard.gather(1, top).all()  # H = int(48 * 0.5)
    assert (maps.masked | ~maps.hard).all()  # every hard patch is masked
    # visible patches are the input pixels, de-normalised; masked ones are predictions
    pixels = (imgs * STD[0] + MEAN[0]).clamp(0, 1)
    torch.testing.assert_close(maps.pixels, pixels)
    patch = models.student.patchify
    visible = ~maps.masked
    torch.testing.assert_close(patch(maps.reconstruction)[visible], patch(pixels)[visible])
    assert not torch.allclose(patch(maps.reconstruction)[maps.masked], patch(pixels)[maps.masked])
    assert compute_maps(models, imgs, MEAN, STD, num_masks=1, alpha=0.0).hard.sum() == 0
    titles = column_titles(maps)
    assert "EMA teacher" in titles["predicted_loss"] and "α=0.50" in titles["mask"] and "M=2" in titles["real_loss"]


def test_reconstruction_undoes_norm_pix_per_patch(tmp_path: Path) -> None:
    """A model that predicts the norm-pix target exactly reconstructs the input exactly."""
    from hpm.masking import random_mask
    from hpm.viz.panels import reconstruct

    models = load_pretrained(_run(tmp_path, "hpm"))
    model, imgs = models.student, _imgs(2)
    ids = random_mask(torch.rand(2, 64, generator=torch.Generator().manual_seed(0)), 48)
    patches = model.patchify(imgs)
    target = patches.gather(1, ids.ids_mask.unsqueeze(-1).expand(-1, -1, patches.shape[-1]))
    normed = (target - target.mean(-1, keepdim=True)) / (target.var(-1, keepdim=True) + 1e-6).sqrt()

    class Oracle(torch.nn.Module):
        def forward(self, imgs, ids_keep, ids_mask):  # type: ignore[no-untyped-def]
            return type("Out", (), {"pred": normed})()

    oracle = Oracle()
    oracle.patchify, oracle.unpatchify = model.patchify, model.unpatchify  # type: ignore[attr-defined]
    torch.testing.assert_close(reconstruct(oracle, imgs, ids, norm_pix=True), imgs, atol=1e-4, rtol=0)


def test_mae_run_says_it_has_no_predictor(tmp_path: Path) -> None:
    cfg = build_config(overrides={"model": {**tiny_config().model.model_dump()}, "mask": {"strategy": "random"},
                                  "loss": {"predictor": "none"}})
    models = load_pretrained(save_random_run(tmp_path / "mae", cfg, teacher=False))
    maps = compute_maps(models, _imgs(2), MEAN, STD, num_masks=2)
    assert maps.predicted is None and maps.hard is None and maps.alpha is None
    assert (maps.masked.sum(1) == 48).all()  # the reconstruction's random mask
    titles = column_titles(maps)
    assert NO_PREDICTOR in titles["predicted_loss"] and NO_PREDICTOR in titles["mask"]
    assert "random 75% mask" in titles["reconstruction"]
    fig = draw_panels(maps)
    assert len(_panel_axes(fig)) == 2 * len(COLUMNS)
    empty = [ax for ax in _panel_axes(fig) if ax.get_label().startswith(("panel:predicted_loss", "panel:mask"))]
    assert all(not ax.images and "no loss predictor" in ax.texts[0].get_text() for ax in empty)
    assert len(fig.axes) == 2 * len(COLUMNS) + 1  # one colour bar: the real loss


def test_predictor_without_teacher_uses_the_student(tmp_path: Path) -> None:
    cfg = build_config(overrides={"model": {**tiny_config().model.model_dump()}, "mask": {"strategy": "random"}})
    models = load_pretrained(save_random_run(tmp_path / "rp", cfg, teacher=False))
    maps = compute_maps(models, _imgs(2), MEAN, STD, num_masks=1)
    assert maps.predictor == "student"
    torch.testing.assert_close(maps.predicted, models.student.score_patches(_imgs(2)).float())
    assert "student predictor, no teacher" in column_titles(maps)["predicted_loss"]


def _png_files(folder: Path, count: int) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    files = []
    for i in range(count):
        files.append(folder / f"img{i}.png")
        Image.fromarray(rng.integers(0, 255, (40, 30, 3), dtype=np.uint8)).save(files[-1])
    return files


@pytest.mark.parametrize("rows", [1, 3])
def test_png_has_one_row_per_image(tmp_path: Path, rows: int) -> None:
    run = _run(tmp_path, "hpm")
    result = visualize(run, tmp_path / "out", files=_png_files(tmp_path / "files", rows), num_masks=2)
    assert result.path == tmp_path / "out" / "patches.png"
    assert result.rows == rows and result.panels == rows * len(COLUMNS)
    width, height = (round(v * DPI) for v in figure_size(rows))
    with Image.open(result.path) as image:
        assert image.format == "PNG" and image.size == (width, height) == result.size_px
    models = load_pretrained(run)
    maps = compute_maps(models, _imgs(rows), MEAN, STD, num_masks=1, labels=[f"r{i}" for i in range(rows)])
    fig = draw_panels(maps)
    labels = sorted(ax.get_label() for ax in _panel_axes(fig))
    assert labels == sorted(f"panel:{c}:{r}" for c in COLUMNS for r in range(rows))
    assert len(fig.axes) == rows * len(COLUMNS) + 2  # + real and predicted colour bars
    top = {ax.get_label().split(":")[1]: ax.get_title() for ax in _panel_axes(fig) if ax.get_label().endswith(":0")}
    assert top == column_titles(maps)
    assert [ax.get_ylabel() for ax in _panel_axes(fig) if ax.get_label().startswith("panel:input")] == [
        f"r{i}" for i in range(rows)]


@needs_fmnist
def test_data_set_indices(tmp_path: Path) -> None:
    result = visualize(_run(tmp_path, "hpm"), tmp_path / "out", indices=[0, 9999], num_masks=1, filename="x.png")
    assert result.rows == 2 and result.path.name == "x.png"
    default = visualize(_run(tmp_path, "hpm2"), tmp_path / "out", num_masks=1)
    assert default.rows == 8
    with pytest.raises(DataError, match=r"indices \[10000\] are out of range: the test split has 10000"):
        visualize(_run(tmp_path, "hpm3"), tmp_path / "out", indices=[10000], num_masks=1)


def test_errors(tmp_path: Path) -> None:
    run = _run(tmp_path, "hpm")
    with pytest.raises(CheckpointError, match="does not exist"):
        visualize(tmp_path / "missing", tmp_path / "out")
    (tmp_path / "empty").mkdir()
    with pytest.raises(CheckpointError, match="holds no checkpoint"):
        visualize(tmp_path / "empty", tmp_path / "out")
    with pytest.raises(DataError, match="image file .*nope.png does not exist"):
        visualize(run, tmp_path / "out", files=[tmp_path / "nope.png"])
    (tmp_path / "bad.png").write_bytes(b"not a png")
    with pytest.raises(DataError, match="cannot read image file"):
        visualize(run, tmp_path / "out", files=[tmp_path / "bad.png"])
    files = _png_files(tmp_path / "files", 1)
    with pytest.raises(DataError, match="at least 1"):
        visualize(run, tmp_path / "out", files=files, num_masks=0)
    with pytest.raises(DataError, match=r"alpha must be in \[0, 1\]"):
        visualize(run, tmp_path / "out", files=files, alpha=1.5)
    with pytest.raises(DataError, match="no images chosen"):
        visualize(run, tmp_path / "out", indices=[])
    assert not (tmp_path / "out").exists()


def test_a_finished_run_holds_both_pictures(finished_run: Path) -> None:
    for name in ("curves.png", "patches.png"):
        with Image.open(finished_run / "figures" / name) as image:
            assert image.format == "PNG"
    with Image.open(finished_run / "figures" / "patches.png") as image:
        assert image.size == tuple(round(v * DPI) for v in figure_size(8))
    assert "figures (" in (finished_run / "train.log").read_text()


def test_masked_view_teacher_is_shown_as_configured(tmp_path: Path) -> None:
    """A masked-view run: the predicted map is the teacher's partial-view score (grey where its
    view showed the patch), the hard patches are chosen among the scored ones, the title says so."""
    from hpm.eval.patch_loss import teacher_patch_scores

    cfg = build_config(overrides={"model": tiny_config().model.model_dump(), "mask": {"teacher_view": "masked"}})
    models = load_pretrained(save_random_run(tmp_path / "masked", cfg))
    imgs = _imgs(3)
    maps = compute_maps(models, imgs, MEAN, STD, num_masks=2, alpha=0.5, seed=3)
    expected = teacher_patch_scores(models.teacher, models.cfg, imgs, torch.Generator().manual_seed(3 + 2))
    torch.testing.assert_close(maps.predicted, expected, equal_nan=True)
    scored = torch.isfinite(maps.predicted)
    assert (scored.sum(1) == 48).all()  # one view of ratio 0.75 scores the 48 patches it hides
    assert (maps.hard.sum(1) == 24).all() and scored[maps.hard].all() and maps.masked[maps.hard].all()
    title = column_titles(maps)["predicted_loss"]
    assert "masked view" in title and "full image" not in title
    fig = draw_panels(maps)  # NaN patches draw as the colour map's "bad" grey
    assert len(_panel_axes(fig)) == 3 * len(COLUMNS)


# --------------------------------------------------------------------------- default images


def _sorted_folder(root: Path, classes: tuple[str, ...] = ("ant", "bee", "cat"), per_class: int = 10) -> Path:
    """``root/val/<class>/00.png ...``: sorted so that the first 8 images are all of one class."""
    rng = np.random.default_rng(0)
    for name in classes:
        (root / "val" / name).mkdir(parents=True)
        for i in range(per_class):
            Image.fromarray(rng.integers(0, 255, (12, 10, 3), dtype=np.uint8)).save(root / "val" / name / f"{i:02d}.png")
    return root


def test_default_indices_take_classes_round_robin() -> None:
    assert default_indices([0, 0, 0, 1, 1, 2, 2, 2, 2, 2]) == [0, 3, 5, 1, 4, 6, 2, 7]
    assert default_indices([2, 1, 0, 2, 1, 0], count=4) == [2, 1, 0, 5]  # label order, not index order
    assert default_indices([5, 5, 3], count=10) == [2, 0, 1]  # fewer images than asked: all of them
    assert default_indices([]) == [] and default_indices([1, 0], count=0) == []
    assert len(default_indices(np.arange(40) % 3)) == DEFAULT_IMAGES == 8


def test_default_images_span_the_classes_of_a_sorted_folder(tmp_path: Path) -> None:
    root = _sorted_folder(tmp_path / "data")
    data_cfg = build_config(overrides={"data": {"data_dir": str(root)}}).data
    images, names = split_images(data_cfg, None, None, channels=1)
    classes = [name.split("\n")[1] for name in names]
    assert classes == ["ant", "bee", "cat", "ant", "bee", "cat", "ant", "bee"]  # the old default: 8 x "ant"
    assert [name.split("\n")[0] for name in names] == [f"val #{i}" for i in (0, 10, 20, 1, 11, 21, 2, 12)]
    assert len(images) == DEFAULT_IMAGES and all(image.shape == (1, 12, 10) for image in images)
    chosen, named = split_images(data_cfg, None, [3, 0], channels=1)  # explicit indices: as given
    assert named == ["val #3\nant", "val #0\nant"] and len(chosen) == 2
    result = visualize(_run(tmp_path, "hpm"), tmp_path / "out", data_dir=str(root), num_masks=1)
    assert result.rows == DEFAULT_IMAGES


@needs_fmnist
def test_default_fashion_mnist_images_are_eight_classes() -> None:
    _, names = split_images(build_config().data, None, None, channels=1)
    classes = [name.split("\n")[1] for name in names]
    assert len(set(classes)) == len(classes) == DEFAULT_IMAGES


# ------------------------------------------------------------ attention runs (AttMask)
def _attention_run(tmp_path: Path, predictor: str, mode: str, **mask) -> Path:
    cfg = build_config(overrides={"model": tiny_config().model.model_dump(), "loss": {"predictor": predictor},
                                  "mask": {"strategy": "attention", "attention_mode": mode, **mask}})
    return save_random_run(tmp_path / f"att_{predictor}_{mode}", cfg)


@pytest.mark.parametrize(("predictor", "mode"), [("none", "hints"), ("relative", "high"), ("none", "low")])
def test_attention_run_draws_its_attention_and_the_mask_it_chose(tmp_path: Path, predictor: str, mode: str) -> None:
    models = load_pretrained(_attention_run(tmp_path, predictor, mode))
    imgs = _imgs(3)
    maps = compute_maps(models, imgs, MEAN, STD, num_masks=2, alpha=0.5)
    assert maps.columns == ("input", "real_loss", "predicted_loss", "attention", "mask", "reconstruction")
    torch.testing.assert_close(maps.attention, models.teacher.attention_scores(imgs))
    assert (maps.predicted is None) == (predictor == "none")
    k, h = 48, 24
    shown = int(h * 0.1) if mode == "hints" else 0
    assert (maps.masked.sum(1) == k).all() and (maps.hard.sum(1) == h - shown).all()
    ranked = -maps.attention if mode == "low" else maps.attention
    top = torch.zeros(3, 64, dtype=torch.bool).scatter_(1, ranked.topk(h, dim=1).indices, True)
    assert bool(top[maps.hard].all())  # the red patches are the most (least) attended
    if mode == "hints":
        assert maps.hints is not None and (maps.hints.sum(1) == shown).all() and not (maps.hints & maps.masked).any()
    else:
        assert maps.hints is None
    titles = column_titles(maps)
    assert "[CLS] attention" in titles["attention"] and f"attention mask ({mode})" in titles["mask"]
    fig = draw_panels(maps)
    assert len(_panel_axes(fig)) == 3 * 6
    assert len(fig.axes) == 3 * 6 + (3 if predictor != "none" else 2)  # colour bars: real, attention (+ predicted)


def test_attention_run_with_a_masked_view_teacher_greys_the_hidden_patches(tmp_path: Path) -> None:
    models = load_pretrained(_attention_run(tmp_path, "none", "high", teacher_view="masked", teacher_views=2))
    maps = compute_maps(models, _imgs(2), MEAN, STD, num_masks=1, alpha=0.5)
    assert (torch.isfinite(maps.attention).sum(1) == 32).all()  # 2 views x 16 shown patches
    assert bool(torch.isfinite(maps.attention)[maps.hard].all())  # chosen only among scored patches
    assert "2 masked views" in column_titles(maps)["attention"]
    with pytest.raises(DataError, match="alpha 1.0 asks for 48 patches chosen by attention, more than the teacher's view scores"):
        compute_maps(models, _imgs(2), MEAN, STD, num_masks=1, alpha=1.0)  # its views score only 32
    with pytest.raises(DataError, match=r"alpha must be in \[0, 1\]"):
        compute_maps(models, _imgs(2), MEAN, STD, num_masks=1, alpha=-0.1)


def test_hpm_runs_keep_their_five_panels(tmp_path: Path) -> None:
    maps = compute_maps(load_pretrained(_run(tmp_path, "hpm")), _imgs(1), MEAN, STD, num_masks=1)
    assert maps.columns == COLUMNS and maps.attention is None
