"""nas.analysis against brute force on random data: fronts, ranks, hypervolume, knee, noise."""

from __future__ import annotations

import itertools
import math
from datetime import datetime, timezone

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from db import TRIAL_STATES, TrialRecord
from nas import analysis as A

T0 = datetime(2025, 1, 1, tzinfo=timezone.utc)
OBJ2 = ("accuracy:max", "macs:min")


def rec(number: int, accuracy: float | None, macs: int | None, state: str = "COMPLETE", *,
        se: float | None = None, params: dict | None = None, arch: dict | None = None,
        **metrics: float) -> TrialRecord:
    return TrialRecord(id=number + 1, study_id=1, number=number, key=f"k{number}",
                       arch_hash=f"h{number}", arch=arch or {}, params=params or {},
                       state=state, accuracy=accuracy, accuracy_se=se, test_accuracy=None,
                       macs=macs, params_count=None, metrics=dict(metrics), error=None,
                       started_at=T0, finished_at=T0, duration_s=0.0)


def numbers(trials) -> list[int]:
    return [t.number for t in trials]


# --------------------------------------------------------------------------- brute force oracles


def bf_ranks(losses: np.ndarray) -> list[int]:
    """Peel fronts one by one with the O(n^2) definition."""
    n, ranks, left, r = len(losses), [-1] * len(losses), set(range(len(losses))), 0
    while left:
        front = {a for a in left if not any(
            np.all(losses[b] <= losses[a]) and np.any(losses[b] < losses[a]) for b in left)}
        for a in front:
            ranks[a] = r
        left -= front
        r += 1
    assert len(ranks) == n
    return ranks


def bf_hypervolume(losses: np.ndarray, ref: np.ndarray) -> float:
    """Exact volume by cells of the grid of distinct coordinates (any k, small n)."""
    pts = [p for p in losses if np.all(p < ref)]
    if not pts:
        return 0.0
    pts = np.array(pts)
    axes = [np.unique(np.append(pts[:, j], ref[j])) for j in range(len(ref))]
    vol = 0.0
    for cell in itertools.product(*(range(len(a) - 1) for a in axes)):
        lo = np.array([axes[j][c] for j, c in enumerate(cell)])
        hi = np.array([axes[j][c + 1] for j, c in enumerate(cell)])
        if np.any(np.all(pts <= lo, axis=1)):  # the cell's best corner is dominated
            vol += float(np.prod(hi - lo))
    return vol


# --------------------------------------------------------------------------- fronts and ranks

points = st.lists(
    st.tuples(st.one_of(st.none(), st.sampled_from([0.1, 0.5, 0.9]), st.floats(0, 1)),
              st.one_of(st.none(), st.integers(1, 5), st.integers(1, 10**11)),
              st.sampled_from(TRIAL_STATES + ("COMPLETE",) * 5)),
    max_size=40)


@settings(max_examples=200, deadline=None, database=None)
@given(points)
def test_front_and_ranks_match_brute_force(data) -> None:
    trials = [rec(i, a, m, s) for i, (a, m, s) in enumerate(data)]
    ev = A.evaluated(trials, OBJ2)
    assert all(t.state == "COMPLETE" for t in ev.trials), "only COMPLETE trials are evaluated"
    assert len(ev) == sum(s == "COMPLETE" and a is not None and m is not None
                          for a, m, s in data)
    ranks = A.non_dominated_sort(ev.losses)
    assert ranks.tolist() == bf_ranks(ev.losses)
    front = A.pareto_front(trials, OBJ2)
    assert sorted(numbers(front)) == sorted(ev.trials[i].number for i in range(len(ev))
                                            if ranks[i] == 0)
    keys = [(t.macs, -t.accuracy, t.number) for t in front]
    assert keys == sorted(keys), "the front is sorted cheapest first"


@settings(max_examples=100, deadline=None, database=None)
@given(st.lists(st.tuples(st.integers(0, 3), st.integers(0, 3), st.integers(0, 3),
                          st.integers(0, 3)), max_size=30))
