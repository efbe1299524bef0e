"""Export a pre-trained encoder as a timm ``VisionTransformer`` state dict (``hpm export``).

The encoder's parameter names already follow timm (``patch_embed``, ``cls_token``,
``pos_embed``, ``blocks``, ``norm``). Our ``pos_embed`` is a fixed sin-cos buffer
``[1, 1 + L, D]`` whose class-token row is zero; timm's default (``class_token=True``,
``pos_embed="learn"``, ``no_embed_class=False``) adds a ``[1, 1 + L, D]`` embedding to the class
token and the patches alike, so the buffer maps onto it unchanged and
``timm.create_model(timm_model, pretrained=False, **timm_kwargs)`` loads the file with
``strict=True`` and computes the same tokens.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import torch
from safetensors.torch import save_file
from torch import Tensor

from hpm.config import PRESETS, TIMM_NAMES, Config, ModelConfig
from hpm.engine.checkpoint import atomic_write_text
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


@dataclass
class ExportResult:
    """What :func:`export_encoder` wrote."""

    weights: Path
    metadata: Path
    timm_model: str
    timm_kwargs: dict[str, Any]


def export_encoder(
    model: MaskedAutoencoder,
    cfg: Config,
    out: str | Path,
    source: dict[str, Any] | None = None,
) -> ExportResult:
    """Write the encoder as ``out`` (safetensors) and ``out`` with suffix ``.json`` beside it.

    The JSON holds ``timm_model`` and ``timm_kwargs`` (so that
    ``timm.create_model(timm_model, pretrained=False, **timm_kwargs).load_state_dict(weights)``
    is strict), the normalisation the encoder was trained with and ``source`` (where the
    weights came from).

    Args:
        model: The masked autoencoder whose encoder is exported.
        cfg: Its resolved config (for the data normalisation).
        out: Target ``.safetensors`` file; parent folders are created.
        source: Provenance recorded in the JSON (checkpoint, step, weights).

    Raises:
        CheckpointError: ``out`` does not end in ``.safetensors``.
    """
    out = Path(out)
    if out.suffix != ".safetensors":
        raise CheckpointError(f"--out must name a .safetensors file, got {out}")
    name, kwargs = timm_spec(model.cfg)
    state = encoder_state_dict(model)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.tmp")
    save_file(state, str(tmp), metadata={"format": "pt", "timm_model": name})
    tmp.replace(out)
    meta_path = out.with_suffix(".json")
    from hpm.eval.data import normalisation  # local: hpm.eval imports this module

    mean, std = normalisation(cfg.data, int(model.cfg.in_chans or 1))
    meta = {
        "timm_model": name,
        "timm_kwargs": kwargs,
        "weights": out.name,
        "num_params": sum(v.numel() for v in state.values()),
        "mean": list(mean),
        "std": list(std),
        "features": "forward_features(x)[:, 0] is the class token; [:, 1:] the patch tokens",
        "source": source or {},
    }
    atomic_write_text(meta_path, json.dumps(meta, indent=2) + "\n")
    return ExportResult(out, meta_path, name, kwargs)


def export_checkpoint(
    path: str | Path, out: str | Path | None = None, weights: Literal["student", "teacher"] = "student"
) -> ExportResult:
    """``hpm export``: the encoder of a run directory's newest checkpoint (or a checkpoint folder).

    Args:
        path: Run directory or checkpoint folder.
        out: Target ``.safetensors`` (default: ``PATH/export/encoder.safetensors``, with
            ``_teacher`` for the teacher).
        weights: ``"student"`` or ``"teacher"`` (HPM's EMA teacher).

    Raises:
        CheckpointError: Missing or unreadable checkpoint, or weights of another architecture.
    """
    from hpm.engine.checkpoint import load_state, resolve_checkpoint
    from hpm.eval.encoder import load_model_from_checkpoint

    model, cfg = load_model_from_checkpoint(path, weights)
    ckpt = resolve_checkpoint(path)
    if out is None:
        out = Path(path) / "export" / ("encoder.safetensors" if weights == "student" else "encoder_teacher.safetensors")
    source = {"checkpoint": str(ckpt), "step": int(load_state(ckpt).get("step", 0)), "weights": weights}
    return export_encoder(model, cfg, out, source)
