"""The learned pre-screen (``--prescreen surrogate:K``, ``nas/_surrogate.py``): its features,
its ridge model, its expected-hypervolume score, and the searcher asking one candidate until it
has something to learn from (no Ray: Optuna's ask/tell on a real database, real architectures
of the shipped spaces and their analytic costs)."""

from __future__ import annotations

import math
import random

import numpy as np
import pytest
from scipy.stats import kendalltau

from nas._scheduler import known_costs
from nas._searcher import BudgetedSearcher
from nas._surrogate import MIN_OBSERVATIONS, REF_DRAWS, SurrogateScreen, _Ridge, features
from nas.models import to_dict
from nas.results import parse_objectives
from nas.search import parse_prescreen
from search_spaces import load_space

from ._results import result, study_setup

OBJ = parse_objectives("accuracy:max,macs:min")


def _archs(space_name: str, n: int, seed: int) -> list[dict]:
    space = load_space(space_name)
    rng = random.Random(seed)
    seen, out = set(), []
    while len(out) < n:
        d = to_dict(space.sample_random(rng)[0])
        key = repr(d)
        if key not in seen:
            seen.add(key)
            out.append(d)
    return out


def _truth(d: dict) -> float:
    """A made-up but learnable accuracy: grows with log MACs, a bonus per sepconv stage."""
    sep = sum(s["mixer"] == "sepconv" for s in d["stages"])
    return 0.3 + 0.03 * math.log(known_costs(d)["macs"]) / math.log(10) + 0.05 * sep


def test_parse_prescreen_accepts_surrogate():
    assert parse_prescreen("surrogate:4") == ("surrogate", 4)


def test_features_are_one_hot_names_numbers_and_log_costs():
    f = features({"family": "metaformer", "stages": [{"depth": 2, "mixer": "pooling",
                                                       "mixer_args": {"pool_size": 3}}],
                  "head_dropout": 0.0, "flag": True}, {"macs": 1000.0})
    assert f["family=metaformer"] == 1.0 and f["stages.0.mixer=pooling"] == 1.0
    assert f["stages.0.depth"] == 2.0 and f["stages.0.mixer_args.pool_size"] == 3.0
    assert f["flag=True"] == 1.0 and f["head_dropout"] == 0.0
    assert f["log_macs"] == pytest.approx(math.log(1000.0))


def test_ridge_fits_a_linear_truth_and_is_less_sure_far_from_its_data():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(40, 3))
    y = X @ np.array([1.0, -2.0, 0.5]) + 0.01 * rng.normal(size=40)
    m = _Ridge(X, y)
    mean, sd = m.predict(np.array([[0.5, 0.5, 0.5], [20.0, 20.0, 20.0]]))
    assert mean[0] == pytest.approx(-0.25, abs=0.05)
    assert 0 < sd[0] < sd[1], sd  # extrapolating 20 sd out is less certain
    assert m.scale < 0.1, m.scale  # the leave-one-out error sees the small noise


def test_nothing_is_scored_before_enough_trials_completed():
    s = SurrogateScreen(OBJ, seed=0)
    archs = _archs("hybrid_conv_attn", MIN_OBSERVATIONS + 1, seed=1)
    for d in archs[:MIN_OBSERVATIONS - 1]:
        s.observe(d, [_truth(d), known_costs(d)["macs"]])
    assert not s.ready and s(archs[-1]) == 0.0
    s.observe(archs[0], [None, 1.0])  # an unmeasured value teaches nothing
    assert not s.ready
    s.observe(archs[-2], [_truth(archs[-2]), known_costs(archs[-2])["macs"]])
    assert s.ready and s(archs[-1]) >= 0.0


def test_the_score_ranks_candidates_by_the_hypervolume_they_really_add():
    archs = _archs("hybrid_conv_attn", 100, seed=2)
    seen, new = archs[:60], archs[60:]
    s = SurrogateScreen(OBJ, seed=0)
    for d in seen:
        s.observe(d, [_truth(d), known_costs(d)["macs"]])
    from optuna._hypervolume import compute_hypervolume

    def pts(ds):
        return np.array([[-_truth(d), known_costs(d)["macs"] / 1e10] for d in ds])

    ref = np.array([0.0, 1.0])
    base = compute_hypervolume(pts(seen), ref)
    gains = [compute_hypervolume(pts([*seen, d]), ref) - base for d in new]
    scores = [s(d) for d in new]
    useful = [i for i, g in enumerate(gains) if g > 0]
    assert 3 <= len(useful) < len(new), len(useful)  # the test set has both kinds
    tau = kendalltau(scores, gains)[0]
    assert tau > 0.3, tau
    best = max(range(len(new)), key=lambda i: scores[i])
    assert gains[best] > 0, "the top-scored candidate adds hypervolume"


