"""A learned pre-screen: candidates ranked by the hypervolume a study model expects them to add.

``--prescreen surrogate:K`` asks the sampler for K feasible, new candidates per trial slot and
trains only the one this screen scores highest. It costs no training: a ridge regression on the
study's own completed trials (features: the architecture's fields, flattened; one-hot for
names, values for numbers, plus the log of its analytic costs) predicts each trained objective
(accuracy, ...) with a predictive standard deviation (the leave-one-out residual scale, widened
for candidates far from what was trained: Bayesian linear regression's formula). The objectives
known before training (MACs, params, activations) are computed exactly. A candidate's score is
its expected hypervolume improvement over the current front of completed trials, by Monte Carlo
over the predictive distribution (fixed draws, so candidates are compared on common random
numbers), with the objectives scaled by the observed ranges.

Until ``MIN_OBSERVATIONS`` trials have completed there is nothing to learn from: every score is
0 and the first candidate asked (the sampler's own choice) is trained, as without a screen.

Measured basis (``benchmarks/bench_surrogate.py``, README "Early stopping"): on
``hybrid_conv_attn`` this model fitted on 40 completed trials ranks unseen ones with Kendall tau
0.53 over all (MACs alone: 0.38) and 0.37 within MACs bins (MACs: 0.05); no zero-cost proxy
beats MACs there. Only completed trials are learned from: under ``--scheduler asha`` that is the
trials that survived every rung, a biased sample.
Under ASHA on the headline search (seeds 1 and 3) it did not improve the front on the held-out
test split, so it is an option, not a default.
"""

from __future__ import annotations

import math
import random
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import numpy as np

from nas._scheduler import KNOWN_COSTS, known_costs
from nas.models.arch import to_dict
from nas.results import Objective

__all__ = ["SurrogateScreen", "MIN_OBSERVATIONS", "features"]

MIN_OBSERVATIONS = 8  # completed trials before the screen scores anything
DRAWS = 64  # Monte Carlo draws of the predicted objectives per candidate
REF = 1.1  # the reference point in scaled units (observed range 0 ... 1), at least
REF_DRAWS = 256  # random feasible architectures that find a known cost's worst value
ALPHAS = tuple(10.0 ** e for e in np.arange(-3.0, 3.01, 0.5))  # ridge strengths tried (LOO)


def features(arch: Mapping[str, Any], costs: Mapping[str, float]) -> dict[str, float]:
    """Named numeric features of an architecture dict: every leaf field, and log costs.

    Numbers become one feature named by their path (``stages.2.depth``); strings and booleans
    become a one-hot feature ``path=value``. Lists are indexed, nested dicts joined by dots.
    """
    out: dict[str, float] = {f"log_{k}": math.log(max(float(v), 1.0)) for k, v in costs.items()}

    def walk(prefix: str, value: Any) -> None:
        if isinstance(value, Mapping):
            for k in sorted(value):
                walk(f"{prefix}.{k}" if prefix else str(k), value[k])
        elif isinstance(value, (list, tuple)):
            for i, v in enumerate(value):
                walk(f"{prefix}.{i}", v)
        elif isinstance(value, (bool, str)) or value is None:
            out[f"{prefix}={value}"] = 1.0
        elif isinstance(value, (int, float)) and math.isfinite(value):
            out[prefix] = float(value)

    walk("", arch)
    return out


