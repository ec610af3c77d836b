"""The same seeded search with ``--scheduler fifo`` and with ``--scheduler asha``: cost and front.

For each seed of ``--seeds``, each scheduler runs in its own fresh database under ``--out``
(same space, seed, budget, epochs, sampler). ``--budget`` means what it means on the command
line: completed trials under fifo, evaluated trials (completed or pruned) under asha, so the two
runs propose the same number of architectures and ASHA's saving is the epochs it did not train.
For each it prints the trials by state, the proxy epochs trained (all trials, all repeats), the
total trial-seconds (the sum of every trial's ``total_seconds``: completed trials as measured
inside the trial, pruned ones from start to the stop decision as seen by the driver), the wall
time of the run, and the hypervolume of the final front over (validation accuracy ↑, full-model
MACs ↓) of the COMPLETE trials.

Hypervolume reference point: accuracy 0 and MACs = the largest analytic MACs of the space over
``--probe`` random draws (``space.sample_random(i, feasible=False)``, as ``nas spaces show``), so
every trial lies inside it. The hypervolume (Optuna's implementation) is reported as a fraction
of the reference box (1 × max GMACs). The last line gives asha / fifo ratios (trial-seconds,
wall, epochs, hypervolume), mean and range over the seeds.

Usage (from the repository root)::

    .venv/bin/python benchmarks/bench_asha.py --seeds 0 1 2                # tiny, budget 12
    .venv/bin/python benchmarks/bench_asha.py --space hybrid_conv_attn --budget 12 --epochs 3
    .venv/bin/python benchmarks/bench_asha.py --budget 6 --executor local --arms fifo asha:1:2
    .venv/bin/python benchmarks/bench_asha.py --arms fifo asha:1:3:val_accuracy asha:1/3

The two runs differ in more than the scheduler: ASHA validates after every epoch (a little more
time per epoch), and its pruned trials change which proposals the sampler sees, so one seed is
one sample of each; compare several seeds before drawing conclusions.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import time
from pathlib import Path

from db import Store
from db.errors import StorageError
from nas.analysis import pareto_front
from nas.models import analytic_cost, from_dict
from nas.search import SearchConfig, run_search
from search_spaces import load_space


def hypervolume_2d(points: list[tuple[float, float]], ref: tuple[float, float]) -> float:
    """Area dominated by ``points`` (accuracy ↑, MACs ↓) inside the box from ``ref``
    (accuracy ref[0], MACs ref[1]), by Optuna's hypervolume (minimisation: -accuracy, MACs)."""
    import numpy as np
    from optuna._hypervolume import compute_hypervolume

    inside = [(-a, m) for a, m in points if a > ref[0] and m < ref[1]]
    if not inside:
        return 0.0
    return float(compute_hypervolume(np.array(inside, dtype=float),
                                     np.array([-ref[0], ref[1]], dtype=float)))


def max_macs(space_name: str, probe: int) -> int:
    space = load_space(space_name)
    return max(analytic_cost(space.sample_random(i, feasible=False)[0]).macs
               for i in range(probe))


def parse_arm(text: str) -> dict:
    """``fifo``, or ``asha[:MIN_EPOCHS[:ETA[:METRIC[:late|nolate]]]]`` (``asha:1/3:3:val_loss``;
    ``nolate``: without the rung one epoch before the last)."""
    from fractions import Fraction

    parts = text.split(":")
    if parts[0] == "fifo" and len(parts) == 1:
        return {"name": text, "scheduler": "fifo"}
    if parts[0] != "asha" or len(parts) > 5 or (len(parts) == 5
                                                 and parts[4] not in ("late", "nolate")):
        raise SystemExit(f"--arms: {text!r} is not fifo or "
                         f"asha[:MIN_EPOCHS[:ETA[:METRIC[:late|nolate]]]]")
    r_min = float(Fraction(parts[1])) if len(parts) > 1 else SearchConfig.asha_min_epochs
    return {"name": text, "scheduler": "asha",
            "asha_min_epochs": int(r_min) if float(r_min).is_integer() else r_min,
            "asha_eta": int(parts[2]) if len(parts) > 2 else SearchConfig.asha_eta,
            "asha_metric": parts[3] if len(parts) > 3 else SearchConfig.asha_metric,
            "asha_late_rung": (parts[4] == "late") if len(parts) > 4
            else SearchConfig.asha_late_rung}


def epochs_trained(curve: list) -> float:
    """Epochs a trial trained, over its repeats: the last point of each repeat's curve."""
    return sum(max((float(e.get("epoch") or 0) for e in c), default=0.0) for c in curve or [])


def kept_run(url: str, study: str, budget: int) -> float | None:
    """The run time of a finished run of ``study`` in ``url`` that reached ``budget``, if any."""
    if not Path(url.removeprefix("sqlite:///")).is_file():
        return None
    try:
        runs = Store(url).runs(study)
    except StorageError:  # no such study yet
        return None
    done = [r for r in runs if r.outcome == "completed"]
    if len(runs) != 1 or not done or done[0].config.get("budget") != budget:
        return None
    return (done[0].ended_at - done[0].started_at).total_seconds()


