"""The command line: ``python -m nas {search,spaces,data,db,studies,pareto,export,
dashboard,report}``; ``run_search.py`` is ``search``.

Usage:
    python -m nas --help
    python -m nas search --space hybrid_conv_attn --budget 200
    python run_search.py --space hybrid_conv_attn --budget 200      # the same
    python run_search.py --space path/to/my_space.yaml --budget 20 --db sqlite:///runs/my.db
    python run_search.py --space tiny --budget 10 --objectives accuracy:max,params:min
    python run_search.py --space tiny --budget 10 --zero-cost synflow,naswot --prescreen synflow:4
    python run_search.py --space tiny --budget 10 --objectives zc_naswot:max,macs:min
    python -m nas studies                                          # and --study NAME: its runs
    python -m nas spaces list
    python -m nas spaces show hybrid_conv_attn
    python -m nas spaces sample hybrid_conv_attn -n 5
    python -m nas data list
    python -m nas pareto --study hybrid_conv_attn --out runs/pareto
    python -m nas pareto --study nsga2_s0 --study tpe_s0 --group-by sampler --out runs/cmp
    python -m nas data prepare --dataset cifar10 --path ~/data/cifar-10-batches-py
    python -m nas export --study tiny --pick knee --out exports/tiny_knee
    python -m nas export --preset randformer_s12 --num-classes 10 --out exports/rf12
    python run_search.py --space tiny --dataset npz --data-path ~/data/mine.npz
    python -m nas dashboard --db sqlite:///runs/nas.db              # http://127.0.0.1:8050/
    python -m nas report --db sqlite:///runs/nas.db --study tiny -o report.html
"""

from __future__ import annotations

import argparse
import contextlib
import errno
import json
import os
import random
import re
import sys
import warnings
from collections.abc import Sequence
from typing import Any

from nas_errors import (
    NasError,  # the base of every project error (db, proxies, spaces, ...)
    SearchInterrupted,  # a search stopped by a signal, its trials closed
    printable,  # text from a database or a file, escaped to one printable line
)

__all__ = ["main", "search_main", "spaces_main", "print_pareto"]

EXIT_USAGE = 2  # bad usage or bad input: one line on stderr, no traceback
EXIT_FAILED = 1  # the run itself failed (e.g. every trial failed)
EXIT_INTERRUPTED = 130  # Ctrl-C (a search stopped by SIGTERM exits 143)
EXIT_TERMINATED = 143  # SIGTERM (SIGHUP: 129, 128 + its number)


class DefaultsHelp(argparse.ArgumentDefaultsHelpFormatter):
    """Appends ``(default: X)`` only where the help does not already say its default, and
    never for required options, flags or a None default."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        said = re.search(r"(?:^|\(|; )default\b|\bdefault:", text)  # not "the default database"
        if (said or action.required or action.default is None
                or action.default is argparse.SUPPRESS or isinstance(action.default, bool)):
            return text
        return super()._get_help_string(action)


#: OSErrors that say a path given cannot name a file at all, with what is allowed
_BAD_PATH = {errno.ENAMETOOLONG: "a name in a path is at most 255 bytes on most file systems, "
                                 "a whole path 4,096",
             errno.ELOOP: "a path may not run through a loop of symbolic links",
             errno.EACCES: "this user must be able to enter every folder on the path, and "
                           "to read, or write, what it names"}


def _symlink_loop(e: RuntimeError) -> str | None:
    """The path of pathlib's ``RuntimeError("Symlink loop from %r")``, else None."""
    import ast

    loop = re.fullmatch(r"Symlink loop from (['\"].*['\"])", str(e), re.S)
    try:
        path = ast.literal_eval(loop.group(1)) if loop else None
    except (ValueError, SyntaxError):
        return None
    return path if isinstance(path, str) else None


def _bad_path(name: str, strerror: str, code: int) -> str:
    shown = repr(name) if len(name) <= 80 else \
        f"{name[:48]!r}...{name[-24:]!r} ({len(name)} characters)"
    return f"cannot use the path {shown}: {strerror} ({_BAD_PATH[code]})"


def _fail(msg: str, code: int = EXIT_USAGE) -> int:
    # text from the database (an error, a name) may hold control characters: shown escaped
    msg = printable(msg)
    print(f"error: {msg}", file=sys.stderr)
    return code


class _Terminated(KeyboardInterrupt):
    """SIGTERM or SIGHUP in a command that writes files: unwound like Ctrl-C, so nothing is
    half-written; exits 128 + the signal's number."""

    def __init__(self, signum: int) -> None:
        super().__init__()
        self.code = 128 + signum


_STOP_SIGNALS: list[int] = []  # what a file-writing command received (export, report, pareto)
_HOLD_SIGNALS: list[bool] = []  # non-empty: a stop signal is recorded, raised when the hold ends
_EXPORTED: list[object] = []  # the export's files are in place (a later stop must not deny it)


def _on_stop_signal(signum, frame) -> None:
    """Ctrl-C, SIGTERM or SIGHUP in a command that writes files: recorded, then raised (unless
    held: :func:`_holding_stop_signals`). The record stops the command even where a library
    swallowed the KeyboardInterrupt (an export seen to finish with exit 0 after a Ctrl-C):
    see :func:`_raise_if_signalled`."""
    _STOP_SIGNALS.append(signum)
    if not _HOLD_SIGNALS:
        _raise_if_signalled()


def _raise_if_signalled() -> None:
    """Raise what a stop signal received earlier raised, if it did not reach us."""
    import signal

    if _STOP_SIGNALS:
        signum = _STOP_SIGNALS[-1]
        raise KeyboardInterrupt() if signum == signal.SIGINT else _Terminated(signum)


@contextlib.contextmanager
def _holding_stop_signals():
    """A stop signal received inside the block is raised when it ends, not inside it (the
    export's move into place: an earlier export moved aside is put back or replaced whole)."""
    _HOLD_SIGNALS.append(True)
    try:
        yield
    finally:
        _HOLD_SIGNALS.pop()
    _raise_if_signalled()


# --------------------------------------------------------------------------- search