class _Ridge:
    """Ridge regression with the strength chosen by exact leave-one-out error, and the
    predictive standard deviation ``s * sqrt(1 + x' (X'X + a I)^-1 x)`` (standardized X)."""

    def __init__(self, X: np.ndarray, y: np.ndarray) -> None:
        self.mu, sd = X.mean(axis=0), X.std(axis=0)
        self.sd = np.where(sd > 0, sd, 1.0)
        Z = (X - self.mu) / self.sd
        self.y0 = float(y.mean())
        yc = y - self.y0
        n, d = Z.shape
        best = None
        for a in ALPHAS:
            A = Z.T @ Z + a * np.eye(d)
            Ainv = np.linalg.inv(A)
            w = Ainv @ Z.T @ yc
            H = np.einsum("ij,jk,ik->i", Z, Ainv, Z)  # leverages (diag of the hat matrix)
            loo = (yc - Z @ w) / np.maximum(1.0 - H - 1.0 / n, 1e-6)
            err = float(np.mean(loo ** 2))
            if best is None or err < best[0]:
                best = (err, a, w, Ainv)
        err, self.alpha, self.w, self.Ainv = best
        self.scale = math.sqrt(err)  # leave-one-out residual RMS: the noise and model error

    def predict(self, X: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        Z = (X - self.mu) / self.sd
        spread = np.einsum("ij,jk,ik->i", Z, self.Ainv, Z)
        return self.y0 + Z @ self.w, self.scale * np.sqrt(1.0 + np.maximum(spread, 0.0))


class SurrogateScreen:
    """``screen(arch) -> score`` for the searcher's pre-screen; ``observe`` adds a result.

    Args:
        objectives: the study's; those in ``KNOWN_COSTS`` are computed, the others learned.
        seed: the Monte Carlo draws' seed.
        cost_of: architecture -> {cost name: value} (default: the analytic cost model).
        space: the search space; its costliest (for a ``max`` cost: cheapest) of
            ``REF_DRAWS`` random draws is the reference point of each known cost.
    """

    def __init__(self, objectives: Sequence[Objective], seed: int = 0,
                 cost_of=None, space=None) -> None:
        self.objectives = tuple(objectives)
        self.learned = [i for i, o in enumerate(self.objectives) if o.name not in KNOWN_COSTS]
        self.cost_of = cost_of or known_costs
        self.rows: list[tuple[dict[str, float], list[float]]] = []  # features, values
        self.draws = np.random.default_rng(seed).standard_normal((DRAWS, len(self.learned)))
        self._model = None  # refit lazily after new observations
        # the reference point of each known cost: the worst of the space (its most expensive of
        # REF_DRAWS feasible draws), so that a candidate costlier than anything trained so far
        # can still add hypervolume; without a space, the worst observed (+10% of the range)
        self.cost_ref: dict[str, float] = {}
        if space is not None:
            rng = random.Random(seed)
            draws = []  # (the same draws as REF_DRAWS calls of space.sample_random(rng))
            for _ in range(REF_DRAWS * 100):  # a bound for a space with a tiny feasible share
                arch, _ = space.sample_random(rng, feasible=False)
                if not space.violations(arch):
                    draws.append(self.cost_of(to_dict(arch)))
                    if len(draws) == REF_DRAWS:
                        break
            if not draws:  # none in 25,600 draws: the space's local search finds one
                draws.append(self.cost_of(to_dict(space.sample_random(rng)[0])))
            self.cost_ref = {o.name: (max if o.direction == "min" else min)(
                d[o.name] for d in draws) for o in self.objectives if o.name in KNOWN_COSTS}

    @property
    def ready(self) -> bool:
        """Whether enough trials completed to score; until then the searcher asks one candidate."""
        return len(self.rows) >= MIN_OBSERVATIONS

    def observe(self, arch, values: Sequence[float | None]) -> None:
        """Record a completed trial's objective values (``None`` or non-finite: skipped)."""
        if any(v is None or not math.isfinite(v) for v in values):
            return
        self.rows.append((self._features(arch)[0], [float(v) for v in values]))
        self._model = None

    def observe_all(self, pairs: Iterable[tuple[Any, Sequence[float | None]]]) -> None:
        for arch, values in pairs:
            self.observe(arch, values)

    def _features(self, arch) -> tuple[dict[str, float], dict[str, float]]:
        """(features, known costs) of ``arch`` (an ArchSpec or its dict), costed once."""
        d = arch if isinstance(arch, Mapping) else to_dict(arch)
        costs = self.cost_of(d)
        return features(d, costs), costs

    def _fit(self):
        if self._model is None:
            names = sorted({k for f, _ in self.rows for k in f})
            X = np.array([[f.get(k, 0.0) for k in names] for f, _ in self.rows])
            V = np.array([v for _, v in self.rows])
            models = [_Ridge(X, V[:, i]) for i in self.learned]
            # signs: every objective as "lower is better" for the hypervolume
            sign = np.array([-1.0 if o.direction == "max" else 1.0 for o in self.objectives])
            P = V * sign
            lo, hi = P.min(axis=0), P.max(axis=0)
            span = np.where(hi > lo, hi - lo, 1.0)
            ref = np.full(len(self.objectives), REF)
            for i, o in enumerate(self.objectives):
                if o.name in self.cost_ref:
                    ref[i] = max(REF, (self.cost_ref[o.name] * sign[i] - lo[i]) / span[i])
            self._model = (names, models, sign, lo, span, ref, self._front((P - lo) / span))
        return self._model

    @staticmethod
    def _front(points: np.ndarray) -> np.ndarray:
        keep = [i for i, p in enumerate(points)
                if not any(np.all(q <= p) and np.any(q < p) for q in points)]
        return points[keep]

    def __call__(self, arch) -> float:
        """Expected hypervolume improvement of ``arch`` over the front of completed trials
        (objectives scaled to the observed ranges; 0 until ``MIN_OBSERVATIONS``)."""
        if not self.ready:
            return 0.0
        from optuna._hypervolume import compute_hypervolume

        names, models, sign, lo, span, ref, front = self._fit()
        f, costs = self._features(arch)
        x = np.array([[f.get(k, 0.0) for k in names]])
        point = np.zeros(len(self.objectives))
        for i, o in enumerate(self.objectives):
            if o.name in KNOWN_COSTS:
                point[i] = costs[o.name]
        draws = np.repeat(point[None, :], DRAWS, axis=0)
        for j, (i, m) in enumerate(zip(self.learned, models)):
            mean, sd = m.predict(x)
            draws[:, i] = mean[0] + sd[0] * self.draws[:, j]
        if not np.isfinite(draws).all():  # a prediction overflowed: no evidence of a gain
            return 0.0
        draws = np.minimum((draws * sign - lo) / span, ref)  # past the box: adds nothing
        base = compute_hypervolume(front, ref)
        gains = [compute_hypervolume(np.vstack([front, d[None, :]]), ref) - base
                 for d in draws]
        return float(np.mean(np.maximum(gains, 0.0)))
