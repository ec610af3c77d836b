"""Zero-cost proxies in a search: recorded metrics, ``zc_*`` objectives and the pre-screen
(no Ray: the searcher runs on Optuna's ask/tell with real proxy scores on real proxy models)."""

from __future__ import annotations

import optuna
import pytest
import torch

from db import Store, TrialRecord
from nas._searcher import BudgetedSearcher
from nas._trainable import zero_cost_at_init
from nas.errors import ConfigError
from nas.models import from_dict
from nas.results import (
    final_result,
    objective_names,
    parse_objectives,
    parse_zero_cost,
    zero_cost_implied,
)
from nas.search import parse_prescreen
from search_spaces import load_space

from ._results import complete_slot, result


def _record(r) -> TrialRecord:
    return TrialRecord(id=1, study_id=1, number=0, key="k", arch_hash="h", arch={}, params={},
                       state="COMPLETE", metrics=r.metrics(), error=None, started_at=None,
                       finished_at=None, duration_s=None, **r.columns())


# --------------------------------------------------------------------------- 1. recorded metric


def test_scores_round_trip_and_are_stored_flat_as_zc_names():
    r = result(zero_cost={"synflow": 12.5, "naswot": 300.0}, zero_cost_seconds=0.25)
    assert final_result(r.report()) == r
    m = r.metrics()
    assert m["zero_cost"] == {"synflow": 12.5, "naswot": 300.0}
    assert (m["zc_synflow"], m["zc_naswot"], m["zero_cost_seconds"]) == (12.5, 300.0, 0.25)
    assert result().metrics()["zero_cost"] == {} and "zc_synflow" not in result().metrics()


def test_scores_survive_the_flattened_result_tune_hands_searchers():
    from ray.tune.utils import flatten_dict

    for scores in ({"synflow": 12.5, "naswot": 300.0}, {}):
        r = result(zero_cost=scores, zero_cost_errors={"snip": "gave nan"} if scores else {})
        assert final_result(flatten_dict(r.report())) == r, scores


def test_a_proxy_without_a_finite_score_is_left_out_with_its_reason(monkeypatch):
    from proxies.errors import ZeroCostError
    from proxies.zero_cost import _registry

    def nonfinite(model, images, labels):
        return float("inf")

    monkeypatch.setitem(_registry._PROXIES, "nonfinite", nonfinite)
    space = load_space("tiny")
    proxy = space.proxy(space.sample(optuna.create_study().ask()), 10)
    res = space.proxy_spec.resolution
    images, labels = torch.randn(4, 3, res, res), torch.randint(0, 10, (4,))
    errors: dict[str, str] = {}
    scores = zero_cost_at_init(proxy, ["params", "nonfinite"], images, labels, 0, errors)
    assert list(scores) == ["params"] and "gave inf" in errors["nonfinite"], (scores, errors)
    with pytest.raises(ZeroCostError):
        zero_cost_at_init(proxy, ["nonfinite"], images, labels, 0)


def test_zero_cost_names_are_checked_against_the_registry():
    assert parse_zero_cost("synflow, naswot,synflow") == ("synflow", "naswot")
    assert parse_zero_cost(("params",)) == ("params",) and parse_zero_cost(None) == ()
    with pytest.raises(ConfigError, match="--zero-cost: unknown zero-cost proxy 'synflw'") as e:
        parse_zero_cost("synflw")
    assert "known: grad_norm, jacob_cov, naswot" in str(e.value), e.value
    assert "did you mean 'synflow'" in str(e.value) and "\n" not in str(e.value)


def test_same_init_as_repeat_zero_and_callers_rng_untouched():
    space = load_space("tiny")
    arch = space.sample(optuna.create_study().ask())
    proxy = space.proxy(arch, 10)
    res = space.proxy_spec.resolution
    g = torch.Generator().manual_seed(0)
    images, labels = torch.randn(8, 3, res, res, generator=g), torch.randint(0, 10, (8,))
    torch.manual_seed(123)
    before = torch.rand(1)
    torch.manual_seed(123)
    a = zero_cost_at_init(proxy, ["synflow", "naswot"], images, labels, seed=0)
    assert torch.rand(1) == before, "the caller's RNG state is left as it was"
    assert a == zero_cost_at_init(proxy, ["synflow", "naswot"], images, labels, seed=0)
    assert a != zero_cost_at_init(proxy, ["synflow", "naswot"], images, labels, seed=1)


# --------------------------------------------------------------------------- 2. objectives


