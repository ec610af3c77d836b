"""The Tune callback that records every trial (driver side, the single writer of the database).

A module-level class so that Tune can pickle it without dragging a database connection along
(Tune pickles callbacks for its own restore, which we do not use: the database is the record).
"""

from __future__ import annotations

import time
from collections.abc import Callable

from ray.tune import Callback

from nas.models import describe, from_dict
from nas.results import TrialFailure, final_result

__all__ = ["Recorder"]


class Recorder(Callback):
    """Writes every trial to the database and prints one progress line each."""

    def __init__(self, store, study_id: int, run_name: str, budget: int, already: int,
                 log: Callable[[str], None]) -> None:
        self.store = store
        self.study_id = study_id
        self.run_name = run_name
        self.budget = budget
        self.log = log
        self.ids: dict[str, int] = {}  # Ray trial id -> database trial id
        self.last: dict[str, dict] = {}  # Ray trial id -> last reported result
        self.completed = already
        self.t0 = time.perf_counter()

    def __getstate__(self) -> dict:
        return {}  # see the module docstring

    def on_trial_start(self, iteration, trials, trial, **info) -> None:
        c = trial.config
        rec = self.store.start_trial(self.study_id, key=f"{self.run_name}:{trial.trial_id}",
                                     arch_hash=c["arch_hash"], arch=c["arch"], params=c["params"])
        self.ids[trial.trial_id] = rec.id

    def on_trial_result(self, iteration, trials, trial, result, **info) -> None:
        self.last[trial.trial_id] = result

    def on_trial_complete(self, iteration, trials, trial, **info) -> None:
        res = final_result(self.last.pop(trial.trial_id, None) or trial.last_result)
        if isinstance(res, TrialFailure):
            return self._fail(trial, res.failure, {"curve": res.curve})
        if res is None:
            return self._fail(trial, "trial ended without reporting a result")
        metrics = {**res.metrics(), "proxy_arch": trial.config["proxy_arch"]}
        self.store.finish_trial(self.ids[trial.trial_id], state="COMPLETE", metrics=metrics,
                                **res.columns())
        self.completed += 1
        elapsed = time.perf_counter() - self.t0
        self.log(f"[{self.completed:>3}/{self.budget}] acc {res.accuracy:.4f} "
                 f"± {res.accuracy_se:.4f}  "
                 f"{res.macs / 1e9:7.3f} GMACs  {res.params / 1e6:7.2f} M params  "
                 f"trial {res.total_seconds:5.1f} s  elapsed {elapsed:6.1f} s  "
                 f"{describe(from_dict(trial.config['arch']))}")

    def on_trial_error(self, iteration, trials, trial, **info) -> None:
        self._fail(trial, _error_text(trial))

    def _fail(self, trial, message: str, metrics: dict | None = None) -> None:
        if trial.trial_id in self.ids:
            self.store.finish_trial(self.ids[trial.trial_id], state="FAIL", error=message,
                                    metrics=metrics)
        self.log(f"[ failed ] {message}")


def _error_text(trial) -> str:
    try:
        err = trial.get_error()
    except Exception:  # noqa: BLE001 - best effort: the message is informational
        err = None
    text = str(err) if err else "unknown error (see Ray's trial log)"
    lines = [ln for ln in text.strip().splitlines() if ln.strip()]
    return lines[-1][:500] if lines else text[:500]
