"""Export a pre-trained encoder as a timm ``VisionTransformer`` state dict (``hpm export``).

The encoder's parameter names already follow timm (``patch_embed``, ``cls_token``,
``pos_embed``, ``blocks``, ``norm``). Our ``pos_embed`` is a fixed sin-cos buffer
``[1, 1 + L, D]`` whose class-token row is zero; timm's default (``class_token=True``,
``pos_embed="learn"``, ``no_embed_class=False``) adds a ``[1, 1 + L, D]`` embedding to the class
token and the patches alike, so the buffer maps onto it unchanged and
``timm.create_model(timm_model, pretrained=False, **timm_kwargs)`` loads the file with
``strict=True`` and computes the same tokens.

``--format mae`` writes the same weights in MAE's checkpoint layout instead: a ``.pth`` file
holding ``{"model": state_dict}`` (``torch.save``), the layout of MAE's released pre-trained
encoders, which the fine-tuning, segmentation and detection code of MAE, BEiT and ViTDet load.

A fine-tuned classifier (``hpm eval finetune``) is exported whole, head included, as
``classifier.safetensors`` + ``classifier.json``: the fine-tune writes them into its directory
(``RUN/eval/finetune/``) when it finishes, and ``hpm export RUN --finetuned`` writes them again
from the fine-tune's final checkpoint (default ``RUN/export/classifier.safetensors``). The
JSON's ``timm_kwargs`` carry a ``pretrained_cfg`` describing the classifier (classes, input
size, normalisation), so ``timm.create_model(timm_model, pretrained=True,
pretrained_cfg_overlay=dict(file=...), **timm_kwargs)`` loads the local file with its head
(timm drops a head whose class count differs from the pretrained config's) and downloads
nothing.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import torch
from safetensors.torch import save_file
from torch import Tensor, nn

from hpm.config import Config
from hpm.engine.checkpoint import latest_checkpoint, load_state, load_weights, resolve_checkpoint
from hpm.io import atomic_write_text
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
    "ENCODER_KEYS", "ENCODER_PREFIXES", "EXPORT_FORMATS", "GENERIC_TIMM_NAME", "ExportFormat", "ExportResult",
    "build_timm_encoder",
    "encoder_state_dict", "export_checkpoint", "export_classifier", "export_encoder", "export_finetuned",
    "find_finetune_dir", "is_encoder_key", "timm_spec",
]


ExportFormat = Literal["safetensors", "mae"]
EXPORT_FORMATS: dict[str, str] = {"safetensors": ".safetensors", "mae": ".pth"}
"""The file suffix of each encoder export format."""
_MAE_LOAD = (
    "torch.load(<this .pth>)['model'] loads into timm.create_model(timm_model, pretrained=False, **timm_kwargs) "
    "and into the fine-tuning, segmentation and detection code of MAE, BEiT and ViTDet"
)


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
    file_format: ExportFormat = "safetensors",
) -> ExportResult:
    """Write the encoder as ``out`` (safetensors, or MAE's ``.pth``) and ``out`` with suffix ``.json`` beside it.

    The JSON holds ``timm_model`` and ``timm_kwargs`` (so that
    ``timm.create_model(timm_model, pretrained=False, **timm_kwargs).load_state_dict(weights)``
    is strict), the normalisation the encoder was trained with and ``source`` (where the
    weights came from).

    Args:
        model: The masked autoencoder whose encoder is exported.
        cfg: Its resolved config (for the data normalisation).
        out: Target file (suffix :data:`EXPORT_FORMATS` of ``file_format``); parent folders are created.
        source: Provenance recorded in the JSON (checkpoint, step, weights).
        file_format: ``"safetensors"`` or ``"mae"`` (``{"model": state_dict}`` saved by ``torch.save``).

    Raises:
        CheckpointError: ``out`` does not end in the format's suffix.
    """
    out = _target(out, file_format)
    name, kwargs = timm_spec(model.cfg)
    state = encoder_state_dict(model)
    if file_format == "mae":
        _write_mae(state, out)
    else:
        _write_weights(state, out, name)
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
    if file_format == "mae":
        meta |= {"format": "mae", "load": _MAE_LOAD}
    atomic_write_text(meta_path, json.dumps(meta, indent=2) + "\n")
    return ExportResult(out, meta_path, name, kwargs)


def export_checkpoint(
    path: str | Path,
    out: str | Path | None = None,
    weights: Literal["student", "teacher"] = "student",
    file_format: ExportFormat = "safetensors",
) -> ExportResult:
    """``hpm export``: the encoder of a run directory's newest checkpoint (or a checkpoint folder).

    Args:
        path: Run directory or checkpoint folder.
        out: Target file (default: ``PATH/export/encoder.safetensors``, ``encoder.pth`` for
            ``file_format="mae"``, with ``_teacher`` for the teacher).
        weights: ``"student"`` or ``"teacher"`` (HPM's EMA teacher).
        file_format: ``"safetensors"`` or ``"mae"`` (see :func:`export_encoder`).

    Raises:
        CheckpointError: Missing or unreadable checkpoint, weights of another architecture, or
            an ``out`` without the format's suffix.
    """
    model, cfg = load_model_from_checkpoint(path, weights)
    ckpt = resolve_checkpoint(path)
    if out is None:
        stem = "encoder" if weights == "student" else "encoder_teacher"
        out = Path(path) / "export" / f"{stem}{EXPORT_FORMATS[file_format]}"
    source = {"checkpoint": str(ckpt), "step": int(load_state(ckpt).get("step", 0)), "weights": weights}
    return export_encoder(model, cfg, out, source, file_format)


def _target(out: str | Path, file_format: ExportFormat) -> Path:
    """``out`` as a path, checked to end in the suffix of ``file_format``."""
    out = Path(out)
    suffix = EXPORT_FORMATS[file_format]
    if out.suffix != suffix:
        hint = "" if file_format == "safetensors" else f" for --format {file_format}"
        raise CheckpointError(f"--out must name a {suffix} file{hint}, got {out}")
    return out


def _safetensors_target(out: str | Path) -> Path:
    """``out`` as a path, checked to name a ``.safetensors`` file."""
    return _target(out, "safetensors")


def _write_weights(state: dict[str, Tensor], out: Path, timm_model: str) -> None:
    """Write a state dict as safetensors through a temporary file and a rename."""
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.tmp")
    save_file(state, str(tmp), metadata={"format": "pt", "timm_model": timm_model})
    tmp.replace(out)


def _write_mae(state: dict[str, Tensor], out: Path) -> None:
    """Write ``{"model": state}`` with ``torch.save`` through a temporary file and a rename."""
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.tmp")
    torch.save({"model": state}, tmp)
    tmp.replace(out)


def export_classifier(
    model: nn.Module, spec: dict[str, Any], out: str | Path, source: dict[str, Any] | None = None
) -> ExportResult:
    """Write a fine-tuned timm classifier (head included) as ``out`` and ``out`` with suffix ``.json``.

    Args:
        model: The timm ``VisionTransformer`` classifier (``global_pool`` "avg" or "token").
        spec: :func:`hpm.eval.finetune.classifier_spec`: ``timm_model``, ``timm_kwargs``
            (with a ``pretrained_cfg`` that keeps the head on loading), ``mean``, ``std``,
            ``class_names``.
        out: Target ``.safetensors`` file; parent folders are created.
        source: Provenance recorded in the JSON (fine-tune directory, step, top-1, encoder).

    Raises:
        CheckpointError: ``out`` does not end in ``.safetensors``.
    """
    out = _safetensors_target(out)
    state = {k: v.detach().to("cpu", copy=True).contiguous() for k, v in model.state_dict().items()}
    _write_weights(state, out, spec["timm_model"])
    kwargs = spec["timm_kwargs"]
    meta = {
        "timm_model": spec["timm_model"],
        "timm_kwargs": kwargs,
        "weights": out.name,
        "num_params": sum(v.numel() for v in state.values()),
        "num_classes": kwargs["num_classes"],
        "class_names": list(spec.get("class_names") or []),
        "mean": list(spec["mean"]),
        "std": list(spec["std"]),
        "input_size": [kwargs["in_chans"], kwargs["img_size"], kwargs["img_size"]],
        "load": (
            "timm.create_model(timm_model, pretrained=True, pretrained_cfg_overlay=dict(file=<this .safetensors>), "
            "**timm_kwargs); model(x) gives [B, num_classes] logits for images normalised with mean / std"
        ),
        "source": source or {},
    }
    meta_path = out.with_suffix(".json")
    atomic_write_text(meta_path, json.dumps(meta, indent=2) + "\n")
    return ExportResult(out, meta_path, spec["timm_model"], kwargs)


def find_finetune_dir(path: str | Path) -> Path:
    """The fine-tune directory meant by ``path``: ``PATH/eval/finetune/`` of a run directory, a
    fine-tune directory itself (``checkpoints/`` of ``hpm eval finetune``) or a fine-tune's
    result ``.json`` (its directory is the path without ``.json``).

    Raises:
        CheckpointError: No fine-tune there; the message lists where one was looked for.
    """
    p = Path(path)
    candidates = [p.with_suffix("")] if p.suffix == ".json" else [p / "eval" / "finetune", p]
    for folder in candidates:
        ckpt = latest_checkpoint(folder)
        if ckpt is not None and load_state(ckpt).get("kind") == "finetune":
            return folder
    raise CheckpointError(
        f"{p} holds no fine-tune: expected {p / 'eval' / 'finetune'}/checkpoints/ (written by "
        f"`hpm eval finetune {p}`), a fine-tune directory or a fine-tune result .json. A --random-init "
        f"fine-tune is in {p / 'eval' / 'finetune_random_init'}, one with --out X.json in X/"
    )


def export_finetuned(path: str | Path, out: str | Path | None = None) -> ExportResult:
    """``hpm export PATH --finetuned``: the classifier of a finished fine-tune, from its final checkpoint.

    Args:
        path: Run directory (its ``eval/finetune/``), fine-tune directory or fine-tune result ``.json``.
        out: Target ``.safetensors`` (default ``PATH/export/classifier.safetensors``; for a
            ``.json``, ``classifier.safetensors`` beside it).

    Raises:
        CheckpointError: No fine-tune found, an unfinished one, or unreadable weights.
    """
    import timm

    folder = find_finetune_dir(path)
    ckpt = latest_checkpoint(folder)
    assert ckpt is not None  # find_finetune_dir checked
    state = load_state(ckpt)
    if "result" not in state:
        raise CheckpointError(
            f"the fine-tune in {folder} stopped at step {state['step']} of {state.get('total_steps', '?')}; "
            "re-run the same `hpm eval finetune` command to finish it, then export"
        )
    spec = state["classifier"]
    model = timm.create_model(spec["timm_model"], pretrained=False, **spec["timm_kwargs"])
    load_weights(model, ckpt / "model.safetensors")
    if out is None:
        p = Path(path)
        out = p.with_name("classifier.safetensors") if p.suffix == ".json" else p / "export" / "classifier.safetensors"
    source = {
        "finetune_dir": str(folder),
        "checkpoint": str(ckpt),
        "step": int(state["step"]),
        "top1": state["result"]["top1"],
        "encoder": state.get("setup", {}).get("source", {}).get("encoder"),
    }
    return export_classifier(model.eval(), spec, out, source)
