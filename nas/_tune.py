"""Ray Tune pieces of the search (imported lazily: Ray is heavy).

- :class:`BudgetedOptunaSearch`: Ray's ``OptunaSearch`` that stops at a number of *completed*
  trials and never trains a proposal that is infeasible or already evaluated.
- :class:`Recorder`: a Tune callback in the driver, the single writer of the database.

Both are module-level classes so that Tune can pickle them without dragging a database
connection along (Tune pickles searchers and callbacks for its own restore, which we do not use:
the database is the record).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import optuna
from ray.tune import Callback
from ray.tune.search import Searcher
from ray.tune.search.optuna import OptunaSearch

from nas.arch import arch_hash, to_dict

__all__ = ["BudgetedOptunaSearch", "Recorder"]

METRIC_KEYS = ("acts", "proxy_macs", "proxy_params", "val_loss", "final_train_loss",
               "train_loss_sum", "steps", "train_seconds", "eval_seconds", "count_seconds",
               "images_per_second", "total_seconds", "device", "accuracy_std", "binomial_se",
               "test_accuracy_se", "accuracies", "test_accuracies", "repeats", "num_val",
               "num_test", "curve")
PROPOSALS_PER_SLOT = 200  # skipped proposals in a row before the space counts as exhausted


class _DefineByRun:
    """The space's sampler as Optuna define-by-run; the ArchSpec rides along in the config."""

    def __init__(self, space) -> None:
        self.space = space

    def __call__(self, trial) -> dict[str, Any]:
        return {"_arch": self.space.sample(trial)}


class BudgetedOptunaSearch(OptunaSearch):
    def __init__(self, space, budget: int, done: dict[str, list[float]], max_attempts: int,
                 num_classes: int, **kwargs: Any) -> None:
        super().__init__(space=_DefineByRun(space), **kwargs)
        self.nas_space = space
        self.budget = budget  # completed trials wanted from this run
        self.max_attempts = max_attempts  # trials started at most (completed + failed)
        self.num_classes = num_classes  # of the proxy dataset
        self.done = done  # arch hash -> objective values of completed trials
        self.live: dict[str, str] = {}  # Ray trial id -> arch hash
        self.completed = self.failed = self.duplicates = self.infeasible = self.started = 0

    def suggest(self, trial_id: str) -> dict[str, Any] | None:
        space = self.nas_space
        for _ in range(PROPOSALS_PER_SLOT):
            if self.completed >= self.budget or self.started >= self.max_attempts:
                return Searcher.FINISHED
            if self.completed + len(self.live) >= self.budget:
                return None  # wait: a running trial may still fail
            cfg = super().suggest(trial_id)
            ot_trial = self._ot_trials.pop(trial_id)
            arch = cfg.pop("_arch")
            h = arch_hash(arch)
            violations = space.violations(arch)
            if violations:
                self.infeasible += 1
                ot_trial.set_user_attr("infeasible", violations)
                self._ot_study.tell(ot_trial, state=optuna.trial.TrialState.FAIL)
                continue
            if h in self.done or h in self.live.values():
                self.duplicates += 1
                if h in self.done:  # Optuna learns the known result without retraining
                    self._ot_study.tell(ot_trial, self.done[h])
                else:
                    self._ot_study.tell(ot_trial, state=optuna.trial.TrialState.FAIL)
                continue
            self._ot_trials[trial_id] = ot_trial
            self.live[trial_id] = h
            self.started += 1
            return {"arch": to_dict(arch), "arch_hash": h, "params": dict(ot_trial.params),
                    "proxy_arch": to_dict(space.proxy(arch, self.num_classes))}
        return Searcher.FINISHED

    def on_trial_complete(self, trial_id: str, result: dict | None = None,
                          error: bool = False) -> None:
        ok = bool(result) and not error and "accuracy" in result
        # a trial that failed (diverged, or raised) is told to Optuna as FAIL, never COMPLETE
        super().on_trial_complete(trial_id, result if ok else None, error or not ok)
        h = self.live.pop(trial_id, None)
        if ok:
            self.completed += 1
            if h is not None:
                self.done[h] = [result["accuracy"], result["macs"]]
        else:
            self.failed += 1


class Recorder(Callback):
    """Writes every trial to the database (driver side) and prints one progress line each."""

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
        r = self.last.pop(trial.trial_id, None) or trial.last_result or {}
        if r.get("failure"):
            return self._fail(trial, r["failure"], {"curve": r.get("curve")})
        if "accuracy" not in r:
            return self._fail(trial, "trial ended without reporting a result")
        metrics = {k: r[k] for k in METRIC_KEYS if k in r}
        metrics["proxy_arch"] = trial.config["proxy_arch"]
        self.store.finish_trial(self.ids[trial.trial_id], state="COMPLETE",
                                accuracy=float(r["accuracy"]),
                                accuracy_se=float(r["accuracy_se"]),
                                test_accuracy=r.get("test_accuracy"), macs=int(r["macs"]),
                                params_count=int(r["params"]), metrics=metrics)
        self.completed += 1
        elapsed = time.perf_counter() - self.t0
        self.log(f"[{self.completed:>3}/{self.budget}] acc {r['accuracy']:.4f} "
                 f"± {r['accuracy_se']:.4f}  "
                 f"{r['macs'] / 1e9:7.3f} GMACs  {r['params'] / 1e6:7.2f} M params  "
                 f"trial {r['total_seconds']:5.1f} s  elapsed {elapsed:6.1f} s  "
                 f"{_short(trial.config['arch'])}")

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


def _short(arch: dict) -> str:
    if arch.get("family") == "convmixer":
        return f"convmixer h{arch['width']} d{arch['depth']} k{arch['kernel_size']}"
    st = arch["stages"]
    return ("/".join(s["mixer"][:4] for s in st) + " d" + "-".join(str(s["depth"]) for s in st)
            + " w" + "-".join(str(s["width"]) for s in st))
