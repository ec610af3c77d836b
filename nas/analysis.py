"""Analyses over trial records: fronts, hypervolume, knee, noise, design-space statistics.

Pure functions over :class:`db.TrialRecord` lists (no database access, no plotting), read by
``python -m nas pareto``, the dashboard and the report. Objectives are the study's stored
strings (``"accuracy:max"``, ``"macs:min"``, ``"zc_synflow:max"``) or :class:`Objective` s.

Only COMPLETE trials with a finite value for every objective are *evaluated* (enter fronts,
hypervolume, EDFs, importances); pruned, failed, diverged, infeasible and duplicate trials never
do. Internally every objective is turned into a loss (``-value`` for ``max``), so "smaller is
better" everywhere below.

Conventions (also in the README, "Reading the results"):

* **Hypervolume reference point**: unless given, each objective's worst value over every trial
  compared (all studies on one plot share it), pushed outward by 10% of that objective's range
  (by 1 unit of the value's magnitude x 1e-9 when the range is zero). Hypervolume is reported in
  the objectives' own units and, by :func:`normalized_hypervolume`, as a fraction of the box
  between the ideal point and the reference point. Computed by Optuna's
  ``optuna._hypervolume.compute_hypervolume`` (exact, WFG).
* **Knee**: objectives normalised to [0, 1] over the front (0 = best); the knee is the front
  member with the smallest sum of normalised losses. With two objectives this is the member
  farthest from the line through the two extremes (the classic knee); ties go to the earlier
  trial.
* **Noise**: an objective's uncertainty is its standard error: ``accuracy_se`` for accuracy,
  ``metrics[<name>_se]`` for any other (``test_accuracy_se``), else 0 (MACs and params are
  exact). ``b`` is *significantly better* than ``a`` in an objective when
  ``a - b > z * sqrt(se_a^2 + se_b^2)`` (losses; strict ``a > b`` when both are exact), z = 1.96
  by default (95%, two-sided, normal approximation).
"""

from __future__ import annotations

import dataclasses
import json
import math
import re
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from db.records import TrialRecord
from nas.results import Objective, parse_objectives
from nas_errors import ConfigError, printable

__all__ = [
    "EVALUATED_STATES",
    "Evaluated",
    "FrontMember",
    "NoisyFront",
    "DesignEDF",
    "evaluated",
    "standard_error",
    "non_dominated_sort",
    "pareto_front",
    "reference_point",
    "hypervolume",
    "normalized_hypervolume",
    "Box",
    "data_box",
    "given_box",
    "parse_point",
    "knee_point",
    "hypervolume_curve",
    "summarize_curves",
    "known_cost",
    "noisy_front",
    "proxy_twins",
    "twin_notes",
    "reused_from",
    "design_features",
    "design_choices",
    "edf",
    "design_edfs",
    "param_importance",
]

#: trials that cost a proxy training (the x axis of hypervolume-over-trials curves)
EVALUATED_STATES = ("COMPLETE", "PRUNED", "FAIL")
DEFAULT_Z = 1.96


def _objectives(objectives: Sequence[str | Objective]) -> tuple[Objective, ...]:
    if not objectives:
        raise ValueError("at least one objective is needed")
    if all(isinstance(o, Objective) for o in objectives):
        return tuple(objectives)  # type: ignore[arg-type]
    return parse_objectives([str(o) for o in objectives])


def standard_error(record: TrialRecord, objective: Objective) -> float:
    """The objective's standard error in ``record`` (module docstring); 0 when exact/unknown."""
    if objective.name == "accuracy":
        v = record.accuracy_se
    else:
        v = record.metrics.get(f"{objective.name}_se")
    if v is None or isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
        return 0.0
    return abs(float(v))


@dataclass(frozen=True)
class Evaluated:
    """The completed trials of a set, with their objective losses and standard errors."""

    trials: tuple[TrialRecord, ...]
    objectives: tuple[Objective, ...]
    losses: np.ndarray  # (n, k): value for min objectives, -value for max ones
    se: np.ndarray  # (n, k): standard errors (0 for exact objectives)

    def __len__(self) -> int:
        return len(self.trials)

    def subset(self, index: Iterable[int]) -> Evaluated:
        idx = np.fromiter(index, dtype=int)
        return Evaluated(tuple(self.trials[i] for i in idx), self.objectives,
                         self.losses[idx], self.se[idx])


