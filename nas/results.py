"""What a trial reports and what is stored: one typed result, one frozen objective list.

A Ray trial ends with :meth:`TrialResult.report` (or :meth:`TrialFailure.report`); the driver
reads it back with :func:`final_result` and stores it with :meth:`TrialResult.columns` and
:meth:`TrialResult.metrics`. Objectives are names of numeric fields of :class:`TrialResult`
with a direction; they are stored with the study and read by the driver, Optuna's study
directions, de-duplication, the database and the Pareto front. A zero-cost proxy's score at
initialisation (``TrialResult.zero_cost``) is an objective too, named ``zc_<proxy>``.
"""

from __future__ import annotations

import dataclasses
import math
import numbers
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from nas_errors import ConfigError, did_you_mean

__all__ = ["TrialResult", "TrialFailure", "TrialPruned", "Objective", "DEFAULT_OBJECTIVES",
           "final_result", "parse_objectives", "objective_names", "parse_zero_cost",
           "zero_cost_implied", "ZC_PREFIX", "epoch_text", "RUNG_METRICS", "worker_of",
           "node_label", "worker_label", "numeric_fields", "HELD_OUT", "parse_search_objectives"]

#: what an ASHA rung ranks a trial's learning on, with the direction that is better
RUNG_METRICS = {"val_loss": "min", "val_accuracy": "max"}

DONE = "done_training"  # key of the final report of a trial (per-epoch reports lack it)
#: TrialResult fields stored in their own `nas_trials` column (field -> column); the rest go to
#: the trial's `metrics` JSON under their own names
ZC_PREFIX = "zc_"  # objective zc_<name>: the zero-cost proxy <name>'s score at initialisation
COLUMNS = {"accuracy": "accuracy", "accuracy_se": "accuracy_se", "test_accuracy": "test_accuracy",
           "macs": "macs", "params": "params_count"}


@dataclass(frozen=True)
class TrialResult:
    """Everything a finished trial measured: the full model's cost and its proxy's accuracy."""

    accuracy: float  # mean validation top-1 of the proxy over repeats (selects), in [0, 1]
    accuracy_se: float  # standard error of `accuracy` (binomial, plus seed spread)
    test_accuracy: float | None  # mean test top-1, reported beside `accuracy`, never selects
    macs: int  # full model at deployment resolution, batch 1
    params: int  # full model parameters (stored in the `params_count` column)
    acts: int  # full model activations
    proxy_macs: int  # reduced proxy that was trained
    proxy_params: int
    accuracy_std: float | None  # sample std of the validation accuracy over repeats (K >= 2)
    binomial_se: float  # val-set noise at the mean accuracy
    test_accuracy_se: float | None
    accuracies: tuple[float, ...]  # per-repeat validation accuracy
    test_accuracies: tuple[float, ...]  # per-repeat test accuracy
    repeats: int  # proxy trainings (independent seeds)
    val_loss: float  # mean validation cross-entropy, nats
    num_val: int  # validation examples
    num_test: int  # test examples
    final_train_loss: float  # mean over repeats of the last epoch's training loss, nats
    train_loss_sum: float  # mean over repeats of the sum of epoch losses (SoTL), nats
    steps: int  # optimizer steps, all repeats
    train_seconds: float  # training loops, all repeats, seconds
    eval_seconds: float  # evaluations, all repeats, seconds
    count_seconds: float  # tracing the full model's cost, seconds
    images_per_second: float  # mean training throughput
    total_seconds: float  # the whole trial, seconds
    device: str  # "cuda" or "cpu"
    curve: list[list[dict[str, Any]]]  # per repeat, per epoch: EpochStats as dicts
    latency_ms: float | None = None  # full model, batch 1, median forward on the trial's device;
    #                                  measured only when an objective names it
    zero_cost: dict[str, float] = field(default_factory=dict)  # proxy name -> score of the
    #     proxy model at initialisation (repeat 0's seeded init, one fixed train batch, before
    #     training); computed for --zero-cost names and zc_<name> objectives
    zero_cost_seconds: float = 0.0  # computing `zero_cost` (batch, build, all scores), seconds
    zero_cost_errors: dict[str, str] = field(default_factory=dict)  # proxy name -> why it gave
    #     no finite score (then absent from `zero_cost`; only for proxies no objective names)
    resumed_epochs: tuple[int, ...] = ()  # per repeat, epochs restored from the checkpoint an
    #     earlier, interrupted attempt at this architecture saved (0: trained from scratch)

    def report(self) -> dict[str, Any]:
        """The final ``tune.report`` of a trial."""
        return {DONE: True, **dataclasses.asdict(self)}

    def columns(self) -> dict[str, Any]:
        """The values with their own database columns (``Store.finish_trial`` keywords)."""
        return {column: getattr(self, name) for name, column in COLUMNS.items()}

    def metrics(self) -> dict[str, Any]:
        """Everything else, stored as the trial's ``metrics`` JSON.

        Each zero-cost score is also stored flat as ``zc_<name>``, so that every objective is
        one column or one ``metrics`` key (what the Pareto front and de-duplication read).
        """
        out = {k: v for k, v in dataclasses.asdict(self).items() if k not in COLUMNS}
        out.update({ZC_PREFIX + name: score for name, score in self.zero_cost.items()})
        return out

    @classmethod
    def from_record(cls, record: Any) -> TrialResult | None:
        """The result a stored COMPLETE trial holds (its columns and ``metrics``), or None when
        its row lacks a field (one written by an older version)."""
        values: dict[str, Any] = {}
        for f in dataclasses.fields(cls):
            if f.name in COLUMNS:
                values[f.name] = getattr(record, COLUMNS[f.name])
            elif f.name in record.metrics:
                value = record.metrics[f.name]
                values[f.name] = tuple(value) if isinstance(value, list) and f.name in (
                    "accuracies", "test_accuracies", "resumed_epochs") else value
            elif f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
                return None
        if None in (values["accuracy"], values["macs"], values["params"]):
            return None
        return cls(**values)

    def value(self, name: str) -> float:
        if name.startswith(ZC_PREFIX):
            return float(self.zero_cost[name[len(ZC_PREFIX):]])
        return float(getattr(self, name))


