"""The searcher on Optuna's public ask/tell: skipped proposals are in our table as INFEASIBLE or
DUPLICATE, so our counts and Optuna's agree (no Ray cluster needed: Tune is not started)."""

from __future__ import annotations

import optuna
import pytest

from nas._searcher import BudgetedSearcher
from nas.results import DEFAULT_OBJECTIVES

from ._results import complete_slot, result, study_setup, twin_pairs


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


# --------------------------------------------------------------------------- proxy twins reused


def _reused(store) -> dict[int, int]:
    return {t.number: t.metrics["reused_from"] for t in store.trials("s", states=["COMPLETE"])
            if "reused_from" in t.metrics}


def test_a_twin_reaching_the_budget_while_a_trial_runs_waits_then_finishes(setup):
    """Under Ray a slot asks while other trials run: a reused twin that fills the budget with
    them makes suggest wait (None: a running trial may still fail), never overshoot."""
    space, store, study, ot = setup
    (a, a2), (b, _) = twin_pairs(space)[:2]
    searcher = BudgetedSearcher(space, ot, DEFAULT_OBJECTIVES, store, study.id, "run", budget=3,
                                done={}, max_attempts=10, num_classes=10, twins={})
    ot.enqueue_trial(a)
    complete_slot(searcher, store, study.id, 0)  # a, trained: its proxy joins the sources
    ot.enqueue_trial(b)
    cfg = searcher.suggest("b")
    assert isinstance(cfg, dict) and cfg["params"] == b  # b runs
    ot.enqueue_trial(a2)
    assert searcher.suggest("c") is None  # a2 reused: 2 completed + 1 running = the budget
    (number, source), = _reused(store).items()
    assert source == next(t.number for t in store.trials("s") if t.params == a)
    assert searcher.reused == 1 and searcher.used == 2 and searcher.started == 2
    r = result()
    rec = store.start_trial(study.id, key="run:b", arch_hash=cfg["arch_hash"], arch=cfg["arch"],
                            params=cfg["params"])
    store.finish_trial(rec.id, state="COMPLETE", metrics=r.metrics(), **r.columns())
    searcher.on_trial_complete("b", r.report())
    searcher.settle("b")
    assert searcher.suggest("d") == "FINISHED" and searcher.used == 3


@pytest.mark.parametrize("budget, reused", [(4, 1), (2, 0)])
def test_a_twin_in_a_prescreen_group_is_reused_only_with_room_for_the_winner(setup, budget,
                                                                             reused):
    """A twin met while a pre-screen group gathers is recorded at once when the budget still
    has room for the group's winner; else it joins the group like any candidate."""
    space, store, study, ot = setup
    (a, a2), (x, _), (y, _) = twin_pairs(space)[:3]
    searcher = BudgetedSearcher(space, ot, DEFAULT_OBJECTIVES, store, study.id, "run",
                                budget=budget, done={}, max_attempts=10, num_classes=10,
                                twins={}, screen=lambda arch: float(len(str(arch))), screen_k=2,
                                screen_name="synflow")
    searcher.screen_k = 1
    ot.enqueue_trial(a)
    complete_slot(searcher, store, study.id, 0)
    searcher.screen_k = 2
    for params in (x, a2, y):
        ot.enqueue_trial(params)
    cfg = searcher.suggest("t1")
    assert isinstance(cfg, dict) and searcher.reused == reused == len(_reused(store))
    assert searcher.used + len(searcher.live) <= budget
    screened = store.trials("s", states=["FAIL"])
    assert len(screened) == 1 and screened[0].metrics["screened_out"]
    if not reused:  # a2 was a candidate: trained or screened out, never recorded as a twin
        assert a2 in (cfg["params"], screened[0].params)


def test_twins_found_by_the_random_fallback_are_reused_up_to_the_budget(setup, monkeypatch):
    """Every proxy already trained (sources given): the proposals the fallback draws after a
    skipped one are each recorded with their twin's result until the budget is reached."""
    from nas import _searcher
    from nas._twins import TwinSource, proxy_key
    from nas.models import arch_hash

    space, store, study, ot = setup
    monkeypatch.setattr(_searcher, "PROPOSALS_PER_SLOT", 1)
    sources = {}
    for i, pair in enumerate(twin_pairs(space)):
        arch = space.sample(optuna.trial.FixedTrial(pair[1]))
        sources[proxy_key(space.proxy(arch, 10))] = TwinSource(result(accuracy=i / 100),
                                                                100 + i, f"h{i}")
    known = twin_pairs(space)[0][0]  # a completed architecture, proposed again: skipped
    done = {arch_hash(space.sample(optuna.trial.FixedTrial(known))): [0.5, 1e9]}
    searcher = BudgetedSearcher(space, ot, DEFAULT_OBJECTIVES, store, study.id, "run", budget=2,
                                done=done, max_attempts=10, num_classes=10, twins=sources)
    ot.enqueue_trial(known)  # the slot's one proposal (PROPOSALS_PER_SLOT 1): the fallback draws
    assert searcher.suggest("t0") == "FINISHED" and not searcher.exhausted
    assert searcher.duplicates == 1 and searcher.reused == 2 and searcher.started == 0
    rows = store.trials("s", states=["COMPLETE"])
    assert sorted(_reused(store).values()) == sorted(
        sources[proxy_key(space.proxy(t.spec, 10))].number for t in rows)
    assert len({t.arch_hash for t in rows}) == 2
    told = [t for t in ot.trials if t.state == optuna.trial.TrialState.COMPLETE
            and "reused_from" in t.user_attrs]  # (the duplicate is told the known result)
    assert sorted(t.values[0] for t in told) == sorted(t.accuracy for t in rows)
