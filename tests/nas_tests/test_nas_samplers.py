"""Every --sampler runs the searcher, seeded, with the space's constraints given to Optuna."""

from __future__ import annotations

import optuna
import pytest

from db import Store
from nas._samplers import SAMPLERS, make_sampler
from nas._searcher import BudgetedSearcher
from nas.errors import ConfigError
from nas.models import from_dict
from nas.results import DEFAULT_OBJECTIVES, objective_names
from search_spaces import load_space

from ._results import complete_slot


def _search(tmp_path, name: str, seed: int, n: int = 14):
    space = load_space("tiny")  # conv_before_attention: some proposals are infeasible
    url = f"sqlite:///{tmp_path}/{name}-{seed}-{len(list(tmp_path.iterdir()))}.db"
    store = Store(url, decode_arch=from_dict)
    study = store.get_or_create_study("s", space=space.name, space_hash=space.hash,
                                      objectives=objective_names(DEFAULT_OBJECTIVES), config={})
    ot = optuna.create_study(directions=[o.optuna_direction for o in DEFAULT_OBJECTIVES],
                             sampler=make_sampler(name, seed))
    searcher = BudgetedSearcher(space, ot, DEFAULT_OBJECTIVES, store, study.id, "run", budget=n,
                                done={}, max_attempts=3 * n, num_classes=10)
    hashes = [complete_slot(searcher, store, study.id, i)["arch_hash"] for i in range(n)]
    return space, ot, searcher, hashes


@pytest.mark.parametrize("name", SAMPLERS)
def test_each_sampler_is_seeded_and_records_constraints(tmp_path, name):
    optuna.logging.set_verbosity(optuna.logging.ERROR)
    space, ot, searcher, hashes = _search(tmp_path, name, seed=3)
    assert searcher.completed == 14 and len(set(hashes)) == 14
    assert _search(tmp_path, name, seed=3)[3] == hashes, "same seed, same proposals"
    for t in ot.trials:
        values = t.constraints  # Optuna's own record, read by its constrained samplers
        assert tuple(values) == space.constraints.names, values
        assert space.constraints.names == ("conv_before_attention", "nondecreasing_widths")
        arch = space.sample(optuna.trial.FixedTrial(t.params))
        assert list(values.values()) == list(space.constraint_values(arch)), values
        feasible = all(v <= 0 for v in values.values())
        if t.state == optuna.trial.TrialState.PRUNED:  # infeasible: never built, told PRUNED
            assert not feasible and t.user_attrs["infeasible"], (values, t.user_attrs)
        elif t.state == optuna.trial.TrialState.COMPLETE:
            assert feasible, values
    assert searcher.infeasible == sum(t.state == optuna.trial.TrialState.PRUNED
                                      for t in ot.trials)


def test_unknown_sampler_is_one_line_naming_the_choices():
    with pytest.raises(ConfigError, match="--sampler must be one of nsga2, nsga3, tpe, gp, "
                                          "qmc, random; got 'cmaes'"):
        make_sampler("cmaes", 0)


@pytest.mark.parametrize("space_name", ["hybrid_conv_attn", "metaformer", "tiny"])
def test_constraint_values_agree_with_violations(space_name):
    space = load_space(space_name)
    seen = set()
    for i in range(300):
        arch, _ = space.sample_random(i, feasible=False)
        values = space.constraint_values(arch)
        assert len(values) == len(space.constraints.names)
        broken = {n for n, v in zip(space.constraints.names, values) if v > 0}
        assert broken == {v.split(":")[0] for v in space.violations(arch)}, (values, arch)
        seen |= broken
    if space_name == "hybrid_conv_attn":
        assert "conv_before_attention" in seen, seen
