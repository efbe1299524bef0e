"""Figure-2-style panels of a pre-trained model (``hpm visualize``).

One row per image: the input; the real per-patch reconstruction loss averaged over ``M`` random
masks; the loss predictor's score as the run's teacher computes it (``mask.teacher_view``: the
full image, or random partial views, where the patches no view hid have no score and are drawn
grey; the student's full-image score where the run has a predictor but no teacher); the HPM mask at a chosen α (the
``H = int(K·α)`` patches the predictor ranks hardest, or easiest for ``mask.select=easiest``,
plus ``K - H`` random ones); and the reconstruction under that mask with the visible patches
pasted back, de-normalised, or, for a run whose target is not pixels (``loss.target`` hog, ema,
model), a picture of the target (:mod:`hpm.viz.target_view`: HOG as oriented bars, features as
a PCA map). Each map type shares one colour scale over all rows.

An MAE run (no loss predictor) keeps its predicted-loss and HPM-mask panels, empty and titled
"no loss predictor (MAE run)"; its reconstruction uses a random mask of the run's ratio.

An attention run (``mask.strategy=attention``, AttMask) has one more panel, after the predicted
loss: the EMA teacher's [CLS] attention as the run computes it to choose masks (last block, mean
over heads; the patches a masked view hid have no score, grey); its mask panel is the attention
mask (``attention_mode`` high, low or hints, with the hints shown) and its predicted-loss panel
the teacher's full-image predicted loss when the run trains a predictor, else empty.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from itertools import chain, islice, zip_longest
from pathlib import Path

import matplotlib
import numpy as np
import torch
from matplotlib.colors import Normalize
from matplotlib.figure import Figure
from torch import Tensor

from hpm.config import Config, DataConfig
from hpm.data import (
    FASHION_MNIST_CLASSES,
    Unreadable,
    build_eval_transform,
    load_fashion_mnist,
    open_image_dataset,
    read_image,
)
from hpm.errors import DataError
from hpm.eval.data import normalisation
from hpm.eval.patch_loss import (
    PretrainedModels,
    load_pretrained,
    predicted_patch_loss,
    real_patch_loss,
    run_target,
    teacher_patch_scores,
)
from hpm.losses.targets import TargetFn, all_patches
from hpm.masking import (
    MaskIds, alpha_at, attention_mask, hard_patch_mask, num_chosen, num_hard_patches, num_masked, random_mask,
)
from hpm.models.mae import MaskedAutoencoder
from hpm.viz.target_view import hog_picture, pca_picture

COLUMNS = ("input", "real_loss", "predicted_loss", "mask", "reconstruction")
ATTENTION_COLUMNS = ("input", "real_loss", "predicted_loss", "attention", "mask", "reconstruction")  # attention runs
PANEL_INCHES = 2.0  # side of one panel
DPI = 100
DEFAULT_IMAGES = 8  # images shown when none are chosen, spread over the classes (default_indices)
_HARD_RGB = (0.9, 0.2, 0.15)  # masked, chosen by the predictor
_RANDOM_RGB = (0.55, 0.55, 0.55)  # masked at random
_HINT_RGB = (1.0, 0.85, 0.1)  # frame of a most-attended patch shown back (attention hints)
NO_PREDICTOR = "no loss predictor (MAE run)"
NO_PREDICTOR_ATTENTION = "no loss predictor (attention run)"
_TARGET_NAMES = {"norm_pix": "norm-pix", "pix": "pixel", "hog": "HOG", "ema": "EMA-feature", "model": "feature"}


@dataclass
class PatchMaps:
    """Everything one panel figure shows, for ``N`` images of ``L`` patches.

    Attributes:
        pixels: [N, C, H, W] the inputs, de-normalised to [0, 1].
        real_loss: [N, L] MSE of each patch against the run's target averaged over the masks
            that hid it (NaN for a patch none of them hid).
        mask_count: [N, L] how many of the ``num_masks`` masks hid each patch.
        predicted: [N, L] the loss predictor's score as the teacher computes it (NaN for a patch
            its partial views left visible), or None (MAE run).
        predictor: ``"teacher"``, ``"student"`` or None: whose scores ``predicted`` holds.
        teacher_view: ``"full"`` or ``"masked"``: the view ``predicted`` comes from.
        teacher_views: partial views per image (masked view), else 0.
        masked: [N, L] bool, the mask of the reconstruction (HPM's; random for an MAE run).
        hard: [N, L] bool, the masked patches chosen by score, or None (MAE run).
        attention: [N, L] the teacher's [CLS] attention that chose the mask (attention runs;
            NaN for a patch its partial views hid), else None.
        attention_mode: ``mask.attention_mode`` of an attention run, else None.
        hints: [N, L] bool, the most-attended patches shown back (``hints`` mode), else None.
        chosen: ``"hardest"`` or ``"easiest"`` (``mask.select``): which patches ``hard`` holds.
        reconstruction: [N, C, H, W] in [0, 1]: predictions in the masked patches, the input
            elsewhere; for a target that is not pixels, a picture of the target ([N, 1 or 3, H', W']).
        target: ``loss.target`` of the run.
        alpha: α of the HPM mask (None for an MAE run).
        num_masks: M.
        mask_ratio: Fraction of the patches every mask hides.
        grid: Patches per column and per row.
        labels: One label per image (data-set index and class, or file name).
    """

    pixels: Tensor
    real_loss: Tensor
    mask_count: Tensor
    predicted: Tensor | None
    predictor: str | None
    masked: Tensor
    hard: Tensor | None
    chosen: str
    reconstruction: Tensor
    alpha: float | None
    num_masks: int
    mask_ratio: float
    grid: tuple[int, int]
    labels: list[str]
    teacher_view: str = "full"
    target: str = "norm_pix"
    teacher_views: int = 0
    attention: Tensor | None = None
    attention_mode: str | None = None
    hints: Tensor | None = None

    @property
    def columns(self) -> tuple[str, ...]:
        """The panels of one row: :data:`COLUMNS`, or :data:`ATTENTION_COLUMNS` for an attention run."""
        return ATTENTION_COLUMNS if self.attention is not None else COLUMNS


@dataclass
class PanelsResult:
    """What :func:`visualize` wrote."""

    path: Path
    rows: int
    panels: int
    size_px: tuple[int, int]  # (width, height)
    seconds: float


def final_alpha(cfg: Config) -> float:
    """The α of the run's last step (``mask.alpha_end`` for the default easy-to-hard schedule)."""
    # frac = 1 for both schedule units: epoch (epochs-1+1)/epochs, iter (0+1)/1
    return alpha_at(cfg.mask, cfg.train.epochs - 1, 0, cfg.train.epochs, 1)