def _add_search(sub, prog: str | None = None) -> argparse.ArgumentParser:
    from nas.results import RUNG_METRICS
    from nas.search import SAMPLERS, SearchConfig

    p = sub.add_parser(
        "search", prog=prog, help="search a design space (run_search.py is an alias)",
        description="Search a MetaFormer design space: Optuna proposes architectures, Ray Tune "
                    "trains their reduced proxies on the FFCV dataset, every trial is recorded "
                    "in an SQL database, and the Pareto front of the study's objectives is "
                    "printed.",
    )
    p.add_argument("--space", required=True,
                   help="shipped space name (see `python -m nas spaces list`) or a YAML file")
    p.add_argument("--budget", type=int, default=20,
                   help="completed trials wanted in the study (failed ones do not count; "
                        "with --scheduler asha: evaluated trials, completed or pruned)")
    p.add_argument("--db", default=os.environ.get("NAS_DB_URL"),
                   help="SQLAlchemy database URL, e.g. postgresql+psycopg://user@host/db (the "
                        "password from $PGPASSWORD or ~/.pgpass, or in the URL; it is never "
                        "printed or stored); default: $NAS_DB_URL, else "
                        "sqlite:///<runs-dir>/nas.db")
    p.add_argument("--study", default=None, help="study name (default: the space's name); "
                   "running an existing study again continues it up to --budget, and the "
                   "options left out (--epochs, --budget, --sampler, ...) are the study's")
    p.add_argument("--seed", type=int, default=0, help="sampler and training seed")
    p.add_argument("--allow-change", action="store_true",
                   help="resume a study although a typed --epochs, --batch-size, --lr, "
                        "--repeats or dataset differs from its first run (mixes incomparable "
                        "trials; the sampler, seed and budget may always change)")
    p.add_argument("--epochs", type=int, default=SearchConfig.epochs,
                   help="proxy training epochs per trial")
    p.add_argument("--batch-size", type=int, default=SearchConfig.batch_size,
                   help="proxy training batch size")
    p.add_argument("--lr", type=float, default=SearchConfig.lr,
                   help="proxy training AdamW peak learning rate")
    p.add_argument("--repeats", type=int, default=SearchConfig.repeats,
                   help="proxy trainings per architecture with independent seeds; the mean is "
                        "the accuracy, their spread goes into its standard error")
    p.add_argument("--compile", action=argparse.BooleanOptionalAction, default=False,
                   help="torch.compile each proxy model before training (no gain measured on 2 "
                        "CPU cores; not timed on a GPU; default off)")
    p.add_argument("--sampler", choices=SAMPLERS, default="nsga2",
                   help="Optuna sampler, seeded by --seed: nsga2 / nsga3 (genetic, "
                        "multi-objective), tpe, gp (Gaussian process), qmc (Sobol over numeric "
                        "parameters), random; the space's constraints reach all that learn")
    p.add_argument("--dataset", default=SearchConfig.dataset,
                   help="proxy dataset: clutter (embedded: digits among clutter), "
                        "digits (plain scikit-learn digits), or your own data: cifar10, "
                        "cifar100, npz, imagefolder with --data-path (python -m nas data list)")
    p.add_argument("--data-path", default=None,
                   help="input folder or file of a --dataset that needs one")
    p.add_argument("--runs-dir", default="runs",
                   help="folder for the default database, dataset cache and Ray logs")
    p.add_argument("--max-concurrent", type=int, default=None,
                   help="trials at once (default: as many as the per-trial resources allow)")
    p.add_argument("--cpus-per-trial", type=float, default=None,
                   help="Ray CPUs (and torch threads) per trial (default: 1; with GPUs, the "
                        "CPUs shared out among the trials running on them; with --executor "
                        "local, which runs one trial at a time, all of this machine's cores)")
    p.add_argument("--gpus-per-trial", type=float, default=None,
                   help="Ray GPUs per trial; a fraction such as 0.5 runs two trials per GPU "
                        "(default: 1 when the cluster has GPUs, else 0)")
    p.add_argument("--executor", choices=("ray", "local"), default="ray",
                   help="ray: trials in Ray workers, several at once; local: one after another "
                        "in this process, without Ray (for debugging: breakpoints, profilers)")
    p.add_argument("--ray-address", default=None, metavar="HOST:PORT",
                   help="join a running Ray cluster (`ray start --head` on the head machine) "
                        "instead of starting Ray; trials then run on its nodes, which must see "
                        "the same --runs-dir (shared filesystem); the driver alone writes --db")
    p.add_argument("--objectives", default=None,
                   help="comma-separated name:max|min over a recorded numeric metric (accuracy, "
                        "macs, params, acts, latency_ms, proxy_macs, val_loss, ...); default: "
                        "the study's, or accuracy:max,macs:min for a new study; zc_<proxy> is a "
                        "zero-cost proxy's score at initialisation (zc_synflow, zc_naswot, "
                        "...); the test split's metrics are held out and refused")
    p.add_argument("--zero-cost", default=None, metavar="NAMES",
                   help="comma-separated zero-cost proxies (synflow, synflow_ones, naswot, "
                        "grad_norm, snip, jacob_cov, params, ...) each trial scores on its "
                        "proxy model at initialisation, before training; stored as zc_<name> "
                        "(none: no scores, also when the study had them)")
    p.add_argument("--prescreen", default=None, metavar="PROXY:K",
                   help="for each trial slot, score K >= 2 feasible new candidates with the "
                        "zero-cost proxy and train only the best (e.g. synflow:4); "
                        "surrogate:K scores them instead by the hypervolume a ridge model of "
                        "the study's completed trials expects each to add (from 8 completed); "
                        "none: off, also when the study had one")
    p.add_argument("--scheduler", choices=("fifo", "asha"), default=SearchConfig.scheduler,
                   help="fifo: every trial trains all epochs; asha: validate at each rung (and "
                        "after the last epoch) and stop a trial at a rung (epochs min*eta^k, "
                        "and one epoch before the last) unless it is on the first "
                        "non-dominated front of (the --asha-metric, the study's cost objectives "
                        "such as MACs) there or within the top "
                        "1/eta (stored as PRUNED; --budget then counts evaluated trials, "
                        "completed or pruned, so stopping early saves compute)")
    p.add_argument("--asha-eta", type=int, default=SearchConfig.asha_eta,
                   help="ASHA reduction factor (>= 2; default %(default)s)")
    p.add_argument("--asha-min-epochs", type=_epochs, default=SearchConfig.asha_min_epochs,
                   metavar="EPOCHS",
                   help="ASHA's first rung, in epochs; a fraction (0.25, 1/3) judges mid-epoch "
                        "(default 1/3: rungs at 1/3, 1 and, late, 2 of 3 epochs)")
    p.add_argument("--asha-late-rung", action=argparse.BooleanOptionalAction,
                   default=SearchConfig.asha_late_rung,
                   help="also a rung one epoch before the last, when the ladder stops below it "
                        "(default on: rungs at 1/3, 1 and 2 of 3 epochs)")
    p.add_argument("--asha-metric", choices=tuple(RUNG_METRICS),
                   default=SearchConfig.asha_metric,
                   help="what a rung ranks a trial's learning on, beside its known costs "
                        "(default %(default)s)")
    p.add_argument("--trial-checkpoints", action=argparse.BooleanOptionalAction,
                   default=SearchConfig.trial_checkpoints,
                   help="save each trial's training state after every epoch under "
                        "RUNS_DIR/checkpoints, so a trial run again after Ctrl-C, a kill or a "
                        "lost worker resumes after its last epoch (default on)")
    p.add_argument("--retrain-twins", action="store_true",
                   help="train a proposal whose proxy a completed trial already trained with "
                        "this run's settings (a proxy twin; `python -m nas spaces show` lists "
                        "the space's); default: record it at once with that trial's proxy "
                        "result and its own costs, which the training would have repeated")
    p.add_argument("--progress-every", type=float, default=SearchConfig.progress_every,
                   metavar="SECONDS",
                   help="on a terminal a live status line (done / running / failed / pruned, "
                        "front size, best accuracy within the space's max_macs, ETA) stays "
                        "under the trial lines; otherwise it is printed as a [progress] line "
                        "every SECONDS (default %(default)s; 0: only at the end)")
    p.set_defaults(run=_search)
    return p