def test_ranks_four_objectives_match_brute_force(data) -> None:
    losses = np.array(data, dtype=float).reshape(-1, 4)
    assert A.non_dominated_sort(losses).tolist() == bf_ranks(losses)


def test_pruned_failed_and_diverged_trials_never_enter_a_front() -> None:
    trials = [rec(0, 0.5, 100), rec(1, 0.99, 1, "PRUNED"), rec(2, 0.99, 1, "FAIL"),
              rec(3, 0.99, 1, "INTERRUPTED"), rec(4, math.nan, 1), rec(5, 0.4, 50)]
    assert numbers(A.pareto_front(trials, OBJ2)) == [5, 0]
    assert A.knee_point(trials[1:4], OBJ2) is None
    assert A.noisy_front(trials[1:4], OBJ2).members == ()


def test_objectives_from_metrics_and_params_column() -> None:
    trials = [rec(0, 0.7, 100, latency_ms=5.0), rec(1, 0.8, 100, latency_ms=9.0),
              rec(2, 0.6, 100, latency_ms=2.0), rec(3, 0.9, 100)]
    assert numbers(A.pareto_front(trials, ["accuracy:max", "latency_ms:min"])) == [2, 0, 1]


# --------------------------------------------------------------------------- hypervolume


@settings(max_examples=150, deadline=None, database=None)
@given(st.lists(st.tuples(st.integers(0, 6), st.integers(0, 6), st.integers(0, 6)),
                min_size=1, max_size=8), st.integers(2, 3))
def test_hypervolume_matches_grid_brute_force(data, k) -> None:
    losses = np.array(data, dtype=float)[:, :k]
    ref = np.full(k, 5.0)
    assert A.hypervolume(losses, ref) == pytest.approx(bf_hypervolume(losses, ref), abs=1e-9)


def test_reference_point_rule_and_normalized_hypervolume() -> None:
    a = A.evaluated([rec(0, 0.5, 100), rec(1, 0.9, 300)], OBJ2)
    b = A.evaluated([rec(0, 0.7, 200)], OBJ2)
    ref = A.reference_point(a, b)
    # worst accuracy 0.5, range 0.4 -> loss -0.5 + 0.04; worst MACs 300, range 200 -> 320
    assert ref.tolist() == pytest.approx([-0.46, 320.0])
    ideal = np.array([-0.9, 100.0])
    hv = A.hypervolume(a.losses, ref)
    # two boxes: (-0.9..-0.46) x (300..320) and (-0.5..-0.46) x (100..300) minus nothing
    assert hv == pytest.approx(0.44 * 20 + 0.04 * 200)
    assert A.normalized_hypervolume(a.losses, ref, ideal) == pytest.approx(hv / (0.44 * 220))
    one = A.evaluated([rec(0, 0.5, 100)], OBJ2)
    assert np.all(A.reference_point(one) > one.losses[0]), "a zero range still leaves volume"


@settings(max_examples=60, deadline=None, database=None)
@given(st.lists(st.tuples(st.sampled_from([0.2, 0.4, 0.6, 0.8]), st.integers(1, 6),
                          st.sampled_from(["COMPLETE", "COMPLETE", "PRUNED", "FAIL",
                                           "DUPLICATE"])), min_size=1, max_size=15))
def test_hypervolume_curve_is_the_prefix_hypervolume(data) -> None:
    trials = [rec(i, a, m, s) for i, (a, m, s) in enumerate(data)]
    ref = np.array([0.0, 7.0])
    x, y = A.hypervolume_curve(trials, OBJ2, ref)
    costed = [t for t in trials if t.state in A.EVALUATED_STATES]
    assert x.tolist() == list(range(1, len(costed) + 1))
    for i in range(len(costed)):
        ev = A.evaluated(costed[:i + 1], OBJ2)
        assert y[i] == pytest.approx(bf_hypervolume(ev.losses, ref) if len(ev) else 0.0)
    assert np.all(np.diff(y) >= -1e-12), "hypervolume never decreases"