@torch.no_grad()
def reconstruct(model: MaskedAutoencoder, imgs: Tensor, ids: MaskIds, norm_pix: bool) -> Tensor:
    """The input with its masked patches replaced by the model's predictions (normalised space).

    Norm-pix predictions are mapped back with each masked patch's own mean and variance, as
    MAE's visualisation does. [N, C, H, W] -> [N, C, H, W].
    """
    pred = model(imgs, ids.ids_keep, ids.ids_mask).pred.float()  # [N, K, P]
    patches = model.patchify(imgs).float()  # [N, L, P]
    index = ids.ids_mask.unsqueeze(-1).expand(-1, -1, patches.shape[-1])  # [N, K, P]
    if norm_pix:
        target = torch.gather(patches, 1, index)  # [N, K, P]
        pred = pred * (target.var(dim=-1, keepdim=True) + 1e-6) ** 0.5 + target.mean(dim=-1, keepdim=True)
    return model.unpatchify(patches.scatter(1, index, pred))


def _denormalise(x: Tensor, mean: Sequence[float], std: Sequence[float]) -> Tensor:
    m = torch.tensor(mean, dtype=x.dtype).view(1, -1, 1, 1)
    s = torch.tensor(std, dtype=x.dtype).view(1, -1, 1, 1)
    return (x * s + m).clamp(0.0, 1.0)


