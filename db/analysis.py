"""Analyses over trial records (pure functions, no database access)."""

from __future__ import annotations

import math
import numbers
from collections.abc import Sequence
from dataclasses import fields

from db.records import TrialRecord

__all__ = ["pareto_front"]

_FIELDS = frozenset(f.name for f in fields(TrialRecord))


def _objective(trial: TrialRecord, name: str) -> float | None:
    """A record field (``accuracy``, ``macs``, ...) or else ``metrics[name]``; None if unusable."""
    value = getattr(trial, name) if name in _FIELDS else trial.metrics.get(name)
    if value is None or isinstance(value, bool) or not isinstance(value, numbers.Real):
        return None
    return value if math.isfinite(value) else None  # type: ignore[return-value]


def pareto_front(
    trials: Sequence[TrialRecord], *, maximize: str = "accuracy", minimize: str = "macs"
) -> list[TrialRecord]:
    """The non-dominated COMPLETE trials, sorted by the ``minimize`` objective ascending.

    Objectives are record fields (``accuracy``, ``macs``, ``params_count``, ``duration_s``) or
    keys of ``metrics``; trials lacking a finite value for either are ignored.  Trial ``a`` is
    dominated iff some ``b`` has ``b.max >= a.max`` and ``b.min <= a.min`` with at least one
    strict; so trials equal in both objectives are all kept.  Equal ``minimize`` values keep the
    input order.  O(n log n).
    """
    points: list[tuple[float, float, int, TrialRecord]] = []
    for i, t in enumerate(trials):
        if t.state != "COMPLETE":
            continue
        hi, lo = _objective(t, maximize), _objective(t, minimize)
        if hi is not None and lo is not None:
            points.append((lo, -hi, i, t))
    points.sort(key=lambda p: (p[0], p[1], p[2]))  # min asc, max desc, input order

    front: list[TrialRecord] = []
    best_before = -math.inf  # best maximised value among strictly smaller minimised values
    i = 0
    while i < len(points):
        lo = points[i][0]
        group_best = -points[i][1]
        j = i
        while j < len(points) and points[j][0] == lo:
            # same minimised value: only those with the group's best maximised value survive,
            # and only if nothing cheaper is at least as good
            if -points[j][1] == group_best and group_best > best_before:
                front.append(points[j][3])
            j += 1
        best_before = max(best_before, group_best)
        i = j
    return front