def test_summarize_curves_cuts_to_the_shortest() -> None:
    s = A.summarize_curves([(np.arange(1, 4), np.array([1.0, 2.0, 3.0])),
                            (np.arange(1, 3), np.array([3.0, 4.0]))])
    assert s["x"].tolist() == [1, 2]
    assert s["mean"].tolist() == [2.0, 3.0] and s["min"].tolist() == [1.0, 2.0]
    assert s["std"].tolist() == pytest.approx([math.sqrt(2)] * 2)


# --------------------------------------------------------------------------- knee


@settings(max_examples=150, deadline=None, database=None)
@given(st.lists(st.tuples(st.floats(0, 1), st.integers(1, 10**6)), min_size=1, max_size=30))
def test_knee_is_farthest_from_the_extremes_line(data) -> None:
    trials = [rec(i, a, m) for i, (a, m) in enumerate(data)]
    knee = A.knee_point(trials, OBJ2)
    front = A.pareto_front(trials, OBJ2)
    assert knee in front
    if len({(t.accuracy, t.macs) for t in front}) < 3:
        return
    # brute force: distance below the line through the two extremes, normalised axes
    acc = np.array([t.accuracy for t in front])
    macs = np.array([t.macs for t in front], dtype=float)
    u = (acc.max() - acc) / (acc.max() - acc.min())
    v = (macs - macs.min()) / (macs.max() - macs.min())
    dist = (1 - u - v) / math.sqrt(2)  # the line u + v = 1 joins (0, 1) and (1, 0)
    best = dist.max()
    assert (1 - (acc.max() - knee.accuracy) / (acc.max() - acc.min())
            - (knee.macs - macs.min()) / (macs.max() - macs.min())) / math.sqrt(2) \
        == pytest.approx(best, abs=1e-9)


def test_knee_hand_built() -> None:
    trials = [rec(0, 0.50, 10), rec(1, 0.85, 20), rec(2, 0.90, 100), rec(3, 0.60, 50)]
    assert A.knee_point(trials, OBJ2).number == 1


# --------------------------------------------------------------------------- noise


def bf_noisy(trials, z):
    ev = A.evaluated(trials, OBJ2)
    front = set(numbers(A.pareto_front(trials, OBJ2)))
    out = {}
    n = len(ev)
    for a in range(n):
        if ev.trials[a].number not in front:
            continue
        tied = []
        for b in range(n):
            if b == a:
                continue
            ok = True
            for j in range(2):
                s = math.sqrt(ev.se[a, j] ** 2 + ev.se[b, j] ** 2)
                if ev.losses[b, j] - ev.losses[a, j] > z * s:
                    ok = False
            if ok:
                tied.append(ev.trials[b].number)
        out[ev.trials[a].number] = tuple(tied)
    band = []
    for a in range(n):
        if ev.trials[a].number in front:
            continue
        dominated = False
        for b in range(n):
            s = [math.sqrt(ev.se[a, j] ** 2 + ev.se[b, j] ** 2) for j in range(2)]
            d = [ev.losses[b, j] - ev.losses[a, j] for j in range(2)]
            if all(d[j] <= z * s[j] for j in range(2)) and any(-d[j] > z * s[j]
                                                                 for j in range(2)):
                dominated = True
        if not dominated:
            band.append(ev.trials[a].number)
    return out, band


@settings(max_examples=150, deadline=None, database=None)
@given(st.lists(st.tuples(st.sampled_from([0.5, 0.6, 0.62, 0.7, 0.9]), st.integers(1, 6),
                          st.sampled_from([None, 0.0, 0.005, 0.02, 0.1])), max_size=25),
       st.sampled_from([1.0, 1.96]))