@torch.no_grad()
def _check_alpha(alpha: float, num_hard: int, scores: Tensor, chosen_by: str) -> None:
    """Refuse an α outside [0, 1] or one that asks for more patches than ``scores`` [N, L] scores."""
    if not 0.0 <= alpha <= 1.0:
        raise DataError(f"alpha must be in [0, 1], got {alpha}")
    if num_hard > int(torch.isfinite(scores).sum(1).min()):
        raise DataError(f"alpha {alpha} asks for {num_hard} patches chosen by {chosen_by}, more than the teacher's view scores")


def _reconstruction(
    models: PretrainedModels, imgs: Tensor, ids: MaskIds, mean: Sequence[float], std: Sequence[float], target: TargetFn
) -> Tensor:
    """[N, C, H, W] what the student reconstructs under ``ids`` (pixel targets), else the target's picture."""
    cfg, student = models.cfg, models.student
    if cfg.loss.target in ("norm_pix", "pix"):
        return _denormalise(reconstruct(student, imgs, ids, cfg.loss.target == "norm_pix"), mean, std)
    return target_picture(cfg, target, imgs, student.grid_size)


def compute_maps(
    models: PretrainedModels,
    imgs: Tensor,
    mean: Sequence[float],
    std: Sequence[float],
    num_masks: int = 10,
    alpha: float | None = None,
    seed: int = 0,
    labels: Sequence[str] | None = None,
) -> PatchMaps:
    """Real loss, predicted loss, HPM mask and reconstruction of ``imgs``.

    Args:
        models: The run's student (reconstructor, maybe a predictor) and teacher (HPM).
        imgs: [N, C, H, W] images normalised as in training.
        mean: Per-channel mean of that normalisation (to show pixels).
        std: Per-channel standard deviation of it.
        num_masks: M, random masks averaged for the real loss.
        alpha: α of the HPM mask (default: the run's last α, see :func:`final_alpha`).
        seed: Seeds the M masks (generator ``seed``), the random part of the HPM mask
            (generator ``seed + 1``) and a masked-view teacher's partial views (``seed + 2``).
        labels: Row labels (default ``#0``, ``#1``, ...).
    """
    cfg, student = models.cfg, models.student
    n, num_patches = imgs.shape[0], student.num_patches
    target = run_target(models)
    real, count = real_patch_loss(student, imgs, num_masks, cfg.mask.ratio, torch.Generator().manual_seed(seed), target)
    if cfg.mask.strategy == "attention" and models.teacher is not None:
        return _attention_maps(models, imgs, mean, std, real, count, num_masks, alpha, seed, labels, target)
    scorer = models.teacher if models.teacher is not None else (student if student.has_predictor else None)
    predictor = None if scorer is None else ("teacher" if scorer is models.teacher else "student")
    masked_teacher = predictor == "teacher" and cfg.mask.teacher_view == "masked"
    if predictor == "teacher":  # as the run's teacher scores patches to choose masks
        predicted = teacher_patch_scores(scorer, cfg, imgs, torch.Generator().manual_seed(seed + 2))  # [N, L]
    else:
        predicted = predicted_patch_loss(scorer, imgs) if scorer is not None else None  # [N, L]
    k = num_masked(num_patches, cfg.mask.ratio)
    noise = torch.rand(n, num_patches, generator=torch.Generator().manual_seed(seed + 1))  # [N, L]
    hard = None
    if predicted is None:
        alpha = None
        ids = random_mask(noise, k)
    else:
        alpha = final_alpha(cfg) if alpha is None else alpha
        scores = -predicted if cfg.mask.select == "easiest" else predicted
        scores = torch.nan_to_num(scores, nan=float("-inf"))  # unscored patches are never chosen
        num_hard = num_hard_patches(k, alpha)
        _check_alpha(alpha, num_hard, scores, "predicted loss")
        ids = hard_patch_mask(scores, noise, k, num_hard)
        hard = torch.zeros(n, num_patches, dtype=torch.bool)
        if num_hard:
            hard.scatter_(1, scores.topk(num_hard, dim=1).indices, True)
    recon = _reconstruction(models, imgs, ids, mean, std, target)
    return PatchMaps(
        pixels=_denormalise(imgs.float(), mean, std),
        real_loss=real,
        mask_count=count,
        predicted=predicted,
        predictor=predictor,
        masked=ids.as_bool(num_patches),
        hard=hard,
        chosen=cfg.mask.select,
        reconstruction=recon,
        alpha=alpha,
        num_masks=num_masks,
        mask_ratio=cfg.mask.ratio,
        grid=student.grid_size,
        labels=list(labels) if labels is not None else [f"#{i}" for i in range(n)],
        teacher_view="masked" if masked_teacher else "full",
        teacher_views=cfg.mask.teacher_views if masked_teacher else 0,
        target=cfg.loss.target,
    )


