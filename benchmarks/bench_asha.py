"""The same seeded search with ``--scheduler fifo`` and with ``--scheduler asha``: cost and front.

For each seed of ``--seeds``, each arm runs in its own fresh database, ``OUT/seedS/ARM/nas.db``
(same space, seed, budget, epochs, and sampler unless an arm names its own). ``--budget`` means
what it means on the command line: completed trials under fifo, evaluated trials (completed or
pruned) under asha, so the two runs propose the same number of architectures and ASHA's saving
is the epochs it did not train.
For each it prints the trials by state, the proxy epochs trained (all trials, all repeats), the
total trial-seconds (the sum of every trial's ``total_seconds``: completed trials as measured
inside the trial, pruned ones from start to the stop decision as seen by the driver), the wall
time of the run, and the hypervolume of the final front over (validation accuracy ↑, full-model
MACs ↓) of the COMPLETE trials. Beside it, the same front (chosen on validation accuracy, as the
engine chooses it) scored with its members' test accuracy, which never selects anything: a
front picked from more trials is picked from more noise, so its validation hypervolume can be
inflated more (the winner's curse); the held-out hypervolume is not inflated by the choice.

Hypervolume reference point: accuracy 0 and MACs = the largest analytic MACs of the space over
``--probe`` random draws (``space.sample_random(i, feasible=False)``, as ``nas spaces show``), so
every trial lies inside it. The hypervolume (Optuna's implementation) is reported as a fraction
of the reference box (1 × max GMACs). Then come the other arms' ratios to the first (trial-seconds,
wall, epochs, hypervolume), mean and range over the seeds; when each front was found (its
members' places in the order the run's trials completed); and the comparison at equal time:
the hypervolume of the first arm's trials that had completed when each other arm's whole run
was over (seconds since each run's start in the database), against that arm's final one.

Usage (from the repository root)::

    .venv/bin/python benchmarks/bench_asha.py --seeds 0 1 2                # tiny, budget 12
    .venv/bin/python benchmarks/bench_asha.py --space hybrid_conv_attn --budget 12 --epochs 3
    .venv/bin/python benchmarks/bench_asha.py --budget 6 --executor local --arms fifo asha:1:2
    .venv/bin/python benchmarks/bench_asha.py --arms fifo asha:1:3:val_accuracy asha:1/3
    .venv/bin/python benchmarks/bench_asha.py --arms fifo asha asha@tpe   # sampler per arm

The two runs differ in more than the scheduler: ASHA validates at each rung as well as after
the last epoch (a little more time per trial), and its pruned trials change which proposals the
sampler sees, so one seed is one sample of each; compare several seeds before drawing
conclusions. An ``asha`` arm takes today's defaults for what it leaves out (the late rung
included): ``asha:1:3:val_accuracy:nolate`` is the one-rung ASHA of the earliest runs.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import sys
import time
from pathlib import Path

from db import Store
from db.errors import StorageError
from nas.analysis import pareto_front
from nas.errors import ConfigError
from nas.models import analytic_cost, from_dict
from nas.search import SAMPLERS, SearchConfig, parse_prescreen, run_search
from nas_errors import SearchInterrupted
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
    ``nolate``: without the rung one epoch before the last), either with an optional
    ``@SAMPLER`` (``asha@tpe``: that arm searches with ``--sampler tpe``), then an optional
    ``+PRESCREEN`` (``asha+surrogate:4``: that arm runs with ``--prescreen surrogate:4``), and
    last an optional ``-retrain`` (``fifo-retrain``: that arm trains its proxy twins, as before
    ``--retrain-twins`` existed, instead of reusing their twin's result)."""
    from fractions import Fraction

    extra: dict = {}
    if text.endswith("-retrain"):
        extra["retrain_twins"] = True
    text_arm, plus, screen = text.removesuffix("-retrain").partition("+")
    base, at, sampler = text_arm.partition("@")
    if plus:
        try:
            parse_prescreen(screen)
        except ConfigError as e:
            raise SystemExit(f"--arms: {text!r}: {e}") from None
        extra["prescreen"] = screen
    if at:
        if sampler not in SAMPLERS:
            raise SystemExit(f"--arms: {text!r}: unknown sampler {sampler!r}; "
                             f"allowed: {', '.join(SAMPLERS)}")
        extra["sampler"] = sampler
    parts = base.split(":")
    if parts[0] == "fifo" and len(parts) == 1:
        return {"name": text, "scheduler": "fifo", **extra}
    if parts[0] != "asha" or len(parts) > 5 or (len(parts) == 5
                                                 and parts[4] not in ("late", "nolate")):
        raise SystemExit(f"--arms: {text!r} is not fifo or "
                         f"asha[:MIN_EPOCHS[:ETA[:METRIC[:late|nolate]]]], "
                         f"then [@SAMPLER][+PRESCREEN][-retrain]")
    r_min = float(Fraction(parts[1])) if len(parts) > 1 else SearchConfig.asha_min_epochs
    return {"name": text, "scheduler": "asha",
            "asha_min_epochs": int(r_min) if float(r_min).is_integer() else r_min,
            "asha_eta": int(parts[2]) if len(parts) > 2 else SearchConfig.asha_eta,
            "asha_metric": parts[3] if len(parts) > 3 else SearchConfig.asha_metric,
            "asha_late_rung": (parts[4] == "late") if len(parts) > 4
            else SearchConfig.asha_late_rung, **extra}


