"""A study's trials and their analyses at one moment, for the dashboard and the report.

Loaded once from a (read-only) :class:`db.Store`; every analysis is computed from
:mod:`nas.analysis` on first use and kept, so the dashboard can hold one snapshot per study
while nothing changes (its :attr:`Snapshot.activity` equals ``Store.activity()``'s entry) and
compute expensive panels only when they are shown.
"""

from __future__ import annotations

import os
import re
import shlex
import threading
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from functools import cached_property
from typing import Any

import numpy as np

from db import (
    TRIAL_STATES,
    RunRecord,
    StudyActivity,
    StudyRecord,
    TrialRecord,
    activity_of,
    lease_limit,
)
from nas import analysis
from nas.results import Objective, parse_objectives

__all__ = ["Snapshot", "load_snapshot", "export_command", "arch_text", "RunRow", "run_rows",
           "silent_for", "command_text", "utc_minute", "FANOVA_MAX_TRIALS"]

#: fANOVA (a random forest) takes over a minute on thousands of trials; above this many
#: completed trials the importance panel uses PED-ANOVA, which takes about a second
FANOVA_MAX_TRIALS = 500


def load_snapshot(store: Any, study: str) -> Snapshot:
    """The study ``study`` of ``store`` (a :class:`db.Store`) as it is now."""
    record = store.get_study(study)
    return Snapshot(record, store.trials(study))


@dataclass(frozen=True)
class RunRow:
    """One run (invocation of a search) of a study, as the report and ``studies`` show it."""

    id: int
    outcome: str
    started: str  # UTC, to the minute
    wall_s: float | None  # None while running
    where: str  # host:pid
    trials: int  # trials this run started (any state)
    command: str  # as typed, password masked
    message: str  # why it ended, when it says


def utc_minute(t: datetime) -> str:
    return t.strftime("%Y-%m-%d %H:%M UTC")


def command_text(argv: Sequence[str] | None) -> str:
    """A run's stored ``sys.argv`` as the user typed it: ``run_search.py --space tiny ...``,
    ``python -m nas search ...`` (every part shell-quoted; passwords were masked on storing)."""
    if not argv:
        return ""
    head = os.path.basename(argv[0])
    head = "python -m nas" if head == "__main__.py" else shlex.quote(head)
    return " ".join([head, *map(shlex.quote, argv[1:])])


def silent_for(run: RunRecord, stale_after_s: float, now: datetime | None = None) -> str:
    """For a 'running' run without a heartbeat for ``stale_after_s`` (or the longer limit the run
    recorded; its process was killed, or its machine is gone): ``no heartbeat for 12 min``;
    else ``""``. Only the next run of the study can close it (a reader never writes)."""
    if run.outcome != "running":
        return ""
    age = ((now or datetime.now(run.heartbeat_at.tzinfo)) - run.heartbeat_at).total_seconds()
    if age < lease_limit(run, stale_after_s):
        return ""
    text = (f"{age:.0f} s" if age < 120 else f"{age / 60:.0f} min" if age < 7200
            else f"{age / 3600:.1f} h" if age < 172800 else f"{age / 86400:.0f} days")
    return f"no heartbeat for {text}"


def run_rows(runs: Sequence[RunRecord], trials: Sequence[TrialRecord], *,
             stale_after_s: float | None = None) -> list[RunRow]:
    """``runs`` (oldest first) as rows, each with the number of ``trials`` it started; with
    ``stale_after_s``, a 'running' run silent for that long says so in its message."""
    started = Counter(t.run_id for t in trials)
    out = []
    for r in runs:
        wall = None if r.ended_at is None else (r.ended_at - r.started_at).total_seconds()
        message = r.message or ""
        silent = "" if stale_after_s is None else silent_for(r, stale_after_s)
        if silent:
            message = (f"{silent}: its process is probably gone; the next run of this study "
                       "closes it and its running trials")
        out.append(RunRow(r.id, r.outcome, utc_minute(r.started_at), wall, f"{r.host}:{r.pid}",
                          started.get(r.id, 0), command_text(r.argv), message))
    return out