def _given(argv: Sequence[str], args: argparse.Namespace) -> set[str]:
    """The destinations of the ``search`` options typed in ``argv`` (``["search", ...]``), told
    apart from those left at their defaults by parsing again with a marker for every default."""
    unset = object()
    probe = _add_search(argparse.ArgumentParser(add_help=False).add_subparsers())
    probe.set_defaults(**{dest: unset for dest in vars(args)})
    typed = probe.parse_args(list(argv)[1:])
    return {dest for dest, value in vars(typed).items() if value is not unset}


def _unless_off(text: str | None) -> str | None:
    """None for ``none``, ``off`` or nothing: how a command turns off a --zero-cost or
    --prescreen its study would otherwise continue with."""
    return None if text is None or text.strip().lower() in ("", "none", "off") else text


def _search(args: argparse.Namespace) -> int:
    from nas._preflight import INHERITABLE, check_settings
    from nas.results import parse_search_objectives, parse_zero_cost
    from nas.search import SearchConfig, parse_prescreen, run_search

    typed = _given(args.argv, args)
    cfg = SearchConfig(space=args.space, budget=args.budget, db_url=args.db, study=args.study,
                       seed=args.seed, epochs=args.epochs, batch_size=args.batch_size,
                       lr=args.lr, repeats=args.repeats, compile=args.compile,
                       sampler=args.sampler, dataset=args.dataset, data_path=args.data_path,
                       runs_dir=args.runs_dir,
                       max_concurrent=args.max_concurrent, objectives=args.objectives,
                       zero_cost=parse_zero_cost(_unless_off(args.zero_cost)),
                       prescreen=_unless_off(args.prescreen),
                       allow_change=args.allow_change, cpus_per_trial=args.cpus_per_trial,
                       gpus_per_trial=args.gpus_per_trial, ray_address=args.ray_address,
                       executor=args.executor, scheduler=args.scheduler,
                       asha_eta=args.asha_eta, asha_min_epochs=args.asha_min_epochs,
                       asha_metric=args.asha_metric, asha_late_rung=args.asha_late_rung,
                       trial_checkpoints=args.trial_checkpoints,
                       retrain_twins=args.retrain_twins,
                       progress_every=args.progress_every,
                       # a study run again takes what the command line leaves out from its runs
                       inherit=tuple(f for f in INHERITABLE if f not in typed))
    check_settings(cfg)  # fail fast, before Ray, torch or a database starts
    from db import Store, mask_url
    from nas.models import from_dict
    from search_spaces import load_space

    if cfg.objectives is not None:
        parse_search_objectives(cfg.objectives)
    parse_prescreen(cfg.prescreen)
    load_space(cfg.space)
    if sys.stdout is None:  # started with file descriptor 1 closed (`run_search.py ... >&-`):
        # print nowhere; opened now, os.devnull takes that descriptor, so Ray's and the
        # trials' processes inherit it too
        sys.stdout = open(os.devnull, "w")  # noqa: SIM115 - for the rest of the process
    guard = _StdoutGuard(sys.stdout)
    sys.stdout = guard  # `run_search.py ... | head`: the search goes on when the reader leaves
    try:
        summary = run_search(cfg)
    finally:
        # (once the reader left, its file descriptor is os.devnull); a write that fails from
        # here on (`> /dev/full`) ends the command with one line, the trials recorded
        sys.stdout = _StdoutCheck(guard.stream)
    cfg = summary.config or cfg  # with what a resumed study took from its earlier runs
    print_pareto(Store(summary.db_url, decode_arch=from_dict), summary.study, summary.objectives)
    screened = f", {summary.screened} screened out" if cfg.prescreen else ""
    pruned = f"{summary.pruned} pruned, " if cfg.scheduler == "asha" else ""
    reused = (f", {summary.reused} recorded with a proxy twin's result (not trained)"
              if summary.reused else "")
    evaluated = (f", {summary.budget_used} of budget {cfg.budget} evaluated (completed or "
                 f"pruned)" if cfg.scheduler == "asha" else "")
    # the study's totals first, then what this run did (a resumed run adds to earlier ones)
    print(f"{summary.completed} completed trials in study '{summary.study}'{evaluated}; "
          f"this run: {pruned}{summary.failed} failed, {summary.duplicates} duplicate and "
          f"{summary.infeasible} infeasible proposals skipped{screened}{reused}, in "
          f"{summary.seconds:.1f} s; "
          f"database {mask_url(summary.db_url)}")
    if len(summary.nodes) > 1:  # a cluster: where the trials ran (each trial's metrics["worker"])
        print(f"trials ran on {len(summary.nodes)} nodes: "
              + ", ".join(f"{node}: {n}" for node, n in summary.nodes))
    if summary.budget_used < cfg.budget:
        what = "evaluated" if cfg.scheduler == "asha" else "completed"
        if summary.exhausted:
            from nas._searcher import FALLBACK_DRAWS, PROPOSALS_PER_SLOT

            # not "none left": with a small feasible share the sampler may just miss them
            skipped = summary.duplicates + summary.infeasible
            who = (f"this run skipped {summary.duplicates} duplicate and {summary.infeasible} "
                   "infeasible ones" if skipped else
                   "in an earlier run with this --sampler and --seed")
            return _fail(f"only {summary.budget_used} of {cfg.budget} trials {what}: "
                         f"neither the sampler ({PROPOSALS_PER_SLOT} proposals in a row) nor "
                         f"{FALLBACK_DRAWS:,} random draws nor a local search found a new "
                         f"feasible configuration ({who}; `python -m nas "
                         "spaces show` gives the space's size and feasible share); lower "
                         "--budget, or widen the space or loosen its constraints", EXIT_FAILED)
        return _fail(f"only {summary.budget_used} of {cfg.budget} trials {what} "
                     "(see the failures above)", EXIT_FAILED)
    return 0


def _to_devnull(stream) -> None:
    """Point ``stream``'s file descriptor at os.devnull, so what is still buffered or written
    later goes nowhere instead of raising again (Python's recipe for a closed pipe)."""
    with contextlib.suppress(OSError, ValueError):
        null = os.open(os.devnull, os.O_WRONLY)
        try:
            os.dup2(null, stream.fileno())
        finally:
            os.close(null)


class _StdoutGuard:
    """``sys.stdout`` during a search. When its reader goes away (``run_search.py ... | head``,
    a closed ``tee``, a closed terminal), a write would raise BrokenPipeError (or EIO) inside
    the trial bookkeeping (Ray Tune's callbacks) and end the search with a traceback; instead
    the search goes on without printing, and one line on stderr says so. Its trials are
    recorded as ever."""

    def __init__(self, stream) -> None:
        self.stream, self.gone = stream, False

    def write(self, text: str) -> int:
        if not self.gone:
            try:
                return self.stream.write(text)
            except OSError:  # EPIPE: the reader left; EIO: the terminal closed (SIGHUP)
                self._drop()
        return len(text)

    def flush(self) -> None:
        if not self.gone:
            try:
                self.stream.flush()
            except OSError:
                self._drop()

    def _drop(self) -> None:
        self.gone = True
        _to_devnull(self.stream)  # the buffer's rest goes nowhere
        with contextlib.suppress(OSError):  # (stderr may be the same closed terminal)
            print("stdout was closed by its reader: the search goes on without printing; its "
                  "trials are recorded in the database (`python -m nas pareto` shows the "
                  "front)", file=sys.stderr, flush=True)

    def __getattr__(self, name: str):  # isatty, fileno, encoding, ...
        return getattr(self.stream, name)


