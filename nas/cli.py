"""Command-line interfaces: ``run_search.py`` and ``python -m nas spaces ...``.

Usage:
    python run_search.py --space hybrid_conv_attn --budget 200
    python run_search.py --space path/to/my_space.yaml --budget 20 --db sqlite:///runs/my.db
    python -m nas spaces list
    python -m nas spaces show hybrid_conv_attn
    python -m nas spaces sample hybrid_conv_attn -n 5
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Sequence

from nas.errors import NasError

__all__ = ["main", "search_main", "spaces_main", "print_pareto"]

EXIT_USAGE = 2  # bad usage or bad input: one line on stderr, no traceback
EXIT_FAILED = 1  # the run itself failed (e.g. every trial failed)


def _fail(msg: str, code: int = EXIT_USAGE) -> int:
    print(f"error: {msg}", file=sys.stderr)
    return code


# --------------------------------------------------------------------------- run_search


def _search_parser() -> argparse.ArgumentParser:
    from nas.search import SAMPLERS, SearchConfig

    p = argparse.ArgumentParser(
        prog="run_search.py",
        description="Search a MetaFormer design space: Optuna proposes architectures, Ray Tune "
                    "trains their reduced proxies on the FFCV dataset, every trial is recorded "
                    "in an SQL database, and the accuracy/MACs Pareto front is printed.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    p.add_argument("--space", required=True,
                   help="shipped space name (see `python -m nas spaces list`) or a YAML file")
    p.add_argument("--budget", type=int, default=20,
                   help="completed trials wanted in the study (failed ones do not count)")
    p.add_argument("--db", default=None,
                   help="SQLAlchemy database URL (default: sqlite:///<runs-dir>/nas.db)")
    p.add_argument("--study", default=None, help="study name (default: the space's name); "
                   "running an existing study again continues it up to --budget")
    p.add_argument("--seed", type=int, default=0, help="sampler and training seed")
    p.add_argument("--epochs", type=int, default=SearchConfig.epochs,
                   help="proxy training epochs per trial")
    p.add_argument("--batch-size", type=int, default=SearchConfig.batch_size,
                   help="proxy training batch size")
    p.add_argument("--lr", type=float, default=SearchConfig.lr,
                   help="proxy training AdamW peak learning rate")
    p.add_argument("--repeats", type=int, default=SearchConfig.repeats,
                   help="proxy trainings per architecture with independent seeds; the mean is "
                        "the accuracy, their spread goes into its standard error")
    p.add_argument("--compile", action="store_true",
                   help="torch.compile each proxy model before training (worth it on GPUs)")
    p.add_argument("--sampler", choices=SAMPLERS, default="nsga2", help="Optuna sampler")
    p.add_argument("--dataset", default=SearchConfig.dataset,
                   help="proxy dataset: clutter (embedded default: digits among clutter) or "
                        "digits (plain scikit-learn digits)")
    p.add_argument("--runs-dir", default="runs",
                   help="folder for the default database, dataset cache and Ray logs")
    p.add_argument("--max-concurrent", type=int, default=None,
                   help="trials at once (default: one per CPU core, or one per GPU)")
    return p


def search_main(argv: Sequence[str] | None = None) -> int:
    args = _search_parser().parse_args(argv)
    from db import StorageError
    from nas.search import SearchConfig, run_search
    from proxies import DatasetError
    from search_spaces import load_space

    cfg = SearchConfig(space=args.space, budget=args.budget, db_url=args.db, study=args.study,
                       seed=args.seed, epochs=args.epochs, batch_size=args.batch_size,
                       lr=args.lr, repeats=args.repeats, compile=args.compile,
                       sampler=args.sampler, dataset=args.dataset, runs_dir=args.runs_dir,
                       max_concurrent=args.max_concurrent)
    try:
        load_space(cfg.space)  # fail fast, before Ray starts
        summary = run_search(cfg)
    except (NasError, StorageError, DatasetError) as e:
        return _fail(str(e).splitlines()[0])
    except KeyboardInterrupt:
        return _fail("interrupted; finished trials are in the database", 130)
    from db import Store

    store = Store(cfg.db_url or summary.db_url)
    print_pareto(store, summary.study)
    print(f"{summary.completed} completed trials in study '{summary.study}' "
          f"({summary.failed} failed, {summary.duplicates} duplicate and {summary.infeasible} "
          f"infeasible proposals skipped) in {summary.seconds:.1f} s; database {summary.db_url}")
    if summary.completed < cfg.budget:
        return _fail(f"only {summary.completed} of {cfg.budget} trials completed "
                     "(see the failures above)", EXIT_FAILED)
    return 0


def print_pareto(store, study: str) -> None:
    """The accuracy-vs-MACs Pareto front of a study as a table."""
    from rich.console import Console
    from rich.table import Table

    from db import pareto_front

    trials = store.trials(study, states=["COMPLETE"])
    front = pareto_front(trials, maximize="accuracy", minimize="macs")
    table = Table(title=f"Pareto front of '{study}': proxy accuracy vs full-model MACs "
                        f"({len(front)} of {len(trials)} completed trials)")
    for col in ("#", "val acc", "± SE", "test acc", "GMACs", "params (M)", "mixers", "depths",
                "widths", "hash"):
        table.add_column(col, justify="right" if col not in ("mixers", "hash") else "left")
    for t in front:
        a = t.arch
        if a.get("family") == "convmixer":
            mixers, depths, widths = "convmixer", str(a["depth"]), str(a["width"])
        else:
            mixers = ", ".join(s["mixer"] for s in a["stages"])
            depths = "-".join(str(s["depth"]) for s in a["stages"])
            widths = "-".join(str(s["width"]) for s in a["stages"])
        se = "" if t.accuracy_se is None else f"{t.accuracy_se:.4f}"
        test = "" if t.test_accuracy is None else f"{t.test_accuracy:.4f}"
        table.add_row(str(t.number), f"{t.accuracy:.4f}", se, test, f"{t.macs / 1e9:.3f}",
                      f"{t.params_count / 1e6:.2f}", mixers, depths, widths, t.arch_hash)
    Console(width=max(120, int(os.environ.get("COLUMNS", 0) or 0))).print(table)


# --------------------------------------------------------------------------- spaces


def spaces_main(argv: Sequence[str]) -> int:
    p = argparse.ArgumentParser(prog="python -m nas spaces",
                                description="List, show and sample search spaces.")
    sub = p.add_subparsers(dest="cmd", required=True)
    sub.add_parser("list", help="the shipped spaces with their descriptions")
    show = sub.add_parser("show", help="a space's parameters, size and full-model MACs range")
    show.add_argument("space", help="shipped name or YAML path")
    show.add_argument("--probe", type=int, default=2000,
                      help="random configurations drawn to estimate the cost ranges")
    sample = sub.add_parser("sample", help="random feasible configurations as canonical JSON")
    sample.add_argument("space")
    sample.add_argument("-n", type=int, default=5, help="how many")
    sample.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)
    from nas.arch import arch_hash, canonical_json
    from nas.cost import analytic_cost
    from search_spaces import list_spaces, load_space

    try:
        if args.cmd == "list":
            for name in list_spaces():
                s = load_space(name)
                print(f"{name:<22} {s.size():>14,} configs  {s.description.splitlines()[0][:90]}")
            return 0
        space = load_space(args.space)
        if args.cmd == "sample":
            for i in range(args.n):
                arch, params = space.sample_random(args.seed + i)
                print(json.dumps({"hash": arch_hash(arch), "params": params,
                                  "arch": json.loads(canonical_json(arch))}))
            return 0
        print(f"space {space.name} ({space.source}), family {space.family}")
        print(f"  {space.description}")
        print(f"  configurations: {space.size():,} (before constraints)")
        for name, choices in space.parameters().items():
            print(f"  {name:<32} {list(choices)}")
        costs, feasible = [], 0
        for i in range(args.probe):
            arch, _ = space.sample_random(i, feasible=False)
            c = analytic_cost(arch)
            costs.append(c)
            feasible += not space.violations(arch)
        macs = sorted(c.macs for c in costs)
        params = sorted(c.params for c in costs)
        print(f"  full-model MACs at {space.resolution}px over {args.probe} random draws: "
              f"{macs[0] / 1e9:.3f} .. {macs[-1] / 1e9:.3f} G (median {macs[len(macs) // 2] / 1e9:.3f})")
        print(f"  params: {params[0] / 1e6:.2f} .. {params[-1] / 1e6:.2f} M; "
              f"feasible under constraints: {feasible / args.probe:.1%}")
        print(f"  proxy: {space.proxy_spec}")
        return 0
    except NasError as e:
        return _fail(str(e).splitlines()[0])


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] == "spaces":
        return spaces_main(argv[1:])
    if argv and argv[0] == "search":
        return search_main(argv[1:])
    return _fail("usage: python -m nas {spaces|search} ... (see --help of each)")
