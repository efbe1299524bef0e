"""Frozen encoders for evaluation: loaded from a checkpoint, or randomly initialised, and features.

An evaluation source is a run directory (its newest checkpoint), a checkpoint folder, or
nothing at all with ``random_init`` (the architecture then comes from a config). A randomly
initialised encoder of the same architecture gives every protocol its floor.
"""

from __future__ import annotations

import copy
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import torch
from pydantic import BaseModel
from torch import Tensor, nn
from torch.utils.data import DataLoader, Dataset

from hpm.config import Config, config_from_dict, config_to_dict
from hpm.data import collate_skip_none
from hpm.eval.data import EvalData
from hpm.engine.checkpoint import describe_mismatch, load_state, read_weights, resolve_checkpoint
from hpm.engine.logger import LOG
from hpm.engine.precision import Resolved, autocast, prefer_fused_attention
from hpm.errors import CheckpointError, ConfigError, DataError
from hpm.models.timm_encoder import is_encoder_key
from hpm.models.mae import MaskedAutoencoder, build_run_model

Pool = Literal["cls", "avg"]
Weights = Literal["student", "teacher"]
# Deterministic functions of the patch grid, rebuilt when the image size changes.
_FIXED_BUFFERS = ("pos_embed", "decoder_pos_embed")


@dataclass
class LoadedEncoder:
    """A frozen encoder and where it came from.

    Attributes:
        model: The masked autoencoder in eval mode, gradients off (only its encoder is used).
        cfg: The resolved config it was trained with (or built from, for a random init).
        checkpoint: The checkpoint folder, None for a random init without a checkpoint.
        step: The checkpoint's optimizer step, None without a checkpoint.
        weights: ``"student"``, ``"teacher"`` (HPM's EMA teacher) or ``"random"``.
    """

    model: MaskedAutoencoder
    cfg: Config
    checkpoint: Path | None
    step: int | None
    weights: str

    def describe(self) -> dict[str, Any]:
        """A JSON-ready summary for result files."""
        m = self.cfg.model
        return {
            "checkpoint": str(self.checkpoint) if self.checkpoint else None,
            "step": self.step,
            "weights": self.weights,
            "random_init": self.weights == "random",
            "model": {k: getattr(m, k) for k in ("preset", "img_size", "patch_size", "in_chans", "embed_dim", "depth", "num_heads")},
            "pretrain": {"mask": self.cfg.mask.strategy, "loss_predictor": self.cfg.loss.predictor},
        }


def _known_keys(raw: dict[str, Any], schema: type[BaseModel], prefix: str = "") -> tuple[dict[str, Any], list[str]]:
    """``raw`` without the keys ``schema`` does not define (e.g. options removed since), and those keys."""
    kept: dict[str, Any] = {}
    dropped: list[str] = []
    for key, value in raw.items():
        field = schema.model_fields.get(key)
        if field is None:
            dropped.append(prefix + key)
            continue
        sub = field.annotation
        if isinstance(value, dict) and isinstance(sub, type) and issubclass(sub, BaseModel):
            value, more = _known_keys(value, sub, f"{prefix}{key}.")
            dropped += more
        kept[key] = value
    return kept, dropped


def _checkpoint_config(ckpt: Path, state: dict[str, Any]) -> Config:
    raw = state.get("config")
    if not isinstance(raw, dict):
        raise CheckpointError(
            f"{ckpt / 'state.pt'} holds no 'config'; it was not written by `hpm pretrain` "
            "(a checkpoint carries the resolved config it was trained with)"
        )
    raw, dropped = _known_keys(raw, Config)
    unknown_model = [key for key in dropped if key.startswith("model.")]
    if unknown_model:
        raise CheckpointError(
            f"{ckpt / 'state.pt'} describes its model with keys this version does not know ({unknown_model}); "
            "evaluate it with the hpm version that trained it"
        )
    if dropped:
        LOG.warning("ignoring config keys of %s unknown to this version: %s", ckpt, ", ".join(dropped))
    try:
        cfg = config_from_dict(raw)
    except ConfigError as exc:
        raise CheckpointError(f"the config stored in {ckpt / 'state.pt'} is not valid for this version: {exc}") from None
    if cfg.model.in_chans is None:
        raise CheckpointError(f"the config stored in {ckpt / 'state.pt'} does not say model.in_chans")
    return cfg