class _OutputLost(Exception):
    """Standard output could not be written (a full disk, ``> /dev/full``, an I/O error)."""


class _StdoutCheck:
    """``sys.stdout`` during every command but a search's run (which has :class:`_StdoutGuard`;
    its front and summary have this): a failed write ends the command with one line instead of
    a traceback from wherever it printed. A closed pipe stays BrokenPipeError (``... | head``:
    Python's silent exit)."""

    def __init__(self, stream) -> None:
        self.stream = stream

    def write(self, text: str) -> int:
        return self._checked(self.stream.write, text)

    def flush(self) -> None:
        self._checked(self.stream.flush)

    @staticmethod
    def _checked(call, *args):
        try:
            return call(*args)
        except BrokenPipeError:
            raise
        except OSError as e:
            raise _OutputLost(e.strerror or str(e)) from e

    def __getattr__(self, name: str):  # isatty, fileno, encoding, ...
        return getattr(self.stream, name)


def print_pareto(store, study: str, objectives: Sequence | None = None) -> None:
    """The Pareto front of a study over its objectives (default: those stored with it), with
    each member marked certain or within noise (``python -m nas pareto`` shows the same)."""
    from nas import _pareto

    fronts = _pareto.load_fronts(store, [study], objectives)
    _, hv = _pareto.hypervolumes(fronts)
    _pareto.print_fronts(fronts, hv, _pareto.A.DEFAULT_Z)


# --------------------------------------------------------------------------- spaces


def _clip(text: str, limit: int = 90) -> str:
    """``text`` cut at the last word that fits in ``limit`` characters, with an ellipsis."""
    if len(text) <= limit:
        return text
    cut = text[:limit - 1].rsplit(" ", 1)[0].rstrip(" ,;:")
    return cut + "…"


def _add_spaces(sub) -> argparse.ArgumentParser:
    p = sub.add_parser("spaces", help="list, show and sample search spaces",
                       description="List, show and sample search spaces.")
    cmds = p.add_subparsers(dest="cmd", required=True)
    cmds.add_parser("list", help="the shipped spaces with their descriptions")
    show = cmds.add_parser("show", help="a space's parameters, size and full-model MACs range")
    show.add_argument("space", help="shipped name or YAML path")
    show.add_argument("--probe", type=int, default=2000,
                      help="random configurations drawn to estimate the cost ranges")
    sample = cmds.add_parser("sample", help="random feasible configurations as canonical JSON")
    sample.add_argument("space")
    sample.add_argument("-n", type=int, default=5,
                        help="how many independent random draws (>= 1; may repeat)")
    sample.add_argument("--seed", type=int, default=0)
    p.set_defaults(run=_spaces)
    return p


def _spaces(args: argparse.Namespace) -> int:
    from nas.models import analytic_cost, arch_hash, canonical_json
    from search_spaces import list_spaces, load_space

    if args.cmd == "list":
        for name in list_spaces():
            s = load_space(name)
            first = (s.description.splitlines() or [""])[0]
            print(f"{name:<22} {s.size():>14,} configs  {_clip(printable(first))}")
        return 0
    from nas._preflight import SEED_MAX
    from nas_errors import ConfigError

    if args.cmd == "sample" and args.n < 1:
        raise ConfigError(f"-n must be an integer >= 1; got {args.n}")
    if args.cmd == "sample" and not 0 <= args.seed <= SEED_MAX:
        raise ConfigError(f"--seed must be in 0 .. {SEED_MAX}; got {args.seed}")
    if args.cmd == "show" and args.probe < 1:
        raise ConfigError(f"--probe must be an integer >= 1; got {args.probe}")
    space = load_space(args.space)
    if args.cmd == "sample":
        for i in range(args.n):  # independent random draws: a small space repeats itself
            arch, params = space.sample_random(args.seed + i)
            print(json.dumps({"hash": arch_hash(arch), "params": params,
                              "arch": json.loads(canonical_json(arch))}))
        return 0
    # the file's own text (name, description, its path) may hold escape sequences: shown as
    # escapes, never sent to the terminal; the description keeps its line breaks
    print(f"space {printable(space.name)} ({printable(str(space.source))}), "
          f"family {space.family}")
    for line in space.description.splitlines() or [""]:
        print(f"  {printable(line)}")
    print(f"  configurations: {space.size():,} (before constraints)")
    for name, choices in space.parameters().items():
        print(f"  {name:<32} {list(choices)}")
    costs, feasible = [], 0
    for i in range(args.probe):
        arch, _ = space.sample_random(i, feasible=False)
        costs.append(analytic_cost(arch))
        feasible += not space.violations(arch)
    macs = sorted(c.macs for c in costs)
    params = sorted(c.params for c in costs)
    print(f"  full-model MACs at {space.resolution}px over {args.probe} random draws: "
          f"{macs[0] / 1e9:.3f} .. {macs[-1] / 1e9:.3f} G "
          f"(median {macs[len(macs) // 2] / 1e9:.3f})")
    counts = space.feasible_counts()  # None: too many to count one by one
    if counts is None:
        share = f"{feasible / args.probe:.1%} of {args.probe} random draws"
    else:
        share = (f"{counts[0]:,} of {space.size():,} configurations "
                 f"({counts[0] / space.size():.1%})")
        if counts[1] != counts[0]:  # what a search can train: duplicates are trained once
            share += f", {counts[1]:,} distinct architectures"
    print(f"  params: {params[0] / 1e6:.2f} .. {params[-1] / 1e6:.2f} M; "
          f"feasible under constraints: {share}")
    if counts is not None and counts[0] == 0:
        print("  no configuration meets the constraints: a search of this space is refused; "
              "loosen them")
    elif counts is None and feasible == 0:
        found, _, nearest = space.local_search(random.Random(0))
        if found is None:
            print(f"  none of the {args.probe} draws meets the constraints, nor did a local "
                  f"search find one (the nearest: {'; '.join(nearest)}): a search of this "
                  "space is likely refused; loosen them")
        else:
            cost = analytic_cost(found)
            print(f"  none of the {args.probe} draws meets the constraints, but a local search "
                  f"found a configuration that does ({cost.macs / 1e9:.3f} GMACs, "
                  f"{cost.params / 1e6:.2f} M params): a very small feasible share")
    print(f"  proxy: {space.proxy_spec}")
    for line in space.proxy_resolution().lines():
        print("  " + line)
    return 0


# --------------------------------------------------------------------------- data