def evaluated(trials: Iterable[TrialRecord], objectives: Sequence[str | Objective]) -> Evaluated:
    """The COMPLETE trials with a finite value for every objective, in the order given."""
    objs = _objectives(objectives)
    keep, losses, ses = [], [], []
    for t in trials:
        if t.state != "COMPLETE":
            continue
        values = [o.of(t) for o in objs]
        if any(v is None for v in values):
            continue
        keep.append(t)
        losses.append([v if o.direction == "min" else -v for o, v in zip(objs, values)])
        ses.append([standard_error(t, o) for o in objs])
    k = len(objs)
    return Evaluated(tuple(keep), objs, np.asarray(losses, dtype=float).reshape(-1, k),
                     np.asarray(ses, dtype=float).reshape(-1, k))


# --------------------------------------------------------------------------- fronts


def non_dominated_sort(losses: np.ndarray) -> np.ndarray:
    """The front index of each row of ``losses`` (n, k), 0 = non-dominated, smaller is better.

    Row ``a`` is dominated iff some row is <= in every column and < in one, so equal rows share
    a front. Optuna's implementation (``_fast_non_domination_rank``).
    """
    from optuna.study._multi_objective import _fast_non_domination_rank

    losses = np.asarray(losses, dtype=float)
    if losses.ndim != 2:
        raise ValueError(f"losses must be (n, k); got shape {losses.shape}")
    if len(losses) == 0:
        return np.zeros(0, dtype=int)
    return np.asarray(_fast_non_domination_rank(losses), dtype=int)


def _front_order(ev: Evaluated, index: np.ndarray) -> list[int]:
    """``index`` sorted as fronts are shown: min objectives ascending, then max ones."""
    order = [j for j, o in enumerate(ev.objectives) if o.direction == "min"] + \
            [j for j, o in enumerate(ev.objectives) if o.direction == "max"]
    return sorted(index.tolist(), key=lambda i: (tuple(ev.losses[i, order]), i))


def pareto_front(trials: Iterable[TrialRecord] | Evaluated,
                 objectives: Sequence[str | Objective] | None = None) -> list[TrialRecord]:
    """The non-dominated evaluated trials, cheapest first (min objectives ascending)."""
    ev = trials if isinstance(trials, Evaluated) else evaluated(trials, objectives or ())
    if not len(ev):
        return []
    idx = np.flatnonzero(non_dominated_sort(ev.losses) == 0)
    return [ev.trials[i] for i in _front_order(ev, idx)]


# --------------------------------------------------------------------------- hypervolume


def reference_point(*sets: Evaluated, margin: float = 0.1) -> np.ndarray:
    """The documented reference point (losses) for comparing ``sets``: worst + margin x range."""
    losses = [s.losses for s in sets if len(s)]
    if not losses:
        raise ValueError("no evaluated trials: the reference point is undefined")
    allv = np.concatenate(losses)
    worst, best = allv.max(axis=0), allv.min(axis=0)
    span = worst - best
    tiny = np.maximum(np.abs(worst), 1.0) * 1e-9
    return worst + np.where(span > 0, margin * span, tiny)


def hypervolume(losses: np.ndarray, reference: np.ndarray) -> float:
    """The volume dominated by ``losses`` (n, k) and bounded by ``reference`` (k) (Optuna, WFG).

    Rows not strictly better than the reference in every objective add nothing.
    """
    from optuna._hypervolume import compute_hypervolume

    losses = np.asarray(losses, dtype=float).reshape(-1, len(reference))
    reference = np.asarray(reference, dtype=float)
    inside = losses[np.all(losses < reference, axis=1)]
    if len(inside) == 0:
        return 0.0
    front = inside[non_dominated_sort(inside) == 0]
    return float(compute_hypervolume(np.unique(front, axis=0), reference, assume_pareto=True))


def normalized_hypervolume(losses: np.ndarray, reference: np.ndarray,
                           ideal: np.ndarray) -> float:
    """:func:`hypervolume` as a fraction of the box from ``ideal`` to ``reference`` (0..1)."""
    box = float(np.prod(np.asarray(reference, float) - np.asarray(ideal, float)))
    return hypervolume(losses, reference) / box if box > 0 else 0.0


