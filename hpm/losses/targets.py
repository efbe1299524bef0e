"""Reconstruction targets (``loss.target``): what the reconstructor predicts for a masked patch.

- ``norm_pix``: the patch's pixels normalised by their own mean and variance (MAE's default);
- ``pix``: raw (input-normalised) pixels;
- ``hog``: histograms of oriented gradients (MaskFeat), :mod:`hpm.losses.hog`;
- ``ema``: the EMA teacher encoder's output token at the patch's position, seeing the whole
  image (layer-normalised without affine, as data2vec);
- ``model``: the same from a frozen timm ViT read from a local file (``loss.target_weights``;
  an ``hpm export`` file works directly, its JSON naming the architecture).

Every target maps ``images [N, C, H, W]`` and ``ids_mask [N, K]`` to ``[N, K, D]`` in fp32 and
is computed without gradients; :attr:`PatchTarget.dim` is ``D``, the width of the
reconstruction head. Feature targets need a full-image encoder pass: ``model`` runs its own,
``ema`` takes the teacher's tokens from the step, which shares them with the teacher's scoring
when the teacher sees the full image (``mask.teacher_view=full``).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Callable, TypeAlias

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from hpm.config import Config
from hpm.errors import ConfigError
from hpm.losses.hog import default_cell, hog_dim, hog_targets
from hpm.losses.reconstruction import patch_targets
from hpm.models.mae import patchify
from hpm.models.tubelet import patchify_clips

__all__ = [
    "PatchTarget", "TargetFn", "all_patches", "build_target", "feature_target", "gather_patches", "hog_cell",
    "load_target_model", "pixel_target", "resolve_target_dim",
]

# (images [N, C, H, W], ids_mask [N, K]) -> targets of the masked patches [N, K, D], fp32
TargetFn: TypeAlias = Callable[[Tensor, Tensor], Tensor]


def gather_patches(values: Tensor, ids: Tensor) -> Tensor:
    """Rows ``ids`` [N, K] of per-patch values [N, L, D] -> [N, K, D]."""
    return torch.gather(values, 1, ids.unsqueeze(-1).expand(-1, -1, values.shape[-1]))


def all_patches(n: int, num_patches: int, device: torch.device | None = None) -> Tensor:
    """Indices of every patch of ``n`` images, [N, L]: a target of the whole image."""
    return torch.arange(num_patches, device=device).expand(n, -1)


def feature_target(tokens: Tensor) -> Tensor:
    """Per-token layer norm without affine (data2vec's target normalisation). [N, L, D] -> fp32."""
    tokens = tokens.float()
    return F.layer_norm(tokens, tokens.shape[-1:])


class PatchTarget:
    """One reconstruction target.

    Args:
        name: The ``loss.target`` value.
        dim: Width of one patch's target.
        per_patch: Images [N, C, H, W] -> targets of every patch [N, L, D] (fp32); None for
            ``ema``, whose tokens come from the step (:meth:`__call__`'s ``tokens``).
        frozen: The frozen model of a ``model`` target (moved with :meth:`to`), else None.
    """

    def __init__(
        self, name: str, dim: int, per_patch: Callable[[Tensor], Tensor] | None, frozen: nn.Module | None = None
    ) -> None:
        self.name = name
        self.dim = dim
        self.per_patch = per_patch
        self.frozen = frozen

    @property
    def needs_teacher(self) -> bool:
        """Whether the target is the EMA teacher's features (the step must keep a teacher)."""
        return self.name == "ema"

    def to(self, device: torch.device) -> "PatchTarget":
        if self.frozen is not None:
            self.frozen.to(device)
        return self

    @torch.no_grad()
    def __call__(self, images: Tensor, ids_mask: Tensor, tokens: Tensor | None = None) -> Tensor:
        """Targets of the masked patches. images [N, C, H, W], ids_mask [N, K] -> [N, K, D] fp32.

        Args:
            tokens: ``ema`` only: the teacher's full-image patch tokens [N, L, D].
        """
        if self.per_patch is None:
            if tokens is None:
                raise RuntimeError("the ema target needs the teacher's full-image tokens")
            return gather_patches(feature_target(tokens), ids_mask)
        return gather_patches(self.per_patch(images), ids_mask).float()


def pixel_target(patch_size: int, norm: bool = True, tubelet_size: int | None = None) -> PatchTarget:
    """Pixels of a patch, normalised per patch (``norm_pix``) or not (``pix``); the width
    follows the images' channels (:attr:`PatchTarget.dim` assumes one channel).

    With ``tubelet_size`` the inputs are clips [N, C, T, H, W] and a token's target is its
    tubelet, patchified as the video model does (:func:`~hpm.models.tubelet.patchify_clips`)
    and normalised per tubelet."""
    name = "norm_pix" if norm else "pix"
    if tubelet_size is not None:
        return PatchTarget(name, tubelet_size * patch_size * patch_size,
                           lambda x: patch_targets(patchify_clips(x, patch_size, tubelet_size), norm))
    return PatchTarget(name, patch_size * patch_size, lambda x: patch_targets(patchify(x, patch_size), norm))


def hog_cell(cfg: Config) -> int:
    """The HOG cell side of a config: ``loss.hog_cell`` or half the patch."""
    return cfg.loss.hog_cell or default_cell(cfg.model.patch_size)


def build_target(cfg: Config, device: torch.device | None = None) -> PatchTarget:
    """The target of a resolved config (``model.in_chans`` set); loads a ``model`` target's weights.

    Raises:
        ConfigError: A HOG cell that does not divide the patch, or (``model``) a missing,
            unreadable or mismatched weights file.
    """
    mc, lc = cfg.model, cfg.loss
    chans = int(mc.in_chans or 1)
    p = mc.patch_size
    video = mc.num_frames is not None
    if lc.target in ("norm_pix", "pix"):
        target = pixel_target(p, lc.target == "norm_pix", mc.tubelet_size if video else None)
        target.dim *= chans
        return target
    if video and lc.target in ("hog", "model"):
        raise ConfigError(f"loss.target={lc.target} reads images; a video model (model.num_frames set) "
                          "reconstructs norm_pix, pix or ema targets")
    if lc.target == "hog":
        cell = hog_cell(cfg)
        if p % cell:
            raise ConfigError(f"loss.hog_cell={cell} must divide the patch size {p}; try {default_cell(p)}")
        return PatchTarget("hog", hog_dim(p, chans, cell, lc.hog_bins), lambda x: hog_targets(x, p, cell, lc.hog_bins))
    if lc.target == "ema":
        return PatchTarget("ema", mc.embed_dim, None)
    model = load_target_model(cfg)
    if device is not None:
        model.to(device)
    prefix = int(getattr(model, "num_prefix_tokens", 0))

    def run(x: Tensor) -> Tensor:
        return feature_target(model.forward_features(x)[:, prefix:])

    return PatchTarget("model", int(model.num_features), run, model)


def resolve_target_dim(cfg: Config, target: PatchTarget) -> Config:
    """``cfg`` with ``loss.target_dim`` set to the target's width (checked if already set: a
    resumed run must reconstruct the same target)."""
    if cfg.loss.target_dim is not None and cfg.loss.target_dim != target.dim:
        raise ConfigError(
            f"loss.target_dim={cfg.loss.target_dim} but the {target.name} target is {target.dim} wide; "
            "leave loss.target_dim unset (it is resolved at start)"
        )
    out = cfg.model_copy(deep=True)
    out.loss.target_dim = target.dim
    return out


def _read_state(path: Path) -> dict[str, Tensor]:
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            return load_file(str(path))
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - any unreadable file gets the same advice
        raise ConfigError(f"loss.target_weights={path} cannot be read ({type(exc).__name__}: {exc}); "
                          "give a .safetensors or .pth state dict") from None
    for key in ("model", "state_dict"):  # common checkpoint wrappers
        if isinstance(state, dict) and isinstance(state.get(key), dict):
            state = state[key]
    if not isinstance(state, dict) or not all(isinstance(v, Tensor) for v in state.values()):
        raise ConfigError(f"loss.target_weights={path} holds no state dict of tensors")
    return state


def load_target_model(cfg: Config) -> nn.Module:
    """The frozen timm model of ``loss.target=model``, in eval mode, without head.

    The architecture: ``loss.target_model`` (a timm name), with the ``timm_kwargs`` of an
    ``hpm export`` JSON beside the weights (same name, ``.json``) when there is one. Its token
    grid must be the student's (same image size and patch size) and it must take the same
    channels. Nothing is downloaded.

    Raises:
        ConfigError: Missing file, unknown timm name, weights that do not fit, or another grid.
    """
    import timm

    lc, mc = cfg.loss, cfg.model
    path = Path(str(lc.target_weights))
    if not path.is_file():
        raise ConfigError(
            f"loss.target_weights={path} does not exist; give a local .safetensors or .pth file "
            "(e.g. `hpm export RUN` writes RUN/export/encoder.safetensors)"
        )
    meta: dict[str, Any] = {}
    if path.with_suffix(".json").is_file():
        meta = json.loads(path.with_suffix(".json").read_text())
    name = lc.target_model or meta.get("timm_model")
    if not name:
        raise ConfigError(f"loss.target_model is not set and {path.with_suffix('.json')} (an hpm export JSON) is absent; "
                          "name the timm architecture, e.g. loss.target_model=vit_small_patch16_224")
    kwargs = {**meta.get("timm_kwargs", {}), "num_classes": 0}
    try:
        model = timm.create_model(name, pretrained=False, **kwargs)
    except Exception as exc:  # noqa: BLE001
        raise ConfigError(f"loss.target_model={name!r} cannot be built by timm ({exc})") from None
    state = {k: v for k, v in _read_state(path).items() if not k.startswith(("head.", "fc."))}
    advice = "give the matching loss.target_model (or the hpm export JSON beside the file)"
    try:
        missing, unexpected = model.load_state_dict(state, strict=False)
    except RuntimeError as exc:  # shapes differ
        first = str(exc).split("\n\t")[1] if "\n\t" in str(exc) else str(exc)
        raise ConfigError(f"loss.target_weights={path} does not fit timm's {name}: {first.strip()}; {advice}") from None
    if missing or unexpected:
        raise ConfigError(
            f"loss.target_weights={path} does not fit timm's {name}: missing {sorted(missing)[:5]}, "
            f"unexpected {sorted(unexpected)[:5]}; {advice}"
        )
    grid = tuple(getattr(getattr(model, "patch_embed", None), "grid_size", ()) or ())
    want = (mc.img_size // mc.patch_size,) * 2
    if grid != want:
        raise ConfigError(
            f"the target model {name} sees a {grid} token grid but the student has {want} patches "
            f"({mc.img_size} px, patch {mc.patch_size}); a feature target needs one token per student patch"
        )
    chans = getattr(model.patch_embed.proj, "in_channels", None)
    if chans != mc.in_chans:
        raise ConfigError(f"the target model {name} takes {chans} channel(s) but the data has {mc.in_chans}")
    model.eval().requires_grad_(False)
    return model
