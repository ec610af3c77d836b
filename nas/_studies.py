"""``python -m nas studies``: the studies of a database, or one study's runs.

Without ``--study``: one row per study (space, objectives, trials by state, runs, the last run).
With it: one row per run of the study (outcome, start, wall time, host and pid, the trials it
started, its command line as typed, password masked) and the options a plain re-run would take
from these runs (``nas._preflight.inherit_settings``, the rule a search applies), so what
"re-running continues it" will do can be read before doing it. Reads only.
"""

from __future__ import annotations

import os
import shlex
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from nas._preflight import INHERITABLE, inherit_settings

__all__ = ["StudyRow", "RunRow", "study_rows", "run_rows", "continues_with", "print_studies",
           "print_runs"]


@dataclass(frozen=True)
class StudyRow:
    name: str
    space: str
    objectives: tuple[str, ...]
    states: dict[str, int]  # trial state -> count
    runs: int
    last_run: str  # "#3 completed 2026-11-25 10:12 UTC", or "" with no run


@dataclass(frozen=True)
class RunRow:
    id: int
    outcome: str
    started: str  # UTC, to the minute
    wall_s: float | None  # None while running
    where: str  # host:pid
    trials: int  # trials this run started (any state)
    command: str  # as typed, password masked
    message: str  # why it ended, when it says


def _when(t: datetime) -> str:
    return t.strftime("%Y-%m-%d %H:%M UTC")


def study_rows(store) -> list[StudyRow]:
    """Every study of ``store``, oldest first."""
    from db import TRIAL_STATES

    rows = []
    for study in store.list_studies():  # counted in the database: a study may hold 10,000
        states = {s: n for s in TRIAL_STATES if (n := store.count(study.id, s))}
        runs = store.runs(study.id)
        last = (f"#{runs[-1].id} {runs[-1].outcome} {_when(runs[-1].started_at)}"
                if runs else "")
        rows.append(StudyRow(study.name, study.space, tuple(study.objectives), states,
                             len(runs), last))
    return rows


def run_rows(store, name: str) -> list[RunRow]:
    """The runs of study ``name`` (StorageError naming the studies if unknown), oldest first."""
    study = store.get_study(name)
    started = Counter(t.run_id for t in store.trials(study.id))
    out = []
    for r in store.runs(study.id):
        wall = None if r.ended_at is None else (r.ended_at - r.started_at).total_seconds()
        out.append(RunRow(r.id, r.outcome, _when(r.started_at), wall, f"{r.host}:{r.pid}",
                          started.get(r.id, 0), _command(r.argv), r.message or ""))
    return out


def _command(argv) -> str:
    """A run's stored ``sys.argv`` as the user typed it: ``run_search.py --space tiny ...``,
    ``python -m nas search ...``."""
    if not argv:
        return ""
    head = os.path.basename(argv[0])
    head = "python -m nas" if head == "__main__.py" else shlex.quote(head)
    return " ".join([head, *map(shlex.quote, argv[1:])])


def continues_with(store, name: str) -> list[str]:
    """The options a re-run of study ``name`` that types none of them would take from its runs
    (those that differ from the search's defaults), as options: ``--budget 200``, ..."""
    from nas.search import SearchConfig  # (a dataclass of defaults; imported where it is used)

    study = store.get_study(name)
    cfg = SearchConfig(space=study.space, inherit=INHERITABLE)
    return inherit_settings(cfg, store, name, study.space_hash)[1]


def _console():
    from rich.console import Console

    return Console(width=max(120, int(os.environ.get("COLUMNS", 0) or 0)))


def print_studies(rows: list[StudyRow], where: str,
                  print_fn: Callable[[Any], None] | None = None) -> None:
    from rich.markup import escape
    from rich.table import Table

    show = print_fn or _console().print
    table = Table(title=escape(f"{len(rows)} stud{'y' if len(rows) == 1 else 'ies'} in {where}"))
    for col in ("study", "space", "objectives", "trials", "runs", "last run"):
        table.add_column(col, justify="right" if col == "runs" else "left")
    for r in rows:
        trials = ", ".join(f"{n} {s.lower()}" for s, n in sorted(r.states.items())) or "none"
        table.add_row(escape(r.name), escape(r.space), escape(", ".join(r.objectives)),
                      trials, str(r.runs), r.last_run)
    show(table)


def print_runs(name: str, rows: list[RunRow], taken: list[str],
               print_fn: Callable[[Any], None] | None = None) -> None:
    from rich.markup import escape
    from rich.table import Table

    show = print_fn or _console().print
    table = Table(title=escape(f"runs of study '{name}'"))
    for col in ("run", "outcome", "started", "wall", "host:pid", "trials", "command", "message"):
        table.add_column(col, justify="right" if col in ("run", "wall", "trials") else "left")
    for r in rows:
        wall = "running" if r.wall_s is None else f"{r.wall_s:.1f} s"
        table.add_row(f"#{r.id}", r.outcome, r.started, wall, escape(r.where), str(r.trials),
                      escape(r.command), escape(r.message))
    show(table)
    said = " ".join(taken) if taken else "the defaults (no earlier run set anything else)"
    show(escape(f"a re-run that types none of these options continues study '{name}' with: "
                f"{said}"))