def with_img_size(cfg: Config, img_size: int | None) -> Config:
    """A copy of ``cfg`` whose model takes ``img_size`` images (None: unchanged).

    Raises:
        ConfigError: ``img_size`` is not a positive multiple of the patch size.
    """
    if img_size is None or img_size == cfg.model.img_size:
        return cfg
    p = cfg.model.patch_size
    if img_size <= 0 or img_size % p:
        lower, upper = max(p, img_size // p * p), (img_size // p + 1) * p
        raise ConfigError(
            f"image size {img_size} is incompatible with the encoder's patch size {p}: it must be a "
            f"multiple of {p} (e.g. {lower} or {upper}; the encoder was trained at {cfg.model.img_size})"
        )
    raw = config_to_dict(cfg)
    raw["model"]["img_size"] = img_size
    return config_from_dict(raw)


def _load_encoder_weights(model: MaskedAutoencoder, file: Path, resized: bool) -> None:
    """Load the encoder part of a checkpoint file; a mismatch names keys and shapes."""
    weights = read_weights(file)
    own = {k: v for k, v in model.state_dict().items() if is_encoder_key(k)}
    theirs = {k: v for k, v in weights.items() if is_encoder_key(k)}
    skip = set(_FIXED_BUFFERS) if resized else set()
    parts = describe_mismatch(own, theirs, skip, keys="encoder keys", versus="config")
    if parts:
        raise CheckpointError(
            f"{file} holds an encoder of another architecture than its config describes "
            f"({', '.join(parts)}); the checkpoint folder mixes files of different runs"
        )
    model.load_state_dict({k: v for k, v in theirs.items() if k not in skip}, strict=False)


def _open_checkpoint(path: str | Path) -> tuple[Path, Config, int]:
    ckpt = resolve_checkpoint(path)
    state = load_state(ckpt)
    return ckpt, _checkpoint_config(ckpt, state), int(state.get("step", 0))


def _load_checkpoint_model(
    ckpt: Path, cfg: Config, weights: Weights, img_size: int | None
) -> tuple[MaskedAutoencoder, Config]:
    resized = img_size is not None and img_size != cfg.model.img_size
    cfg = with_img_size(cfg, img_size)
    file = ckpt / ("model.safetensors" if weights == "student" else "teacher.safetensors")
    if weights == "teacher" and not file.is_file():
        raise CheckpointError(
            f"{ckpt} has no EMA teacher ({file.name}); only HPM runs have one, use the student weights"
        )
    model = build_run_model(cfg)
    _load_encoder_weights(model, file, resized)
    return model.eval().requires_grad_(False), cfg


def load_model_from_checkpoint(
    path: str | Path,
    weights: Weights = "student",
) -> tuple[MaskedAutoencoder, Config]:
    """Build the model a checkpoint describes and load its encoder weights.

    Args:
        path: A run directory (its newest checkpoint) or a checkpoint folder.
        weights: ``"student"`` (``model.safetensors``, MAE's convention) or ``"teacher"``
            (HPM's EMA teacher, ``teacher.safetensors``).

    Returns:
        ``(model, cfg)``: the model in eval mode with gradients off, and its config. Only the
        encoder is loaded; the decoders keep their initialisation.

    Raises:
        CheckpointError: Missing path or files, unreadable state, or weights of another
            architecture than the stored config.
    """
    ckpt, cfg, _ = _open_checkpoint(path)
    return _load_checkpoint_model(ckpt, cfg, weights, None)


def load_encoder(
    path: str | Path | None = None,
    random_init: bool = False,
    weights: Weights = "student",
    cfg: Config | None = None,
    img_size: int | None = None,
    seed: int = 0,
) -> LoadedEncoder:
    """A frozen encoder from a checkpoint, or a random one of its (or ``cfg``'s) architecture.

    Args:
        path: A run directory or a checkpoint folder; may be None with ``random_init``.
        random_init: Skip the weights: the same architecture, randomly initialised as for
            pre-training (seeded by ``seed``).
        weights: Which weights of the checkpoint: ``"student"`` or ``"teacher"``.
        cfg: Architecture and data when there is no checkpoint (``model.in_chans`` may be
            None: it follows the data, 1 for Fashion-MNIST, ``data.channels`` or 3 for folders).
        img_size: Evaluate at another resolution (a multiple of the patch size); the fixed
            sin-cos position embedding is rebuilt for the new grid.
        seed: Seed of the random initialisation.

    Raises:
        CheckpointError: As :func:`load_model_from_checkpoint`.
        ConfigError: Neither a path nor a config; or a bad ``img_size``.
    """
    ckpt, step = None, None
    if path is not None:
        ckpt, resolved, step = _open_checkpoint(path)
        if not random_init:
            model, resolved = _load_checkpoint_model(ckpt, resolved, weights, img_size)
            return LoadedEncoder(model, resolved, ckpt, step, weights)
    elif cfg is not None and random_init:
        resolved = config_from_dict(config_to_dict(cfg))
        if resolved.model.in_chans is None:
            resolved.model.in_chans = 1 if resolved.data.dataset == "fashion_mnist" else (resolved.data.channels or 3)
    else:
        raise ConfigError("pass a run directory or checkpoint folder (or a config with random_init=True)")
    resolved = with_img_size(resolved, img_size)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = build_run_model(resolved)
    return LoadedEncoder(model.eval().requires_grad_(False), resolved, ckpt, step, "random")


def pool_tokens(tokens: Tensor, pool: Pool) -> Tensor:
    """[N, 1 + L, D] encoder tokens -> [N, D]: the class token or the mean of the patch tokens."""
    if pool == "cls":
        return tokens[:, 0]
    if pool == "avg":
        return tokens[:, 1:].mean(dim=1)
    raise ConfigError(f"unknown pooling {pool!r}; use 'cls' or 'avg'")


def unwrap_model(model: torch.nn.Module) -> MaskedAutoencoder:
    """The :class:`MaskedAutoencoder` inside a DDP wrapper or a ``torch.compile`` module."""
    inner = getattr(model, "module", model)  # DistributedDataParallel
    inner = getattr(inner, "_orig_mod", inner)  # torch.compile
    if not isinstance(inner, MaskedAutoencoder):
        raise TypeError(f"expected a MaskedAutoencoder, got {type(inner).__name__}")
    return inner


class FrozenEncoder(nn.Module):
    """The encoder of a :class:`MaskedAutoencoder` alone, copied, in inference mode.

    Computes :meth:`MaskedAutoencoder.forward_encoder` on the whole image. With
    ``dtype=torch.bfloat16`` the copy runs entirely in bf16 (LayerNorm and softmax still
    accumulate in fp32 inside their kernels): on a CPU this is about twice as fast as autocast,
    which casts every activation between fp32 and bf16.

    Args:
        model: The source model (left untouched).
        dtype: Parameter and activation dtype of the copy.
        fused_attention: Use PyTorch's fused attention kernel.
    """

    def __init__(self, model: MaskedAutoencoder, dtype: torch.dtype = torch.float32, fused_attention: bool = True) -> None:
        super().__init__()
        self.patch_embed = copy.deepcopy(model.patch_embed)
        self.cls_token = nn.Parameter(model.cls_token.detach().clone())
        self.register_buffer("pos_embed", model.pos_embed.detach().clone())
        self.blocks = copy.deepcopy(model.blocks)
        self.norm = copy.deepcopy(model.norm)
        self.in_chans = model.in_chans
        self.img_size = tuple(model.patch_embed.img_size)
        self.to(dtype).eval().requires_grad_(False)
        self.dtype = dtype
        for module in self.modules():
            if hasattr(module, "fused_attn"):
                module.fused_attn = fused_attention

    def forward(self, imgs: Tensor) -> Tensor:
        """[N, C, H, W] -> [N, 1 + L, D] normalised tokens, class token first."""
        x = self.patch_embed(imgs.to(self.dtype)) + self.pos_embed[:, 1:]  # [N, L, D]
        cls = (self.cls_token + self.pos_embed[:, :1]).expand(x.shape[0], -1, -1)  # [N, 1, D]
        x = torch.cat([cls, x], dim=1)
        for blk in self.blocks:
            x = blk(x)
        return self.norm(x)


@torch.no_grad()
def extract_features(
    encoder: torch.nn.Module,
    dataset: Dataset,
    pool: Pool,
    batch_size: int = 256,
    device: torch.device | str = "cpu",
    precision: Resolved = "fp32",
    num_workers: int = 0,
) -> tuple[Tensor, Tensor]:
    """Features of every readable image of a data set through a frozen encoder.

    The encoder is copied for the pass (the model itself is not touched): in bf16 the copy's
    weights and activations are bf16 (see :class:`FrozenEncoder`), fp16 runs under autocast
    (fp16 residuals may overflow), fp32 as is. Unreadable images (``Unreadable`` items) are skipped.

    Args:
        encoder: A :class:`MaskedAutoencoder` (possibly wrapped by DDP or ``torch.compile``).
        dataset: ``(float [C, H, W], label)`` items at the encoder's image size.
        pool: ``"cls"`` (class token) or ``"avg"`` (mean of the patch tokens).
        batch_size: Images per forward pass.
        device: Where the encoder runs.
        precision: ``"bf16"``, ``"fp16"`` (autocast) or ``"fp32"``.
        num_workers: DataLoader worker processes.

    Returns:
        ``(feats, labels)``: float32 ``[N, D]`` on the CPU (not normalised) and int64 ``[N]``.

    Raises:
        DataError: The images do not have the encoder's channels or size.
    """
    model = unwrap_model(encoder)
    device = torch.device(device)
    dtype = torch.bfloat16 if precision == "bf16" else torch.float32
    frozen = FrozenEncoder(model, dtype, prefer_fused_attention(device, precision)).to(device)
    expected = (frozen.in_chans, *frozen.img_size)
    loader = DataLoader(dataset, batch_size=batch_size, shuffle=False, num_workers=num_workers, collate_fn=collate_skip_none)
    feats, labels = [], []
    for images, targets, _ in loader:
        if images.shape[0] == 0:
            continue
        if tuple(images.shape[1:]) != expected:
            raise DataError(
                f"the data gives images of shape {tuple(images.shape[1:])} (C, H, W) but the encoder takes "
                f"{expected}; resize them to {expected[1]} px with {expected[0]} channel(s) "
                "(use the evaluation transform, build_eval_transform)"
            )
        with autocast(device, "fp16") if precision == "fp16" else nullcontext():
            tokens = frozen(images.to(device, non_blocking=True))  # [B, 1 + L, D]
        feats.append(pool_tokens(tokens, pool).float().cpu())  # [B, D]
        labels.append(targets)
    if not feats:
        raise DataError("no readable image in the data set; nothing to evaluate")
    return torch.cat(feats), torch.cat(labels)


@torch.no_grad()
def extract_pixels(dataset: Dataset, batch_size: int = 256, num_workers: int = 0) -> tuple[Tensor, Tensor]:
    """The "raw pixels" floor: each readable image flattened. Returns float32 [N, C*H*W], int64 [N]."""
    loader = DataLoader(dataset, batch_size=batch_size, shuffle=False, num_workers=num_workers, collate_fn=collate_skip_none)
    feats, labels = [], []
    for images, targets, _ in loader:
        if images.shape[0]:
            feats.append(images.flatten(1).float())  # [B, C*H*W]
            labels.append(targets)
    if not feats:
        raise DataError("no readable image in the data set; nothing to evaluate")
    return torch.cat(feats), torch.cat(labels)


def split_features(
    model: torch.nn.Module | None,
    data: EvalData,
    pool: Pool,
    batch_size: int = 256,
    device: torch.device | str = "cpu",
    precision: Resolved = "fp32",
    num_workers: int = 0,
) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """Train and test features (``model=None``: raw pixels) -> train_x, train_y, test_x, test_y."""
    transform = data.transform()
    out: list[Tensor] = []
    for split in (data.train, data.test):
        dataset = split.with_transform(transform)
        if model is None:
            out += extract_pixels(dataset, batch_size, num_workers)
        else:
            out += extract_features(model, dataset, pool, batch_size, device, precision, num_workers)
    return out[0], out[1], out[2], out[3]
