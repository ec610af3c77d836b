"""Immutable records returned by :class:`db.Store` (never live ORM rows)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

__all__ = ["RUN_OUTCOMES", "TERMINAL_STATES", "TRIAL_STATES", "RunRecord", "StudyActivity",
           "StudyRecord", "TrialRecord", "activity_of"]

#: Every value the ``state`` column may hold (enforced by a CHECK constraint).
TRIAL_STATES: tuple[str, ...] = ("RUNNING", "COMPLETE", "FAIL", "DUPLICATE", "INFEASIBLE",
                                  "INTERRUPTED", "PRUNED")
# INTERRUPTED: the run stopped (Ctrl-C, SIGTERM, kill -9) while the trial ran; a resume redoes it.
# PRUNED: stopped early on its per-epoch results by a multi-fidelity scheduler; never in a front.
#: The states a trial may be finished with (:meth:`db.Store.finish_trial`).
TERMINAL_STATES: tuple[str, ...] = tuple(s for s in TRIAL_STATES if s != "RUNNING")

#: Every value a run's ``outcome`` may hold (enforced by a CHECK constraint).  'running' is the
#: study's lease (at most one per study); 'abandoned' is set by the run that took it over.
RUN_OUTCOMES: tuple[str, ...] = ("running", "completed", "interrupted", "failed", "error",
                                 "abandoned")


@dataclass(frozen=True, slots=True)
class StudyRecord:
    """One search (study): a named run over one search space."""

    id: int
    name: str
    space: str
    space_hash: str
    objectives: tuple[str, ...]  # e.g. ("accuracy:max", "macs:min")
    config: dict[str, Any]  # resolved run configuration (CLI args, seed, proxy settings, ...)
    created_at: datetime  # timezone-aware UTC


@dataclass(frozen=True, slots=True)
class StudyActivity:
    """How far a study has got: a change means trials were started or finished."""

    name: str  # the study's name
    trials: int  # every trial, any state
    finished: int  # trials with a finish time (every state but RUNNING)
    complete: int  # COMPLETE trials
    last_finished_at: datetime | None  # timezone-aware UTC; None before the first finish


def activity_of(name: str, trials: Sequence[TrialRecord]) -> StudyActivity:
    """The :class:`StudyActivity` of loaded trials: equal to ``Store.activity()``'s entry for
    the study as long as nothing changed since they were read."""
    done = [t.finished_at for t in trials if t.finished_at is not None]
    return StudyActivity(name, len(trials), len(done),
                         sum(t.state == "COMPLETE" for t in trials), max(done, default=None))


@dataclass(frozen=True, slots=True)
class TrialRecord:
    """One evaluated (or running) architecture of a study."""

    id: int
    study_id: int
    number: int  # 0-based order of proposal within the study
    key: str  # idempotency key, unique per study (e.g. the Ray trial id)
    arch_hash: str
    arch: dict[str, Any]  # canonical architecture JSON, decoded
    params: dict[str, Any]  # sampled parameter values, flat ("stage3/mixer": ...)
    state: str  # one of TRIAL_STATES
    accuracy: float | None  # validation top-1 of the proxy (mean over repeats); selects
    accuracy_se: float | None  # standard error of `accuracy` (binomial, plus seed spread)
    test_accuracy: float | None  # test-split top-1, reported beside `accuracy`, never selects
    macs: int | None  # full-model MACs at deployment resolution
    params_count: int | None
    metrics: dict[str, Any]  # everything else reported (timings, proxy MACs, train loss, ...)
    error: str | None
    started_at: datetime  # timezone-aware UTC
    finished_at: datetime | None  # timezone-aware UTC, None while RUNNING
    duration_s: float | None
    spec: Any = None  # `arch` parsed once by the Store's `decode_arch` (e.g. an ArchSpec)
    run_id: int | None = None  # the run (RunRecord.id) that started it; None before schema 0003


@dataclass(frozen=True, slots=True)
class RunRecord:
    """One invocation of a search on a study; the 'running' one holds the study's lease."""

    id: int
    study_id: int
    outcome: str  # one of RUN_OUTCOMES
    started_at: datetime  # timezone-aware UTC
    heartbeat_at: datetime  # last sign of life, timezone-aware UTC
    ended_at: datetime | None  # None while running
    message: str | None  # why it ended (error, who took it over, ...)
    config: dict[str, Any]  # the resolved run configuration (passwords masked)
    db_url: str  # the database URL it was given, password masked
    versions: dict[str, Any]  # library versions (python, torch, optuna, ...)
    argv: tuple[str, ...]  # command line, passwords masked
    host: str
    pid: int
    pid_started: float | None  # process creation time (epoch s), tells a reused pid apart