def test_the_searcher_asks_one_candidate_until_the_screen_is_ready_then_k(tmp_path):
    space, store, study, ot = study_setup(tmp_path)  # the default objectives, as OBJ
    screen = SurrogateScreen(OBJ, seed=0)
    budget = MIN_OBSERVATIONS + 4
    searcher = BudgetedSearcher(space, ot, OBJ, store, study.id, "run", budget=budget,
                                done={}, max_attempts=2 * budget, num_classes=10,
                                screen=screen, screen_k=3, screen_name="surrogate")
    for i in range(budget):
        cfg = searcher.suggest(f"t{i}")
        assert isinstance(cfg, dict), cfg
        if i < MIN_OBSERVATIONS:
            assert searcher.screened == 0, (i, searcher.screened)  # one candidate asked
        rec = store.start_trial(study.id, key=f"run:t{i}", arch_hash=cfg["arch_hash"],
                                arch=cfg["arch"], params=cfg["params"])
        acc = _truth(cfg["arch"])
        r = result(accuracy=acc, macs=int(known_costs(cfg["arch"])["macs"]))
        store.finish_trial(rec.id, state="COMPLETE", metrics=r.metrics(), **r.columns())
        searcher.on_trial_complete(f"t{i}", r.report())
        searcher.settle(f"t{i}")
    assert searcher.completed == budget and len(screen.rows) == budget  # it learned each one
    out = [t for t in store.trials("s") if t.metrics.get("screened_out")]
    assert searcher.screened == len(out) > 0
    assert all(t.error.startswith("screened out by --prescreen surrogate:3: surrogate ")
               and t.metrics["surrogate_score"] >= 0.0 for t in out), [t.error for t in out]


def test_a_candidate_costlier_than_all_trained_can_still_add_hypervolume():
    """With the space, the MACs reference is the space's worst, not the worst trained so far:
    a model bigger than every observed one is scored by its predicted accuracy, not zeroed."""
    def steep(d: dict) -> float:  # bigger is clearly better here
        return 0.1 * math.log10(known_costs(d)["macs"]) - 0.3

    space = load_space("hybrid_conv_attn")
    archs = sorted(_archs("hybrid_conv_attn", 60, seed=3), key=lambda d: known_costs(d)["macs"])
    s = SurrogateScreen(OBJ, seed=0, space=space)
    small = archs[:40]
    top = max(known_costs(d)["macs"] for d in small)
    big = max((d for d in archs[40:] if 1.1 * top < known_costs(d)["macs"] < s.cost_ref["macs"]),
              key=steep)
    assert steep(big) > max(steep(d) for d in small) + 0.02  # it would add to the front
    blind = SurrogateScreen(OBJ, seed=0)
    for d in small:
        s.observe(d, [steep(d), known_costs(d)["macs"]])
        blind.observe(d, [steep(d), known_costs(d)["macs"]])
    assert blind(big) < 1e-9 < s(big), (blind(big), s(big))  # blind: past its box


def test_the_reference_of_a_cost_to_maximize_is_the_cheapest_of_the_space():
    space = load_space("hybrid_conv_attn")
    down = SurrogateScreen(parse_objectives("accuracy:max,params:min"), seed=0, space=space)
    up = SurrogateScreen(parse_objectives("accuracy:max,params:max"), seed=0, space=space)
    sizes = [known_costs(d)["params"] for d in _archs("hybrid_conv_attn", 30, seed=4)]
    assert up.cost_ref["params"] <= min(sizes) and down.cost_ref["params"] >= max(sizes) * 0.9
    assert "accuracy" not in up.cost_ref  # learned, not computed


def test_the_reference_draws_are_the_feasible_ones_and_bounded_on_a_tiny_share():
    import time
    from pathlib import Path

    import yaml

    from search_spaces import Space

    space = load_space("hybrid_conv_attn")
    rng = random.Random(0)  # the same draws as sample_random's own rejection
    expected = max(known_costs(to_dict(space.sample_random(rng)[0]))["macs"]
                   for _ in range(REF_DRAWS))
    assert SurrogateScreen(OBJ, seed=0, space=space).cost_ref["macs"] == expected
    # 4 of 110,592 configurations meet this limit: 25,600 draws, then the local search (a
    # call of sample_random per draw, each with its own local search, took 21 s here)
    text = (Path(__file__).resolve().parents[2] / "search_spaces" /
            "hybrid_conv_attn.yaml").read_text()
    rare = Space(yaml.safe_load(text.replace("max_macs: 8.0e+9", "max_macs: 3.65e+8")), "r")
    start = time.monotonic()
    ref = SurrogateScreen(OBJ, seed=0, space=rare).cost_ref["macs"]
    assert 3.6e8 < ref <= 3.65e8 and time.monotonic() - start < 15
