"""The encoder of a :class:`~hpm.models.mae.MaskedAutoencoder` as a timm ``VisionTransformer``.

The encoder's parameter names already follow timm (``patch_embed``, ``cls_token``,
``pos_embed``, ``blocks``, ``norm``), so its state dict loads into the timm model that
:func:`timm_spec` names. Used by ``hpm export`` and by fine-tuning.
"""

from __future__ import annotations

from typing import Any, Literal

import torch
from torch import Tensor

from hpm.config import PRESETS, TIMM_NAMES, ModelConfig
from hpm.errors import CheckpointError
from hpm.models.mae import MaskedAutoencoder

ENCODER_PREFIXES = ("patch_embed.", "blocks.", "norm.")
ENCODER_KEYS = ("cls_token", "pos_embed")
# The timm name used when no preset has the same encoder; timm_kwargs give the whole shape.
GENERIC_TIMM_NAME = "vit_base_patch16_224"


def is_encoder_key(name: str) -> bool:
    """Whether a MaskedAutoencoder state-dict key belongs to the encoder."""
    return name in ENCODER_KEYS or name.startswith(ENCODER_PREFIXES)


def encoder_state_dict(model: MaskedAutoencoder) -> dict[str, Tensor]:
    """The encoder's weights under timm ``VisionTransformer`` names (contiguous CPU copies)."""
    return {
        name: value.detach().to("cpu", copy=True).contiguous()
        for name, value in model.state_dict().items()
        if is_encoder_key(name)
    }


def timm_spec(cfg: ModelConfig, global_pool: Literal["token", "avg"] = "token", num_classes: int = 0) -> tuple[str, dict[str, Any]]:
    """The timm model name and keyword arguments that build this encoder.

    The name is the matching timm model for a paper preset with its unchanged shape
    (e.g. ``vit_base_patch16_224``), otherwise :data:`GENERIC_TIMM_NAME`; the keyword
    arguments always spell out the whole architecture, so they override whatever the name
    implies.

    Args:
        cfg: Resolved model config (``in_chans`` set).
        global_pool: ``"token"`` (class token, the export default) or ``"avg"`` (fine-tuning:
            average of the patch tokens followed by ``fc_norm``).
        num_classes: Classifier outputs; 0 gives a feature extractor without head.

    Returns:
        ``(timm_model, timm_kwargs)`` for ``timm.create_model(timm_model, pretrained=False, **timm_kwargs)``.
    """
    shape_keys = ("img_size", "patch_size", "embed_dim", "depth", "num_heads")
    preset = PRESETS.get(cfg.preset, {})
    same_as_preset = cfg.preset in TIMM_NAMES and all(getattr(cfg, k) == preset[k] for k in shape_keys)
    name = TIMM_NAMES[cfg.preset] if same_as_preset and cfg.mlp_ratio == 4.0 else GENERIC_TIMM_NAME
    kwargs: dict[str, Any] = {
        "img_size": cfg.img_size,
        "patch_size": cfg.patch_size,
        "in_chans": cfg.in_chans,
        "embed_dim": cfg.embed_dim,
        "depth": cfg.depth,
        "num_heads": cfg.num_heads,
        "mlp_ratio": cfg.mlp_ratio,
        "qkv_bias": True,
        "class_token": True,
        "global_pool": global_pool,
        "num_classes": num_classes,
    }
    return name, kwargs


def build_timm_encoder(
    model: MaskedAutoencoder,
    global_pool: Literal["token", "avg"] = "token",
    num_classes: int = 0,
    **extra: Any,
) -> torch.nn.Module:
    """A timm ``VisionTransformer`` holding ``model``'s encoder weights.

    With ``global_pool="token"`` and no classes every key is loaded (strict). With
    ``global_pool="avg"`` timm replaces the final ``norm`` by ``fc_norm`` after pooling (MAE's
    fine-tuning model), so ``norm`` is dropped and ``fc_norm`` and ``head`` keep their fresh
    initialisation.

    Args:
        model: Our masked autoencoder.
        global_pool: ``"token"`` or ``"avg"``.
        num_classes: Classifier outputs (0: none).
        **extra: Further ``timm.create_model`` arguments, e.g. ``drop_path_rate``.

    Raises:
        CheckpointError: timm's model does not take exactly the expected keys.
    """
    import timm

    if model.is_video:
        raise CheckpointError("a video model's encoder (Conv3d tubelet embedding, 3-D positions) has no timm "
                              "VisionTransformer equivalent; export and the image evaluations take image models")
    name, kwargs = timm_spec(model.cfg, global_pool, num_classes)
    vit = timm.create_model(name, pretrained=False, **kwargs, **extra)
    state = encoder_state_dict(model)
    if global_pool == "avg":
        state = {k: v for k, v in state.items() if not k.startswith("norm.")}
    missing, unexpected = vit.load_state_dict(state, strict=False)
    allowed_missing = {k for k in vit.state_dict() if k.startswith(("head.", "fc_norm."))}
    if unexpected or set(missing) - allowed_missing:
        raise CheckpointError(
            f"the encoder does not fit timm's {name}({kwargs}): missing {sorted(set(missing) - allowed_missing)}, "
            f"unexpected {sorted(unexpected)}"
        )
    return vit