def _attention_maps(
    models: PretrainedModels,
    imgs: Tensor,
    mean: Sequence[float],
    std: Sequence[float],
    real: Tensor,
    count: Tensor,
    num_masks: int,
    alpha: float | None,
    seed: int,
    labels: Sequence[str] | None,
    target: TargetFn,
) -> PatchMaps:
    """:func:`compute_maps` of an attention run: the teacher's attention (as the run scores patches,
    partial views from generator ``seed + 2``) chooses the mask, drawn with its random part from
    generator ``seed + 1``; the predicted loss is the teacher's full-image pass, if it has a predictor."""
    cfg, student, teacher = models.cfg, models.student, models.teacher
    assert teacher is not None
    n, num_patches = imgs.shape[0], student.num_patches
    attention = teacher_patch_scores(teacher, cfg, imgs, torch.Generator().manual_seed(seed + 2))  # [N, L]
    predicted = predicted_patch_loss(teacher, imgs) if teacher.has_predictor else None  # [N, L]
    alpha = final_alpha(cfg) if alpha is None else alpha
    k = num_masked(num_patches, cfg.mask.ratio)
    num_hard = num_hard_patches(k, alpha)
    _check_alpha(alpha, num_hard, attention, "attention")
    mode, share = cfg.mask.attention_mode, cfg.mask.attention_hints
    noise = torch.rand(n, num_patches, generator=torch.Generator().manual_seed(seed + 1))  # [N, L]
    ids = attention_mask(attention, noise, k, num_hard, mode, share)
    masked = ids.as_bool(num_patches)
    hard = torch.zeros(n, num_patches, dtype=torch.bool).scatter_(1, ids.ids_mask[:, : num_chosen(mode, num_hard, share)], True)
    hints = None
    if mode == "hints":
        ranked = torch.nan_to_num(attention, nan=float("-inf"))
        top = torch.zeros(n, num_patches, dtype=torch.bool)
        if num_hard:
            top.scatter_(1, ranked.topk(num_hard, dim=1).indices, True)
        hints = top & ~masked
    recon = _reconstruction(models, imgs, ids, mean, std, target)
    masked_view = cfg.mask.teacher_view == "masked"
    return PatchMaps(
        pixels=_denormalise(imgs.float(), mean, std), real_loss=real, mask_count=count, predicted=predicted,
        predictor="teacher" if predicted is not None else None, masked=masked, hard=hard,
        chosen="least-attended" if mode == "low" else "most-attended", reconstruction=recon, alpha=alpha,
        num_masks=num_masks, mask_ratio=cfg.mask.ratio, grid=student.grid_size,
        labels=list(labels) if labels is not None else [f"#{i}" for i in range(n)],
        teacher_view="masked" if masked_view else "full", teacher_views=cfg.mask.teacher_views if masked_view else 0,
        target=cfg.loss.target, attention=attention, attention_mode=mode, hints=hints,
    )


@torch.no_grad()
def target_picture(cfg: Config, target: TargetFn, imgs: Tensor, grid: tuple[int, int]) -> Tensor:
    """A picture of a target that is not pixels: HOG as oriented bars, features as a PCA map.
    [N, C, H, W] -> [N, 1 or 3, H', W'] in [0, 1]."""
    every = target(imgs, all_patches(imgs.shape[0], grid[0] * grid[1], imgs.device))  # [N, L, D]
    if cfg.loss.target == "hog":
        return hog_picture(every, grid, imgs.shape[1], cfg.loss.hog_bins)
    return pca_picture(every, grid, tuple(imgs.shape[-2:]))


