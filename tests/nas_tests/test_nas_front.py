"""nas.analysis.pareto_front, the one front implementation: hand-built cases and a brute-force
O(n^2) oracle on random data (two and three objectives, fields and metrics)."""

from __future__ import annotations

import math
from datetime import datetime, timezone

from hypothesis import given, settings
from hypothesis import strategies as st

from db import TRIAL_STATES, TrialRecord
from nas.analysis import pareto_front

T0 = datetime(2025, 1, 1, tzinfo=timezone.utc)
OBJ = ("accuracy:max", "macs:min")


def rec(
    number: int,
    accuracy: float | None,
    macs: int | None,
    state: str = "COMPLETE",
    **metrics: float,
) -> TrialRecord:
    return TrialRecord(
        id=number + 1,
        study_id=1,
        number=number,
        key=f"k{number}",
        arch_hash=f"h{number}",
        arch={},
        params={},
        state=state,
        accuracy=accuracy,
        accuracy_se=None,
        test_accuracy=None,
        macs=macs,
        params_count=None,
        metrics=dict(metrics),
        error=None,
        started_at=T0,
        finished_at=T0,
        duration_s=0.0,
    )


def brute_force(trials: list[TrialRecord]) -> list[TrialRecord]:
    pts = [t for t in trials if t.state == "COMPLETE" and None not in (t.accuracy, t.macs)]

    def dominates(b: TrialRecord, a: TrialRecord) -> bool:
        return (
            b.accuracy >= a.accuracy
            and b.macs <= a.macs
            and (b.accuracy > a.accuracy or b.macs < a.macs)
        )

    return [a for a in pts if not any(dominates(b, a) for b in pts)]


def numbers(trials: list[TrialRecord]) -> list[int]:
    return [t.number for t in trials]


def test_hand_built_front_with_ties_and_dominated_points() -> None:
    trials = [
        rec(0, 0.70, 100),  # front
        rec(1, 0.70, 100),  # identical to 0: kept as well
        rec(2, 0.65, 100),  # same MACs, lower accuracy: dominated by 0
        rec(3, 0.70, 150),  # same accuracy, more MACs: dominated by 0
        rec(4, 0.80, 200),  # front
        rec(5, 0.60, 50),  # front (cheapest)
        rec(6, 0.75, 300),  # dominated by 4
        rec(7, 0.90, 400),  # front
        rec(8, 0.99, 10, state="FAIL"),  # not COMPLETE: ignored
        rec(9, None, 10),  # no accuracy: ignored
        rec(10, 0.95, None),  # no MACs: ignored
        rec(11, 0.90, 400),  # identical to 7: kept
        rec(12, 0.60, 50, state="DUPLICATE"),  # not COMPLETE: ignored
    ]
    got = numbers(pareto_front(trials, OBJ))
    expected = [5, 0, 1, 4, 7, 11]
    assert got == expected, f"expected front {expected}, got {got}"
    assert numbers(brute_force(trials)) == sorted(expected), "oracle disagrees with hand result"


def test_empty_and_single() -> None:
    assert pareto_front([], OBJ) == []
    assert numbers(pareto_front([rec(0, 0.5, 10)], OBJ)) == [0]
    assert pareto_front([rec(0, 0.5, 10, state="RUNNING")], OBJ) == []


def test_other_objectives_from_fields_and_metrics() -> None:
    trials = [
        rec(0, 0.7, 100, latency_ms=5.0),
        rec(1, 0.8, 100, latency_ms=9.0),
        rec(2, 0.6, 100, latency_ms=2.0),
        rec(3, 0.9, 100),  # no latency metric: ignored
        rec(4, 0.5, 100, latency_ms=math.nan),  # non-finite: ignored
    ]
    got = numbers(pareto_front(trials, ["accuracy:max", "latency_ms:min"]))
    assert got == [2, 0, 1], f"expected [2, 0, 1], got {got}"
    got = numbers(pareto_front(trials, ["macs:max", "accuracy:min"]))
    assert got == [4], f"maximize macs / minimize accuracy: expected [4], got {got}"


points = st.lists(
    st.tuples(
        st.one_of(st.none(), st.sampled_from([0.1, 0.2, 0.3, 0.5, 0.8]), st.floats(0, 1)),
        st.one_of(st.none(), st.integers(0, 6), st.integers(0, 10**11)),
        st.sampled_from(TRIAL_STATES + ("COMPLETE",) * 5),
    ),
    max_size=40,
)


@settings(max_examples=300, deadline=None, database=None)
@given(points)
def test_matches_brute_force(data: list[tuple[float | None, int | None, str]]) -> None:
    trials = [rec(i, acc, macs, state) for i, (acc, macs, state) in enumerate(data)]
    front = pareto_front(trials, OBJ)
    expected = brute_force(trials)
    assert sorted(numbers(front)) == numbers(expected), (
        f"expected front {numbers(expected)}, got {sorted(numbers(front))}"
    )
    keys = [(t.macs, t.number) for t in front]
    assert keys == sorted(keys), f"front must be sorted by MACs (then input order), got {keys}"
    assert pareto_front(list(reversed(trials)), OBJ) == sorted(front,
                                                               key=lambda t: (t.macs, -t.number))


three = st.lists(
    st.tuples(st.sampled_from([0.1, 0.5, 0.9]), st.integers(0, 3), st.integers(0, 3)),
    max_size=30,
)


@settings(max_examples=200, deadline=None, database=None)
@given(three)
def test_three_objectives_match_brute_force(data: list[tuple[float, int, int]]) -> None:
    trials = [rec(i, acc, macs, latency_ms=float(lat)) for i, (acc, macs, lat) in enumerate(data)]
    objectives = ("accuracy:max", "macs:min", "latency_ms:min")

    def dominates(b: TrialRecord, a: TrialRecord) -> bool:
        kb = (-b.accuracy, b.macs, b.metrics["latency_ms"])
        ka = (-a.accuracy, a.macs, a.metrics["latency_ms"])
        return all(x <= y for x, y in zip(kb, ka)) and kb != ka

    expected = [a for a in trials if not any(dominates(b, a) for b in trials)]
    front = pareto_front(trials, objectives)
    assert sorted(numbers(front)) == numbers(expected), (
        f"expected front {numbers(expected)}, got {sorted(numbers(front))}")
    keys = [(t.macs, t.metrics["latency_ms"], -t.accuracy, t.number) for t in front]
    assert keys == sorted(keys), f"front must be sorted min objectives first, got {keys}"


def test_one_objective_is_its_best() -> None:
    trials = [rec(i, acc, macs) for i, (acc, macs) in enumerate([(0.7, 100), (0.8, 200),
                                                                  (0.6, 150), (0.9, 90)])]
    assert numbers(pareto_front(trials, ["accuracy:max"])) == [3]
