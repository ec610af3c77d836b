"""Multi-objective ASHA: stop a trial at a rung unless its (accuracy, cost) is good enough.

Asynchronous successive halving (Li et al. 2020, https://arxiv.org/abs/1810.05934) with the
ranking replaced by non-dominated sorting, so a cheap trial is not killed for being less
accurate than an expensive one. Rungs are the epochs ``r_min * eta**k`` below the last epoch,
and with ``late`` (the search's default) one epoch before the end as well; ``r_min`` may be a
fraction (1/3: rungs at 1/3, 1 and, late, 2 of 3 epochs), and the trainer validates
mid-epoch at such rungs (``TrainConfig.eval_at``; a trial validates at its rungs and its last
epoch only, :func:`validation_points`). When a trial reports a rung's epoch, it is
ranked among every trial that reached that rung so far on (its validation loss there,
minimised, or with ``metric="val_accuracy"`` its accuracy, maximised) and the cost objectives
of the study that are known before training (full-model MACs, params, activations; counted
analytically from the trial's architecture). The loss is the default: early in a run it orders
trials by their final result better than the accuracy does (``benchmarks/bench_rungs.py``).
It continues when

- fewer than ``eta`` trials reached the rung (asynchronous ASHA promotes early arrivals), or
- it is on the first non-dominated front (never stopped), or
- its front starts within the top ``max(1, n // eta)`` of the ``n`` trials (a whole front is
  kept: no tie-breaking inside a front).

With ``--repeats K`` only repeat 0's curve is judged; once repeat 0 passed every rung the later
repeats run in full. The decisions are kept in :attr:`MultiObjectiveASHA.stopped`, which the
searcher (Optuna: PRUNED) and the recorder (our table: PRUNED) read when Tune ends the trial.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from typing import Any

from ray.tune.schedulers import FIFOScheduler, TrialScheduler

from nas._trial_errors import lost_reason
from nas.models import analytic_cost, from_dict
from nas.results import DONE, RUNG_METRICS, Objective, TrialPruned

__all__ = ["Fifo", "MultiObjectiveASHA", "rungs", "validation_points", "nondominated_ranks",
           "rung_decision", "KNOWN_COSTS", "RUNG_METRICS", "known_costs"]

#: objectives known before training, as (name -> attribute of ``analytic_cost``)
KNOWN_COSTS = {"macs": "macs", "params": "params", "acts": "acts"}


def rungs(epochs: int, r_min: float = 1, eta: int = 3, late: bool = False) -> tuple[float, ...]:
    """The epochs a trial is judged at: ``r_min * eta**k`` for k >= 0, below ``epochs``.

    ``r_min`` may be a fraction of an epoch (0.25: a quarter of the first epoch); a rung that
    lands on a whole epoch is that int (``rungs(3, 1/3) == (1/3, 1)``). ``late`` adds a last
    rung one epoch before the end when the ladder stops below it (``rungs(3, 1/3, late=True)
    == (1/3, 1, 2)``): by then the ranking is nearly the final one (Kendall tau 0.81 against the
    final accuracy at epoch 2 of 3, ``benchmarks/bench_rungs.py``), and a trial stopped there
    saves its last epoch and its final evaluations.
    """
    out, k = [], 0
    while True:
        r = r_min * eta ** k
        if abs(r - round(r)) < 1e-9:
            r = int(round(r))
        if r >= epochs:
            break
        out.append(r)
        k += 1
    if late and epochs - 1 > max(out, default=0):
        out.append(epochs - 1)
    return tuple(out)


def validation_points(rung_epochs: Sequence[float], epochs: int) -> tuple[float, ...]:
    """Where a trial validates (``TrainConfig.eval_at``): at every rung (mid-epoch for a
    fraction) and after its last epoch; not after the other epochs, which nothing reads."""
    return tuple(sorted({float(r) for r in rung_epochs} | {float(epochs)}))


def _dominates(a: Sequence[float], b: Sequence[float]) -> bool:
    """``a`` is at least as good as ``b`` everywhere and better somewhere (all maximised)."""
    return all(x >= y for x, y in zip(a, b)) and any(x > y for x, y in zip(a, b))


def nondominated_ranks(points: Sequence[Sequence[float]]) -> list[int]:
    """The front of each point (0 = non-dominated), every coordinate maximised."""
    n = len(points)
    ranks = [-1] * n
    left, front = set(range(n)), 0
    while left:
        current = {i for i in left
                   if not any(_dominates(points[j], points[i]) for j in left if j != i)}
        for i in current:
            ranks[i] = front
        left -= current
        front += 1
    return ranks


def rung_decision(points: Sequence[Sequence[float]], index: int,
                  eta: int) -> tuple[bool, int, int]:
    """Whether ``points[index]`` continues past a rung holding ``points`` (all maximised).

    Returns (continue, its front, how many of the rung's trials are kept at most).
    """
    n = len(points)
    keep = max(1, n // eta)
    if n < eta:
        return True, 0, n
    ranks = nondominated_ranks(points)
    mine = ranks[index]
    better = sum(r < mine for r in ranks)  # trials on strictly better fronts
    return mine == 0 or better < keep, mine, keep


class Fifo(FIFOScheduler):
    """Tune's FIFO scheduler that also notes the trials whose Ray worker or node went away.

    Tune tells the scheduler of a failed trial before the searcher, so the searcher can read
    ``lost`` (Ray trial id -> one-line reason, :func:`nas._trial_errors.lost_reason`) and
    retry the architecture instead of recording a failure of it.
    """

    def __init__(self) -> None:
        super().__init__()
        self.lost: dict[str, str] = {}

    def on_trial_error(self, tune_controller, trial) -> None:
        reason = lost_reason(trial)
        if reason is not None:
            self.lost[trial.trial_id] = reason
        super().on_trial_error(tune_controller, trial)


class MultiObjectiveASHA(Fifo):
    """Tune scheduler: trials run in submission order, and a rung may stop one (see module).

    Args:
        objectives: the study's; those in :data:`KNOWN_COSTS` are ranked with ``metric``.
        epochs: a trial's training epochs (rungs are below it).
        r_min, eta: the first rung (epochs; a fraction allowed) and the reduction factor.
        late: also a rung one epoch before the last (see :func:`rungs`).
        metric: the validation result a rung ranks on, one of :data:`RUNG_METRICS`.
        cost_of: architecture dict -> {name: value} of the known costs (tests replace it).
    """

    def __init__(self, objectives: Sequence[Objective], epochs: int, r_min: float = 1,
                 eta: int = 3, metric: str = "val_loss",
                 cost_of: Callable[[dict[str, Any]], dict[str, float]] | None = None,
                 late: bool = False) -> None:
        super().__init__()
        if metric not in RUNG_METRICS:
            raise ValueError(f"metric must be one of {', '.join(RUNG_METRICS)}; got {metric!r}")
        self.eta, self.rung_metric = eta, metric
        self.rungs = rungs(epochs, r_min, eta, late)
        self.costs = tuple(o for o in objectives if o.name in KNOWN_COSTS)
        self.cost_of = cost_of or known_costs
        self.reached: dict[int, dict[str, tuple[float, ...]]] = {r: {} for r in self.rungs}
        self.stopped: dict[str, TrialPruned] = {}  # Ray trial id -> why it was stopped
        self._costs: dict[str, dict[str, float]] = {}

    def __getstate__(self) -> dict:
        return {}  # Tune may pickle its scheduler for its own restore, which we do not use

    def on_trial_result(self, tune_controller, trial, result: dict) -> str:
        epoch = result.get("epoch")
        if result.get(DONE) or result.get("repeat", 0) != 0 or epoch not in self.reached:
            return TrialScheduler.CONTINUE
        value, acc = result.get(self.rung_metric), result.get("val_accuracy")
        if value is None or acc is None:  # no per-epoch validation: nothing to judge on
            return TrialScheduler.CONTINUE
        costs = self._costs.setdefault(trial.trial_id, self.cost_of(trial.config["arch"]))
        point = self._point(value, costs)
        at = self.reached[epoch]
        at[trial.trial_id] = point
        ids = list(at)
        go, front, keep = rung_decision([at[i] for i in ids], ids.index(trial.trial_id),
                                        self.eta)
        if go:
            return TrialScheduler.CONTINUE
        self.stopped[trial.trial_id] = TrialPruned(
            epoch=epoch, val_accuracy=float(acc), front=front, reached=len(ids), kept=keep,
            costs={o.name: costs[o.name] for o in self.costs},
            val_loss=result.get("val_loss"))
        return TrialScheduler.STOP

    def _point(self, value: float, costs: dict[str, float]) -> tuple[float, ...]:
        """A trial's place at a rung: (rung metric, known costs), every coordinate maximised."""
        value = float(value) if RUNG_METRICS[self.rung_metric] == "max" else -float(value)
        if value != value:  # NaN ranks last (a diverging run is stopped by its trainer)
            value = -float("inf")
        return (value, *(costs[o.name] if o.direction == "max" else -costs[o.name]
                         for o in self.costs))

    def seed_rungs(self, trials: Iterable[Any]) -> int:
        """Put the rung values of a study's earlier trials (stored records: ``arch``,
        ``metrics["curve"]``) in the rungs, so a resumed search ranks its trials against
        them as the first run did; returns how many rung values were added. A trial whose
        curve has no value at a rung (trained without validating there) adds none there."""
        added = 0
        for t in trials:
            curves = (t.metrics or {}).get("curve") or []
            points = {}
            for e in (curves[0] if curves else []):
                epoch, value = e.get("epoch"), e.get(self.rung_metric)
                rung = next((r for r in self.rungs if epoch is not None
                             and abs(float(epoch) - float(r)) < 1e-9), None)
                if rung is not None and value is not None:
                    points[rung] = value
            if not points:
                continue
            costs = self.cost_of(t.arch)
            for rung, value in points.items():
                self.reached[rung][f"stored:{t.number}"] = self._point(value, costs)
                added += 1
        return added

    def on_trial_complete(self, tune_controller, trial, result: dict) -> None:
        self._costs.pop(trial.trial_id, None)

    def on_trial_error(self, tune_controller, trial) -> None:
        super().on_trial_error(tune_controller, trial)
        self._costs.pop(trial.trial_id, None)
        if trial.trial_id in self.lost:  # retried as a new trial: its rung values leave with it
            for at in self.reached.values():
                at.pop(trial.trial_id, None)

    def debug_string(self) -> str:
        return (f"Multi-objective ASHA: rungs at epochs {list(self.rungs)}, eta {self.eta}, "
                f"ranked on {self.rung_metric}, "
                f"{len(self.stopped)} trial(s) stopped")


def known_costs(arch: dict[str, Any]) -> dict[str, float]:
    """The objectives known before training, from the analytic cost model of ``arch`` (a dict)."""
    cost = analytic_cost(from_dict(arch))
    return {name: float(getattr(cost, attr)) for name, attr in KNOWN_COSTS.items()}