def test_zc_objectives_parse_and_read_stored_trials():
    objs = parse_objectives("accuracy:max,zc_synflow:max")
    assert objective_names(objs) == ("accuracy:max", "zc_synflow:max")
    assert objs[1].stored == "zc_synflow" and objs[1].optuna_direction == "maximize"
    r = result(zero_cost={"synflow": 7.0})
    assert objs[1].of(_record(r)) == 7.0 and r.value("zc_synflow") == 7.0
    assert objs[1].of(_record(result())) is None, "a trial without the score has no value"
    objs = parse_objectives("zc_naswot:max,macs:min")
    assert zero_cost_implied(("synflow",), objs) == ("synflow", "naswot")
    assert zero_cost_implied((), parse_objectives("accuracy:max")) == ()


def test_unknown_zc_objective_lists_the_known_ones():
    with pytest.raises(ConfigError) as e:
        parse_objectives("accuracy:max,zc_synflw:max")
    msg = str(e.value)
    assert msg.startswith("--objectives: unknown zero-cost proxy in 'zc_synflw'"), msg
    assert "zc_naswot" in msg and "did you mean 'zc_synflow'" in msg and "\n" not in msg
    with pytest.raises(ConfigError, match=r"or zc_<zero-cost proxy>"):
        parse_objectives("acuracy:max")


# --------------------------------------------------------------------------- 3. pre-screen


@pytest.mark.parametrize("spec, message", [
    ("synflow", "must be <zero-cost proxy or surrogate>:K with an integer K >= 2; got 'synflow'"),
    ("synflow:1", "K >= 2; got 'synflow:1'"),
    ("synflow:x", "K >= 2"),
    ("synflow:²", "K >= 2"),  # str.isdigit() but not int(): was a ValueError traceback
    ("synflow:٣", "K >= 2"),  # an Arabic-Indic 3: was taken as 3
    ("synflw:3", "--prescreen: unknown screen 'synflw'; known: surrogate .learned"),
    ("surogate:3", "did you mean 'surrogate'"),
])
def test_bad_prescreen_is_one_line(spec, message):
    with pytest.raises(ConfigError, match=message) as e:
        parse_prescreen(spec)
    assert "\n" not in str(e.value)
    assert parse_prescreen("naswot:4") == ("naswot", 4) and parse_prescreen(None) is None


def test_prescreen_trains_the_best_of_each_group_and_both_tables_agree(tmp_path):
    space = load_space("tiny")
    store = Store(f"sqlite:///{tmp_path}/nas.db", decode_arch=from_dict)
    objectives = parse_objectives("accuracy:max,macs:min")
    study = store.get_or_create_study("s", space=space.name, space_hash=space.hash,
                                      objectives=objective_names(objectives), config={})
    ot = optuna.create_study(directions=[o.optuna_direction for o in objectives],
                             sampler=optuna.samplers.RandomSampler(seed=0))
    res = space.proxy_spec.resolution
    g = torch.Generator().manual_seed(0)
    images, labels = torch.randn(8, 3, res, res, generator=g), torch.randint(0, 10, (8,))
    scored: dict[str, float] = {}

    def screen(arch) -> float:  # the real proxy on the real proxy model
        from nas.models import arch_hash

        s = zero_cost_at_init(space.proxy(arch, 10), ["synflow"], images, labels, 0)["synflow"]
        scored[arch_hash(arch)] = s
        return s

    searcher = BudgetedSearcher(space, ot, objectives, store, study.id, "run", budget=4,
                                done={}, max_attempts=8, num_classes=10, screen=screen,
                                screen_k=3, screen_name="synflow")
    launched = []
    for i in range(4):
        launched.append(complete_slot(searcher, store, study.id, i)["arch_hash"])
    assert searcher.suggest("t-last") == "FINISHED" and searcher.completed == 4

    ours = store.trials("s")
    assert len(ours) == len(ot.trials), (len(ours), len(ot.trials))
    out = [t for t in ours if t.metrics.get("screened_out")]
    pruned = [t for t in ot.trials if t.state == optuna.trial.TrialState.PRUNED]
    assert len(out) == len(pruned) == searcher.screened > 0, (len(out), len(pruned))
    assert all(t.state == "FAIL" and t.error.startswith("screened out by --prescreen synflow:3")
               for t in out), [t.error for t in out]
    assert sum(t.state == "COMPLETE" for t in ours) == 4, "the budget counts COMPLETE only"
    for t in out:  # each loser scored no better than the candidate trained in its place
        winner = t.metrics["screened_for_hash"]
        assert winner in launched and t.metrics["zc_synflow"] == scored[t.arch_hash]
        assert t.metrics["zc_synflow"] <= scored[winner], (t.metrics, scored[winner])
    groups = [t.user_attrs["prescreen"]["group"] for t in ot.trials if "prescreen" in t.user_attrs]
    assert len(groups) == 4 and all(len(g) == 3 for g in groups), groups