@dataclass(frozen=True, eq=False)
class Box:
    """The hypervolume box: ``ideal`` and ``reference`` points as losses (``-value`` for max
    objectives), and how they were chosen (``rule``; ``given`` when a user fixed them).

    Fractions of the box are computed in its own coordinates (each objective scaled to 0 at the
    ideal and 1 at the reference), so no box is too large or too small to compute, and a point
    better than the ideal in an objective counts as at the ideal there: a fraction is in [0, 1].
    """

    objectives: tuple[Objective, ...]
    ideal: np.ndarray
    reference: np.ndarray
    rule: str
    given: bool = False

    @property
    def span(self) -> np.ndarray:
        with np.errstate(over="ignore"):  # (inf: given_box refuses such a box)
            return self.reference - self.ideal

    def scaled(self, losses: np.ndarray) -> np.ndarray:
        """``losses`` (n, k) in the box's coordinates: 0 at the ideal (or better), 1 at the
        reference; NaN rows for an empty box."""
        losses = np.asarray(losses, dtype=float).reshape(-1, len(self.reference))
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.maximum(losses - self.ideal, 0.0) / self.span

    def fraction(self, losses: np.ndarray) -> float:
        """The hypervolume of ``losses`` as a fraction of this box (0 for an empty box)."""
        if not np.all(self.span > 0):
            return 0.0
        return hypervolume(self.scaled(losses), np.ones(len(self.reference)))

    def outside(self, losses: np.ndarray) -> np.ndarray:
        """Which rows of ``losses`` are not strictly inside the reference (they add nothing)."""
        return ~np.all(np.asarray(losses, dtype=float) < self.reference, axis=1)

    def beyond_ideal(self, losses: np.ndarray) -> np.ndarray:
        """Which rows of ``losses`` are better than the ideal in some objective (counted at it)."""
        return np.any(np.asarray(losses, dtype=float) < self.ideal, axis=1)

    def front_notes(self, name: str, ev: Evaluated, members: Iterable[TrialRecord]) -> list[str]:
        """Lines naming the front ``members`` (of ``ev``, study ``name``) that lie outside the
        reference (they add nothing) or beyond the ideal (counted at it)."""
        ids = {t.id for t in members}
        idx = [i for i, t in enumerate(ev.trials) if t.id in ids]
        losses = ev.losses[idx].reshape(-1, len(self.reference))
        notes = []
        for rows, what in ((self.outside(losses), "outside the reference and add nothing"),
                           (self.beyond_ideal(losses), "better than the ideal in some objective "
                                                       "and count as at the ideal there")):
            numbers = [ev.trials[idx[i]].number for i in np.flatnonzero(rows)]
            if numbers:
                notes.append(f"note: {len(numbers)} of the {len(idx)} front members of '{name}' "
                             f"are {what} (trials " + ", ".join(map(str, numbers[:10]))
                             + (" …" if len(numbers) > 10 else "") + ")")
        return notes

    def in_units(self) -> dict[str, dict[str, float]]:
        """``{objective: {"ideal": value, "reference": value}}`` in the objectives' own units."""
        sign = [-1.0 if o.direction == "max" else 1.0 for o in self.objectives]
        return {o.name: {"ideal": float(s * i) + 0.0, "reference": float(s * r) + 0.0}
                for o, s, i, r in zip(self.objectives, sign, self.ideal, self.reference)}

    def describe(self) -> str:
        """One line: each objective's ideal -> reference, in its own units."""
        return ", ".join(f"{name} {_num(v['ideal'])} -> {_num(v['reference'])}"
                         for name, v in self.in_units().items())


def _num(v: float) -> str:
    """A number as given (up to 12 significant digits): 0.2, 3400000001, 1e+200; never -0."""
    return f"{v + 0.0:.12g}"


#: the data rule's text (front.json's ``reference_rule`` when no box is given)
DATA_RULE = ("per objective (as a loss: value for min, -value for max): the worst over every "
             "evaluated trial of the studies compared, plus 10% of its range; the ideal point is "
             "the best over them")


def data_box(*sets: Evaluated) -> Box:
    """The documented box of ``sets``: their best values to :func:`reference_point` (which
    raises ``ValueError`` when no set has an evaluated trial)."""
    ref = reference_point(*sets)
    full = [s for s in sets if len(s)]
    ideal = np.concatenate([s.losses for s in full]).min(axis=0)
    return Box(full[0].objectives, ideal, ref, DATA_RULE)


#: the best value an objective can take, where it has one: the ideal a --reference implies
_NATURAL_BEST = {("accuracy", "max"): 1.0, ("test_accuracy", "max"): 1.0}


def _natural_best(o: Objective) -> float | None:
    if (o.name, o.direction) in _NATURAL_BEST:
        return _NATURAL_BEST[o.name, o.direction]
    # costs, times, counts and losses are >= 0; a zero-cost score can have any sign
    return 0.0 if o.direction == "min" and not o.name.startswith("zc_") else None


#: the one-line refusal of --ideal alone (pareto, report, dashboard)
IDEAL_NEEDS_REFERENCE = ("--ideal needs --reference (without them both corners of the "
                         "hypervolume box come from the trials read)")