@dataclass(frozen=True)
class TrialFailure:
    """A trial whose measurement cannot be trusted (e.g. diverged training): stored as FAIL."""

    failure: str  # the reason, one line
    curve: list[list[dict[str, Any]]]  # per repeat, per epoch, up to the failure
    total_seconds: float

    def report(self) -> dict[str, Any]:
        return {DONE: True, **dataclasses.asdict(self)}


@dataclass(frozen=True)
class TrialPruned:
    """A trial a multi-fidelity scheduler stopped at a rung: stored as PRUNED, never in a front.

    Its validation accuracy is partial (after ``epoch`` epochs): it goes to ``metrics`` under
    ``pruned_val_accuracy``, never to the ``accuracy`` column, so it never looks complete.
    """

    epoch: float  # the rung: repeat 0's epochs trained when it was stopped (0.25: mid-epoch)
    val_accuracy: float  # validation top-1 after that epoch
    front: int  # its non-dominated front among the trials at the rung (0 = first)
    reached: int  # trials that had reached the rung when it was judged (itself included)
    kept: int  # at most this many of them continue (the top 1/eta, whole fronts)
    costs: dict[str, float] = field(default_factory=dict)  # known costs it was ranked on
    val_loss: float | None = None  # validation cross-entropy after that epoch, nats

    @property
    def reason(self) -> str:
        loss = f"val loss {self.val_loss:.4f}, " if self.val_loss is not None else ""
        return (f"pruned at epoch {epoch_text(self.epoch)}: {loss}val acc "
                f"{self.val_accuracy:.4f} on front {self.front + 1} of {self.reached} trials at "
                f"the rung (top {self.kept} kept)")

    def metrics(self) -> dict[str, Any]:
        """What is stored in the trial's ``metrics`` JSON (the curve is added by the caller)."""
        return {"pruned_at_epoch": self.epoch, "pruned_val_accuracy": self.val_accuracy,
                "pruned_val_loss": self.val_loss, "pruned_front": self.front,
                "pruned_rung_size": self.reached, "pruned_rung_kept": self.kept,
                "pruned_costs": dict(self.costs)}