def run_one(args, arm: dict) -> dict:
    runs = Path(args.out) / arm["name"].replace(":", "_").replace("/", "-")
    url = f"sqlite:///{runs}/nas.db"
    wall = kept_run(url, args.space, args.budget) if args.keep else None
    if wall is not None:
        print(f"  {arm['name']}: kept the finished run in {runs} (--keep); its wall time is the "
              f"run's start to end in the database", flush=True)
        trials = Store(url, decode_arch=from_dict).trials(args.space)
        return summarize(arm, trials, wall, kept=True)
    shutil.rmtree(runs, ignore_errors=True)
    runs.mkdir(parents=True)
    settings = {k: v for k, v in arm.items() if k != "name"}
    cfg = SearchConfig(space=args.space, budget=args.budget, epochs=args.epochs, seed=args.seed,
                       db_url=url, runs_dir=str(runs), executor=args.executor,
                       max_concurrent=args.max_concurrent, **settings)
    t0 = time.perf_counter()
    summary = run_search(cfg, log=lambda line: print(f"  {arm['name']}: {line}", flush=True))
    wall = time.perf_counter() - t0
    return summarize(arm, Store(url, decode_arch=from_dict).trials(summary.study), wall)


def summarize(arm: dict, trials: list, wall: float, kept: bool = False) -> dict:
    states: dict[str, int] = {}
    for t in trials:
        states[t.state] = states.get(t.state, 0) + 1
    seconds = sum(float(t.metrics.get("total_seconds") or 0.0) for t in trials)
    epochs = sum(epochs_trained(t.metrics.get("curve")) for t in trials)
    front = pareto_front(trials, ("accuracy:max", "macs:min"))
    return {"scheduler": arm["name"] + (" (kept)" if kept else ""), "states": states,
            "trial_seconds": seconds, "wall": wall, "epochs": epochs,
            "front": [(t.accuracy, t.macs) for t in front],
            "all": [(t.accuracy, t.macs) for t in trials if t.state == "COMPLETE"]}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--space", default="tiny")
    p.add_argument("--budget", type=int, default=12)
    p.add_argument("--epochs", type=int, default=3)
    p.add_argument("--seeds", type=int, nargs="+", default=[0])
    p.add_argument("--arms", nargs="+", default=["fifo", "asha"],
                   help="what to compare, the first against the others: fifo, or "
                        "asha[:MIN_EPOCHS[:ETA[:METRIC]]] (default: fifo asha, with the "
                        "search's ASHA defaults)")
    p.add_argument("--executor", choices=("ray", "local"), default="ray")
    p.add_argument("--max-concurrent", type=int, default=None)
    p.add_argument("--probe", type=int, default=2000,
                   help="random draws for the reference point's MACs")
    p.add_argument("--out", default="runs/bench_asha")
    p.add_argument("--keep", action="store_true",
                   help="an arm whose database under --out already holds one finished run of "
                        "this budget is analysed, not run again (an interrupted comparison "
                        "goes on where it stopped)")
    args = p.parse_args()
    os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")

    ref_macs = max_macs(args.space, args.probe)
    g = 1e9
    table = []
    arms = [parse_arm(a) for a in args.arms]
    for seed in args.seeds:
        args.seed = seed
        for r in (run_one(args, arm) for arm in arms):
            r["seed"] = seed
            r["hv"] = hypervolume_2d([(a, m / g) for a, m in r["front"]], (0.0, ref_macs / g))
            table.append(r)
    print(f"\n{args.space}, budget {args.budget} (fifo: completed; asha: evaluated), "
          f"{args.epochs} epochs, executor {args.executor}; asha arms are "
          f"asha:MIN_EPOCHS:ETA:METRIC[:late|nolate]; hypervolume "
          f"(Optuna's) of the (val acc, GMACs) front, reference accuracy 0 and "
          f"{ref_macs / g:.4f} GMACs (max over {args.probe} draws), as a fraction of that box")
    width = max(10, *(len(r["scheduler"]) for r in table))
    print(f"{'seed':>4} {'arm':<{width}} {'trials by state':<36} {'epochs':>7} {'trial-s':>9} "
          f"{'wall s':>8} {'front':>6} {'HV / box':>9}")
    for r in table:
        states = ", ".join(f"{k} {v}" for k, v in sorted(r["states"].items()))
        print(f"{r['seed']:>4} {r['scheduler']:<{width}} {states:<36} {r['epochs']:7.1f} "
              f"{r['trial_seconds']:9.1f} {r['wall']:8.1f} {len(r['front']):>6} "
              f"{r['hv'] / (ref_macs / g):9.4f}")
    n = len(arms)
    for j, arm in enumerate(arms[1:], 1):
        pairs = [(table[i], table[i + j]) for i in range(0, len(table), n)]
        ratios = {k: [b[k] / a[k] for a, b in pairs if a[k]] for k in
                  ("trial_seconds", "wall", "epochs", "hv")}
        print(f"{arm['name']} / {arms[0]['name']}, mean (min … max) over seeds: " + "; ".join(
            f"{k} {statistics.mean(v):.2f} ({min(v):.2f} … {max(v):.2f})"
            for k, v in ratios.items() if v))


if __name__ == "__main__":
    main()
