"""Proxy twins reused (nas/_twins.py): real searches (--executor local, digits, 1 epoch).

A proposal whose proxy a completed trial already trained with the run's settings is recorded
at once with that trial's proxy result and its own costs; ``--retrain-twins`` trains it, and
the training then gives the very same result (the premise, checked here); another seed is
another measurement, so it is trained.
"""

from __future__ import annotations

import csv
import dataclasses

import optuna
import pytest
from nas_tests._results import twin_pairs

from db import Store
from nas._model_card import front_position
from nas._twins import reusable, settings_key, twin_sources
from nas.analysis import proxy_twins, twin_notes
from nas.cli import main
from nas.models import analytic_cost, from_dict
from nas.results import Objective, TrialResult
from nas.search import SearchConfig, run_search
from search_spaces import load_space

pytestmark = pytest.mark.slow

SPACE = load_space("tiny")  # depth/total 4 and 6 always train one proxy (depth_mult 0.5)


def _pairs(first: dict) -> list[tuple[dict, dict]]:
    """Feasible twin pairs of tiny (depth/total 4 and 6), one per proxy: ``first`` and its
    twin, then the others."""
    pairs = [tuple(sorted(pair, key=lambda p: p != first)) for pair in twin_pairs(SPACE)]
    return sorted(pairs, key=lambda pair: pair[0] != first)


def _run(tmp_path, budget: int, enqueue: list[dict], lines: list[str], **settings):
    """A search of tiny up to ``budget`` that asks the ``enqueue`` parameters first."""
    url = f"sqlite:///{tmp_path}/nas.db"
    if enqueue:
        study = optuna.load_study(study_name="tiny", storage=url)
        for params in enqueue:
            study.enqueue_trial(params)
    cfg = SearchConfig(space="tiny", budget=budget, epochs=1, db_url=url, executor="local",
                       runs_dir=str(tmp_path), dataset="digits", **settings)
    return run_search(cfg, log=lines.append)


def _row(store: Store, params: dict):
    return next(t for t in store.trials("tiny", states=["COMPLETE"]) if t.params == params)


def test_a_proxy_twin_is_recorded_with_its_twins_result_and_retraining_it_repeats_it(tmp_path):
    url = f"sqlite:///{tmp_path}/nas.db"
    lines: list[str] = []
    _run(tmp_path, 1, [], lines)  # the sampler's first proposal: a
    store = Store(url, decode_arch=from_dict)
    first = store.trials("tiny", states=["COMPLETE"])[0].params
    (a, a2), (c, c2), (e, e2), (f, f2) = _pairs(first)[:4]
    assert a == first
    # a twin of an earlier run's trial, a new one, and a twin of that one (this run's)
    summary = _run(tmp_path, 4, [a2, c, c2], lines)
    assert summary.reused == 2 and summary.completed == 4
    ot = {t.number: t for t in optuna.load_study(study_name="tiny", storage=url).trials}
    for src, twin in ((a, a2), (c, c2)):
        s, t = _row(store, src), _row(store, twin)
        assert "reused_from" not in s.metrics and s.metrics["steps"] > 0
        assert t.metrics["reused_from"] == s.number
        assert (t.accuracy, t.accuracy_se, t.test_accuracy) == (
            s.accuracy, s.accuracy_se, s.test_accuracy)
        assert t.metrics["curve"] == s.metrics["curve"]
        assert t.metrics["proxy_arch"] == s.metrics["proxy_arch"]
        own = analytic_cost(from_dict(t.arch))
        assert (t.macs, t.params_count) == (own.macs, own.params) != (s.macs, s.params_count)
        assert t.metrics["steps"] == 0 and t.metrics["train_seconds"] == 0
        told = ot[t.metrics["optuna_trial"]]  # Optuna learns the twin's accuracy, its own MACs
        assert told.state == optuna.trial.TrialState.COMPLETE
        assert told.values == [s.accuracy, float(t.macs)]
        assert told.user_attrs["reused_from"] == s.number
        assert any(f"#{t.number} " in ln and f"reused #{s.number}'s proxy result" in ln
                   for ln in lines), lines
        trials = store.trials("tiny")  # the results say so (pareto, report, dashboard, card)
        note, = twin_notes([t], proxy_twins(trials), {r.number: r for r in trials})
        assert f"was recorded with #{s.number}'s proxy result, not trained" in note, note
        assert front_position(t, trials, ["accuracy:max", "macs:min"]).reused_from == s.number

    out = tmp_path / "pareto"  # trials.csv says which trial each twin's result is
    assert main(["pareto", "--db", url, "--study", "tiny", "--out", str(out)]) == 0
    reused = {int(r["trial"]): r["reused_from"] for r in csv.DictReader(open(out / "trials.csv"))}
    assert {n: v for n, v in reused.items() if v} == {
        _row(store, a2).number: str(_row(store, a).number),
        _row(store, c2).number: str(_row(store, c).number)}

    # --retrain-twins trains both of a pair: the same proxy, seed and settings give the same
    # result (what reusing it relies on)
    _run(tmp_path, 7, [e, e2, f], lines, retrain_twins=True)
    s, t = _row(store, e), _row(store, e2)
    assert "reused_from" not in t.metrics and t.metrics["steps"] == s.metrics["steps"] > 0
    assert (t.accuracy, t.metrics["val_loss"], t.metrics["final_train_loss"]) == (
        s.accuracy, s.metrics["val_loss"], s.metrics["final_train_loss"])

    # another seed is another measurement: f's twin is trained
    summary = _run(tmp_path, 8, [f2], lines, seed=1)
    assert summary.reused == 0
    assert "reused_from" not in _row(store, f2).metrics and _row(store, f2).metrics["steps"] > 0