def _add_data(sub) -> argparse.ArgumentParser:
    p = sub.add_parser("data", help="list proxy datasets and prepare them as FFCV files",
                       description="List the proxy datasets, and write one to FFCV .beton files "
                                   "once (later searches reuse the files).")
    cmds = p.add_subparsers(dest="cmd", required=True)
    cmds.add_parser("list", help="the datasets, and what input each needs")
    prep = cmds.add_parser("prepare", help="write a dataset's train/val/test .beton files")
    prep.add_argument("--dataset", required=True, help="a name from `python -m nas data list`")
    prep.add_argument("--path", "--data-path", dest="data_path", default=None,
                      help="input folder or file (cifar10, cifar100, npz, imagefolder)")
    prep.add_argument("--resolution", type=int, default=32,
                      help="side the loaders serve unless asked for another (embedded sets are "
                           "rendered at it)")
    prep.add_argument("--runs-dir", default="runs",
                      help="the cache goes to <runs-dir>/cache (or $NAS_CACHE_DIR)")
    p.set_defaults(run=_data)
    return p


def _data(args: argparse.Namespace) -> int:
    from pathlib import Path

    from proxies import dataset_kinds, default_cache_dir, prepare_dataset
    from proxies.registry import get_source

    if args.cmd == "list":
        for name, kind in dataset_kinds().items():
            needs = "embedded, no input" if kind == "embedded" else \
                f"--data-path: {get_source(name).expects}"
            print(f"{name:<12} {needs}")
        return 0
    from nas_errors import ConfigError
    from proxies.datasets import MAX_RESOLUTION, MIN_RESOLUTION

    if not MIN_RESOLUTION <= args.resolution <= MAX_RESOLUTION:  # (the API's words: its name)
        raise ConfigError(f"--resolution must be an integer in {MIN_RESOLUTION}.."
                          f"{MAX_RESOLUTION}; got {args.resolution}")
    cache = default_cache_dir(Path(args.runs_dir).resolve() / "cache")
    info = prepare_dataset(args.dataset, cache, resolution=args.resolution,
                           data_path=args.data_path)
    print(f"{info.name}: {info.num_train} train / {info.num_val} val / {info.num_test} test "
          f"images, {info.num_classes} classes, served at {info.resolution} px; "
          f"fingerprint {info.fingerprint}; files in {Path(info.train_path).parent}")
    return 0


# --------------------------------------------------------------------------- db


def _add_db(sub) -> argparse.ArgumentParser:
    p = sub.add_parser("db", help="the results database's schema revision, and upgrades",
                       description="Show the schema revision of the results database, or "
                                   "upgrade it to this version's (Optuna's tables are never "
                                   "touched; back the database up first).")
    cmds = p.add_subparsers(dest="cmd", required=True)
    for name, text in (("upgrade", "apply the pending migrations (one transaction)"),
                       ("current", "show the database's schema revision")):
        cmd = cmds.add_parser(name, help=text)
        cmd.add_argument("--db", default=os.environ.get("NAS_DB_URL"),
                         help="SQLAlchemy URL, e.g. postgresql://user:password@host/nas "
                              "(default: $NAS_DB_URL, else sqlite:///<runs-dir>/nas.db)")
        cmd.add_argument("--runs-dir", default="runs", help="where the default database lives")
    p.set_defaults(run=_db)
    return p


def _add_studies(sub) -> argparse.ArgumentParser:
    p = sub.add_parser("studies", help="the studies in a database, or one study's runs",
                       description="List the studies in the results database (trials by "
                                   "state, runs, the last run), or with --study the runs of "
                                   "one study, each with its command line, and the options a "
                                   "re-run would take from them. Reads only.")
    p.add_argument("--study", default=None,
                   help="show this study's runs (default: list every study)")
    _add_read_db(p)
    p.set_defaults(run=_studies)
    return p


def _studies(args: argparse.Namespace) -> int:
    from db import Store, default_url, mask_url
    from nas import _studies as S

    url = args.db or default_url(args.runs_dir, create=False)
    store = Store(url, read_only=True)  # reads only, creates nothing
    if args.study is None:
        S.print_studies(S.study_rows(store), mask_url(url))
    else:
        S.print_runs(args.study, S.run_rows(store, args.study),
                     S.continues_with(store, args.study))
    return 0


def _db(args: argparse.Namespace) -> int:
    from db import (
        HEAD_REVISION,
        KNOWN_REVISIONS,
        default_url,
        is_memory_sqlite,
        mask_url,
        schema_revision,
        sqlite_path,
        upgrade,
    )
    from nas_errors import ConfigError

    url = args.db or default_url(args.runs_dir, create=False)  # neither command makes folders
    shown = mask_url(url)
    if is_memory_sqlite(url):  # (empty for each connection: nothing to read or upgrade)
        raise ConfigError(f"--db {shown} is an in-memory SQLite database: it holds no results "
                          "to read or upgrade; give the nas.db a search wrote, or a server URL")
    path = sqlite_path(url)  # StorageError for a folder; None: not a SQLite file URL
    if path is not None and not path.exists():  # upgrading it would create a new database
        if args.cmd == "upgrade":
            raise ConfigError(f"no database at {shown}: nothing to upgrade (the first search "
                              f"creates one at revision {HEAD_REVISION}); check the path")
        if path.parent.is_dir() or args.db is None:  # a search makes the default folder
            folder = "" if path.parent.is_dir() else f", nor a folder {path.parent}"
            print(f"{shown}: no database yet{folder} (the first search creates it; if you "
                  "expected one, check the path)")
        else:  # a search refuses a --db whose folder is missing: it does not create it
            print(f"{shown}: no database, nor a folder {path.parent} (a search with this --db "
                  "needs the folder to exist; if you expected a database, check the path)")
        return 0
    if args.cmd == "upgrade":
        old, new = upgrade(url)
        print(f"{shown} is already at {new}" if old == new else
              f"upgraded {shown} from {old or 'nothing'} to {new}")
        return 0
    others: list[str] = []
    rev = schema_revision(url, others)
    optuna = {"studies", "trials", "alembic_version", "version_info"}
    if rev == HEAD_REVISION:
        state = "current"
    elif rev is None and not others:
        state = "no tables yet; the first search creates them"
    elif rev is None and optuna <= set(others):
        state = "no metaformer-nas tables, only Optuna's; a search adds ours beside them"
    elif rev is None:
        listed = ", ".join(others[:5]) + (", ..." if len(others) > 5 else "")
        state = (f"no metaformer-nas tables; it holds {len(others)} other table(s) ({listed}): "
                 "another program's database?")
    elif rev not in KNOWN_REVISIONS:  # `db upgrade` would refuse it: a newer package wrote it
        state = (f"unknown to this version, which knows {', '.join(KNOWN_REVISIONS)}: written "
                 "by a newer metaformer-nas; upgrade the package (in a clone: git pull && make "
                 "setup)")
    else:
        state = f"this version needs {HEAD_REVISION}; run: python -m nas db upgrade --db {shown}"
    print(f"{shown}: schema revision {rev or 'none'} ({state})")
    return 0


# --------------------------------------------------------------------------- pareto