def _hwc(x: Tensor) -> np.ndarray:
    """[C, H, W] in [0, 1] -> [H, W, 3] for imshow."""
    if x.shape[0] == 1:
        x = x.expand(3, -1, -1)
    return x.permute(1, 2, 0).numpy()


def _mask_picture(
    pixels: Tensor, masked: Tensor, hard: Tensor | None, grid: tuple[int, int], hints: Tensor | None = None
) -> np.ndarray:
    """The input with its masked patches painted: red when chosen by score, grey when random;
    ``hints`` (visible patches shown back by attention masking) get a yellow frame."""
    img = _hwc(pixels).copy()  # [H, W, 3]
    ph, pw = img.shape[0] // grid[0], img.shape[1] // grid[1]

    def up(patch_bool: Tensor) -> np.ndarray:  # [L] -> [H, W]
        cells = patch_bool.view(grid).numpy()
        return np.kron(cells, np.ones((ph, pw), dtype=bool)).astype(bool)

    random_part = masked if hard is None else masked & ~hard
    img[up(random_part)] = _RANDOM_RGB
    if hard is not None:
        img[up(hard)] = _HARD_RGB
    if hints is not None and bool(hints.any()):
        inner = np.zeros((ph, pw), dtype=bool)
        inner[1:-1, 1:-1] = True
        frame = up(hints) & ~np.kron(hints.view(grid).numpy(), inner).astype(bool)
        img[frame] = _HINT_RGB
    return img


def _empty(ax, text: str) -> None:  # type: ignore[no-untyped-def]
    ax.text(0.5, 0.5, text.replace(" (", "\n("), ha="center", va="center", transform=ax.transAxes,
            fontsize=8, color="0.35")
    ax.set_facecolor("0.95")


def column_titles(maps: PatchMaps) -> dict[str, str]:
    """What each column shows (the top row's panel titles)."""
    ratio = f"{maps.mask_ratio:.0%}"
    k = int(maps.masked[0].sum())
    if maps.attention is not None:
        return _attention_titles(maps, ratio, k)
    if maps.predicted is None:
        predicted = f"predicted loss:\n{NO_PREDICTOR}"
        mask = f"HPM mask:\n{NO_PREDICTOR}"
        recon = f"reconstruction, random {ratio} mask\n(visible patches pasted back)"
    else:
        source = "EMA teacher" if maps.predictor == "teacher" else "student predictor, no teacher"
        if maps.teacher_view == "masked":
            views = "1 masked view" if maps.teacher_views == 1 else f"{maps.teacher_views} masked views"
            predicted = f"predicted loss, {source}\n{views} (grey: patch seen)"
        else:
            predicted = f"predicted loss\n({source}, full image)"
        h = int(maps.hard[0].sum()) if maps.hard is not None else 0
        mask = f"HPM mask, α={maps.alpha:.2f}: {h} {maps.chosen}\n(red) + {k - h} random (grey)"
        recon = "reconstruction, HPM mask\n(visible patches pasted back)"
    if maps.target == "hog":
        recon = "target: HOG of the image (bars along\nedges; no pixels reconstructed)"
    elif maps.target in ("ema", "model"):
        teacher = "EMA teacher" if maps.target == "ema" else "frozen model"
        recon = f"target: {teacher} features, 3 PCA\ncomponents as RGB (no pixels)"
    return {
        "input": "input",
        "real_loss": f"real loss: mean over M={maps.num_masks}\nrandom {ratio} masks ({_TARGET_NAMES[maps.target]} MSE)",
        "predicted_loss": predicted,
        "mask": mask,
        "reconstruction": recon,
    }


