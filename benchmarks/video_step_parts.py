"""Where a video HPM step spends its time next to a VideoMAE step: FLOPs and seconds of each part.

    OMP_NUM_THREADS=1 python benchmarks/video_step_parts.py [--preset video_small] [--batch-size 8] \
        [--rounds 5] [--ratio 0.9] [--json]

Builds the ``videomae`` and ``hpm_efficient`` variants of ``hpm bench`` (synthetic clips, fp32,
eager) and times, interleaved round by round (medians), the parts of their training step:
the teacher's masked-view scoring with the mask drawn from it (``generate_mask``), the student's
encoder with the decoder input, the reconstruction decoder and the loss predictor (each forward
and backward, fed the step's real decoder input), the loss-prediction objective (forward and
backward), the optimizer step and the EMA update; plus each part's FLOPs (PyTorch's counter).
The parts are timed one by one, so their sum is close to, not equal to, a whole step.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from collections.abc import Callable

import torch
from torch.utils.flop_counter import FlopCounterMode

from hpm.bench.timing import _Variant
from hpm.bench.variants import variant_config
from hpm.config import build_config
from hpm.losses import loss_prediction_loss

Part = Callable[[], None]


def _parts(variant: _Variant) -> dict[str, Part]:
    """The parts of one variant's step, each a closure over the step's own inputs."""
    step, imgs = variant.step_fn, variant.images  # imgs: [N, C, T, H, W]
    model = step.model
    masks, _ = step.generate_mask(imgs, variant.num_hard)
    x = model.forward_masked_input(imgs, masks.ids_keep, masks.ids_mask).detach()  # [N, 1 + L, Dd]

    def through(fn: Callable[[torch.Tensor], torch.Tensor]) -> Part:
        def run() -> None:
            fn(x.clone().requires_grad_(True)).sum().backward()
        return run

    def encoder() -> None:
        model.forward_masked_input(imgs, masks.ids_keep, masks.ids_mask).sum().backward()

    parts: dict[str, Part] = {
        "teacher + masks": lambda: step.generate_mask(imgs, variant.num_hard),
        "encoder fwd+bwd": encoder,
        "decoder fwd+bwd": through(lambda xx: model.forward_decoder(xx, masks.ids_mask)),
    }
    if model.has_predictor:
        scores = torch.randn(masks.ids_mask.shape, requires_grad=True)  # [N, K]
        losses = torch.rand(masks.ids_mask.shape)  # [N, K]
        parts["predictor fwd+bwd"] = through(model.forward_loss_predictor)
        parts["relative loss fwd+bwd"] = lambda: loss_prediction_loss("relative", scores, losses).backward()
    parts["optimizer"] = lambda: step.optimizer_step(None)
    if step.ema is not None:
        parts["ema"] = lambda: step.ema.update(0.999)  # type: ignore[union-attr]
    return parts


def _gflop(part: Part) -> float:
    counter = FlopCounterMode(display=False)
    with counter:
        part()
    return counter.get_total_flops() / 1e9


def measure(preset: str, batch_size: int, ratio: float, rounds: int) -> dict[str, dict[str, dict[str, float]]]:
    """``{variant: {part: {"s": median seconds, "gflop": FLOPs}}}`` for videomae and hpm_efficient."""
    base = build_config(overrides={
        "model": {"preset": preset, "in_chans": 1}, "mask": {"ratio": ratio},
        "train": {"batch_size": batch_size, "precision": "fp32", "device": "cpu", "compile": False},
    })
    names = ("videomae", "hpm_efficient")
    variants = {n: _Variant(variant_config(base, n, "random"), torch.device("cpu"), "fp32") for n in names}
    parts = {n: _parts(v) for n, v in variants.items()}
    times: dict[str, dict[str, list[float]]] = {n: {p: [] for p in parts[n]} for n in names}
    for round_ in range(rounds + 1):  # round 0 warms up
        for n in names:
            for p, run in parts[n].items():
                start = time.perf_counter()
                run()
                if round_:
                    times[n][p].append(time.perf_counter() - start)
    return {n: {p: {"s": statistics.median(times[n][p]), "gflop": _gflop(parts[n][p])} for p in parts[n]}
            for n in names}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", default="video_small")
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--ratio", type=float, default=0.9)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    torch.manual_seed(0)
    result = measure(args.preset, args.batch_size, args.ratio, args.rounds)
    if args.json:
        print(json.dumps(result, indent=2))
        return
    base_s = sum(r["s"] for r in result["videomae"].values())
    base_gflop = sum(r["gflop"] for r in result["videomae"].values())
    for name, parts in result.items():
        print(f"{name}: sum of parts {sum(r['s'] for r in parts.values()):.3f} s, "
              f"{sum(r['gflop'] for r in parts.values()):.2f} GFLOP")
        for part, r in parts.items():
            print(f"    {part:24} {r['s']:7.3f} s {r['s'] / base_s:6.1%} of videomae   "
                  f"{r['gflop']:6.2f} GFLOP {r['gflop'] / base_gflop:6.1%}")


if __name__ == "__main__":
    main()