def _add_pareto(sub) -> argparse.ArgumentParser:
    p = sub.add_parser(
        "pareto", help="a study's Pareto front: table, noise, knee, CSV/JSON and PNG plots",
        description="The Pareto front of one or more studies, read from the database: a table "
                    "that marks which members are certainly non-dominated and which are within "
                    "noise of another trial, the knee, and the hypervolume (one reference point "
                    "for all studies given). With --out: front.csv, front.json, trials.csv "
                    "(every trial), pareto.png and hypervolume.png.")
    p.add_argument("--db", default=os.environ.get("NAS_DB_URL"),
                   help="database URL (default: $NAS_DB_URL, else sqlite:///<runs-dir>/nas.db)")
    p.add_argument("--runs-dir", default="runs",
                   help="folder of the default database (default: runs)")
    p.add_argument("--study", action="append", default=None, metavar="NAME",
                   help="study to read; repeat to compare studies on one plot (default: the "
                        "only study in the database)")
    p.add_argument("--objectives", default=None,
                   help="name:max|min,... (default: those stored with the first study)")
    p.add_argument("--z", type=float, default=1.96,
                   help="noise threshold in standard errors: a difference smaller than z x "
                        "the combined standard error is a tie (default: 1.96)")
    p.add_argument("--out", default=None, metavar="DIR",
                   help="write front.csv, front.json, trials.csv (every trial), pareto.png "
                        "and hypervolume.png here")
    p.add_argument("--group-by", default=None, metavar="KEY",
                   help="in hypervolume.png, average the studies that share this run-config "
                        "value (e.g. sampler), with their min-max band (seeds)")
    _add_box(p)
    p.add_argument("--force", action="store_true",
                   help="with --out: replace those five files even where pareto did not write "
                        "them (an earlier --out's are replaced anyway)")
    p.set_defaults(run=_pareto)
    return p


def _add_box(p: argparse.ArgumentParser) -> None:
    p.add_argument("--reference", default=None, metavar="NAME=VALUE,...",
                   help="fix the hypervolume box's worst corner, every objective in its own "
                        "units (e.g. accuracy=0,macs=3.4e9), so that hypervolumes compare "
                        "between commands and over time (default: from the trials read)")
    p.add_argument("--ideal", default=None, metavar="NAME=VALUE,...",
                   help="with --reference: the box's best corner (default: the best each "
                        "objective can take: accuracy 1, a cost or loss to minimise 0; other "
                        "objectives must be given)")


def _pareto(args: argparse.Namespace) -> int:
    from pathlib import Path

    from nas_errors import ConfigError

    if not (0 < args.z < float("inf")):
        raise ConfigError(f"--z must be a finite number > 0 (standard errors); got {args.z}")
    if args.out is not None and not args.out.strip():
        raise ConfigError("--out must name a folder; got an empty string")
    if args.out:
        args.out = os.path.expanduser(args.out)  # a quoted '~/x' as in --db and report's -o
    if args.out and Path(args.out).exists() and not Path(args.out).is_dir():
        raise ConfigError(f"--out {args.out}: cannot write there: it is a file, not a folder")
    from nas import analysis as A

    if args.ideal is not None and args.reference is None:
        raise ConfigError(A.IDEAL_NEEDS_REFERENCE)
    from nas import _pareto
    from nas.results import parse_objectives

    if args.out:  # before the table: a refusal after it would hide the one line
        _pareto.check_out(Path(args.out), force=args.force)

    objectives = parse_objectives(args.objectives) if args.objectives is not None else None
    from db import Store, default_url, mask_url
    from nas.models import from_dict

    url = args.db or default_url(args.runs_dir, create=False)
    store = Store(url, decode_arch=from_dict, read_only=True)  # reads only, creates nothing
    names = args.study
    if not names:
        studies = [s.name for s in store.list_studies()]
        if not studies:
            raise ConfigError(f"{mask_url(url)} holds no studies yet; run a search first")
        if len(studies) != 1:
            listed = printable(", ".join(studies[:20]))  # names may hold line breaks
            raise ConfigError(f"--study is needed: {mask_url(url)} holds "
                              f"{len(studies)} studies" + (f" ({listed})" if studies else ""))
        names = studies
    box = None
    if args.reference is not None:  # checked before the trials are read (a large study's take
        # seconds): over the objectives given, else the first study's, as load_fronts takes them
        box = A.given_box(objectives or parse_objectives(store.get_study(names[0]).objectives),
                          args.reference, args.ideal)
    fronts = _pareto.load_fronts(store, list(dict.fromkeys(names)), objectives, z=args.z)
    if args.group_by and not all(args.group_by in f.study.config for f in fronts):
        keys = sorted(fronts[0].study.config)
        raise ConfigError(f"--group-by: {args.group_by!r} is not in every study's run config; "
                          f"keys: {', '.join(keys)}")
    box, hv = _pareto.hypervolumes(fronts, box)
    lost = None
    try:
        _pareto.print_fronts(fronts, hv, args.z, box=box)
    except _OutputLost as e:  # the table is lost, the files need not be
        lost = e
    written = _pareto.write_outputs(fronts, Path(args.out), z=args.z, box=box,
                                    group_by=args.group_by) if args.out else []
    if lost is not None:
        raise lost
    for path in written:
        print(f"wrote {path}")
    return 0


# --------------------------------------------------------------------------- export


def _add_export(sub) -> argparse.ArgumentParser:
    from nas.export import PICKS

    p = sub.add_parser(
        "export", help="write a trial or a preset as a full model (model.py, weights, "
                       "TorchScript, ONNX, model card)",
        description="Export a study's trial (or a preset) as a full model into --out: "
                    "config.yaml, model.py (needs only torch and timm), model.safetensors "
                    "(initialised weights), model.torchscript.pt, model.onnx (checked in "
                    "onnxruntime) and a README.md model card. Written to a temporary "
                    "directory, checked, then renamed into place.",
    )
    which = p.add_mutually_exclusive_group(required=True)
    which.add_argument("--trial", type=int, metavar="N", help="the study's trial number N")
    which.add_argument("--pick", choices=PICKS,
                       help="knee: the knee of the study's Pareto front; best: the highest "
                            "proxy accuracy (a tie goes to fewer MACs, then fewer params)")
    which.add_argument("--preset", metavar="NAME",
                       help="a named architecture instead of a trial (python -c 'import "
                            "nas.models as m; print(m.list_presets())')")
    p.add_argument("--db", default=os.environ.get("NAS_DB_URL"),
                   help="the search's database URL; default: $NAS_DB_URL, else "
                        "sqlite:///<runs-dir>/nas.db")
    p.add_argument("--runs-dir", default="runs", help="where the default database lives")
    p.add_argument("--study", default=None, help="the study (with --trial or --pick)")
    p.add_argument("--max-macs", type=float, default=None, metavar="X",
                   help="with --pick: only completed trials with MACs <= X (e.g. 4e9)")
    p.add_argument("--out", required=True, metavar="DIR", help="the export directory to create")
    p.add_argument("--num-classes", type=int, default=1000, help="classifier outputs")
    p.add_argument("--img-size", type=int, default=224, help="input side in pixels")
    p.add_argument("--name", default=None,
                   help="model name for timm and model.py (default: <study>_trial<N>, or the "
                        "preset's name)")
    p.add_argument("--seed", type=int, default=0, help="torch seed of the initialised weights")
    p.add_argument("--force", action="store_true",
                   help="replace --out if it holds an earlier export (or is empty)")
    p.set_defaults(run=_export)
    return p