def _refusal(message: str) -> ConfigError:
    return ConfigError(printable(message))  # (the message quotes what the user typed)


def parse_point(spec: str, objectives: Sequence[Objective], option: str) -> dict[str, float]:
    """``"accuracy=0,macs=3.4e9"`` as ``{name: value}`` over ``objectives`` (each named once).

    Raises :class:`nas_errors.ConfigError` (a ``ValueError``) with one line naming what is
    wrong and what is allowed.
    """
    names = [o.name for o in objectives]
    allowed = ", ".join(names)
    out: dict[str, float] = {}
    for item in str(spec).split(","):
        name, sep, value = item.partition("=")
        name, value = name.strip(), value.strip()
        if not item.strip():
            raise _refusal(f"{option}: an empty item (a comma too many?); give NAME=VALUE "
                             f"for each objective ({allowed}), separated by ','")
        if not sep or not name or not value:
            raise _refusal(f"{option}: {item.strip()!r} is not NAME=VALUE; give one per "
                             f"objective ({allowed}), e.g. "
                             + ",".join(f"{n}={_example(o)}" for n, o in zip(names, objectives)))
        if name not in names:
            raise _refusal(f"{option}: {name!r} is not an objective here; the objectives are "
                             f"{allowed}")
        if name in out:
            raise _refusal(f"{option}: {name} is given twice")
        v = float(value) if _NUMBER.fullmatch(value) else math.nan
        if not math.isfinite(v):
            raise _refusal(f"{option}: {name}={value} is not a finite decimal number; give "
                             "one such as 0 or 3.4e9, items separated by ','")
        out[name] = v + 0.0  # (never -0)
    return out


_NUMBER = re.compile(r"[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?", re.ASCII)


def _example(o: Objective) -> str:
    return {"accuracy": "0", "test_accuracy": "0", "macs": "3.4e9", "params": "3e7"}.get(
        o.name, "VALUE")


def given_box(objectives: Sequence[str | Objective], reference: str,
              ideal: str | None = None) -> Box:
    """The box a user fixed: ``reference`` gives every objective's worst value (``"accuracy=0,
    macs=3.4e9"``, the objectives' own units); ``ideal`` its best, by default the best it can
    take where it has one (accuracy 1, any cost or loss to minimise 0). Figures over one given
    box are comparable between commands and over time, unlike the data rule's.

    Raises :class:`nas_errors.ConfigError` (a ``ValueError``) with one line naming what is
    wrong and what is allowed.
    """
    objs = _objectives(objectives)
    ref = parse_point(reference, objs, "--reference")
    missing = [o.name for o in objs if o.name not in ref]
    if missing:
        names = ", ".join(o.name for o in objs)
        raise _refusal(f"--reference must give every objective ({names}); missing: "
                         + ", ".join(missing))
    best = parse_point(ideal, objs, "--ideal") if ideal is not None else {}
    for o in objs:
        if o.name not in best:
            natural = _natural_best(o)
            if natural is None:
                raise _refusal(f"--ideal is needed for {o} (it has no known best value); "
                                 f"e.g. --ideal {o.name}=VALUE")
            best[o.name] = natural
        worse = ref[o.name] < best[o.name] if o.direction == "max" else ref[o.name] > best[o.name]
        if not worse:
            raise _refusal(f"--reference {o.name}={_num(ref[o.name])} must be worse than the "
                             f"ideal {_num(best[o.name])} ({o}); the box would be empty")
    sign = np.array([-1.0 if o.direction == "max" else 1.0 for o in objs])
    box = Box(objs, sign * np.array([best[o.name] for o in objs]),
              sign * np.array([ref[o.name] for o in objs]), "", given=True)
    too_wide = [o.name for o, w in zip(objs, box.span) if not math.isfinite(w)]
    if too_wide:
        raise _refusal(f"the box from --ideal to --reference is too wide to compute in "
                         f"{', '.join(too_wide)}; give corners within about 1e300 of each other")
    return dataclasses.replace(box, rule=f"given: {box.describe()}")


