"""The searcher on Optuna's public ask/tell: skipped proposals are in our table as INFEASIBLE or
DUPLICATE, so our counts and Optuna's agree (no Ray cluster needed: Tune is not started)."""

from __future__ import annotations

import optuna
import pytest

from nas._searcher import BudgetedSearcher
from nas.results import DEFAULT_OBJECTIVES

from ._results import complete_slot, study_setup


@pytest.fixture
def setup(tmp_path):
    return study_setup(tmp_path)


def test_skipped_proposals_are_recorded_and_counts_agree(setup):
    space, store, study, ot = setup
    searcher = BudgetedSearcher(space, ot, DEFAULT_OBJECTIVES, store, study.id, "run", budget=12,
                                done={}, max_attempts=40, num_classes=10)
    for i in range(12):
        complete_slot(searcher, store, study.id, i)
    assert searcher.suggest("t-last") == "FINISHED" or searcher.completed == 12

    ours = store.trials("s")
    states = [t.state for t in ours]
    assert len(ours) == len(ot.trials), (len(ours), len(ot.trials))
    assert states.count("COMPLETE") == 12 == searcher.completed
    assert states.count("INFEASIBLE") == searcher.infeasible
    assert states.count("DUPLICATE") == searcher.duplicates
    assert searcher.duplicates > 0, "the tiny space repeats within a dozen proposals"
    for t in ours:
        if t.state == "INFEASIBLE":
            assert t.error and "conv_before_attention" in t.error, t.error
            assert space.violations(t.spec), t.spec
        if t.state == "DUPLICATE":
            first = store.find_completed(study.id, t.arch_hash)
            assert t.metrics["duplicate_of"] == first.number, (t.metrics, first.number)
            assert t.error == f"duplicate of completed trial #{first.number}"
    pruned = [t for t in ot.trials if t.state == optuna.trial.TrialState.PRUNED]
    assert len(pruned) == searcher.infeasible, "infeasible proposals are told to Optuna as PRUNED"
    told = [t for t in ot.trials if t.state == optuna.trial.TrialState.COMPLETE]
    assert len(told) == 12 + searcher.duplicates, "duplicates of done trials learn the result"


@pytest.mark.parametrize("started", [True, False])
def test_a_duplicate_of_a_running_trial_names_it_by_number(setup, started):
    space, store, study, ot = setup
    searcher = BudgetedSearcher(space, ot, DEFAULT_OBJECTIVES, store, study.id, "run", budget=3,
                                done={}, max_attempts=10, num_classes=10)
    first = searcher.suggest("a")
    if started:  # its worker began it: the recorder wrote its row
        store.start_trial(study.id, key="run:a", arch_hash=first["arch_hash"],
                          arch=first["arch"], params=first["params"])
    ot.enqueue_trial(first["params"])  # the sampler proposes it again while it runs
    assert isinstance(searcher.suggest("b"), dict)
    [dup] = store.trials("s", states=["DUPLICATE"])
    if started:
        assert dup.error == "duplicate of running trial #0", dup.error
        assert dup.metrics["duplicate_of_running"] == 0
    else:
        # named as `studies` and `pareto` can find it, not by the run's internal key
        assert dup.error == ("duplicate of a trial proposed just before it and not yet started "
                             f"(its row will have metrics optuna_trial {first['optuna_trial']})"
                             ), dup.error
        assert dup.metrics["duplicate_of_running"] is None
    assert dup.metrics["duplicate_of"] is None  # Optuna was told no result for it (FAIL)
    assert dup.metrics["duplicate_of_optuna"] == first["optuna_trial"]


def test_a_failed_trial_is_told_as_fail_and_does_not_count(setup):
    space, store, study, ot = setup
    searcher = BudgetedSearcher(space, ot, DEFAULT_OBJECTIVES, store, study.id, "run", budget=1,
                                done={}, max_attempts=2, num_classes=10)
    assert isinstance(searcher.suggest("a"), dict)
    searcher.on_trial_complete("a", {"done_training": True, "failure": "diverged", "curve": [],
                                     "total_seconds": 1.0})
    assert searcher.failed == 1 and searcher.completed == 0
    assert ot.trials[-1].state == optuna.trial.TrialState.RUNNING, "told once its row is written"
    searcher.settle("a")
    assert ot.trials[-1].state == optuna.trial.TrialState.FAIL


def test_when_random_draws_miss_a_tiny_feasible_share_the_local_search_finds_it(
        tmp_path, monkeypatch):
    """4 of hybrid_conv_attn's 110,592 configurations cost <= 0.365 GMACs (counted once by
    hand): with the draws cut to 100 (20,000 also usually miss 1 in 27,648), each slot's new
    architecture comes from the space's local search, until all four are taken."""
    from pathlib import Path

    import yaml

    from db import Store
    from nas import _searcher
    from nas.models import analytic_cost, from_dict
    from nas.results import objective_names
    from search_spaces import Space

    monkeypatch.setattr(_searcher, "PROPOSALS_PER_SLOT", 20)
    monkeypatch.setattr(_searcher, "FALLBACK_DRAWS", 100)
    text = (Path(__file__).resolve().parents[2] / "search_spaces" /
            "hybrid_conv_attn.yaml").read_text()
    space = Space(yaml.safe_load(text.replace("max_macs: 8.0e+9", "max_macs: 3.65e+8")),
                  "rare.yaml")
    store = Store(f"sqlite:///{tmp_path}/nas.db", decode_arch=from_dict)
    study = store.get_or_create_study("s", space=space.name, space_hash=space.hash,
                                      objectives=objective_names(DEFAULT_OBJECTIVES), config={})
    ot = optuna.create_study(directions=[o.optuna_direction for o in DEFAULT_OBJECTIVES],
                             sampler=optuna.samplers.RandomSampler(seed=0))
    searcher = BudgetedSearcher(space, ot, DEFAULT_OBJECTIVES, store, study.id, "run", budget=5,
                                done={}, max_attempts=10, num_classes=10)
    configs = [complete_slot(searcher, store, study.id, i) for i in range(4)]
    assert searcher.suggest("t4") == "FINISHED" and searcher.exhausted
    assert len({c["arch_hash"] for c in configs}) == 4
    for c in configs:
        arch = from_dict(c["arch"])
        assert space.violations(arch) == [] and analytic_cost(arch).macs <= 3.65e8, c["params"]
    ours = store.trials("s")
    assert len(ours) == len(ot.trials) and [t.state for t in ours].count("COMPLETE") == 4
    assert [t.state for t in ours].count("INFEASIBLE") == searcher.infeasible >= 5 * 20