def test_sources_are_the_trials_measured_with_the_runs_settings(tmp_path):
    """twin_sources on a real study: a run with other settings, a row missing a zero-cost
    score the run records, and a row that itself reused a twin (it points at the trained one)."""
    lines: list[str] = []
    url = f"sqlite:///{tmp_path}/nas.db"
    _run(tmp_path, 1, [], lines)
    store = Store(url, decode_arch=from_dict)
    (a, a2), = _pairs(store.trials("tiny", states=["COMPLETE"])[0].params)[:1]
    _run(tmp_path, 2, [a2], lines)
    done = store.trials("tiny", states=["COMPLETE"])
    runs = {r.id: r.config for r in store.runs("tiny")}
    config = next(iter(runs.values()))
    sources = twin_sources(done, runs, config, (), "cpu")
    (key, source), = sources.items()
    assert source.number == _row(store, a).number and source.arch_hash == _row(store, a).arch_hash
    assert source.result == TrialResult.from_record(_row(store, a))
    for change in ({"seed": 1}, {"epochs": 2}, {"repeats": 2}, {"lr": 1e-3},
                   {"dataset_hash": "other"}, {"dataset_fingerprint": "rebuilt"},
                   {"compile": True}, {"versions": {**config["versions"], "torch": "0.0"}}):
        assert settings_key({**config, **change}) != settings_key(config)
        assert twin_sources(done, runs, {**config, **change}, (), "cpu") == {}, change
    for change in ({"max_concurrent": 7}, {"cpus_per_trial": 3.0}, {"sampler": "tpe"},
                   {"versions": {**config["versions"], "optuna": "0.0"}}):
        assert config.get(next(iter(change))) != change[next(iter(change))]
        assert twin_sources(done, runs, {**config, **change}, (), "cpu") == sources, change
    assert twin_sources(done, runs, config, (), "cuda") == {}  # bf16 there: not this result
    assert twin_sources(done, runs, config, ("synflow",), "cpu") == {}  # not scored by that run
    assert twin_sources(done, {}, config, (), "cpu") == {}  # its run unknown
    older = [dataclasses.replace(t, metrics={k: v for k, v in t.metrics.items()
                                             if k != "val_loss"}) for t in done]
    assert twin_sources(older, runs, config, (), "cpu") == {}  # a row of an older version
    assert reusable([Objective("accuracy", "max"), Objective("macs", "min")])
    assert not reusable([Objective("accuracy", "max"), Objective("latency_ms", "min")])
    assert not reusable([Objective("accuracy", "max")], "asha")  # judged at rungs instead