def _attention_titles(maps: PatchMaps, ratio: str, k: int) -> dict[str, str]:
    """:func:`column_titles` of an attention run."""
    if maps.teacher_view == "masked":
        views = "1 masked view" if maps.teacher_views == 1 else f"{maps.teacher_views} masked views"
        where = f"{views} (grey: patch hidden)"
    else:
        where = "full image"
    h = int(maps.hard[0].sum()) if maps.hard is not None else 0
    shown = int(maps.hints[0].sum()) if maps.hints is not None else 0
    mask = f"attention mask ({maps.attention_mode}), α={maps.alpha:.2f}:\n{h} {maps.chosen} (red)"
    mask += f",\n{shown} shown (yellow)" if maps.hints is not None else ""
    mask += f" + {k - h} random (grey)"
    predicted = ("predicted loss\n(EMA teacher, full image)" if maps.predicted is not None
                 else f"predicted loss:\n{NO_PREDICTOR_ATTENTION}")
    titles = {
        "input": "input",
        "real_loss": f"real loss: mean over M={maps.num_masks}\nrandom {ratio} masks ({_TARGET_NAMES[maps.target]} MSE)",
        "predicted_loss": predicted,
        "attention": f"teacher's [CLS] attention\n(last block; {where})",
        "mask": mask,
        "reconstruction": "reconstruction,\nattention mask (visible\npatches pasted back)",
    }
    if maps.target == "hog":
        titles["reconstruction"] = "target: HOG of the image (bars along\nedges; no pixels reconstructed)"
    elif maps.target in ("ema", "model"):
        teacher = "EMA teacher" if maps.target == "ema" else "frozen model"
        titles["reconstruction"] = f"target: {teacher} features, 3 PCA\ncomponents as RGB (no pixels)"
    return titles


def figure_size(rows: int, columns: int = len(COLUMNS)) -> tuple[float, float]:
    """Figure size in inches for ``rows`` images of ``columns`` panels (titles, suptitle and colour bars included)."""
    return (columns * PANEL_INCHES + 0.8, rows * PANEL_INCHES + 2.0)


def draw_panels(maps: PatchMaps, title: str | None = None) -> Figure:
    """One row per image, one column per entry of ``maps.columns`` (:data:`COLUMNS`, or
    :data:`ATTENTION_COLUMNS` for an attention run); panel axes are labelled ``panel:<column>:<row>``."""
    rows, columns = maps.pixels.shape[0], maps.columns
    fig = Figure(figsize=figure_size(rows, len(columns)), dpi=DPI, layout="constrained")
    axes = np.asarray(fig.subplots(rows, len(columns), squeeze=False))  # [rows, 5 or 6]
    cmap = matplotlib.colormaps["viridis"].with_extremes(bad="0.85")  # bad: patches no mask hid
    finite = maps.real_loss[torch.isfinite(maps.real_loss)]
    real_norm = Normalize(float(finite.min()), float(finite.max())) if finite.numel() else Normalize(0, 1)
    pred_norm = None
    if maps.predicted is not None:
        scored = maps.predicted[torch.isfinite(maps.predicted)]
        pred_norm = Normalize(float(scored.min()), float(scored.max())) if scored.numel() else Normalize(0, 1)
    att_norm = None
    if maps.attention is not None:
        scored = maps.attention[torch.isfinite(maps.attention)]
        att_norm = Normalize(float(scored.min()), float(scored.max())) if scored.numel() else Normalize(0, 1)
    extent = (0, maps.pixels.shape[-1], maps.pixels.shape[-2], 0)
    real_im = pred_im = att_im = None
    empty_text = NO_PREDICTOR_ATTENTION if maps.attention is not None else NO_PREDICTOR
    for r in range(rows):
        for c, column in enumerate(columns):
            ax = axes[r, c]
            ax.set_label(f"panel:{column}:{r}")
            ax.set_xticks([])
            ax.set_yticks([])
            if column == "input":
                ax.imshow(_hwc(maps.pixels[r]), interpolation="nearest")
                ax.set_ylabel(maps.labels[r], fontsize=8)
            elif column == "real_loss":
                real_im = ax.imshow(maps.real_loss[r].view(maps.grid).numpy(), cmap=cmap, norm=real_norm,
                                    interpolation="nearest", extent=extent)
            elif column == "predicted_loss":
                if maps.predicted is None:
                    _empty(ax, empty_text)
                else:
                    pred_im = ax.imshow(maps.predicted[r].view(maps.grid).numpy(), cmap=cmap, norm=pred_norm,
                                        interpolation="nearest", extent=extent)
            elif column == "attention":
                assert maps.attention is not None
                att_im = ax.imshow(maps.attention[r].view(maps.grid).numpy(), cmap=cmap, norm=att_norm,
                                   interpolation="nearest", extent=extent)
            elif column == "mask":
                if maps.hard is None:
                    _empty(ax, NO_PREDICTOR)
                else:
                    hints = maps.hints[r] if maps.hints is not None else None
                    ax.imshow(_mask_picture(maps.pixels[r], maps.masked[r], maps.hard[r], maps.grid, hints),
                              interpolation="nearest")
            else:
                ax.imshow(_hwc(maps.reconstruction[r]), interpolation="nearest")
    titles = column_titles(maps)
    for c, column in enumerate(columns):
        axes[0, c].set_title(titles[column], fontsize=8)
    bars = ((real_im, "real_loss", "real loss"), (pred_im, "predicted_loss", "predicted score"),
            (att_im, "attention", "attention"))
    for image, column, label in bars:
        c = columns.index(column) if column in columns else -1
        if image is not None:  # one colour scale for the whole column
            bar = fig.colorbar(image, ax=list(axes[:, c]), location="bottom", shrink=0.9, pad=0.01)
            bar.set_label(f"{label} (scale shared by all rows)", fontsize=7)
            bar.ax.tick_params(labelsize=7)
    if title:
        fig.suptitle(title, fontsize=10)
    return fig


