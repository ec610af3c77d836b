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


def _parse(objectives: Sequence[str]) -> list[tuple[str, int]]:
    """``["accuracy:max", "macs:min"]`` -> [(name, sign)], sign +1 to minimise, -1 to maximise."""
    out = []
    for obj in objectives:
        name, _, direction = str(obj).partition(":")
        if direction not in ("max", "min"):
            raise ValueError(f"objective {obj!r} is malformed; allowed: 'name:max' or 'name:min'")
        out.append((name, 1 if direction == "min" else -1))
    if not out:
        raise ValueError("pareto_front needs at least one objective")
    return out


def pareto_front(
    trials: Sequence[TrialRecord],
    objectives: Sequence[str] | None = None,
    *,
    maximize: str = "accuracy",
    minimize: str = "macs",
) -> list[TrialRecord]:
    """The non-dominated COMPLETE trials for any number of objectives.

    ``objectives`` are ``"name:max"`` / ``"name:min"`` strings, as stored with the study; without
    them, ``maximize`` and ``minimize`` name the two objectives. Names are record fields
    (``accuracy``, ``macs``, ``params_count``, ``duration_s``) or keys of ``metrics``; trials
    lacking a finite value for any objective are ignored. Trial ``a`` is dominated iff some ``b``
    is at least as good in every objective and better in one, so trials equal in all objectives
    are all kept. The front is sorted by the minimised objectives ascending, then the maximised
    ones descending (in the order given), ties in input order. O(n * front size).
    """
    objs = _parse(objectives if objectives is not None else [f"{maximize}:max", f"{minimize}:min"])
    order = [o for o in objs if o[1] > 0] + [o for o in objs if o[1] < 0]
    points: list[tuple[tuple[float, ...], int, TrialRecord]] = []
    for i, t in enumerate(trials):
        if t.state != "COMPLETE":
            continue
        values = [_objective(t, name) for name, _ in order]
        if None not in values:
            key = tuple(sign * v for (_, sign), v in zip(order, values))  # smaller is better
            points.append((key, i, t))
    points.sort(key=lambda p: (p[0], p[1]))

    # a point can only be dominated by one sorted before it, and dominance is transitive, so
    # comparing against the front found so far is enough
    front: list[tuple[tuple[float, ...], int, TrialRecord]] = []
    for p in points:
        if not any(_dominates(q[0], p[0]) for q in front):
            front.append(p)
    return [t for _, _, t in front]


def _dominates(b: tuple[float, ...], a: tuple[float, ...]) -> bool:
    return all(x <= y for x, y in zip(b, a)) and b != a