def arch_text(features: dict[str, Any]) -> str:
    """One line naming an architecture by its :func:`nas.analysis.design_features` (not
    ``nas.models.describe``, which needs the specs, hence torch: the dashboard starts without
    it)."""
    parts = [str(features.get("mixer_pattern", "?"))]
    if "depth_pattern" in features:
        parts.append(f"depths {features['depth_pattern']}")
    if "width_pattern" in features:
        parts.append(f"widths {features['width_pattern']}")
    return " · ".join(parts)


def export_command(masked_url: str, study: str, number: int, out: str | None = None) -> str:
    """The shell command that exports trial ``number`` of ``study`` (every part quoted); the
    default folder is ``exports/<study>-<number>`` with every character of the study's name
    but letters, digits, ``.``, ``_`` and ``-`` replaced by ``_`` (one folder, never nested)."""
    out = out or f"exports/{_folder_name(study)}-{number}"
    return shlex.join(["python", "-m", "nas", "export", "--db", masked_url, "--study", study,
                       "--trial", str(number), "--out", out])


def _folder_name(study: str) -> str:
    name = re.sub(r"[^A-Za-z0-9._-]", "_", study)
    return "_" + name if name.startswith(".") or not name else name


def _round(v: float | None, digits: int) -> float | None:
    return None if v is None else round(float(v), digits)


