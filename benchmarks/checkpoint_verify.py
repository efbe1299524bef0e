"""Cost of checkpoint integrity at ViT-L size: write, verify (sizes; sizes + SHA-256) and load.

    python benchmarks/checkpoint_verify.py                  # MAE-HPM ViT-L/16, in a temporary folder
    python benchmarks/checkpoint_verify.py --preset vit_b16 --dir /scratch/ckpt

The checkpoint is what ``hpm pretrain`` writes for the preset: the student (encoder, decoder,
loss predictor), the EMA teacher and a ``state.pt`` holding AdamW's two moments per parameter,
so about 4 bytes x (student + teacher + 2 x student) parameters. Prints one Markdown table;
figures are wall seconds of this run (the files are in the page cache when verified, as they
are at a resume right after training, or after the first read of a cold disk).
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
import time
from pathlib import Path

import torch
from safetensors.torch import save_file

from hpm.config import build_config
from hpm.engine.checkpoint import load_state, load_weights, save_checkpoint
from hpm.engine.ema import build_teacher
from hpm.engine.integrity import human_bytes, verify_checkpoint
from hpm.models import build_model


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--preset", default="vit_l16")
    parser.add_argument("--dir", help="where to write the checkpoint (default: a temporary folder)")
    args = parser.parse_args()
    torch.manual_seed(0)
    cfg = build_config(overrides={"model": {"preset": args.preset, "in_chans": 3}})
    model = build_model(cfg.model)
    teacher = build_teacher(model)
    moments = {
        i: {"step": torch.tensor(1.0), "exp_avg": torch.randn_like(p), "exp_avg_sq": torch.rand_like(p)}
        for i, p in enumerate(model.parameters())
    }
    state = {"step_state": {"optimizer": {"state": moments, "param_groups": []}}, "epoch": 0}
    n_params = sum(p.numel() for p in model.parameters())
    with tempfile.TemporaryDirectory(dir=args.dir) as tmp:
        run = Path(tmp)
        t = time.perf_counter()
        ckpt = save_checkpoint(run, 1, model, teacher, state)
        save_s = time.perf_counter() - t
        size = sum(f.stat().st_size for f in ckpt.iterdir())
        t = time.perf_counter()
        plain = run / "plain"  # the files alone, as checkpoints were written before manifests
        plain.mkdir()
        save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(plain / "model.safetensors"))
        save_file({k: v.contiguous() for k, v in teacher.state_dict().items()}, str(plain / "teacher.safetensors"))
        torch.save(state, plain / "state.pt")
        plain_s = time.perf_counter() - t
        shutil.rmtree(plain)
        t = time.perf_counter()
        assert verify_checkpoint(ckpt, hashes=False) == []
        sizes_s = time.perf_counter() - t
        t = time.perf_counter()
        assert verify_checkpoint(ckpt) == []
        hash_s = time.perf_counter() - t
        t = time.perf_counter()
        load_weights(model, ckpt / "model.safetensors")
        load_weights(teacher, ckpt / "teacher.safetensors")
        load_state(ckpt)
        load_s = time.perf_counter() - t
    print(f"| {args.preset} ({n_params / 1e6:.0f}M student parameters), checkpoint {human_bytes(size)} | seconds |")
    print("|---|---|")
    print(f"| write (serialise, hash, write, fsync, rename) | {save_s:.2f} |")
    print(f"| write the same files without hashes or fsync (before manifests) | {plain_s:.2f} |")
    print(f"| verify sizes | {sizes_s:.4f} |")
    print(f"| verify sizes + SHA-256 ({size / hash_s / 1e9:.2f} GB/s) | {hash_s:.2f} |")
    print(f"| load (weights + state) | {load_s:.2f} |")
    print(f"| verification / load | {hash_s / load_s:.2f}x |")


if __name__ == "__main__":
    main()