def test_noisy_front_matches_brute_force(data, z) -> None:
    trials = [rec(i, a, m, se=se) for i, (a, m, se) in enumerate(data)]
    nf = A.noisy_front(trials, OBJ2, z=z)
    tied, band = bf_noisy(trials, z)
    assert {m.trial.number: m.tied_with for m in nf.members} == tied
    assert {m.trial.number for m in nf.members if m.certain} == {k for k, v in tied.items()
                                                                 if not v}
    assert sorted(numbers(nf.band)) == sorted(band)
    quick = A.noisy_front(trials, OBJ2, z=z, band=False)
    assert quick.members == nf.members and quick.band == (), "band=False changed the members"


def test_noisy_front_hand_built() -> None:
    trials = [rec(0, 0.700, 100, se=0.01),   # front; 1 is cheaper and within noise of it
              rec(1, 0.695, 90, se=0.01),    # front (cheapest)
              rec(2, 0.900, 400, se=0.01),   # front, far ahead of everyone: certain
              rec(3, 0.600, 120, se=0.01)]   # dominated, significantly: not in the band
    nf = A.noisy_front(trials, OBJ2)
    by = {m.trial.number: m for m in nf.members}
    assert set(by) == {0, 1, 2}
    assert by[0].tied_with == (1,) and not by[0].certain
    assert by[1].certain and by[2].certain
    assert numbers(nf.certain) == [1, 2] and numbers(nf.within_noise) == [0]
    assert nf.band == ()
    # with no uncertainty (se unknown) only exact ties remain
    exact = A.noisy_front([rec(0, 0.7, 100), rec(1, 0.7, 100), rec(2, 0.6, 50)], OBJ2)
    assert [(m.trial.number, m.tied_with) for m in exact.members] == [(2, ()), (0, (1,)),
                                                                       (1, (0,))]


# --------------------------------------------------------------------------- design space


def meta_arch(mixers, depths, act="gelu"):
    return {"family": "metaformer", "stages": [
        {"mixer": m, "depth": d, "width": 32 * 2 ** i, "act": act, "norm": "ln_nobias"}
        for i, (m, d) in enumerate(zip(mixers, depths))]}


def test_design_features_and_choices() -> None:
    t = rec(0, 0.5, 10, arch=meta_arch(["conv", "conv", "attention", "attention"],
                                       [3, 3, 9, 3]), params={"stage3/mixer": "attention"})
    f = A.design_features(t)
    assert f["mixer_pattern"] == "conv/conv/attention/attention"
    assert f["depth_pattern"] == "3-3-9-3" and f["act"] == "gelu" and f["norm"] == "ln_nobias"
    assert f["stage3/mixer"] == "attention"
    u = rec(1, 0.5, 10, arch=meta_arch(["conv"] * 4, [3, 3, 9, 3], act="relu"),
            params={"stage3/mixer": "conv"})
    assert A.design_choices([t, u]) == ["stage3/mixer", "mixer_pattern", "act"]


def test_design_edfs_match_macs_by_reweighting() -> None:
    # value "a": 3 cheap trials and 1 expensive; value "b": 1 cheap and 3 expensive; errors
    # depend on MACs only, so after matching the two EDFs must be the same distribution
    trials, n = [], 0
    for value, cheap, dear in (("a", 3, 1), ("b", 1, 3)):
        for macs, count, acc in ((10**6, cheap, 0.5), (10**8, dear, 0.9)):
            for _ in range(count):
                trials.append(rec(n, acc, macs, params={"x": value}))
                n += 1
    trials.append(rec(n, 0.99, 10**9, params={"x": "a"}))  # a MACs bin "b" lacks: dropped
    trials.append(rec(n + 1, 0.99, 10**6, "PRUNED", params={"x": "b"}))  # not COMPLETE
    d = A.design_edfs(trials, "x", bins=6)
    assert d.values == ("a", "b") and d.counts == {"a": 4, "b": 4} and d.dropped == 1
    for v in d.values:
        e, f = d.errors[v], d.cdf[v]
        assert f[-1] == pytest.approx(1.0)
        assert float(f[e <= 0.1 + 1e-9].max()) == pytest.approx(0.5), "half the mass is dear"