def hypervolume_curve(trials: Iterable[TrialRecord], objectives: Sequence[str | Objective],
                      reference: np.ndarray | None = None, *,
                      box: Box | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Hypervolume of the evaluated trials after each trial, in proposal (``number``) order.

    x counts the trials that cost a training (COMPLETE, PRUNED, FAIL: :data:`EVALUATED_STATES`);
    y is the hypervolume of the COMPLETE ones among them. The reference point defaults to
    :func:`reference_point` of this study alone: pass a shared one to compare studies. With
    ``box``, y is the fraction of that box instead (:meth:`Box.fraction`; ``reference`` unused).
    """
    ordered = sorted((t for t in trials if t.state in EVALUATED_STATES), key=lambda t: t.number)
    ev = evaluated(ordered, objectives)
    losses = ev.losses
    if box is not None:
        if not np.all(box.span > 0):
            return np.arange(1, len(ordered) + 1), np.zeros(len(ordered))
        losses, reference = box.scaled(ev.losses), np.ones(len(box.reference))
    elif reference is None:
        if not len(ev):
            return np.arange(1, len(ordered) + 1), np.zeros(len(ordered))
        reference = reference_point(ev)
    pos = {id(t): i for i, t in enumerate(ev.trials)}
    ys, front, hv = [], np.zeros((0, ev.losses.shape[1])), 0.0
    for t in ordered:
        i = pos.get(id(t))
        if i is not None:
            p = losses[i]
            if np.all(p < reference) and not np.any(np.all(front <= p, axis=1)):
                keep = ~np.all(p <= front, axis=1)  # drop points p dominates (or equals)
                front = np.vstack([front[keep], p])
                hv = hypervolume(front, reference)
        ys.append(hv)
    return np.arange(1, len(ordered) + 1), np.asarray(ys, dtype=float)


def summarize_curves(curves: Sequence[tuple[np.ndarray, np.ndarray]]) -> dict[str, np.ndarray]:
    """Mean, min, max and standard deviation over curves (seeds), on 1..the shortest length.

    Curves are cut to the shortest rather than carried forward, so every point averages the
    same number of runs (``n``).
    """
    if not curves:
        raise ValueError("no curves to summarize")
    n = min(len(y) for _, y in curves)
    ys = np.stack([np.asarray(y[:n], float) for _, y in curves])
    std = ys.std(axis=0, ddof=1) if len(curves) > 1 else np.zeros(n)
    return {"x": np.arange(1, n + 1), "mean": ys.mean(axis=0), "min": ys.min(axis=0),
            "max": ys.max(axis=0), "std": std, "n": np.full(n, len(curves))}


# --------------------------------------------------------------------------- knee


def knee_point(trials: Iterable[TrialRecord] | Evaluated,
               objectives: Sequence[str | Objective] | None = None) -> TrialRecord | None:
    """The front's knee (module docstring); None when no trial is evaluated."""
    ev = trials if isinstance(trials, Evaluated) else evaluated(trials, objectives or ())
    if not len(ev):
        return None
    idx = np.flatnonzero(non_dominated_sort(ev.losses) == 0)
    f = ev.losses[idx]
    lo, hi = f.min(axis=0), f.max(axis=0)
    span = np.where(hi > lo, hi - lo, 1.0)
    score = ((f - lo) / span).sum(axis=1)
    best = min(range(len(idx)), key=lambda j: (round(float(score[j]), 12),
                                               ev.trials[idx[j]].number))
    return ev.trials[idx[best]]


# --------------------------------------------------------------------------- noise


@dataclass(frozen=True)
class FrontMember:
    trial: TrialRecord
    certain: bool  # no other trial could, within noise, be at least as good in every objective
    tied_with: tuple[int, ...]  # numbers of the trials that could (dominated ones included)


@dataclass(frozen=True)
class NoisyFront:
    """A front read with its noise: certain members, members within noise, and the noise band."""

    members: tuple[FrontMember, ...]  # the front, in :func:`pareto_front` order
    band: tuple[TrialRecord, ...]  # dominated trials no trial *significantly* dominates
    z: float

    @property
    def certain(self) -> list[TrialRecord]:
        return [m.trial for m in self.members if m.certain]

    @property
    def within_noise(self) -> list[TrialRecord]:
        return [m.trial for m in self.members if not m.certain]


def noisy_front(trials: Iterable[TrialRecord] | Evaluated,
                objectives: Sequence[str | Objective] | None = None,
                z: float = DEFAULT_Z, *, band: bool = True) -> NoisyFront:
    """The front split into *certainly non-dominated* members and members *within noise*.

    A front member ``a`` is within noise when some other evaluated trial ``b`` is not
    significantly worse than ``a`` in any objective (module docstring): the data cannot say
    that ``a`` rather than ``b`` belongs on the front. ``band`` holds the dominated trials that
    no trial significantly dominates (significantly better in one objective and not
    significantly worse in any): they might be on the true front. The members cost O(front x
    n); the band O(n^2 k) time in blocks (seconds at 10,000 trials): ``band=False`` skips it
    and leaves ``band`` empty, for callers that only show the members.
    """
    ev = trials if isinstance(trials, Evaluated) else evaluated(trials, objectives or ())
    if not len(ev):
        return NoisyFront((), (), z)
    ranks = non_dominated_sort(ev.losses)
    front = _front_order(ev, np.flatnonzero(ranks == 0))
    members = []
    for a in front:
        sub = ev.subset([a])
        nw = _cross_not_worse(ev, sub, z)[:, 0]  # (n,)
        nw[a] = False
        tied = tuple(ev.trials[b].number for b in np.flatnonzero(nw))
        members.append(FrontMember(ev.trials[a], not tied, tied))
    dominated = np.flatnonzero(ranks > 0) if band else np.zeros(0, dtype=int)
    in_band = []
    for start in range(0, len(dominated), 256):
        block = dominated[start:start + 256]
        sig = _cross_sig_dominates(ev, ev.subset(block), z)  # (n, m)
        for j, a in enumerate(block):
            if not sig[:, j].any():
                in_band.append(ev.trials[a])
    return NoisyFront(tuple(members), tuple(in_band), z)


def _cross_not_worse(ev: Evaluated, sub: Evaluated, z: float) -> np.ndarray:
    """(n, m): ev's trial b is not significantly worse than sub's trial a in every objective."""
    diff = ev.losses[:, None, :] - sub.losses[None, :, :]
    bound = z * np.sqrt(ev.se[:, None, :] ** 2 + sub.se[None, :, :] ** 2)
    return np.all(diff <= bound, axis=2)


def _cross_sig_dominates(ev: Evaluated, sub: Evaluated, z: float) -> np.ndarray:
    """(n, m): ev's trial b significantly dominates sub's trial a."""
    diff = ev.losses[:, None, :] - sub.losses[None, :, :]  # b - a
    bound = z * np.sqrt(ev.se[:, None, :] ** 2 + sub.se[None, :, :] ** 2)
    return np.all(diff <= bound, axis=2) & np.any(-diff > bound, axis=2)


# --------------------------------------------------------------------------- proxy twins


def proxy_twins(trials: Iterable[TrialRecord]) -> dict[int, tuple[int, ...]]:
    """Trial number -> the other COMPLETE trials that trained the same proxy (``metrics
    ["proxy_arch"]``), for the COMPLETE trials that have any.

    The proxy rounds widths and depths, so different full architectures can reduce to one
    trained model (``search_spaces._resolution``): their accuracies are then one measurement,
    and a front that keeps the cheaper of them does so on cost alone."""
    groups: dict[str, list[int]] = defaultdict(list)
    for t in trials:
        proxy = t.metrics.get("proxy_arch") if t.state == "COMPLETE" else None
        if isinstance(proxy, dict) and proxy:
            groups[json.dumps(proxy, sort_keys=True, default=str)].append(t.number)
    return {n: tuple(m for m in sorted(g) if m != n)
            for g in groups.values() if len(g) > 1 for n in g}


def known_cost(trial: TrialRecord, name: str) -> float | None:
    """The trial's ``macs`` or ``params`` column, or, for a trial stopped by ASHA (whose
    columns stay empty: it is no result), the value of that cost its rung ranked it on."""
    value = trial.macs if name == "macs" else trial.params_count if name == "params" else None
    if value is not None:
        return value
    costs = trial.metrics.get("pruned_costs")
    value = costs.get(name) if isinstance(costs, dict) else None
    if not isinstance(value, (int, float)) or isinstance(value, bool):
        return None
    return int(value) if name in ("macs", "params") and float(value).is_integer() else value


def reused_from(trial: TrialRecord) -> int | None:
    """The trial whose proxy result ``trial`` was recorded with instead of training (a proxy
    twin, ``nas._twins``), else None."""
    number = trial.metrics.get("reused_from")
    return number if isinstance(number, int) and not isinstance(number, bool) else None


def twin_notes(members: Iterable[TrialRecord], twins: dict[int, tuple[int, ...]],
               by_number: dict[int, TrialRecord], limit: int = 6) -> list[str]:
    """One line per front member that shares its proxy with other trials: which, at what cost
    and accuracy, and what that means for reading the front."""
    notes = []
    for t in members:
        others = twins.get(t.number, ())
        if not others:
            continue
        shown = [by_number[n] for n in others[:limit] if n in by_number]
        listed = ", ".join(f"#{o.number} ({_gmacs(o.macs)}, acc {_acc(o.accuracy)})"
                           for o in shown) + (" …" if len(others) > limit else "")
        source = reused_from(t)
        how = ("trained the same proxy as" if source is None else
               f"was recorded with #{source}'s proxy result, not trained; same proxy as")
        notes.append(f"#{t.number} ({_gmacs(t.macs)}, acc {_acc(t.accuracy)}) {how} {listed}: "
                     "the proxy does not tell these full models apart, so their accuracies are "
                     "one measurement and only their costs differ")
    return notes


def _gmacs(macs: int | None) -> str:
    return "? GMACs" if macs is None else f"{macs / 1e9:.3f} GMACs"


def _acc(acc: float | None) -> str:
    return "?" if acc is None else f"{acc:.4f}"


# --------------------------------------------------------------------------- design space

_DERIVED = ("mixer_pattern", "depth_pattern", "width_pattern", "act", "norm", "family")


def design_features(trial: TrialRecord) -> dict[str, Any]:
    """The trial's design choices: its sampled parameters plus features of its architecture.

    Derived from the architecture: ``mixer_pattern`` (``conv/conv/attention/attention``),
    ``depth_pattern`` (``3-3-9-3``), ``width_pattern``, ``act`` and ``norm`` (``mixed`` when the
    stages differ), ``family``. Sampled parameters keep their names (``stage3/mixer``).
    """
    out: dict[str, Any] = {}
    arch = trial.arch or {}
    stages = arch.get("stages")
    if isinstance(stages, list) and stages:
        out["mixer_pattern"] = "/".join(str(s.get("mixer")) for s in stages)
        out["depth_pattern"] = "-".join(str(s.get("depth")) for s in stages)
        out["width_pattern"] = "-".join(str(s.get("width")) for s in stages)
        for key in ("act", "norm"):
            values = {str(s.get(key)) for s in stages}
            out[key] = values.pop() if len(values) == 1 else "mixed"
    elif arch:
        out["mixer_pattern"] = str(arch.get("mixer", arch.get("family")))
        out["depth_pattern"] = str(arch.get("depth"))
        out["width_pattern"] = str(arch.get("width"))
        if "act" in arch:
            out["act"] = str(arch["act"])
    if "family" in arch:
        out["family"] = str(arch["family"])
    for k, v in (trial.params or {}).items():
        out[k] = v
    return out


def design_choices(trials: Iterable[TrialRecord], min_values: int = 2) -> list[str]:
    """Features (:func:`design_features`) taking at least ``min_values`` values over ``trials``,
    sampled parameters first (in the order first seen), then derived ones."""
    seen: dict[str, set[str]] = defaultdict(set)
    for t in trials:
        for k, v in design_features(t).items():
            seen[k].add(repr(v))
    names = [k for k in seen if k not in _DERIVED] + [k for k in _DERIVED if k in seen]
    return [k for k in names if len(seen[k]) >= min_values]


@dataclass(frozen=True)
class DesignEDF:
    """Error EDFs of one design choice, one per value, at matched MACs."""

    choice: str
    values: tuple[str, ...]  # the choice's values, most trials first
    errors: dict[str, np.ndarray]  # value -> sorted errors (1 - accuracy)
    cdf: dict[str, np.ndarray]  # value -> weighted EDF at `errors`
    counts: dict[str, int]  # value -> trials used
    dropped: int  # trials outside the MACs bins every value shares
    bins: int


def edf(errors: Sequence[float], weights: Sequence[float] | None = None
        ) -> tuple[np.ndarray, np.ndarray]:
    """The (weighted) empirical distribution function: sorted errors and F at each."""
    e = np.asarray(errors, dtype=float)
    w = np.ones_like(e) if weights is None else np.asarray(weights, dtype=float)
    order = np.argsort(e, kind="stable")
    e, w = e[order], w[order]
    total = w.sum()
    return e, (np.cumsum(w) / total if total > 0 else np.zeros_like(e))


def _label(value: Any) -> str:
    return value if isinstance(value, str) else re.sub(r"\.0$", "", repr(value))


def design_edfs(trials: Iterable[TrialRecord], choice: str, *, bins: int = 8,
                metric: str = "accuracy") -> DesignEDF:
    """Error EDFs split by ``choice`` at matched MACs ("Designing Network Design Spaces", 2020).

    Errors are ``1 - accuracy`` of COMPLETE trials. MACs are matched by reweighting: log10(MACs)
    is cut into ``bins`` equal bins; only bins where every value of the choice has trials are
    kept, and inside each kept bin every value's trials share the same total weight, so each
    value's EDF is taken over the same MACs distribution. A design choice then shows its effect
    on error, not on size.
    """
    rows = []
    for t in trials:
        if t.state != "COMPLETE" or t.macs is None or not t.macs > 0:
            continue
        acc = (getattr(t, metric) if metric in ("accuracy", "test_accuracy")
               else t.metrics.get(metric))
        if acc is None or not math.isfinite(acc):
            continue
        v = design_features(t).get(choice)
        if v is None:
            continue
        rows.append((_label(v), 1.0 - float(acc), math.log10(t.macs)))
    if not rows:
        return DesignEDF(choice, (), {}, {}, {}, 0, bins)
    labels = [r[0] for r in rows]
    counts_all = defaultdict(int)
    for lab in labels:
        counts_all[lab] += 1
    values = tuple(sorted(counts_all, key=lambda v: (-counts_all[v], v)))
    logm = np.array([r[2] for r in rows])
    lo, hi = logm.min(), logm.max()
    b = np.zeros(len(rows), dtype=int) if hi <= lo else \
        np.minimum(((logm - lo) / (hi - lo) * bins).astype(int), bins - 1)
    per = defaultdict(int)
    for lab, bi in zip(labels, b):
        per[(lab, bi)] += 1
    shared = [bi for bi in range(bins) if all(per[(v, bi)] for v in values)]
    errors, cdf, counts = {}, {}, {}
    dropped = 0
    for v in values:
        e, w = [], []
        for (lab, err, _), bi in zip(rows, b):
            if lab != v:
                continue
            if bi not in shared:
                dropped += 1
                continue
            e.append(err)
            w.append(1.0 / per[(v, bi)])
        errors[v], cdf[v] = edf(e, w)
        counts[v] = len(e)
    return DesignEDF(choice, values, errors, cdf, counts, dropped, bins)


def param_importance(trials: Iterable[TrialRecord], objective: str | Objective = "accuracy:max",
                     *, evaluator: str = "fanova", seed: int = 0) -> dict[str, float]:
    """Importance of each sampled parameter for ``objective`` over the COMPLETE trials.

    Optuna's evaluators (``fanova``: fANOVA on a random forest, seeded; ``ped_anova``:
    PED-ANOVA) on an in-memory copy of the trials: numeric parameters become numeric
    distributions over their observed range, others categorical. Importances sum to 1, largest
    first; {} with fewer than 2 trials, no parameter that varies, or an objective that does not
    (every trial with the same value: nothing to explain, and fANOVA's forest has no variance).
    """
    import optuna
    from optuna.distributions import (
        CategoricalDistribution,
        FloatDistribution,
        IntDistribution,
    )

    (obj,) = _objectives([objective])
    ev = evaluated(trials, [obj])
    if len(ev) < 2 or np.ptp(ev.losses[:, 0]) == 0:
        return {}
    values: dict[str, list[Any]] = defaultdict(list)
    for t in ev.trials:
        for k, v in (t.params or {}).items():
            values[k].append(v)
    dists = {}
    for k, vs in values.items():
        if len(vs) < len(ev) or len({repr(v) for v in vs}) < 2:
            continue  # absent from some trials (conditional) or constant: nothing to explain
        if all(isinstance(v, int) and not isinstance(v, bool) for v in vs):
            dists[k] = IntDistribution(min(vs), max(vs))
        elif all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in vs):
            dists[k] = FloatDistribution(float(min(vs)), float(max(vs)))
        else:
            dists[k] = CategoricalDistribution(sorted({_label(v) for v in vs}))
    if not dists:
        return {}
    verbosity = optuna.logging.get_verbosity()
    optuna.logging.set_verbosity(optuna.logging.WARNING)  # no "A new study created" line
    try:
        study = optuna.create_study(
            direction="maximize" if obj.direction == "max" else "minimize")
    finally:
        optuna.logging.set_verbosity(verbosity)
    made = []
    for t, loss in zip(ev.trials, ev.losses[:, 0]):
        params = {k: (_label(t.params[k]) if isinstance(d, CategoricalDistribution)
                      else t.params[k]) for k, d in dists.items()}
        made.append(optuna.trial.create_trial(params=params, distributions=dists,
                                              value=float(-loss if obj.direction == "max"
                                                          else loss)))
    study.add_trials(made)
    if evaluator == "fanova":
        ev_obj = optuna.importance.FanovaImportanceEvaluator(seed=seed)
    elif evaluator == "ped_anova":
        ev_obj = optuna.importance.PedAnovaImportanceEvaluator()
    else:
        raise ValueError(f"unknown importance evaluator {evaluator!r}; allowed: fanova, "
                         "ped_anova")
    raw = optuna.importance.get_param_importances(study, evaluator=ev_obj, normalize=True)
    return {k: float(v) for k, v in raw.items()}
