"""Time the proxy training's GPU paths side by side: fp32, bf16 autocast, bf16 + channels-last.

For ``--models`` proxy models of hybrid_conv_attn of spread-out sizes (picked as bench_speed
picks them), each mode runs ``proxies.train_proxy`` for ``--epochs`` on the prepared dataset,
FFCV loading straight to the device (``ToDevice``), after one untimed 1-epoch warm-up of that
model and mode (cuDNN autotuning, first-call kernels, FFCV's JIT). Per run it prints the training
loop's ms per step and images/s, the evaluation seconds, the whole call's wall seconds and the
final validation accuracy; the median of ``--repeats`` timed runs (same seed, so the accuracy of
a mode is one number). The search's trials use the ``bf16+cl`` mode on CUDA (nas/_trainable.py).

``--device cpu`` times the same on the CPU (bf16 autocast is a no-op there; ``fp32`` and ``cl``
are the CPU's modes), for the comparison at the same models and settings.

Usage (from the repository root; on a machine with a GPU)::

    python benchmarks/bench_gpu.py                          # clutter, 3 models, 3 epochs
    python benchmarks/bench_gpu.py --batch-size 256 --modes fp32 bf16+cl
    python benchmarks/bench_gpu.py --compile                # adds bf16+cl+compile
    python benchmarks/bench_gpu.py --device cpu --modes fp32 cl --threads 2
"""

from __future__ import annotations

import argparse
import platform
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_speed import describe, pick_models  # noqa: E402

from nas.models import analytic_cost, build_model  # noqa: E402
from proxies import TrainConfig, prepare_dataset, train_proxy  # noqa: E402

#: mode -> (bf16 autocast, channels-last, torch.compile)
MODES = {"fp32": (False, False, False), "cl": (False, True, False), "bf16": (True, False, False),
         "bf16+cl": (True, True, False), "bf16+cl+compile": (True, True, True)}


def run(spec, info, mode: str, args, epochs: int) -> dict:
    bf16, cl, comp = MODES[mode]
    torch.manual_seed(args.seed)
    model = build_model(spec)
    cfg = TrainConfig(epochs=epochs, batch_size=args.batch_size, seed=args.seed,
                      device=args.device, amp_bf16=bf16, channels_last=cl, compile=comp,
                      threads=args.threads)
    sync = torch.cuda.synchronize if args.device == "cuda" else (lambda: None)
    sync()
    t0 = time.perf_counter()
    res = train_proxy(model, info, cfg)
    sync()
    wall = time.perf_counter() - t0
    if res.failure:
        raise SystemExit(f"{describe(spec)} {mode}: {res.failure}")
    return {"ms_step": 1e3 * res.train_seconds / max(res.steps, 1),
            "img_s": res.images_per_second, "eval_s": res.eval_seconds, "wall_s": wall,
            "acc": res.accuracy}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", default="cuda", choices=("cuda", "cpu"))
    ap.add_argument("--dataset", default="clutter", help="prepared dataset (default clutter)")
    ap.add_argument("--cache-dir", default=None, help="dataset cache (default $NAS_CACHE_DIR)")
    ap.add_argument("--models", type=int, default=3, help="proxy models timed (default 3)")
    ap.add_argument("--epochs", type=int, default=3, help="epochs per timed run (default 3)")
    ap.add_argument("--batch-size", type=int, default=64, help="training batch (default 64)")
    ap.add_argument("--repeats", type=int, default=3, help="timed runs per mode (median)")
    ap.add_argument("--modes", nargs="+", default=None, choices=list(MODES),
                    help="default: fp32 bf16 bf16+cl on cuda, fp32 cl on cpu")
    ap.add_argument("--compile", action="store_true", help="also time bf16+cl+compile")
    ap.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    ap.add_argument("--seed", type=int, default=0, help="model sampling and training seed")
    args = ap.parse_args(argv)
    if args.device == "cuda" and not torch.cuda.is_available():
        raise SystemExit("error: --device cuda but torch sees no CUDA device; "
                         "use --device cpu or run on a machine with a GPU")
    modes = args.modes or (["fp32", "bf16", "bf16+cl"] if args.device == "cuda"
                           else ["fp32", "cl"])
    if args.compile and "bf16+cl+compile" not in modes:
        modes.append("bf16+cl+compile")
    if args.threads:
        torch.set_num_threads(args.threads)
    info = prepare_dataset(args.dataset, args.cache_dir)
    where = (torch.cuda.get_device_name(0) if args.device == "cuda"
             else platform.processor() or platform.machine())
    print(f"{where}; torch {torch.__version__}, {torch.get_num_threads()} CPU threads; "
          f"{info.name} ({info.num_train} train images at {info.resolution}px), batch "
          f"{args.batch_size}, {args.epochs} epochs, median of {args.repeats} runs per mode",
          flush=True)
    print(f"{'proxy model':<52} {'MMACs':>6} {'mode':<16} {'ms/step':>8} {'img/s':>9} "
          f"{'eval s':>7} {'wall s':>7} {'val acc':>8}")
    speedups: dict[str, list[float]] = {m: [] for m in modes}
    for spec in pick_models(args.models, args.seed):
        base = None
        for mode in modes:
            run(spec, info, mode, args, epochs=1)  # warm-up
            rows = [run(spec, info, mode, args, args.epochs) for _ in range(args.repeats)]
            med = {k: statistics.median(r[k] for r in rows) for k in rows[0]}
            base = base or med["ms_step"]
            speedups[mode].append(base / med["ms_step"])
            print(f"{describe(spec):<52} {analytic_cost(spec).macs / 1e6:6.1f} {mode:<16} "
                  f"{med['ms_step']:8.2f} {med['img_s']:9.0f} {med['eval_s']:7.2f} "
                  f"{med['wall_s']:7.2f} {med['acc']:8.4f}", flush=True)
    print("step-time speed-up over " + modes[0] + ", geometric mean over the models: " + ", ".join(
        f"{m} {statistics.geometric_mean(v):.2f}x" for m, v in speedups.items()))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