def epoch_text(epoch: float) -> str:
    """An epoch count as people write it: ``1``, ``0.333``."""
    return str(int(epoch)) if epoch == int(epoch) else f"{epoch:.3g}"


def final_result(report: Mapping[str, Any] | None) -> TrialResult | TrialFailure | None:
    """The typed final report of a trial, or None when the trial never sent one."""
    if not report or not report.get(DONE):
        return None
    cls = TrialFailure if report.get("failure") else TrialResult
    names = [f.name for f in dataclasses.fields(cls)]
    for name in ("zero_cost", "zero_cost_errors") if cls is TrialResult else ():
        if name not in report:
            # Tune hands searchers flattened results: {"zero_cost/synflow": 1.0}, {} dropped
            prefix = name + "/"
            report = {**report, name: {k[len(prefix):]: v for k, v in report.items()
                                       if k.startswith(prefix)}}
    missing = [n for n in names if n not in report]
    if missing:
        return None
    return cls(**{n: report[n] for n in names})


def worker_of(result: Mapping) -> dict:
    """Where a trial ran, from its first result: Tune fills in ``hostname``, ``node_ip`` and
    ``pid``; the trainable adds ``ray_node_id`` (several Ray nodes can share a host) and the
    GPU ids Ray gave it (``gpu_ids``, the node's numbering; none without --gpus-per-trial)."""
    return {"host": result.get("hostname"), "node_ip": result.get("node_ip"),
            "pid": result.get("pid"), "ray_node_id": result.get("ray_node_id"),
            "gpu_ids": list(result.get("ray_gpu_ids") or [])}


def node_label(where: Mapping) -> str:
    """One worker node, as the end-of-run line names it: ``host (ip) node 1a2b3c4d``."""
    ip = f" ({where['node_ip']})" if where.get("node_ip") else ""
    node = f" node {where['ray_node_id'][:8]}" if where.get("ray_node_id") else ""
    return f"{where.get('host') or '?'}{ip}{node}"


def worker_label(where: Mapping) -> str:
    """Where one trial ran: its node, then its GPUs if Ray gave it any (``..., GPU 1``)."""
    gpus = where.get("gpu_ids") or []
    return node_label(where) + (f", GPU {','.join(map(str, gpus))}" if gpus else "")


# --------------------------------------------------------------------------- objectives


def numeric_fields() -> tuple[str, ...]:
    """The :class:`TrialResult` fields an objective may name (besides ``zc_<proxy>``)."""
    hints = {f.name: f.type for f in dataclasses.fields(TrialResult)}
    return tuple(n for n, t in hints.items() if t in ("int", "float", "float | None"))


@dataclass(frozen=True)
class Objective:
    """One objective of a study: a numeric :class:`TrialResult` field and its direction."""

    name: str  # e.g. "accuracy", "macs", "params", "latency_ms", "val_loss", "zc_synflow"
    direction: str  # "max" or "min"

    def __str__(self) -> str:
        return f"{self.name}:{self.direction}"

    @property
    def optuna_direction(self) -> str:
        return "maximize" if self.direction == "max" else "minimize"

    @property
    def stored(self) -> str:
        """The name of the value in a stored trial (a column, else a ``metrics`` key)."""
        return COLUMNS.get(self.name, self.name)

    def of(self, record: Any) -> float | None:
        """The objective's value in a stored trial record; None when missing or not finite."""
        key = self.stored
        v = getattr(record, key) if self.name in COLUMNS else record.metrics.get(key)
        if v is None or isinstance(v, bool) or not isinstance(v, numbers.Real):
            return None
        return float(v) if math.isfinite(v) else None


DEFAULT_OBJECTIVES: tuple[Objective, ...] = (Objective("accuracy", "max"),
                                             Objective("macs", "min"))


#: metrics of the test split: reported beside each trial, never used to choose one
HELD_OUT = ("test_accuracy", "test_accuracy_se", "num_test")