def test_edf_unweighted() -> None:
    e, f = A.edf([0.3, 0.1, 0.2, 0.2])
    assert e.tolist() == [0.1, 0.2, 0.2, 0.3] and f.tolist() == [0.25, 0.5, 0.75, 1.0]


@pytest.mark.parametrize("evaluator", ["fanova", "ped_anova"])
def test_param_importance_finds_the_parameter_that_matters(evaluator) -> None:
    rng = np.random.default_rng(0)
    trials = []
    for i in range(60):
        mixer = ["conv", "attention", "pooling"][i % 3]
        width = int(rng.integers(16, 64))
        acc = {"conv": 0.6, "attention": 0.8, "pooling": 0.4}[mixer] + rng.normal(0, 0.005)
        trials.append(rec(i, float(acc), 10**6, params={"stage3/mixer": mixer, "width": width,
                                                        "const": 1}))
    imp = A.param_importance(trials, "accuracy:max", evaluator=evaluator)
    assert list(imp)[0] == "stage3/mixer", imp
    assert "const" not in imp and sum(imp.values()) == pytest.approx(1.0)
    assert A.param_importance(trials[:1]) == {}
    # every trial equally good: nothing to explain (fANOVA raised "zero total variance")
    same = [rec(t.number, 0.5, t.macs, params=t.params) for t in trials]
    assert A.param_importance(same, "accuracy:max", evaluator=evaluator) == {}
    with pytest.raises(ValueError, match="allowed: fanova, ped_anova"):
        A.param_importance(trials, evaluator="shap")


def test_data_box_is_the_documented_rule_and_a_given_box_is_in_the_objectives_units() -> None:
    rng = np.random.default_rng(5)
    accs, macs = rng.uniform(0.3, 0.9, 12), rng.uniform(1e6, 9e6, 12)
    trials = [rec(i, float(a), int(m)) for i, (a, m) in enumerate(zip(accs, macs))]
    ev = A.evaluated(trials, OBJ2)
    box = A.data_box(ev)
    assert np.array_equal(box.reference, A.reference_point(ev)) and not box.given
    assert np.array_equal(box.ideal, ev.losses.min(axis=0))
    assert box.fraction(ev.losses) == pytest.approx(
        A.normalized_hypervolume(ev.losses, box.reference, box.ideal), rel=1e-12)
    given = A.given_box(OBJ2, "macs=1e7, accuracy=0.25")
    assert given.given and given.in_units() == {"accuracy": {"ideal": 1.0, "reference": 0.25},
                                                "macs": {"ideal": 0.0, "reference": 1e7}}
    assert np.array_equal(given.reference, [-0.25, 1e7]) and list(given.span) == [0.75, 1e7]
    # computed in the box's own coordinates: any finite box, a fraction in [0, 1]
    wide = A.given_box(OBJ2, "accuracy=-1e200,macs=1e300")
    assert 0.999 < wide.fraction(ev.losses) <= 1  # every point near the ideal corner
    assert A.given_box(OBJ2, "accuracy=0.5,macs=1e7", "accuracy=0.6").fraction(ev.losses) <= 1
    best = ev.losses.min(axis=0)  # an ideal at the best point: one point dominates everything
    tight = A.Box(ev.objectives, best, best + 1.0, "", given=True)
    assert tight.fraction(np.vstack([best - 5.0])) == 1.0
    with pytest.raises(ValueError, match="too wide to compute in accuracy"):
        A.given_box(OBJ2, "accuracy=-1e308,macs=1", "accuracy=1e308")
    assert A.given_box(OBJ2, "accuracy=0.25,macs=1e7", "accuracy=0.95").in_units()[
        "accuracy"] == {"ideal": 0.95, "reference": 0.25}
    with pytest.raises(ValueError, match="--ideal is needed for zc_synflow:max"):
        A.given_box(("accuracy:max", "zc_synflow:max"), "accuracy=0,zc_synflow=0")
