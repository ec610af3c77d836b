"""A Ray Tune ``Searcher`` on Optuna's public ask/tell API (imported lazily: Ray is heavy).

Optuna proposes (``study.ask()``, the space's define-by-run sampler), the searcher checks each
proposal against the space's constraints and de-duplicates it by hash *before* anything is
built. A skipped proposal is told to Optuna and written to our table at once, as INFEASIBLE
(with the violated rules) or DUPLICATE (naming the trial it repeats), so both tables count the
same proposals. The searcher stops at a number of *completed* trials.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import optuna
from ray.tune.search import Searcher

from nas.models import arch_hash, to_dict
from nas.results import Objective, TrialResult, final_result

__all__ = ["BudgetedSearcher"]

PROPOSALS_PER_SLOT = 200  # skipped proposals in a row before the space counts as exhausted


class BudgetedSearcher(Searcher):
    """Proposes architectures until ``budget`` trials completed or ``max_attempts`` started.

    Args:
        space: the parsed search space (``sample``, ``violations``, ``proxy``).
        study: the Optuna study (directions from ``objectives``), in the same database.
        objectives: the study's objective list.
        store, study_id, run_name: where skipped proposals are recorded (driver side).
        budget: completed trials wanted from this run.
        done: arch hash -> objective values of completed trials.
        max_attempts: trials started at most (completed + failed).
        num_classes: of the proxy dataset.
    """

    def __init__(self, space, study: optuna.Study, objectives: Sequence[Objective], store,
                 study_id: int, run_name: str, budget: int,
                 done: dict[str, list[float]], max_attempts: int,
                 num_classes: int) -> None:
        super().__init__()
        self.space, self.num_classes = space, num_classes  # what is proposed, and its proxy
        self.study, self.objectives = study, tuple(objectives)  # Optuna's side
        self.store, self.study_id, self.run_name = store, study_id, run_name  # ours
        self.budget, self.max_attempts = budget, max_attempts
        self.done = done
        self.live: dict[str, tuple[str, optuna.trial.Trial]] = {}  # Ray id -> (hash, trial)
        self.completed = self.failed = self.duplicates = self.infeasible = self.started = 0

    def __getstate__(self) -> dict:
        return {}  # Tune may pickle searchers for its own restore, which we do not use

    def save(self, checkpoint_path: str) -> None:
        """Nothing to save: the database is the record (a later run resumes from it)."""

    def suggest(self, trial_id: str) -> dict[str, Any] | None:
        for _ in range(PROPOSALS_PER_SLOT):
            if self.completed >= self.budget or self.started >= self.max_attempts:
                return Searcher.FINISHED
            if self.completed + len(self.live) >= self.budget:
                return None  # wait: a running trial may still fail
            trial = self.study.ask()
            arch = self.space.sample(trial)
            h = arch_hash(arch)
            violations = self.space.violations(arch)
            if violations:
                self.infeasible += 1
                trial.set_user_attr("infeasible", violations)
                self.study.tell(trial, state=optuna.trial.TrialState.FAIL)
                self._skip(trial, arch, h, "INFEASIBLE", "; ".join(violations), {})
                continue
            running = [tid for tid, (lh, _) in self.live.items() if lh == h]
            if h in self.done or running:
                self.duplicates += 1
                if h in self.done:  # Optuna learns the known result without retraining
                    self.study.tell(trial, self.done[h])
                    first = self.store.find_completed(self.study_id, h)
                    number = None if first is None else first.number
                    what = f"duplicate of completed trial {number}"
                else:
                    self.study.tell(trial, state=optuna.trial.TrialState.FAIL)
                    number = None
                    what = f"duplicate of running trial {self.run_name}:{running[0]}"
                self._skip(trial, arch, h, "DUPLICATE", what,
                           {"duplicate_of": number, "duplicate_of_hash": h})
                continue
            self.live[trial_id] = (h, trial)
            self.started += 1
            return {"arch": to_dict(arch), "arch_hash": h, "params": dict(trial.params),
                    "proxy_arch": to_dict(self.space.proxy(arch, self.num_classes))}
        return Searcher.FINISHED

    def _skip(self, trial, arch, h: str, state: str, reason: str, metrics: dict) -> None:
        rec = self.store.start_trial(self.study_id, key=f"{self.run_name}:optuna{trial.number}",
                                     arch_hash=h, arch=to_dict(arch), params=dict(trial.params))
        self.store.finish_trial(rec.id, state=state, error=reason, metrics=metrics)

    def on_trial_complete(self, trial_id: str, result: dict | None = None,
                          error: bool = False) -> None:
        h, trial = self.live.pop(trial_id, (None, None))
        res = None if error else final_result(result)
        if isinstance(res, TrialResult):
            values = [res.value(o.name) for o in self.objectives]
            self.completed += 1
            if trial is not None:
                self.study.tell(trial, values)
                self.done[h] = values
        else:  # failed (diverged, or raised): told to Optuna as FAIL, never COMPLETE
            self.failed += 1
            if trial is not None:
                self.study.tell(trial, state=optuna.trial.TrialState.FAIL)
