"""Clip features kept for the next protocol in the same process: ``hpm study`` runs the k-NN and
the linear probe of one encoder on the same clips one after the other, and the second reads the
features the first extracted. An entry is found only by the same encoder weights (a hash of the
encoder's tensors: the decoders, which the features do not read, may be left at a random init),
the same clips, labels and views, pooling and precision."""

from __future__ import annotations

import hashlib
import json
from collections import OrderedDict

import torch
from torch import Tensor

from hpm.eval.video.data import VideoEvalData
from hpm.models.mae import MaskedAutoencoder
from hpm.models.timm_encoder import encoder_state_dict

ENTRIES = 4  # the k-NN and the probe of two label kinds
MAX_BYTES = 1 << 30  # larger features are not kept
_MEMO: OrderedDict[str, tuple[Tensor, ...]] = OrderedDict()


def weights_digest(model: MaskedAutoencoder) -> str:
    """A hash of the names, dtypes, shapes and values of the encoder's tensors in ``model.state_dict()``."""
    digest = hashlib.sha256()
    for name, tensor in encoder_state_dict(model).items():  # contiguous CPU copies
        flat = tensor.reshape(-1)
        digest.update(f"{name}|{flat.dtype}|{tuple(tensor.shape)}".encode())
        digest.update(flat.view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


def features_key(model: MaskedAutoencoder, data: VideoEvalData, pool: str, precision: str) -> str:
    """The memo key of the clip features of ``model`` on ``data``."""
    clips = {split.name: [list(map(str, split.files)), split.labels.tolist()] for split in (data.train, data.test)}
    parts = [weights_digest(model), data.describe(), clips, pool, precision]
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()


def recall(key: str) -> tuple[Tensor, ...] | None:
    """Copies of the features kept under ``key``, or None."""
    if key not in _MEMO:
        return None
    _MEMO.move_to_end(key)
    return tuple(t.clone() for t in _MEMO[key])


def keep(key: str, tensors: tuple[Tensor, ...]) -> None:
    """Keep copies of ``tensors`` under ``key`` (the oldest entry goes beyond :data:`ENTRIES`)."""
    if sum(t.numel() * t.element_size() for t in tensors) > MAX_BYTES:
        return
    _MEMO[key] = tuple(t.clone() for t in tensors)
    _MEMO.move_to_end(key)
    while len(_MEMO) > ENTRIES:
        _MEMO.popitem(last=False)


def forget() -> None:
    """Drop every kept entry."""
    _MEMO.clear()
