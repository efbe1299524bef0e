"""A trained evaluation model as ``<stem>.safetensors`` plus ``<stem>.json``, which says how to
rebuild it (the format, the architecture and recipe, the normalisation, where the run came from)."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from safetensors.torch import load_file, save_file
from torch import nn

M = TypeVar("M", bound=nn.Module)


def export_model(model: nn.Module, spec: dict[str, Any], out_dir: Path, stem: str, source: dict[str, Any],
                 rebuild: str) -> Path:
    """Write ``out_dir/<stem>.safetensors`` and ``out_dir/<stem>.json`` (``spec``, ``source`` and
    the ``rebuild`` call); returns the JSON's path."""
    out_dir.mkdir(parents=True, exist_ok=True)
    state = {name: t.detach().cpu().contiguous() for name, t in model.state_dict().items()}
    save_file(state, str(out_dir / f"{stem}.safetensors"))
    meta = {**spec, "weights": f"{stem}.safetensors", "source": source, "rebuild": rebuild}
    (out_dir / f"{stem}.json").write_text(json.dumps(meta, indent=2) + "\n")
    return out_dir / f"{stem}.json"


def load_model(json_file: str | Path, build: Callable[[dict[str, Any]], M]) -> M:
    """The exported model of ``json_file`` (its weights beside it), rebuilt by ``build(spec)``, in eval mode."""
    json_file = Path(json_file)
    spec = json.loads(json_file.read_text())
    model = build(spec)
    model.load_state_dict(load_file(str(json_file.parent / spec["weights"])))
    return model.eval()
