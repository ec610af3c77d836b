"""The same seeded search with ``--scheduler fifo`` and with ``--scheduler asha``: cost and front.

Each scheduler runs in its own fresh database under ``--out`` (same space, seed, budget, epochs,
sampler). For each it prints the trials by state, the proxy epochs trained (all trials, all
repeats), the total trial-seconds (the sum of every
trial's ``total_seconds``: completed trials as measured inside the trial, pruned ones from start
to the stop decision as seen by the driver), the wall time of the run, and the hypervolume of
the final front over (validation accuracy ↑, full-model MACs ↓) of the COMPLETE trials.

Hypervolume reference point: accuracy 0 and MACs = the largest analytic MACs of the space over
``--probe`` random draws (``space.sample_random(i, feasible=False)``, as ``nas spaces show``), so
every trial lies inside it. The hypervolume is reported in accuracy × GMACs, and as a fraction
of the reference box (1 × max GMACs).

Usage (from the repository root)::

    .venv/bin/python benchmarks/bench_asha.py                              # tiny, budget 12
    .venv/bin/python benchmarks/bench_asha.py --space hybrid_conv_attn --budget 12 --epochs 3
    .venv/bin/python benchmarks/bench_asha.py --budget 6 --executor local --eta 2

The two runs differ in more than the scheduler: ASHA validates after every epoch (a little more
time per epoch), and its pruned trials change which proposals the sampler sees, so one seed is
one sample of each; compare several seeds before drawing conclusions.
"""

from __future__ import annotations

import argparse
import os
import shutil
import time
from pathlib import Path

from db import Store, pareto_front
from nas.models import analytic_cost, from_dict
from nas.search import SearchConfig, run_search
from search_spaces import load_space


def hypervolume_2d(points: list[tuple[float, float]], ref: tuple[float, float]) -> float:
    """Area dominated by ``points`` (accuracy ↑, MACs ↓) inside the box from ``ref``
    (accuracy ref[0], MACs ref[1]); points outside the box add nothing."""
    inside = sorted({(a, m) for a, m in points if a > ref[0] and m < ref[1]},
                    key=lambda p: p[1])  # cheapest first
    area, best = 0.0, ref[0]
    for i, (acc, macs) in enumerate(inside):
        best = max(best, acc)
        nxt = inside[i + 1][1] if i + 1 < len(inside) else ref[1]
        area += (best - ref[0]) * (nxt - macs)
    return area


def max_macs(space_name: str, probe: int) -> int:
    space = load_space(space_name)
    return max(analytic_cost(space.sample_random(i, feasible=False)[0]).macs
               for i in range(probe))


def run_one(args, scheduler: str) -> dict:
    runs = Path(args.out) / scheduler
    shutil.rmtree(runs, ignore_errors=True)
    runs.mkdir(parents=True)
    url = f"sqlite:///{runs}/nas.db"
    cfg = SearchConfig(space=args.space, budget=args.budget, epochs=args.epochs, seed=args.seed,
                       db_url=url, runs_dir=str(runs), executor=args.executor,
                       max_concurrent=args.max_concurrent, scheduler=scheduler,
                       asha_eta=args.eta)
    t0 = time.perf_counter()
    summary = run_search(cfg, log=lambda line: print(f"  {scheduler}: {line}", flush=True))
    wall = time.perf_counter() - t0
    trials = Store(url, decode_arch=from_dict).trials(summary.study)
    states: dict[str, int] = {}
    for t in trials:
        states[t.state] = states.get(t.state, 0) + 1
    seconds = sum(float(t.metrics.get("total_seconds") or 0.0) for t in trials)
    epochs = sum(len(c) for t in trials for c in t.metrics.get("curve") or [])
    front = pareto_front(trials)
    return {"scheduler": scheduler, "states": states, "trial_seconds": seconds, "wall": wall,
            "epochs": epochs,
            "front": [(t.accuracy, t.macs) for t in front],
            "all": [(t.accuracy, t.macs) for t in trials if t.state == "COMPLETE"]}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--space", default="tiny")
    p.add_argument("--budget", type=int, default=12)
    p.add_argument("--epochs", type=int, default=3)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--eta", type=int, default=3, help="ASHA reduction factor")
    p.add_argument("--executor", choices=("ray", "local"), default="ray")
    p.add_argument("--max-concurrent", type=int, default=None)
    p.add_argument("--probe", type=int, default=2000,
                   help="random draws for the reference point's MACs")
    p.add_argument("--out", default="runs/bench_asha")
    args = p.parse_args()
    os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")

    ref_macs = max_macs(args.space, args.probe)
    rows = [run_one(args, s) for s in ("fifo", "asha")]
    g = 1e9
    print(f"\n{args.space}, budget {args.budget} completed, {args.epochs} epochs, seed "
          f"{args.seed}, eta {args.eta}, executor {args.executor}; hypervolume reference: "
          f"accuracy 0, {ref_macs / g:.4f} GMACs (max over {args.probe} draws)")
    print(f"{'scheduler':<10} {'trials by state':<34} {'epochs':>6} {'trial-s':>9} {'wall s':>8} "
          f"{'front':>6} {'HV (acc·GMACs)':>15} {'HV / box':>9}")
    for r in rows:
        hv = hypervolume_2d([(a, m / g) for a, m in r["front"]], (0.0, ref_macs / g))
        states = ", ".join(f"{k} {v}" for k, v in sorted(r["states"].items()))
        print(f"{r['scheduler']:<10} {states:<34} {r['epochs']:>6} {r['trial_seconds']:9.1f} "
              f"{r['wall']:8.1f} "
              f"{len(r['front']):>6} {hv:15.6f} {hv / (ref_macs / g):9.4f}")


if __name__ == "__main__":
    main()