def epochs_trained(curve: list) -> float:
    """Epochs a trial trained, over its repeats: the last point of each repeat's curve."""
    return sum(max((float(e.get("epoch") or 0) for e in c), default=0.0) for c in curve or [])


def kept_run(url: str, study: str, budget: int, seed: int) -> float | None:
    """The run time of a finished run of ``study`` in ``url`` with this ``budget`` and ``seed``,
    if there is one."""
    if not Path(url.removeprefix("sqlite:///")).is_file():
        return None
    try:
        runs = Store(url).runs(study)
    except StorageError:  # no such study yet
        return None
    done = [r for r in runs if r.outcome == "completed"]
    if (len(runs) != 1 or not done or done[0].config.get("budget") != budget
            or done[0].config.get("seed") != seed):
        return None
    return (done[0].ended_at - done[0].started_at).total_seconds()


def run_one(args, arm: dict) -> dict:
    folder = arm["name"].replace(":", "_").replace("/", "-").replace("+", "_")
    runs = Path(args.out) / f"seed{args.seed}" / folder
    url = f"sqlite:///{runs}/nas.db"
    wall = kept_run(url, args.space, args.budget, args.seed) if args.keep else None
    if wall is not None:
        print(f"  {arm['name']}: kept the finished run in {runs} (--keep); its wall time is the "
              f"run's start to end in the database", flush=True)
        return summarize(arm, Store(url, decode_arch=from_dict), args.space, wall, kept=True)
    shutil.rmtree(runs, ignore_errors=True)
    runs.mkdir(parents=True)
    settings = {k: v for k, v in arm.items() if k != "name"}
    cfg = SearchConfig(space=args.space, budget=args.budget, epochs=args.epochs, seed=args.seed,
                       db_url=url, runs_dir=str(runs), executor=args.executor,
                       max_concurrent=args.max_concurrent, gpus_per_trial=args.gpus_per_trial,
                       cpus_per_trial=args.cpus_per_trial, **settings)
    t0 = time.perf_counter()
    summary = run_search(cfg, log=lambda line: print(f"  {arm['name']}: {line}", flush=True))
    wall = time.perf_counter() - t0
    return summarize(arm, Store(url, decode_arch=from_dict), summary.study, wall)


def summarize(arm: dict, store: Store, study: str, wall: float, kept: bool = False) -> dict:
    trials = store.trials(study)
    start = store.runs(study)[0].started_at  # each arm's database holds this one run
    states: dict[str, int] = {}
    for t in trials:
        states[t.state] = states.get(t.state, 0) + 1
    seconds = sum(float(t.metrics.get("total_seconds") or 0.0) for t in trials)
    epochs = sum(epochs_trained(t.metrics.get("curve")) for t in trials  # a twin's reused
                 if "reused_from" not in t.metrics)                        # result: none
    front = pareto_front(trials, ("accuracy:max", "macs:min"))
    completed = sorted((t for t in trials if t.state == "COMPLETE"),
                       key=lambda t: t.finished_at or start)
    nth = {t.number: i for i, t in enumerate(completed, 1)}
    return {"scheduler": arm["name"] + (" (kept)" if kept else ""), "states": states,
            "trial_seconds": seconds, "wall": wall, "epochs": epochs,
            "front": [(t.accuracy, t.macs) for t in front],
            "front_test": [(t.test_accuracy, t.macs) for t in front
                           if t.test_accuracy is not None],
            "all": [(t.accuracy, t.macs) for t in completed],
            "done_at": [((t.finished_at - start).total_seconds(), t.accuracy, t.macs)
                        for t in completed if t.finished_at],
            "front_nth": sorted(nth[t.number] for t in front)}


def paired(diffs: list[float]) -> str:
    """Per-seed differences, their mean and its standard error (n - 1 in the variance)."""
    each = ", ".join(f"{d:+.4f}" for d in diffs)
    if len(diffs) < 2:
        return f"{each} (one seed: no standard error)"
    se = statistics.stdev(diffs) / len(diffs) ** 0.5
    return f"{each}; mean {statistics.mean(diffs):+.4f} ± {se:.4f} (SE over {len(diffs)} seeds)"


def held_out_hv(r: dict, ref: tuple[float, float], g: float) -> float:
    """The hypervolume of run ``r``'s front, chosen on validation accuracy, with each member
    scored by its test accuracy instead."""
    return hypervolume_2d([(a, m / g) for a, m in r["front_test"]], ref)


