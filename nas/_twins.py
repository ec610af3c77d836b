"""Proxy twins reused: a new architecture whose proxy a completed trial already trained.

Two different full architectures can reduce to one proxy (``search_spaces._resolution``: in
``hybrid_conv_attn`` depths 2-2-5-2 and 2-2-6-2 both train as one block per stage, 2 in the
third, at ``depth_mult`` 0.34). Trained with the same seed and settings, the second training is
the first one again (bit-identical on CPU). A search therefore records such a proposal at once:
a COMPLETE row with its twin's proxy results (accuracy, its standard error, loss, curve,
zero-cost scores) and its *own* full-model costs (the analytic count, equal to the traced one),
``metrics["reused_from"]`` naming the trial that trained it. It is told to Optuna like any
completed trial and counts against the budget, as the trial it replaces would have.

A twin is reused only when its result was measured with the settings this run trains with
(:data:`MEASUREMENT`: seed, epochs, batch size, learning rate, repeats, compile, dataset and
its built files, proxy reduction, and torch's version), on the kind of device this run's trials
train on (a GPU trains in bf16, a CPU in fp32), and when it holds every zero-cost score this run
records; never when an objective is measured on the full model (``latency_ms``: the trial
would time it), nor under ``--scheduler asha`` (a trial there is judged at rungs on its own
costs, and the rungs' record is what a resume ranks against).
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from nas.models import ArchSpec, analytic_cost, arch_hash, from_dict
from nas.results import Objective, TrialResult

__all__ = ["MEASUREMENT", "TwinSource", "proxy_key", "reusable", "reused_result",
           "settings_key", "twin_sources"]

#: the run settings (keys of a run's stored config) that make two trainings of one proxy the
#: same measurement, with torch's version (settings_key) and the device (the result's, in
#: twin_sources); the thread count is left out (the same seed and data order)
MEASUREMENT = ("seed", "epochs", "batch_size", "lr", "repeats", "compile", "dataset",
               "dataset_hash", "dataset_fingerprint", "dataset_sizes", "dataset_resolution",
               "proxy")

#: objectives a trial measures on the full model itself: a twin's value is not this one's
FULL_MODEL_MEASURED = ("latency_ms",)


@dataclass(frozen=True)
class TwinSource:
    """The trial that trained a proxy: its result, and our number of it (None until looked up:
    a trial of this run, whose row the recorder numbered)."""

    result: TrialResult
    number: int | None
    arch_hash: str


def proxy_key(proxy: ArchSpec | Mapping[str, Any]) -> str:
    """The hash of a proxy architecture (a spec, or its stored dict)."""
    return arch_hash(proxy if isinstance(proxy, ArchSpec) else from_dict(dict(proxy)))


def settings_key(config: Mapping[str, Any]) -> str:
    """What of a run's config decides a proxy's measurement (:data:`MEASUREMENT` and torch's
    version), as text."""
    torch = (config.get("versions") or {}).get("torch")
    return json.dumps({**{k: config.get(k) for k in MEASUREMENT}, "torch": torch},
                      sort_keys=True, default=str)


def reusable(objectives: Sequence[Objective], scheduler: str = "fifo") -> bool:
    """Whether a twin's result can stand for a trial of a study with these objectives, searched
    with this scheduler."""
    return scheduler == "fifo" and not any(o.name in FULL_MODEL_MEASURED for o in objectives)


def twin_sources(completed: Iterable[Any], run_configs: Mapping[int, Mapping[str, Any]],
                 config: Mapping[str, Any], zero_cost: Sequence[str],
                 device: str) -> dict[str, TwinSource]:
    """Proxy hash -> the earliest completed trial that trained it with ``config``'s settings on
    ``device`` ("cpu" or "cuda").

    ``completed``: the study's COMPLETE records; ``run_configs``: run id -> that run's stored
    config. A row whose run is unknown, whose settings or device differ, that lacks a score of
    ``zero_cost`` or a field of :class:`TrialResult` (an older version's) is no source. A row
    that reused a twin points at the trial that trained it."""
    want = settings_key(config)
    sources: dict[str, TwinSource] = {}
    for t in sorted(completed, key=lambda t: t.number):
        proxy = t.metrics.get("proxy_arch")
        run = run_configs.get(t.run_id) if t.run_id is not None else None
        if not isinstance(proxy, dict) or not proxy or run is None or settings_key(run) != want:
            continue
        result = TrialResult.from_record(t)
        if result is None or result.device != device or not set(zero_cost) <= {
                *result.zero_cost, *result.zero_cost_errors}:
            continue
        try:
            key = proxy_key(proxy)
        except (TypeError, ValueError, KeyError):
            continue  # not a proxy this version can read
        number = t.metrics.get("reused_from", t.number)
        sources.setdefault(key, TwinSource(result, number if isinstance(number, int) else None,
                                           t.arch_hash))
    return sources


def reused_result(source: TwinSource, arch: ArchSpec, seconds: float) -> TrialResult:
    """``source``'s proxy results with ``arch``'s own full-model costs; the work fields
    (optimizer steps, training, evaluation and counting time) are this trial's: none."""
    cost = analytic_cost(arch)
    res = source.result
    return dataclasses.replace(
        res, macs=cost.macs, params=cost.params, acts=cost.acts, latency_ms=None, steps=0,
        train_seconds=0.0, eval_seconds=0.0, count_seconds=0.0, zero_cost_seconds=0.0,
        images_per_second=0.0, total_seconds=seconds,
        resumed_epochs=tuple(0 for _ in range(res.repeats)))
