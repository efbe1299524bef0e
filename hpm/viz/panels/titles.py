"""What each panel column shows: the top row's titles."""

from __future__ import annotations

from hpm.viz.panels.maps import PatchMaps

NO_PREDICTOR = "no loss predictor (MAE run)"
NO_PREDICTOR_ATTENTION = "no loss predictor (attention run)"
_TARGET_NAMES = {"norm_pix": "norm-pix", "pix": "pixel", "hog": "HOG", "ema": "EMA-feature", "model": "feature"}


def _real_loss_title(maps: PatchMaps, ratio: str) -> str:
    return f"real loss: mean over M={maps.num_masks}\nrandom {ratio} masks ({_TARGET_NAMES[maps.target]} MSE)"


def _target_title(target: str) -> str | None:
    """The reconstruction column's title for a target that is not pixels, else None."""
    if target == "hog":
        return "target: HOG of the image (bars along\nedges; no pixels reconstructed)"
    if target in ("ema", "model"):
        teacher = "EMA teacher" if target == "ema" else "frozen model"
        return f"target: {teacher} features, 3 PCA\ncomponents as RGB (no pixels)"
    return None


def _views(maps: PatchMaps) -> str:
    return "1 masked view" if maps.teacher_views == 1 else f"{maps.teacher_views} masked views"


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
            predicted = f"predicted loss, {source}\n{_views(maps)} (grey: patch seen)"
        else:
            predicted = f"predicted loss\n({source}, full image)"
        h = int(maps.hard[0].sum()) if maps.hard is not None else 0
        mask = f"HPM mask, α={maps.alpha:.2f}: {h} {maps.chosen}\n(red) + {k - h} random (grey)"
        recon = "reconstruction, HPM mask\n(visible patches pasted back)"
    return {
        "input": "input",
        "real_loss": _real_loss_title(maps, ratio),
        "predicted_loss": predicted,
        "mask": mask,
        "reconstruction": _target_title(maps.target) or recon,
    }


def _attention_titles(maps: PatchMaps, ratio: str, k: int) -> dict[str, str]:
    """:func:`column_titles` of an attention run."""
    where = f"{_views(maps)} (grey: patch hidden)" if maps.teacher_view == "masked" else "full image"
    h = int(maps.hard[0].sum()) if maps.hard is not None else 0
    shown = int(maps.hints[0].sum()) if maps.hints is not None else 0
    mask = f"attention mask ({maps.attention_mode}), α={maps.alpha:.2f}:\n{h} {maps.chosen} (red)"
    mask += f",\n{shown} shown (yellow)" if maps.hints is not None else ""
    mask += f" + {k - h} random (grey)"
    predicted = ("predicted loss\n(EMA teacher, full image)" if maps.predicted is not None
                 else f"predicted loss:\n{NO_PREDICTOR_ATTENTION}")
    recon = "reconstruction,\nattention mask (visible\npatches pasted back)"
    return {
        "input": "input",
        "real_loss": _real_loss_title(maps, ratio),
        "predicted_loss": predicted,
        "attention": f"teacher's [CLS] attention\n(last block; {where})",
        "mask": mask,
        "reconstruction": _target_title(maps.target) or recon,
    }