def hv_by(r: dict, seconds: float, ref: tuple[float, float], g: float) -> tuple[int, float]:
    """How many trials of run ``r`` had completed ``seconds`` into it, and their front's
    hypervolume as a fraction of the reference box."""
    done = [(a, m / g) for t, a, m in r["done_at"] if t <= seconds]
    return len(done), hypervolume_2d(done, ref) / ref[1]  # dominated points add no area


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--space", default="tiny")
    p.add_argument("--budget", type=int, default=12)
    p.add_argument("--epochs", type=int, default=3)
    p.add_argument("--seeds", type=int, nargs="+", default=[0])
    p.add_argument("--arms", nargs="+", default=["fifo", "asha"],
                   help="what to compare, the first against the others: fifo, or "
                        "asha[:MIN_EPOCHS[:ETA[:METRIC[:late|nolate]]]], either followed by "
                        "@SAMPLER for that arm's --sampler, then +PRESCREEN for its "
                        "--prescreen, then -retrain for its --retrain-twins (default: fifo "
                        "asha, with the search's defaults)")
    p.add_argument("--executor", choices=("ray", "local"), default="ray")
    p.add_argument("--max-concurrent", type=int, default=None)
    p.add_argument("--gpus-per-trial", type=float, default=None,
                   help="as run_search's (default: 1 when the cluster has GPUs, else 0)")
    p.add_argument("--cpus-per-trial", type=float, default=None, help="as run_search's")
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
            r["hv_test"] = held_out_hv(r, (0.0, ref_macs / g), g)
            table.append(r)
    print(f"\n{args.space}, budget {args.budget} (fifo: completed; asha: evaluated), "
          f"{args.epochs} epochs, executor {args.executor}"
          + (f", {args.gpus_per_trial:g} GPU per trial" if args.gpus_per_trial else "")
          + f"; asha arms are "
          f"asha:MIN_EPOCHS:ETA:METRIC[:late|nolate][@SAMPLER][+PRESCREEN]; hypervolume "
          f"(Optuna's) of the (val acc, GMACs) front, reference accuracy 0 and "
          f"{ref_macs / g:.4f} GMACs (max over {args.probe} draws), as a fraction of that box; "
          f"'test HV': the same front scored on the test split (held out)")
    width = max(10, *(len(r["scheduler"]) for r in table))
    print(f"{'seed':>4} {'arm':<{width}} {'trials by state':<36} {'epochs':>7} {'trial-s':>9} "
          f"{'wall s':>8} {'front':>6} {'HV / box':>9} {'test HV':>8}")
    for r in table:
        states = ", ".join(f"{k} {v}" for k, v in sorted(r["states"].items()))
        print(f"{r['seed']:>4} {r['scheduler']:<{width}} {states:<36} {r['epochs']:7.1f} "
              f"{r['trial_seconds']:9.1f} {r['wall']:8.1f} {len(r['front']):>6} "
              f"{r['hv'] / (ref_macs / g):9.4f} {r['hv_test'] / (ref_macs / g):8.4f}")
    n = len(arms)
    for j, arm in enumerate(arms[1:], 1):
        pairs = [(table[i], table[i + j]) for i in range(0, len(table), n)]
        ratios = {k: [b[k] / a[k] for a, b in pairs if a[k]] for k in
                  ("trial_seconds", "wall", "epochs", "hv", "hv_test")}
        print(f"{arm['name']} / {arms[0]['name']}, mean (min … max) over seeds: " + "; ".join(
            f"{k} {statistics.mean(v):.2f} ({min(v):.2f} … {max(v):.2f})"
            for k, v in ratios.items() if v))
        box = ref_macs / g
        for key, label in (("hv", "validation"), ("hv_test", "held-out test")):
            diffs = [(b[key] - a[key]) / box for a, b in pairs]
            print(f"{arm['name']} - {arms[0]['name']}, {label} HV / box: " + paired(diffs))
    # When each front was found: a front found late needs a long run (many completed trials).
    for r in table:
        print(f"seed {r['seed']} {r['scheduler']}: its front's members were completed trials no. "
              + ", ".join(str(k) for k in r["front_nth"]) + f" of {len(r['all'])}")
    # Equal time: what the first arm had found when each other arm had finished.
    for j, arm in enumerate(arms[1:], 1):
        for i in range(0, len(table), n):
            a, b = table[i], table[i + j]
            done, hv = hv_by(a, b["wall"], (0.0, ref_macs / g), g)
            print(f"seed {a['seed']}: {arms[0]['name']} after {b['wall']:.1f} s ({arm['name']}'s "
                  f"wall time): {done} completed, HV / box {hv:.4f}; {arm['name']} "
                  f"{b['hv'] / (ref_macs / g):.4f} ({b['hv'] / (ref_macs / g) - hv:+.4f})")


if __name__ == "__main__":
    try:
        main()
    except SearchInterrupted as e:  # Ctrl-C: one line, no traceback
        print(f"{str(e).split(';')[0]}; the arm that was running is run again from its start "
              "next time (--keep keeps the arms that finished)", file=sys.stderr)
        sys.exit(e.exit_code)
