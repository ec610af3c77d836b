"""Samplers compared by hypervolume over trials, mean and spread over seeds, in one database.

Every (sampler, seed) pair runs the same search (space, budget, epochs, dataset) as its own
study ``<sampler>_s<seed>`` in ``<out>/nas.db``, then the comparison is read back with the
analysis library exactly as ``python -m nas pareto --group-by sampler`` does: one shared
hypervolume reference point (module ``nas.analysis``), the final hypervolume of each study, the
mean and min-max over seeds per sampler, and ``<out>/pareto/hypervolume.png`` (mean curve and
band per sampler) with ``pareto.png``, ``front.csv`` and ``front.json``.

Usage (from the repository root)::

    .venv/bin/python benchmarks/bench_samplers.py --samplers nsga2 random --seeds 0 1 2
    .venv/bin/python benchmarks/bench_samplers.py --space hybrid_conv_attn --budget 30 \\
        --dataset clutter --epochs 3

Studies already complete in ``<out>`` are continued, not rerun (a search resumes to its budget),
so an interrupted benchmark picks up where it stopped; ``--fresh`` deletes ``<out>`` first.
The accuracy axis is a proxy's, with its noise: read the spread over seeds before the means.
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import sys
import time
from pathlib import Path

from db import Store
from nas import _pareto
from nas.models import from_dict
from nas.search import SearchConfig, run_search
from nas_errors import SearchInterrupted


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--space", default="tiny")
    ap.add_argument("--samplers", nargs="+", default=["nsga2", "random"])
    ap.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    ap.add_argument("--budget", type=int, default=16)
    ap.add_argument("--epochs", type=int, default=2)
    ap.add_argument("--dataset", default="digits")
    ap.add_argument("--executor", default="ray", choices=("ray", "local"))
    ap.add_argument("--out", default="runs/bench_samplers")
    ap.add_argument("--fresh", action="store_true")
    args = ap.parse_args()

    out = Path(args.out)
    if args.fresh and out.exists():
        shutil.rmtree(out)
    out.mkdir(parents=True, exist_ok=True)
    url = f"sqlite:///{out.resolve()}/nas.db"
    names = []
    for sampler in args.samplers:
        for seed in args.seeds:
            name = f"{sampler}_s{seed}"
            names.append(name)
            t0 = time.perf_counter()
            cfg = SearchConfig(space=args.space, budget=args.budget, epochs=args.epochs,
                               seed=seed, sampler=sampler, dataset=args.dataset, study=name,
                               db_url=url, runs_dir=str(out), executor=args.executor,
                               progress_every=0)
            s = run_search(cfg, log=lambda line: None)
            print(f"{name}: {s.completed} completed, {s.failed} failed in "
                  f"{time.perf_counter() - t0:.0f} s", flush=True)

    store = Store(url, decode_arch=from_dict)
    fronts = _pareto.load_fronts(store, names)
    _, hv = _pareto.hypervolumes(fronts)
    print(f"\nspace {args.space}, budget {args.budget}, {args.epochs} epochs on {args.dataset}; "
          "final hypervolume (fraction of the shared box), front size, certain members:")
    for f in fronts:
        print(f"  {f.name:<14} hv {hv[f.name]:.4f}  front {len(f.noisy.members):>2}  "
              f"certain {len(f.noisy.certain):>2}  evaluated {len(f.ev)}")
    for sampler in args.samplers:
        vals = [hv[f"{sampler}_s{seed}"] for seed in args.seeds]
        sd = statistics.stdev(vals) if len(vals) > 1 else 0.0
        print(f"{sampler:<8} hv mean {statistics.mean(vals):.4f}  sd {sd:.4f}  "
              f"min {min(vals):.4f}  max {max(vals):.4f}  over {len(vals)} seeds")
    for path in _pareto.write_outputs(fronts, out / "pareto", z=1.96, group_by="sampler"):
        print(f"wrote {path}")


if __name__ == "__main__":
    try:
        main()
    except SearchInterrupted as e:  # Ctrl-C: the trials are recorded; one line, no traceback
        print(e, file=sys.stderr)
        sys.exit(e.exit_code)
