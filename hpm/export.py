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

from safetensors.torch import save_file

from hpm.config import Config
from hpm.engine.checkpoint import atomic_write_text, load_state, resolve_checkpoint
from hpm.errors import CheckpointError
from hpm.eval.data import normalisation
from hpm.eval.encoder import load_model_from_checkpoint
from hpm.models.mae import MaskedAutoencoder
from hpm.models.timm_encoder import (  # re-exported: the public names of hpm export
    ENCODER_KEYS,
    ENCODER_PREFIXES,
    GENERIC_TIMM_NAME,
    build_timm_encoder,
    encoder_state_dict,
    is_encoder_key,
    timm_spec,
)

__all__ = [
    "ENCODER_KEYS", "ENCODER_PREFIXES", "GENERIC_TIMM_NAME", "ExportResult", "build_timm_encoder",
    "encoder_state_dict", "export_checkpoint", "export_encoder", "is_encoder_key", "timm_spec",
]


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
    model, cfg = load_model_from_checkpoint(path, weights)
    ckpt = resolve_checkpoint(path)
    if out is None:
        out = Path(path) / "export" / ("encoder.safetensors" if weights == "student" else "encoder_teacher.safetensors")
    source = {"checkpoint": str(ckpt), "step": int(load_state(ckpt).get("step", 0)), "weights": weights}
    return export_encoder(model, cfg, out, source)