def parse_objectives(spec: str | Sequence[str], *,
                     search: bool = False) -> tuple[Objective, ...]:
    """``"accuracy:max,macs:min"`` (or a list of such items) as a frozen objective list.

    ``search``: for what a search optimises, where the held-out test split's metrics are
    refused (a search that selects on them leaves no unbiased estimate; ``pareto`` may still
    show them) and left out of the metrics an error names.
    """
    items = spec.split(",") if isinstance(spec, str) else list(spec)
    if not "".join(map(str, items)).strip():
        raise ConfigError("--objectives is empty; give name:max or name:min items separated by "
                          "commas, e.g. accuracy:max,macs:min")
    allowed = [n for n in numeric_fields() if not (search and n in HELD_OUT)]
    out: list[Objective] = []
    known_zc: list[str] | None = None
    for item in items:
        name, sep, direction = str(item).strip().partition(":")
        if not str(item).strip():
            raise ConfigError("--objectives: an empty item (a comma too many?); give "
                              "name:max or name:min items separated by commas, e.g. "
                              "accuracy:max,macs:min")
        if not sep or direction not in ("max", "min"):
            raise ConfigError(f"--objectives: each item must be name:max or name:min; "
                              f"got {str(item).strip()!r}")
        if search and name in HELD_OUT:
            raise ConfigError(f"--objectives: {name!r} is measured on the held-out test split, "
                              "which a search never selects on; optimise accuracy (validation) "
                              "and read test_accuracy in `python -m nas pareto`")
        if name.startswith(ZC_PREFIX):
            known_zc = known_zc if known_zc is not None else _known_zero_cost()
            if name[len(ZC_PREFIX):] not in known_zc:
                zc = [ZC_PREFIX + n for n in known_zc]
                raise ConfigError(f"--objectives: unknown zero-cost proxy in {name!r}; known: "
                                  f"{', '.join(zc)}{did_you_mean(name, zc)}")
        elif name not in allowed:
            raise ConfigError(f"--objectives: unknown metric {name!r}; recorded numeric metrics: "
                              f"{', '.join(allowed)}, or {ZC_PREFIX}<zero-cost proxy>"
                              f"{did_you_mean(name, allowed)}")
        if any(o.name == name for o in out):
            raise ConfigError(f"--objectives: {name!r} given twice")
        out.append(Objective(name, direction))
    if not out:
        raise ConfigError("--objectives: at least one objective is needed")
    return tuple(out)


def parse_search_objectives(spec: str | Sequence[str]) -> tuple[Objective, ...]:
    """:func:`parse_objectives` for what a search optimises (``search=True``)."""
    return parse_objectives(spec, search=True)


def objective_names(objectives: Sequence[Objective]) -> tuple[str, ...]:
    """As stored with the study: ``("accuracy:max", "macs:min")``."""
    return tuple(str(o) for o in objectives)


# --------------------------------------------------------------------------- zero-cost proxies


def _known_zero_cost() -> list[str]:
    from proxies.zero_cost import list_zero_cost  # lazy: imports torch

    return list_zero_cost()


def parse_zero_cost(spec: str | Sequence[str] | None,
                    flag: str = "--zero-cost") -> tuple[str, ...]:
    """``"synflow,naswot"`` (or a list) as registered zero-cost proxy names, checked up front."""
    if spec is None:
        return ()
    items = spec.split(",") if isinstance(spec, str) else list(spec)
    names = tuple(dict.fromkeys(str(i).strip() for i in items if str(i).strip()))
    known = _known_zero_cost() if names else []
    for name in names:
        if name not in known:
            raise ConfigError(f"{flag}: unknown zero-cost proxy {name!r}; known: "
                              f"{', '.join(known)}{did_you_mean(name, known)}")
    return names


def zero_cost_implied(names: Sequence[str], objectives: Sequence[Objective]) -> tuple[str, ...]:
    """The proxies a trial computes: ``names`` plus those that objectives name as ``zc_*``."""
    named = [o.name[len(ZC_PREFIX):] for o in objectives if o.name.startswith(ZC_PREFIX)]
    return tuple(dict.fromkeys([*names, *named]))
