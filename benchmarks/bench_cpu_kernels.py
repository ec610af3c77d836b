"""Proxy training on CPU with and without ``proxies.cpu_kernels``, model by model, in one process.

Each of N random proxies of a space (the search's default proxy: 3 epochs, batch 64, one torch
thread, as a trial on CPU) is trained twice from the same seed: with ``TrainConfig.cpu_kernels``
(the default: channels-last, the depthwise convolutions' fast backward, fused StarReLU) and
without it (PyTorch's own ops, channels-first), in alternating order so that neither setting
always runs first. Prints a Markdown table of training seconds, evaluation seconds, and the
validation and test accuracies of both (they should agree up to float rounding, which a few
images can flip), then the totals.

Usage (from the repository root, on an otherwise idle machine)::

    .venv/bin/python benchmarks/bench_cpu_kernels.py -n 10          # clutter, hybrid_conv_attn
    .venv/bin/python benchmarks/bench_cpu_kernels.py -n 2 --epochs 1 --dataset digits  # smoke
"""

from __future__ import annotations

import argparse
import shlex
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from nas.models import analytic_cost, build_model  # noqa: E402
from proxies import TrainConfig, prepare_dataset, train_proxy  # noqa: E402
from search_spaces import load_space  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("-n", "--models", type=int, default=10, help="random proxies (default 10)")
    p.add_argument("--space", default="hybrid_conv_attn")
    p.add_argument("--dataset", default="clutter")
    p.add_argument("--epochs", type=int, default=3)
    p.add_argument("--seed", type=int, default=300, help="first random draw of the space")
    args = p.parse_args(argv)
    torch.set_num_threads(1)
    space = load_space(args.space)
    info = prepare_dataset(args.dataset)
    command = ["python", "benchmarks/bench_cpu_kernels.py", *(argv or sys.argv[1:])]
    print(f"$ {shlex.join(command)}")
    print(f"{args.space} proxies on {args.dataset}, {args.epochs} epochs, batch 64, 1 thread\n")
    print("| model | proxy MMACs | train s: kernels / PyTorch | eval s: kernels / PyTorch "
          "| val acc: kernels / PyTorch | test acc: kernels / PyTorch |")
    print("|---:|---:|---|---|---|---|")
    totals = {True: [0.0, 0.0], False: [0.0, 0.0]}
    for i in range(args.models):
        spec = space.proxy(space.sample_random(args.seed + i)[0], info.num_classes)
        results = {}
        for on in ((True, False) if i % 2 == 0 else (False, True)):
            torch.manual_seed(0)
            model = build_model(spec)
            results[on] = train_proxy(model, info, TrainConfig(epochs=args.epochs, threads=1,
                                                               cpu_kernels=on))
            totals[on][0] += results[on].train_seconds
            totals[on][1] += results[on].eval_seconds
        k, t = results[True], results[False]
        print(f"| {i} | {analytic_cost(spec).macs / 1e6:.1f} "
              f"| {k.train_seconds:.1f} / {t.train_seconds:.1f} "
              f"| {k.eval_seconds:.2f} / {t.eval_seconds:.2f} "
              f"| {k.accuracy:.4f} / {t.accuracy:.4f} "
              f"| {k.test_accuracy:.4f} / {t.test_accuracy:.4f} |", flush=True)
    (ktr, kev), (ttr, tev) = totals[True], totals[False]
    print(f"\ntotal training: {ktr:.1f} s with the kernels, {ttr:.1f} s without "
          f"({ktr / ttr:.3f}x); evaluation {kev:.1f} s / {tev:.1f} s; "
          f"training + evaluation {(ktr + kev) / (ttr + tev):.3f}x")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