def _split_images(
    data_cfg: DataConfig, split: str | None, indices: Sequence[int] | None, channels: int
) -> tuple[list[Tensor], list[str]]:
    """uint8 [C, H, W] images of a data-set split and their row labels.

    ``split`` None: the test split (``val/`` for image folders), else the train split.
    ``indices`` None: :data:`DEFAULT_IMAGES` images spread over the classes (see
    :func:`default_indices`; fewer if the split is smaller).
    """
    wanted = split or "test"
    if data_cfg.dataset == "fashion_mnist":
        if wanted not in ("train", "test"):
            raise DataError(f"Fashion-MNIST has the splits 'train' and 'test', not {wanted!r}")
        images, labels = load_fashion_mnist(data_cfg.root, wanted)  # uint8 [N, 28, 28], int64 [N]
        indices = _check_indices(indices, labels, wanted)
        return (
            [torch.from_numpy(images[i]).unsqueeze(0) for i in indices],
            [f"{wanted} #{i}\n{FASHION_MNIST_CLASSES[labels[i]]}" for i in indices],
        )
    if data_cfg.data_dir is None:
        raise DataError("folder data needs data.data_dir; pass --data-dir DIR or image files with --images")
    folder_split = "val" if wanted == "test" else wanted
    try:
        folder = open_image_dataset(data_cfg.data_dir, folder_split, channels)
    except DataError:
        if split is not None:
            raise
        folder_split = "train"  # no val/: show training images
        folder = open_image_dataset(data_cfg.data_dir, folder_split, channels)
    indices = _check_indices(indices, folder.labels, folder_split)
    out, names = [], []
    for i in indices:
        item = folder[i]
        if isinstance(item, Unreadable):
            raise DataError(
                f"image {i} of {data_cfg.data_dir}/{folder_split} ({item.path}) is unreadable; "
                "choose other images with --indices or replace the file"
            )
        out.append(item[0])
        names.append(f"{folder_split} #{i}\n{folder.classes[item[1]]}")
    return out, names


def default_indices(labels: Sequence[int] | np.ndarray, count: int = DEFAULT_IMAGES) -> list[int]:
    """Indices of ``count`` images taken round-robin over the classes, in label order.

    The first image of each class (smallest label first), then the second of each, and so on,
    until ``count`` are chosen (all of them if there are fewer): e.g. one image of each of 8
    classes of Fashion-MNIST, rather than the first 8 images of a folder sorted by class.

    Args:
        labels: The class label of each image of the split, ``[N]``.
        count: How many images to choose.

    Returns:
        Indices into ``labels``, in the round-robin order.
    """
    labels = np.asarray(labels)
    order = np.argsort(labels, kind="stable")  # by label, each class's images in index order
    starts = np.flatnonzero(np.diff(labels[order])) + 1
    by_class = np.split(order, starts) if len(order) else []
    rounds = chain.from_iterable(zip_longest(*by_class))  # class 0's first, class 1's first, ...
    return list(islice((int(i) for i in rounds if i is not None), max(count, 0)))


