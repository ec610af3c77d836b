"""End to end: --scheduler asha on Ray stops trials at rungs; they are PRUNED in both tables."""

from __future__ import annotations

import sys
from pathlib import Path

import optuna
import pytest

from db import Store
from nas.analysis import pareto_front
from nas.results import DEFAULT_OBJECTIVES
from nas.search import SearchConfig, run_search

pytestmark = pytest.mark.slow


def test_asha_prunes_records_and_keeps_pruned_trials_off_the_front(ray_session, tmp_path):
    url = f"sqlite:///{tmp_path}/nas.db"
    # one trial at a time: the seeded proposals reach the rungs in a fixed order; with eta 2
    # and rungs at epochs 0.5 (mid-epoch), 1 and 2, seed 0 prunes some of the 6 proposals on
    # `tiny`; the budget counts evaluated trials (completed or pruned), as Optuna's n_trials does
    cfg = SearchConfig(space="tiny", budget=6, epochs=3, db_url=url, runs_dir=str(tmp_path),
                       seed=0, max_concurrent=1, scheduler="asha", asha_eta=2,
                       asha_min_epochs=0.5,
                       dataset="digits")  # the mechanics, not the task: small and fast
    lines: list[str] = []
    summary = run_search(cfg, log=lines.append)
    store = Store(url)
    trials = store.trials("tiny")
    pruned = [t for t in trials if t.state == "PRUNED"]
    done = [t for t in trials if t.state == "COMPLETE"]
    assert pruned, f"expected at least one PRUNED trial; got {[t.state for t in trials]}: {lines}"
    assert len(done) + len(pruned) == cfg.budget == summary.budget_used, (len(done), summary)
    assert summary.completed == len(done) >= 1, summary
    assert summary.pruned == len(pruned), (summary.pruned, len(pruned))
    assert sum(ln.startswith("[ pruned ]") for ln in lines) == len(pruned), lines
    for t in pruned:
        assert t.accuracy is None, f"a pruned trial must not look complete: {t.accuracy}"
        curve, at = t.metrics["curve"][0], t.metrics["pruned_at_epoch"]
        assert [e["epoch"] for e in curve] == [e for e in (0.5, 1, 2) if e <= at], curve
        assert curve[-1]["val_accuracy"] == t.metrics["pruned_val_accuracy"]
        assert curve[-1]["val_loss"] == t.metrics["pruned_val_loss"]
        assert at in (0.5, 1, 2) and t.error.startswith(f"pruned at epoch {at:g}: val loss")
        assert t.metrics["worker"]["ray_node_id"], t.metrics  # where it ran, stopped or not
    for t in done:  # validated at the rungs (0.5, 1, 2) and after the last epoch: in the curve
        curve = t.metrics["curve"][0]
        assert [e["epoch"] for e in curve] == [0.5, 1, 2, 3], curve
        assert all(e["val_accuracy"] is not None for e in curve)
    front = pareto_front(trials, DEFAULT_OBJECTIVES)  # all trials given
    assert front and {t.id for t in front} <= {t.id for t in done}, "pruned ones never in it"
    final = [ln for ln in lines if ln.startswith("[progress]")][-1]  # the live view's last line
    assert (f"{cfg.budget}/{cfg.budget} evaluated · {len(done)} completed · 0 running · "
            f"0 failed · {len(pruned)} pruned · "
            f"front {len(front)} · best acc {max(t.accuracy for t in done):.4f}") in final, final
    ot = optuna.load_study(study_name="tiny", storage=url).trials
    assert len(ot) == len(trials), "both tables count the same proposals"
    states = [t.state.name for t in ot]
    assert states.count("COMPLETE") == len(done) and states.count("PRUNED") >= len(pruned)
    told = [t for t in ot if "pruned" in t.user_attrs]
    assert len(told) == len(pruned) and all(t.state.name == "PRUNED" for t in told)
    assert [r.outcome for r in store.runs("tiny")] == ["completed"]
    # benchmarks/replay_asha.py replays the run's rung decisions from the stored curves: with
    # the engine's rule it must reproduce every one (what makes its other rules' figures mean
    # anything)
    sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))
    try:
        import replay_asha
    finally:
        sys.path.pop(0)
    recorded, config = replay_asha.load(url, "tiny")
    again = replay_asha.replay(recorded, replay_asha.RULES["current"], [0.5, 1, 2], 2, 3)
    assert again["agree"] == len(recorded) == cfg.budget, again
    assert len(again["done"]) == len(done) and config["asha_eta"] == 2