class Snapshot:
    """A study's trials at one moment, with analyses computed on first use (thread-safe)."""

    def __init__(self, study: StudyRecord, trials: Sequence[TrialRecord], *,
                 box: analysis.Box | None = None, generation: int = 0) -> None:
        self.study = study
        self.box = box  # a hypervolume box given by the user; None: the data rule
        self.generation = generation  # the Store's file_generation its trials were read at
        self.trials = tuple(sorted(trials, key=lambda t: t.number))
        self.objectives: tuple[Objective, ...] = parse_objectives(list(study.objectives))
        self.activity: StudyActivity = activity_of(study.name, self.trials)
        self._lock = threading.RLock()
        self._memo: dict[Any, Any] = {}

    def refreshed(self, store: Any) -> Snapshot:
        """The study as it is now, reading only the trials that can have changed since: the
        new ones and those RUNNING here (the store never changes a finished trial)."""
        running = [t.number for t in self.trials if t.state == "RUNNING"]
        last = max((t.number for t in self.trials), default=-1)
        merged = {t.number: t for t in self.trials}
        merged.update((t.number, t) for t in store.trials(self.study.name, numbers=running,
                                                           after=last))
        return Snapshot(self.study, merged.values(), box=self.box, generation=self.generation)

    # ----------------------------------------------------------------- records

    @cached_property
    def by_number(self) -> dict[int, TrialRecord]:
        return {t.number: t for t in self.trials}

    @cached_property
    def features(self) -> dict[int, dict[str, Any]]:
        """trial number -> :func:`nas.analysis.design_features`."""
        return {t.number: analysis.design_features(t) for t in self.trials}

    @cached_property
    def plotted(self) -> tuple[TrialRecord, ...]:
        """The COMPLETE trials with an accuracy and positive MACs: the points of the scatter."""
        return tuple(t for t in self.trials if t.state == "COMPLETE" and t.accuracy is not None
                     and t.macs is not None and t.macs > 0)

    @cached_property
    def counts(self) -> dict[str, int]:
        """Trials by state, in :data:`db.TRIAL_STATES` order, states without trials left out."""
        c = Counter(t.state for t in self.trials)
        return {s: c[s] for s in TRIAL_STATES if c[s]}

    # ----------------------------------------------------------------- analyses

    @cached_property
    def evaluated(self) -> analysis.Evaluated:
        return analysis.evaluated(self.trials, self.objectives)

    @cached_property
    def noisy(self) -> analysis.NoisyFront:
        """The front's members, certain or within noise (without the O(n^2) band)."""
        return analysis.noisy_front(self.evaluated, band=False)

    @cached_property
    def front_status(self) -> dict[int, str]:
        """Front members' numbers -> ``"certain"`` or ``"within noise"``."""
        return {m.trial.number: "certain" if m.certain else "within noise"
                for m in self.noisy.members}

    @cached_property
    def twins(self) -> dict[int, tuple[int, ...]]:
        """Trial number -> the other COMPLETE trials that trained the same proxy."""
        return analysis.proxy_twins(self.trials)

    def twin_note(self, t: TrialRecord) -> str:
        """What sharing its proxy means for ``t`` ('' when it shares none)."""
        notes = analysis.twin_notes([t], self.twins, self.by_number)
        return notes[0] if notes else ""

    @cached_property
    def knee(self) -> TrialRecord | None:
        return analysis.knee_point(self.evaluated)

    @cached_property
    def hypervolume(self) -> dict[str, Any]:
        """The hypervolume after each evaluated trial, as a fraction of the box from the ideal
        point to the reference point (:attr:`box` when given, else
        :func:`nas.analysis.data_box` of this study)."""
        ev = self.evaluated
        if not len(ev):
            return {"x": np.zeros(0), "y": np.zeros(0), "final": None}
        box = self.box if self.box is not None else analysis.data_box(ev)
        x, y = analysis.hypervolume_curve(self.trials, self.objectives, box=box)
        return {"x": x, "y": y, "final": float(y[-1]) if len(y) else None}

    @cached_property
    def choices(self) -> list[str]:
        """Design choices that take two or more values among the COMPLETE trials."""
        return analysis.design_choices(t for t in self.trials if t.state == "COMPLETE")

    def memo(self, key: Any, build: Callable[[], Any]) -> Any:
        """``build()``, computed once per snapshot and ``key`` (a figure, an EDF, ...)."""
        with self._lock:
            if key not in self._memo:
                self._memo[key] = build()
            return self._memo[key]

    def edf(self, choice: str) -> analysis.DesignEDF:
        return self.memo(("edf", choice), lambda: analysis.design_edfs(self.trials, choice))

    @cached_property
    def importance_objective(self) -> Objective:
        return self.objectives[0]

    @cached_property
    def importance_evaluator(self) -> str:
        return "fanova" if len(self.evaluated) <= FANOVA_MAX_TRIALS else "ped_anova"

    @cached_property
    def importance(self) -> dict[str, float]:
        """Parameter importance for the study's first objective (see FANOVA_MAX_TRIALS)."""
        return analysis.param_importance(self.trials, self.importance_objective,
                                         evaluator=self.importance_evaluator)

    # ----------------------------------------------------------------- table rows

    def row(self, t: TrialRecord) -> dict[str, Any]:
        """One trial as a flat row (the dashboard's table, the report's front table)."""
        f = self.features.get(t.number, {})
        err = (t.error or "").strip().splitlines()
        return {
            "number": t.number,
            "state": t.state,
            "accuracy": _round(t.accuracy, 5),
            "accuracy_se": _round(t.accuracy_se, 5),
            "test_accuracy": _round(t.test_accuracy, 5),
            "gmacs": None if (macs := analysis.known_cost(t, "macs")) is None
            else round(macs / 1e9, 4),
            "mparams": None if (params := analysis.known_cost(t, "params")) is None
            else round(params / 1e6, 3),
            "front": self.front_status.get(t.number, ""),
            "mixers": str(f.get("mixer_pattern", "")),
            "depths": str(f.get("depth_pattern", "")),
            "widths": str(f.get("width_pattern", "")),
            "duration_s": None if t.duration_s is None else round(t.duration_s, 1),
            "error": err[0][:300] if err else "",
        }

    @cached_property
    def rows(self) -> list[dict[str, Any]]:
        return [self.row(t) for t in self.trials]