def _studies_hint(args: argparse.Namespace) -> str:
    """``; sqlite:///... holds 'a', 'b'`` (its studies) for a one-line refusal that lacks one, or
    "" when the database cannot be read (the refusal stays the same)."""
    try:
        from db import Store, default_url, mask_url

        url = args.db or default_url(args.runs_dir, create=False)
        with contextlib.closing(Store(url, read_only=True)) as store:
            names = [s.name for s in store.list_studies()]
    except Exception:  # noqa: BLE001 - only a hint: no database, or none readable
        return ""
    if not names:
        return f"; {mask_url(url)} holds no studies yet"
    listed = printable(", ".join(repr(n) for n in names[:20]))
    return f"; {mask_url(url)} holds {listed}" + (" ..." if len(names) > 20 else "")


def _export(args: argparse.Namespace) -> int:
    import math

    from nas.export import check_name, check_out_dir
    from nas_errors import ConfigError

    trial_source = args.preset is None
    if trial_source and not args.study:
        raise ConfigError(f"--{'trial' if args.trial is not None else 'pick'} needs --study"
                          f"{_studies_hint(args)}")
    if not trial_source and args.study:
        raise ConfigError("--study is for --trial or --pick, not --preset")
    if args.max_macs is not None and args.pick is None:
        raise ConfigError("--max-macs only applies to --pick")
    if args.max_macs is not None and not (math.isfinite(args.max_macs) and args.max_macs > 0):
        raise ConfigError(f"--max-macs must be a finite number > 0; got {args.max_macs}")
    for flag, value in (("--num-classes", args.num_classes), ("--img-size", args.img_size)):
        if value < 1:
            raise ConfigError(f"{flag} must be an integer >= 1; got {value}")
    if not 0 <= args.seed < 2**63:
        raise ConfigError(f"--seed must be in 0 .. 2**63-1; got {args.seed}")
    if args.name is not None:
        check_name(args.name)
    args.out = os.path.expanduser(args.out)  # a quoted '~/x' as in --db and report's -o
    check_out_dir(args.out, args.force)  # all before torch, timm or the database load

    import shlex

    from db import default_url, mask_url
    from nas.export import export, select_preset, select_trial

    if trial_source:
        selection = select_trial(args.db or default_url(args.runs_dir, create=False), args.study,
                                 trial=args.trial, pick=args.pick, max_macs=args.max_macs,
                                 name=args.name)
    else:
        selection = select_preset(args.preset, name=args.name)
    result = export(selection, args.out, num_classes=args.num_classes, img_size=args.img_size,
                    force=args.force, seed=args.seed, before_commit=_raise_if_signalled,
                    commit_guard=_holding_stop_signals, on_commit=_EXPORTED.append,
                    command=" ".join(["python -m nas", *(shlex.quote(mask_url(a))
                                                          for a in args.argv)]))
    what = (f"trial #{selection.trial.number} of study '{selection.study.name}'"
            if selection.trial is not None else f"preset {selection.preset}")
    checks = result.checks
    worst = max(checks["onnx"]["max_abs_diff"], checks["torchscript"], checks["standalone"])
    print(printable(f"exported {what} as '{result.name}' to {result.out} in "
                    f"{result.seconds:.1f} s: {', '.join(sorted(result.files))} (checked: "
                    "model.py stand-alone, TorchScript, ONNX in onnxruntime; max |diff| "
                    f"{worst:.1e})"))
    return 0


# --------------------------------------------------------------------------- dashboard, report


def _add_read_db(p: argparse.ArgumentParser) -> None:
    p.add_argument("--db", default=os.environ.get("NAS_DB_URL"),
                   help="SQLAlchemy URL of the results database, opened read-only (default: "
                        "$NAS_DB_URL, else sqlite:///<runs-dir>/nas.db)")
    p.add_argument("--runs-dir", default="runs", help="where the default database lives")


def _epochs(text: str) -> float:
    """A number of epochs: an int when whole (``1``), else the fraction (``0.25``, ``1/3``)."""
    from fractions import Fraction

    try:
        value = float(Fraction(text.strip()))
    except (ValueError, ZeroDivisionError, OverflowError):
        try:
            value = float(text)  # nan, inf: refused with the range by the settings check
        except ValueError:
            raise argparse.ArgumentTypeError(f"must be a number of epochs such as 1, 0.25 or "
                                             f"1/3; got {text!r}") from None
    return int(value) if value.is_integer() else value


def _port(text: str) -> int:
    try:
        port = int(text)
    except ValueError:
        port = -1
    if not 0 <= port <= 65535:
        raise argparse.ArgumentTypeError(f"must be 0..65535 (0: any free port); got {text!r}")
    return port


def _add_dashboard(sub) -> argparse.ArgumentParser:
    p = sub.add_parser("dashboard", help="live web dashboard of the results (read-only)",
                       description="Serve a live web dashboard of the studies in a results "
                                   "database: Pareto scatter, trials, hypervolume, design EDFs, "
                                   "parameter importance. Read-only; it follows a running "
                                   "search.")
    _add_read_db(p)
    p.add_argument("--study", default=None, help="study shown first (default: the newest)")
    p.add_argument("--host", default="127.0.0.1",
                   help="address to listen on (default %(default)s: this machine only; "
                        "0.0.0.0 serves every network, without authentication)")
    p.add_argument("--port", type=_port, default=8050,
                   help="port (default %(default)s; 0: any free one, printed)")
    p.add_argument("--refresh", type=float, default=5.0, metavar="SECONDS",
                   help="how often the page asks the database for new trials "
                        "(default %(default)s)")
    _add_box(p)
    p.set_defaults(run=_dashboard)
    return p


def _dashboard(args: argparse.Namespace) -> int:
    from db import default_url
    from nas._dashboard import serve

    return serve(args.db or default_url(args.runs_dir, create=False), host=args.host,
                 port=args.port, study=args.study, refresh_s=args.refresh,
                 reference=args.reference, ideal=args.ideal)


def _add_report(sub) -> argparse.ArgumentParser:
    p = sub.add_parser("report", help="a study as one self-contained HTML file",
                       description="Write one self-contained HTML report of a study (the "
                                   "dashboard's figures, the front with export commands; "
                                   "plotly.js inlined, opens offline). Read-only.")
    _add_read_db(p)
    p.add_argument("--study", required=True, help="the study to report")
    p.add_argument("-o", "--out", default="report.html",
                   help="the HTML file to write (an earlier report there is replaced)")
    p.add_argument("--force", action="store_true",
                   help="replace --out even when it is not an earlier report")
    _add_box(p)
    p.set_defaults(run=_report)
    return p


