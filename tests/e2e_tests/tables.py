"""The check every end-to-end test of a stopped, resumed or contested search ends with."""

from __future__ import annotations

import optuna

from db import Store

RUNNING, FAIL, COMPLETE = (optuna.trial.TrialState.RUNNING, optuna.trial.TrialState.FAIL,
                           optuna.trial.TrialState.COMPLETE)


def check_tables(url: str, study: str, budget: int | None = None) -> tuple[list, list]:
    """Our table and Optuna's agree: no RUNNING left, one Optuna trial per row, an architecture
    completed at most once, Optuna's COMPLETE = ours + the duplicates told their known result,
    as many interrupted on each side, and (with ``budget``) exactly that many COMPLETE."""
    ours = Store(url).trials(study)
    ot = [t for t in optuna.load_study(study_name=study, storage=url).trials
          if t.state != optuna.trial.TrialState.WAITING  # a retry not asked for yet
          and "before its architecture was sampled" not in t.user_attrs.get("interrupted", "")]
    assert not [t for t in ours if t.state == "RUNNING"], [(t.number, t.state) for t in ours]
    assert not [t for t in ot if t.state == RUNNING], [(t.number, t.state) for t in ot]
    assert len(ours) == len(ot), f"{len(ours)} rows in nas_trials, {len(ot)} Optuna trials"
    done = [t.arch_hash for t in ours if t.state == "COMPLETE"]
    assert len(done) == len(set(done)), f"an architecture completed twice: {done}"
    dup_done = sum(t.state == "DUPLICATE" and t.metrics["duplicate_of"] is not None for t in ours)
    told = sum(t.state == COMPLETE for t in ot)
    assert told == len(done) + dup_done, (told, len(done), dup_done)  # both tables agree
    interrupted = [t for t in ours if t.state == "INTERRUPTED"]
    ot_interrupted = [t for t in ot if t.state == FAIL and "interrupted" in t.user_attrs]
    assert len(interrupted) == len(ot_interrupted), (interrupted, ot_interrupted)
    if budget is not None:
        assert len(done) == budget, f"expected exactly {budget} COMPLETE, got {len(done)}"
    return ours, ot
