"""``python -m nas studies``: the studies of a database, or one study's runs.

Without ``--study``: one row per study (space, objectives, trials by state, runs, the last run).
With it: one row per run of the study (outcome, start, wall time, host and pid, the trials it
started, its command line as typed, password masked) and the options a plain re-run would take
from these runs (``nas._preflight.inherit_settings``, the rule a search applies), so what
"re-running continues it" will do can be read before doing it. Reads only.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from nas._pareto import table_text
from nas._preflight import INHERITABLE, inherit_settings
from nas._snapshot import RunRow, silent_for, utc_minute
from nas._snapshot import run_rows as _run_rows

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


def study_rows(store) -> list[StudyRow]:
    """Every study of ``store``, oldest first."""
    from db import TRIAL_STATES
    from nas._run import lease_timing

    stale_after_s = lease_timing()[1]
    rows = []
    for study in store.list_studies():  # counted in the database: a study may hold 10,000
        states = {s: n for s in TRIAL_STATES if (n := store.count(study.id, s))}
        runs = store.runs(study.id)
        last = ""
        if runs:
            silent = silent_for(runs[-1], stale_after_s)
            last = (f"#{runs[-1].id} {runs[-1].outcome}"
                    + (f" ({silent}: probably gone)" if silent else "")
                    + f" {utc_minute(runs[-1].started_at)}")
        rows.append(StudyRow(study.name, study.space, tuple(study.objectives), states,
                             len(runs), last))
    return rows


def run_rows(store, name: str) -> list[RunRow]:
    """The runs of study ``name`` (StorageError naming the studies if unknown), oldest first."""
    from nas._run import lease_timing

    study = store.get_study(name)
    return _run_rows(store.runs(study.id), store.trials(study.id),
                     stale_after_s=lease_timing()[1])


def continues_with(store, name: str) -> list[str]:
    """The options a re-run of study ``name`` that types none of them would take from its runs
    (those that differ from the search's defaults), as options: ``--budget 200``, ..."""
    from nas.search import SearchConfig  # (a dataclass of defaults; imported where it is used)

    study = store.get_study(name)
    cfg = SearchConfig(space=study.space, inherit=INHERITABLE)
    return inherit_settings(cfg, store, name, (study.space_hash,))[1]


def _console():
    from rich.console import Console

    return Console(width=max(120, int(os.environ.get("COLUMNS", 0) or 0)))


def print_studies(rows: list[StudyRow], where: str,
                  print_fn: Callable[[Any], None] | None = None) -> None:
    from rich.table import Table

    show = print_fn or _console().print
    plural = "y" if len(rows) == 1 else "ies"
    table = Table(title=table_text(f"{len(rows)} stud{plural} in {where}"))
    for col in ("study", "space", "objectives", "trials", "runs", "last run"):
        table.add_column(col, justify="right" if col == "runs" else "left")
    for r in rows:
        trials = ", ".join(f"{n} {s.lower()}" for s, n in sorted(r.states.items())) or "none"
        table.add_row(table_text(r.name), table_text(r.space), table_text(", ".join(r.objectives)),
                      trials, str(r.runs), r.last_run)
    show(table)


def print_runs(name: str, rows: list[RunRow], taken: list[str],
               print_fn: Callable[[Any], None] | None = None) -> None:
    from rich.table import Table

    show = print_fn or _console().print
    table = Table(title=table_text(f"runs of study '{name}'"))
    for col in ("run", "outcome", "started", "wall", "host:pid", "trials", "command", "message"):
        table.add_column(col, justify="right" if col in ("run", "wall", "trials") else "left")
    for r in rows:
        wall = "running" if r.wall_s is None else f"{r.wall_s:.1f} s"
        table.add_row(f"#{r.id}", r.outcome, r.started, wall, table_text(r.where), str(r.trials),
                      table_text(r.command), table_text(r.message))
    show(table)
    said = " ".join(taken) if taken else "the defaults (no earlier run set anything else)"
    show(table_text(f"a re-run that types none of these options continues study '{name}' with: "
                f"{said}"))
