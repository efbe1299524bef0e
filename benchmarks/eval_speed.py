"""Evaluation speed on Fashion-MNIST: k-NN and the cached linear probe, 10k train / 2k test.

Targets (issue): k-NN under 30 s, linear probe (feature extraction included) under 60 s on a
2-core CPU with the ``small`` preset. A random initialisation has the same cost as a trained
encoder; pass a run directory to time (and score) a real one::

    python benchmarks/eval_speed.py                       # random init, small preset
    python benchmarks/eval_speed.py runs/fmnist-hpm --repeats 2

The CPU may be shared: the 1-minute load average is printed with each measurement.

Recorded 2026-11-28 on the development VM (2 vCPUs, AMD EPYC with AVX-512 BF16, torch 2.14.1,
2 threads, bf16 features; load average about 2, i.e. this process alone):

    random init          k-NN 22.8 s (541 img/s)           linear probe 21.1 s (probe 2.1 s)
    runs/fmnist-hpm (1)  k-NN 25.3 s, 25.3 s (485 img/s)   linear probe 27.3 s, 29.1 s (probe 2.2-2.4 s)

    top-1, 10 000 train / 2 000 test   k=10    k=20    k=100   k=200   linear
    random init                        69.20   68.80   62.60   57.20   77.90
    runs/fmnist-hpm (1)                78.35   77.75   73.90   71.35   80.40

(1) the main job's checkpoint (HPM, small preset, 10 000 images, 5 epochs, step 390). With other
jobs on the two cores (load 4-5) the same k-NN took 78 s: a second process makes OpenMP's two
threads spin against each other (one thread was then twice as fast as two).
"""

from __future__ import annotations

import argparse
import os
import time

import torch

from hpm.config import build_config
from hpm.engine.precision import resolve_device, resolve_precision
from hpm.eval.data import build_eval_data
from hpm.eval.encoder import load_encoder
from hpm.eval.knn import run_knn
from hpm.eval.linear import LinearProbeConfig, run_linear


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("path", nargs="?", help="run directory or checkpoint (default: random init)")
    parser.add_argument("--preset", default="small")
    parser.add_argument("--train", type=int, default=10000)
    parser.add_argument("--test", type=int, default=2000)
    parser.add_argument("--precision", default="auto")
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--probe-epochs", type=int, default=100)
    parser.add_argument("--repeats", type=int, default=1)
    args = parser.parse_args()

    device = resolve_device("auto")
    precision = resolve_precision(args.precision, device)
    cfg = build_config(overrides={"model": {"preset": args.preset}})
    enc = load_encoder(args.path, random_init=args.path is None, cfg=cfg)
    print(
        f"{'random init' if args.path is None else args.path} | preset {enc.cfg.model.preset} | {device} {precision} | "
        f"{torch.get_num_threads()} threads | {args.train} train / {args.test} test"
    )
    for rep in range(args.repeats):
        load = os.getloadavg()[0]
        start = time.perf_counter()
        data = build_eval_data(enc.cfg.data, enc.cfg.model.img_size, int(enc.cfg.model.in_chans or 1), args.train, args.test)
        knn = run_knn(enc.model, data, batch_size=args.batch_size, device=device, precision=precision)
        knn_s = time.perf_counter() - start
        accs = " ".join(f"k={k}:{v:.2f}%" for k, v in knn["top1"].items())
        print(
            f"[{rep}] k-NN          {knn_s:6.1f} s (features {knn['extract_s']:.1f} s = "
            f"{(knn['num_train'] + knn['num_test']) / knn['extract_s']:.0f} img/s, k-NN {knn['knn_s']:.2f} s) "
            f"{accs} | load {load:.1f}",
            flush=True,
        )
        load = os.getloadavg()[0]
        start = time.perf_counter()
        data = build_eval_data(enc.cfg.data, enc.cfg.model.img_size, int(enc.cfg.model.in_chans or 1), args.train, args.test)
        lin = run_linear(enc.model, data, probe_cfg=LinearProbeConfig(epochs=args.probe_epochs), batch_size=args.batch_size, device=device, precision=precision)
        lin_s = time.perf_counter() - start
        print(
            f"[{rep}] linear probe  {lin_s:6.1f} s (features {lin['extract_s']:.1f} s, probe {lin['probe_s']:.1f} s for "
            f"{args.probe_epochs} epochs) top-1 {lin['top1']:.2f}% (train {lin['train_top1']:.2f}%) | load {load:.1f}",
            flush=True,
        )


if __name__ == "__main__":
    main()