def _check_indices(indices: Sequence[int] | None, labels: np.ndarray, split: str) -> list[int]:
    """``indices`` if all are in range, or :func:`default_indices` of ``labels`` when None."""
    size = len(labels)
    if indices is None:
        return default_indices(labels)
    bad = [i for i in indices if not 0 <= i < size]
    if bad:
        raise DataError(f"image indices {bad} are out of range: the {split} split has {size} images (0..{size - 1})")
    return list(indices)


def _file_images(files: Sequence[str | Path], channels: int) -> tuple[list[Tensor], list[str]]:
    out, names = [], []
    for file in files:
        path = Path(file)
        if not path.is_file():
            raise DataError(f"image file {path} does not exist")
        try:
            out.append(read_image(path, channels))
        except Exception as exc:  # noqa: BLE001 - whatever PIL raises: the same user error
            raise DataError(f"cannot read image file {path}: {exc}") from None
        names.append(path.name)
    return out, names


def visualize(
    path: str | Path,
    out_dir: str | Path,
    indices: Sequence[int] | None = None,
    files: Sequence[str | Path] | None = None,
    split: str | None = None,
    num_masks: int = 10,
    alpha: float | None = None,
    seed: int = 0,
    data_dir: str | None = None,
    data_root: str | None = None,
    filename: str = "patches.png",
) -> PanelsResult:
    """Write the panel figure of a run's (newest) checkpoint to ``out_dir/filename``.

    Args:
        path: Run directory (its newest checkpoint) or checkpoint folder.
        out_dir: Folder of the PNG (created).
        indices: Images of the data set's split, by index (default unless ``files`` are
            given: 8 spread over the classes, round-robin in label order, see
            :func:`default_indices`; ``[]``: none).
        files: Image files, shown after the indexed images.
        split: ``"test"`` (``val/`` for image folders) or ``"train"``; None: test if present.
        num_masks: M, random masks averaged for the real loss.
        alpha: α of the HPM mask (default: the run's last α).
        seed: Seeds the masks.
        data_dir: Take the images from this ImageFolder instead of the run's data.
        data_root: Take them from this Fashion-MNIST folder instead.
        filename: Name of the PNG.

    Raises:
        CheckpointError: No readable checkpoint at ``path``.
        DataError: Missing data or image files, indices out of range, a bad α or M.
    """
    from hpm.eval.run import eval_data_config

    started = time.perf_counter()
    if num_masks < 1:
        raise DataError(f"the number of masks must be at least 1, got {num_masks}")
    models = load_pretrained(path)
    cfg = models.cfg
    channels = int(cfg.model.in_chans or 1)
    data_cfg = eval_data_config(cfg.data, data_dir, data_root)
    images: list[Tensor] = []
    labels: list[str] = []
    if indices or (indices is None and not files):
        images, labels = _split_images(data_cfg, split, indices, channels)
    if files:
        more, names = _file_images(files, channels)
        images, labels = images + more, labels + names
    if not images:
        raise DataError("no images chosen; give data-set indices (--indices) or image files (--images)")
    mean, std = normalisation(data_cfg, channels)
    transform = build_eval_transform(cfg.model.img_size, mean, std, data_cfg.fit)
    imgs = torch.stack([transform(img) for img in images])  # [N, C, H, W]
    maps = compute_maps(models, imgs, mean, std, num_masks, alpha, seed, labels)
    title = (
        f"{_run_name(models.checkpoint)}, step {models.step}: mask {cfg.mask.strategy}, "
        f"loss predictor {cfg.loss.predictor}"
    )
    fig = draw_panels(maps, title)
    out = Path(out_dir) / filename
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, format="png")
    width, height = (round(v * fig.dpi) for v in fig.get_size_inches())
    return PanelsResult(out, len(images), len(images) * len(maps.columns), (width, height), time.perf_counter() - started)


def _run_name(ckpt: Path) -> str:
    """``RUN`` for ``RUN/checkpoints/step_X``, else the checkpoint folder's name."""
    return ckpt.parent.parent.name if ckpt.parent.name == "checkpoints" else ckpt.name
