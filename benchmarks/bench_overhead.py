"""Where a search's time goes: the engine (Ray Tune, Optuna, database) against the trials' work.

One run, three measurements on the same architectures:

1. ``engine``: ``run_search`` on a fresh database (space ``--space``, ``--trials`` trials,
   ``--epochs`` proxy epochs, ``--slots`` trials at once; defaults: ``make search``'s), Ray
   workers reused across trials (the default). The dataset is built into the run's cache first,
   as a second ``make search`` finds it; its build time is printed on its own line.
2. ``engine, no reuse`` (unless ``--skip-no-reuse``): the same with one Ray worker process per
   trial (``reuse_workers=False``, what the engine did before): every trial pays Python
   start-up, imports and FFCV's JIT.
3. ``plain Optuna loop``: the architectures the engine trained, in the same order, trained in
   this one process by the same trainable function inside ``study.optimize`` (each one enqueued,
   no Ray, no database): the floor.

For each it prints the wall time, the sum of the trials' own work (``total_seconds`` the trial
measures from its first to its last line) and two overheads:

- ``in-run`` (issue 11's measure): ``(span x slots - trial work) / trial work``, where the span
  runs from the first trial's start to the last trial's end (database times): what the engine
  costs while trials run, idle slots in the last trial's tail included;
- ``whole command``: ``(wall x slots - trial work) / trial work``: the in-run overhead plus the
  fixed start-up (Ray's cluster and each slot's first worker process) and shut-down.

Then the engine's wall split into start-up (call to first trial start), span, and shut-down
(last trial end to return), the idle slot-seconds of the last trial's tail, and the median
per-trial gap between the database's duration (trial started -> recorded) and the trial's own
work. The target (issue 11): engine overhead under 10% of trial time at default settings.

Usage (from the repository root; run on an otherwise idle machine)::

    .venv/bin/python benchmarks/bench_overhead.py --skip-no-reuse          # make search's setting
    .venv/bin/python benchmarks/bench_overhead.py --space tiny --trials 12 --epochs 1
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


def _dataset(args, runs: Path):
    from proxies import default_cache_dir, prepare_dataset
    from search_spaces import load_space

    space = load_space(args.space)
    return prepare_dataset("clutter", default_cache_dir(runs / "cache"),
                           resolution=space.proxy_spec.resolution)


def _engine(args, runs: Path, reuse: bool) -> dict:
    from db import Store
    from nas.search import SearchConfig, run_search

    runs.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    _dataset(args, runs)
    build = time.perf_counter() - t0
    url = f"sqlite:///{runs}/nas.db"
    cfg = SearchConfig(space=args.space, budget=args.trials, epochs=args.epochs, seed=args.seed,
                       db_url=url, runs_dir=str(runs), max_concurrent=args.slots,
                       reuse_workers=reuse, study="overhead",
                       retrain_twins=True)  # the plain loop trains every trial the engine did
    began = time.time()
    t0 = time.perf_counter()
    run_search(cfg, log=lambda s: None)
    wall = time.perf_counter() - t0
    ended = began + wall
    done = Store(url).trials("overhead", states=["COMPLETE"])
    starts = [t.started_at.timestamp() for t in done]
    ends = sorted(t.finished_at.timestamp() for t in done)
    return {"wall": wall, "work": sum(t.metrics["total_seconds"] for t in done),
            "gaps": [t.duration_s - t.metrics["total_seconds"] for t in done], "done": done,
            "build": build, "startup": min(starts) - began, "span": ends[-1] - min(starts),
            "shutdown": ended - ends[-1],
            # slot-seconds idle at the end: each slot from its last trial's end to the run's
            "tail": sum(ends[-1] - e for e in ends[-args.slots:])}


def _plain(args, runs: Path, done) -> dict:
    """The same architectures, trained one after another in this process by Optuna."""
    import optuna
    import torch

    from nas._trainable import TrialContext, trainable
    from nas.search import SearchConfig

    search = SearchConfig(space=args.space)  # the engine run's batch size and lr
    ctx = TrialContext(_dataset(args, runs), args.epochs, search.batch_size, search.lr,
                       args.seed, 1, False, threads=1)
    torch.set_num_threads(1)
    work: list[float] = []

    def objective(trial: optuna.Trial) -> float:
        t = done[trial.suggest_int("i", 0, len(done) - 1)]
        reports: list[dict] = []
        config = {"arch": t.arch, "arch_hash": t.arch_hash, "params": t.params,
                  "proxy_arch": t.metrics["proxy_arch"]}
        trainable(config, ctx, report=reports.append)
        work.append(reports[-1]["total_seconds"])
        return reports[-1]["accuracy"]

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(direction="maximize")
    for i in range(len(done)):
        study.enqueue_trial({"i": i})
    t0 = time.perf_counter()
    study.optimize(objective, n_trials=len(done))
    return {"wall": time.perf_counter() - t0, "work": sum(work)}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--space", default="hybrid_conv_attn")
    ap.add_argument("--trials", type=int, default=20)
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--slots", type=int, default=2)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--skip-no-reuse", action="store_true")
    args = ap.parse_args()
    os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")
    print(f"# bench_overhead: space {args.space}, {args.trials} trials x {args.epochs} epoch(s),"
          f" {args.slots} slots, {os.cpu_count()} cores; {' '.join(sys.argv)}", flush=True)
    runs = [("engine (workers reused)", True)]
    if not args.skip_no_reuse:
        runs.append(("engine, one worker per trial", False))
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for i, (name, reuse) in enumerate(runs):
            r = _engine(args, Path(tmp, str(i)), reuse=reuse)
            rows.append((name, r))
            print(f"  {name}: dataset build (first run only, not counted) {r['build']:.1f} s; "
                  f"wall {r['wall']:.1f} s = start-up {r['startup']:.1f} s + trials' span "
                  f"{r['span']:.1f} s + shut-down {r['shutdown']:.1f} s; last trial's tail "
                  f"{r['tail']:.1f} idle slot-s", flush=True)
        plain = _plain(args, Path(tmp, "0"), rows[0][1]["done"])
    print(f"{'':<30} {'wall s':>8} {'trial work s':>13} {'in-run':>8} {'whole':>8} "
          f"{'speed-up':>9} {'gap/trial s':>12}")
    for name, r in rows:
        run = (r["span"] * args.slots - r["work"]) / r["work"]
        whole = (r["wall"] * args.slots - r["work"]) / r["work"]
        speed = plain["wall"] / r["wall"]
        print(f"{name:<30} {r['wall']:8.1f} {r['work']:13.1f} {run:8.1%} {whole:8.1%} "
              f"{speed:8.2f}x {statistics.median(r['gaps']):12.2f}")
    print(f"{'plain Optuna loop, 1 process':<30} {plain['wall']:8.1f} {plain['work']:13.1f} "
          f"{'-':>8} {'-':>8} {'1.00x':>9} {'-':>12}")
    print("in-run = ((first trial start -> last trial end) x slots - trial work) / trial work; "
          "whole = the same with the command's wall time; speed-up = the plain loop's wall / "
          "this wall; gap = database duration - the trial's own seconds (median)")
    return 0


if __name__ == "__main__":
    from nas_errors import SearchInterrupted

    try:
        sys.exit(main())
    except SearchInterrupted as e:  # Ctrl-C: one line, no traceback
        print(f"{str(e).split(';')[0]}; nothing measured (the runs were in a temporary "
              "directory)", file=sys.stderr)
        sys.exit(e.exit_code)
