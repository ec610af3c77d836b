"""Where a CPU training step's time goes: per-image compute against fixed per-step cost.

For N random proxies of a space (as a search trial trains them on CPU: one torch thread, the
trainer's CPU kernels, channels-last, fused AdamW, gradient clipping), one training step on a
synthetic batch is timed at several batch sizes (median of ``--steps`` after 3 warm-up steps).
A step at batch 1 bounds the fixed cost (the ops' dispatch, the optimizer's per-tensor work);
the slope between the two largest batches is the per-image compute. The achieved rate counts a
training step as 3 × the proxy's analytic forward MACs × 2 FLOPs per image (forward, and a
backward of about twice its cost), against a 1,024² fp32 matrix product on the same thread as
this core's practical ceiling.

It answers "would a faster trainer make the headline search fit in 8 minutes at full
fidelity?" (README, "Loader and trainer speed"): that needs about 2.5× less time per trial.

Usage (from the repository root, on an otherwise idle machine)::

    .venv/bin/python benchmarks/bench_step.py -n 6
    .venv/bin/python benchmarks/bench_step.py -n 2 --batches 8 1 --steps 3   # smoke
"""

from __future__ import annotations

import argparse
import shlex
import statistics
import sys
import time
from pathlib import Path

import torch
import torch.nn as nn

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from nas.models import analytic_cost, build_model  # noqa: E402
from proxies.cpu_kernels import speed_up  # noqa: E402
from search_spaces import load_space  # noqa: E402


def step_ms(model: nn.Module, batch: int, steps: int, num_classes: int, size: int) -> float:
    """Median milliseconds of one training step at ``batch``."""
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3, fused=True)
    criterion = nn.CrossEntropyLoss(label_smoothing=0.1)
    params = [p for p in model.parameters() if p.requires_grad]
    x = torch.randn(batch, 3, size, size).contiguous(memory_format=torch.channels_last)
    y = torch.randint(0, num_classes, (batch,))
    times = []
    for i in range(3 + steps):
        start = time.perf_counter()
        loss = criterion(model(x), y)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        nn.utils.clip_grad_norm_(params, 1.0)
        optimizer.step()
        if i >= 3:
            times.append(time.perf_counter() - start)
    return statistics.median(times) * 1e3


def matmul_gflops(n: int = 1024, repeats: int = 10) -> float:
    a, b = torch.randn(n, n), torch.randn(n, n)
    torch.mm(a, b)
    start = time.perf_counter()
    for _ in range(repeats):
        torch.mm(a, b)
    return 2 * n ** 3 * repeats / (time.perf_counter() - start) / 1e9


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("-n", "--models", type=int, default=6, help="random proxies (default 6)")
    p.add_argument("--space", default="hybrid_conv_attn")
    p.add_argument("--num-classes", type=int, default=10)
    p.add_argument("--batches", type=int, nargs="+", default=[64, 16, 4, 1],
                   help="batch sizes, largest first (default 64 16 4 1)")
    p.add_argument("--steps", type=int, default=10, help="timed steps per batch (default 10)")
    p.add_argument("--seed", type=int, default=300, help="first random draw of the space")
    args = p.parse_args(argv)
    batches = sorted(set(args.batches), reverse=True)
    if len(batches) < 2 or batches[-1] < 1:
        p.error("--batches needs two or more sizes >= 1")
    torch.set_num_threads(1)
    space = load_space(args.space)
    print(f"$ {shlex.join(['python', 'benchmarks/bench_step.py', *(argv or sys.argv[1:])])}")
    ceiling = matmul_gflops()
    print(f"{args.space} proxies, 1 thread, CPU kernels; 1,024² fp32 matmul on this thread: "
          f"{ceiling:.1f} GFLOP/s\n")
    big, next_big = batches[0], batches[1]
    print("| model | proxy MMACs | " + " | ".join(f"ms/step at {b}" for b in batches)
          + f" | fixed share at {big} | ms/image | GFLOP/s | of the matmul's |")
    print("|---:|---:|" + "---:|" * len(batches) + "---:|---:|---:|---:|")
    shares, rates = [], []
    for i in range(args.models):
        spec = space.proxy(space.sample_random(args.seed + i)[0], args.num_classes)
        torch.manual_seed(0)
        model = build_model(spec)
        speed_up(model)  # what a CPU trial trains with (channels-last too)
        ms = {b: step_ms(model, b, args.steps, args.num_classes, spec.img_size) for b in batches}
        per_image = (ms[big] - ms[next_big]) / (big - next_big)
        macs = analytic_cost(spec).macs
        gflops = 6 * macs * big / (ms[big] / 1e3) / 1e9
        share = ms[batches[-1]] / ms[big]
        shares.append(share)
        rates.append(gflops)
        print(f"| {i} | {macs / 1e6:.1f} | " + " | ".join(f"{ms[b]:.1f}" for b in batches)
              + f" | {share:.0%} | {per_image:.2f} | {gflops:.1f} | {gflops / ceiling:.0%} |",
              flush=True)
    print(f"\nmedian: fixed share {statistics.median(shares):.0%} (a step at batch "
          f"{batches[-1]} over one at {big}), {statistics.median(rates):.1f} GFLOP/s "
          f"({statistics.median(rates) / ceiling:.0%} of the matmul's {ceiling:.1f})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
