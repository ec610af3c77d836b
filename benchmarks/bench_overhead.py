"""Where a search's time goes: the engine (Ray Tune, Optuna, database) against the trials' work.

One run, three measurements on the same architectures:

1. ``engine``: ``run_search`` on a fresh database (space ``--space``, ``--trials`` trials,
   ``--epochs`` proxy epochs, ``--slots`` trials at once), Ray workers reused across trials
   (the default).
2. ``engine, no reuse``: the same with one Ray worker process per trial (``reuse_workers=False``,
   what the engine did before): every trial pays Python start-up, imports and FFCV's JIT.
3. ``plain loop``: the architectures the engine trained, in the same order, trained in this one
   process by the same trainable function (an Optuna-free, Ray-free loop: the floor).

For each it prints the wall time, the sum of the trials' own work (``total_seconds`` the trial
measures from its first to its last line), and the overhead
``(wall x slots - trial work) / trial work`` (for the loop, slots = 1), plus the per-trial gap
between the database's duration (trial started -> recorded) and the trial's own work.
The target (issue 11): engine overhead under 10% of trial time at default settings.

Usage (from the repository root; run on an otherwise idle machine)::

    .venv/bin/python benchmarks/bench_overhead.py                      # tiny, 12 trials, 1 epoch
    .venv/bin/python benchmarks/bench_overhead.py --space hybrid_conv_attn --trials 20 --epochs 3
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def _engine(args, runs: Path, reuse: bool):
    from db import Store
    from nas.search import SearchConfig, run_search

    runs.mkdir(parents=True, exist_ok=True)
    url = f"sqlite:///{runs}/nas.db"
    cfg = SearchConfig(space=args.space, budget=args.trials, epochs=args.epochs, seed=args.seed,
                       db_url=url, runs_dir=str(runs), max_concurrent=args.slots,
                       reuse_workers=reuse, study="overhead")
    t0 = time.perf_counter()
    run_search(cfg, log=lambda s: None)
    wall = time.perf_counter() - t0
    done = Store(url).trials("overhead", states=["COMPLETE"])
    work = sum(t.metrics["total_seconds"] for t in done)
    gaps = [t.duration_s - t.metrics["total_seconds"] for t in done]
    return wall, work, gaps, done


def _plain(args, runs: Path, done):
    """The same architectures, trained one after another in this process."""
    import torch

    from nas._trainable import TrialContext, trainable
    from proxies import default_cache_dir, prepare_dataset
    from search_spaces import load_space

    space = load_space(args.space)
    dataset = prepare_dataset("clutter", default_cache_dir(runs / "cache"),
                              resolution=space.proxy_spec.resolution)
    ctx = TrialContext(dataset, args.epochs, 64, 2e-3, args.seed, 1, False, threads=1)
    torch.set_num_threads(1)
    work = []
    t0 = time.perf_counter()
    for t in done:
        reports: list[dict] = []
        config = {"arch": t.arch, "arch_hash": t.arch_hash, "params": t.params,
                  "proxy_arch": t.metrics["proxy_arch"]}
        trainable(config, ctx, report=reports.append)
        work.append(reports[-1]["total_seconds"])
    return time.perf_counter() - t0, sum(work)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--space", default="tiny")
    ap.add_argument("--trials", type=int, default=12)
    ap.add_argument("--epochs", type=int, default=1)
    ap.add_argument("--slots", type=int, default=2)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--skip-no-reuse", action="store_true")
    args = ap.parse_args()
    os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")
    print(f"# bench_overhead: space {args.space}, {args.trials} trials x {args.epochs} epoch(s),"
          f" {args.slots} slots, {os.cpu_count()} cores; {' '.join(sys.argv)}")
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        wall, work, gaps, done = _engine(args, Path(tmp, "a"), reuse=True)
        rows.append(("engine (workers reused)", wall, work, args.slots, gaps))
        if not args.skip_no_reuse:
            w2, k2, g2, _ = _engine(args, Path(tmp, "b"), reuse=False)
            rows.append(("engine, one worker per trial", w2, k2, args.slots, g2))
        w3, k3 = _plain(args, Path(tmp, "a"), done)
        rows.append(("plain loop, one process", w3, k3, 1, []))
    print(f"{'':<30} {'wall s':>8} {'trial work s':>13} {'overhead':>9} {'gap/trial s':>12}")
    for name, wall, work, slots, gaps in rows:
        over = (wall * slots - work) / work
        gap = f"{statistics.median(gaps):.2f}" if gaps else "-"
        print(f"{name:<30} {wall:8.1f} {work:13.1f} {over:9.1%} {gap:>12}")
    print("overhead = (wall x slots - trial work) / trial work; gap = database duration - the "
          "trial's own seconds (median)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