def _report(args: argparse.Namespace) -> int:
    from db import default_url
    from nas._report import write_report

    path, snap = write_report(args.db or default_url(args.runs_dir, create=False), args.study,
                              args.out, force=args.force, reference=args.reference,
                              ideal=args.ideal)
    print(f"wrote {path} ({path.stat().st_size / 1e6:.1f} MB): study '{snap.study.name}', "
          f"{len(snap.trials)} trials, front of {len(snap.noisy.members)}")
    return 0


# --------------------------------------------------------------------------- entry points


class _Parser(argparse.ArgumentParser):
    """argparse, with a usage error said in one line (exit 2) like every other bad input, and
    :class:`DefaultsHelp` for every (sub)command's help."""

    def __init__(self, *args: Any, **kw: Any) -> None:
        kw.setdefault("formatter_class", DefaultsHelp)
        super().__init__(*args, **kw)

    def error(self, message: str):
        self.exit(EXIT_USAGE, f"error: {self.prog}: {message} (see {self.prog} --help)\n")


def _parser(search_prog: str | None = None) -> argparse.ArgumentParser:
    p = _Parser(prog="python -m nas",
                description="Neural-architecture search for MetaFormer backbones.")
    sub = p.add_subparsers(dest="command", required=True,
                           metavar="{search,spaces,data,db,studies,pareto,export,dashboard,"
                                   "report}")
    _add_search(sub, prog=search_prog)
    _add_spaces(sub)
    _add_data(sub)
    _add_db(sub)
    _add_studies(sub)
    _add_pareto(sub)
    _add_export(sub)
    _add_dashboard(sub)
    _add_report(sub)
    return p


def main(argv: Sequence[str] | None = None, *, search_prog: str | None = None) -> int:
    """Parse ``argv`` and run the subcommand; every project error is caught here, once."""
    argv = list(sys.argv[1:] if argv is None else argv)
    try:
        args = _parser(search_prog).parse_args(argv)
    except KeyboardInterrupt:  # a Ctrl-C in the ~0.5 s of imports the parser needs
        return _fail("interrupted before anything started", EXIT_INTERRUPTED)
    args.argv = argv  # the command line as given (export quotes it in its model card)
    shown, warnings.showwarning = warnings.showwarning, _show_warning
    try:
        return _run(args)
    finally:
        warnings.showwarning = shown


def _run(args: argparse.Namespace) -> int:
    import signal

    handlers = {}
    if args.command in ("export", "report", "pareto"):  # (a search has its own handlers)
        _STOP_SIGNALS.clear()
        _EXPORTED.clear()
        handlers[signal.SIGTERM] = signal.signal(signal.SIGTERM, _on_stop_signal)
        if signal.getsignal(signal.SIGINT) is signal.default_int_handler:  # (not if ignored)
            handlers[signal.SIGINT] = signal.signal(signal.SIGINT, _on_stop_signal)
        if signal.getsignal(signal.SIGHUP) is signal.SIG_DFL:  # (nohup ignores it)
            handlers[signal.SIGHUP] = signal.signal(signal.SIGHUP, _on_stop_signal)
    stdout = sys.stdout
    if args.command != "search" and stdout is not None:  # (None: started with fd 1 closed)
        sys.stdout = _StdoutCheck(stdout)
    try:
        code = args.run(args)
        if sys.stdout is not None:  # what is still buffered fails here, not at exit (120)
            sys.stdout.flush()
        return code
    except BrokenPipeError:  # `... | head`: the reader left; say nothing more (Python's recipe)
        _to_devnull(stdout)
        return 1
    except _OutputLost as e:  # what was printed is lost; files the command wrote are whole
        _to_devnull(stdout)  # (its buffered rest would fail again at exit)
        kept = ("; the search's trials are recorded in the database (`python -m nas pareto` "
                "shows its front)" if args.command == "search" else "")
        return _fail(f"cannot write to standard output: {e}{kept}", EXIT_FAILED)
    except NasError as e:
        return _fail(str(e).strip())  # (printable: a name or path holding a line break
        #                                  is shown escaped, the message kept whole)
    except OSError as e:  # a path given that no file can have: bad input, not a traceback
        if e.errno not in _BAD_PATH or not isinstance(e.filename, (str, bytes, os.PathLike)) \
                or getattr(e, "after_start", False):
            raise  # (after_start: raised while a search's trials ran; its run closed them)
        return _fail(_bad_path(os.fsdecode(e.filename), e.strerror, e.errno))
    except RuntimeError as e:  # pathlib's resolve() on Python < 3.13 says ELOOP so
        loop = _symlink_loop(e)
        if loop is None or getattr(e, "after_start", False):
            raise
        return _fail(_bad_path(loop, "Too many levels of symbolic links", errno.ELOOP))
    except SearchInterrupted as e:  # the trials are closed: show what exists, then one line
        _print_front_of(e.summary)
        print(str(e), file=sys.stderr)
        return e.exit_code
    except KeyboardInterrupt as e:
        code = e.code if isinstance(e, _Terminated) else EXIT_INTERRUPTED
        if args.command == "export" and _EXPORTED:
            return _fail(f"interrupted once the export was in place; {_EXPORTED[0]} holds it "
                         "whole", code)
        if args.command == "export":
            return _fail(f"interrupted; nothing was written to {args.out}", code)
        if args.command == "report":
            return _fail(f"interrupted; {args.out} was not written", code)
        if args.command == "pareto":
            return _fail("interrupted; no output file was changed", code)
        if args.command == "search" and getattr(e, "after_start", False):
            return _fail("interrupted; finished trials are in the database", code)
        if args.command == "search":  # (before its trials: checking its input, preparing
            return _fail("interrupted before any trial of this run started", code)  # data)
        return _fail("interrupted", code)  # (dashboard, studies, spaces, data, db)
    finally:
        sys.stdout = stdout
        for signum, handler in handlers.items():  # (main() called in a process of the caller's)
            signal.signal(signum, handler)


def _print_front_of(summary) -> None:
    """The Pareto front of an interrupted search, if there is one to print (best effort)."""
    from db import Store
    from nas.models import from_dict

    if not summary.completed:
        return
    try:
        print_pareto(Store(summary.db_url, decode_arch=from_dict), summary.study,
                     summary.objectives)
    except (NasError, OSError):
        pass


def _show_warning(message, category, filename, lineno, file=None, line=None) -> None:
    """This project's warnings as one line, ``warning: ...`` (Python's own show the file, line
    number and source line: three lines for, e.g., a bad ``$NAS_EXPORT_PATH`` entry); other
    packages' as Python shows them."""
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    if not os.path.abspath(filename).startswith(root + os.sep) or \
            os.sep + "site-packages" + os.sep in filename:
        print(warnings.formatwarning(message, category, filename, lineno, line),
              file=file or sys.stderr, end="")
        return
    text = str(message).strip().splitlines()
    print(f"warning: {text[0] if text else category.__name__}", file=file or sys.stderr)


def search_main(argv: Sequence[str] | None = None) -> int:
    """``run_search.py``: the ``search`` subcommand under its own name."""
    return main(["search", *(sys.argv[1:] if argv is None else argv)],
                search_prog="run_search.py")


def spaces_main(argv: Sequence[str]) -> int:
    return main(["spaces", *argv])
