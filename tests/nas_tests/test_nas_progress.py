"""The live progress view: counts, the incremental front, best accuracy within the MACs limit."""

from __future__ import annotations

import io
import random
import time
from types import SimpleNamespace

import pytest

from nas._progress import ParetoSet, Progress, format_duration
from nas.results import DEFAULT_OBJECTIVES, Objective


def _brute_front(points):
    def dom(a, b):
        return all(x >= y for x, y in zip(a, b)) and any(x > y for x, y in zip(a, b))
    return sorted(p for p in points if not any(dom(q, p) for q in points))


@pytest.mark.parametrize("dims", [2, 3])
def test_the_incremental_front_equals_brute_force(dims):
    rng = random.Random(dims)
    for _ in range(30):
        # coarse values: ties and duplicates happen
        points = [tuple(rng.randint(0, 6) for _ in range(dims)) for _ in range(rng.randint(1, 40))]
        s = ParetoSet()
        for p in points:
            s.add(p)
        assert sorted(s.front) == [tuple(map(float, p)) for p in _brute_front(points)]


def _res(acc, macs):
    """The fields of a TrialResult the progress view reads."""
    return SimpleNamespace(accuracy=acc, macs=macs,
                           value=lambda name: {"accuracy": acc, "macs": macs}[name])


def test_counts_front_best_within_the_limit_and_eta():
    lines: list[str] = []
    prior = [SimpleNamespace(accuracy=0.5, macs=1e9, number=0, metrics={}),
             SimpleNamespace(accuracy=0.9, macs=5e9, number=1, metrics={})]
    p = Progress(6, DEFAULT_OBJECTIVES, prior, max_macs=2e9, log=lines.append, every=0)
    assert p.done == 2 and len(p.front) == 2 and p.best == (0.5, 1e9, 0)
    for _ in range(3):
        p.started()
    p.completed(_res(0.6, 1.5e9), number=2)  # on the front, best within 2 GMACs
    p.completed(_res(0.4, 3e9), number=3)  # dominated by #0? no: by #2 (better and cheaper)
    p.failed_one()
    line = p.line()
    assert "4/6 done" in line and "0 running" in line and "1 failed" in line
    assert "front 3" in line, line  # #0, #1, #2
    assert "best acc within 2 GMACs 0.6000 at 1.500 GMACs (#2)" in line, line
    assert "ETA" in line and "ETA -" not in line
    p.log("[  3/6] a trial line")
    p.close()
    assert lines == ["[  3/6] a trial line", f"[progress] {p.line()}"]


def test_no_limit_means_best_over_all_macs_and_other_objectives_work():
    objs = (Objective("accuracy", "max"), Objective("params", "min"), Objective("macs", "min"))
    p = Progress(2, objs, log=lambda _: None, every=0)
    p.completed(SimpleNamespace(accuracy=0.7, macs=9e9,
                                value=lambda n: {"accuracy": 0.7, "params": 1.0, "macs": 9e9}[n]))
    assert "best acc 0.7000 at 9.000 GMACs" in p.line() and "front 1" in p.line()


def test_periodic_lines_when_not_on_a_terminal():
    lines: list[str] = []
    p = Progress(3, DEFAULT_OBJECTIVES, log=lines.append, every=0.05).start()
    time.sleep(0.3)
    p.close()
    assert len([ln for ln in lines if ln.startswith("[progress] 0/3 done")]) >= 3, lines


def test_a_live_line_is_redrawn_under_the_trial_lines():
    out = io.StringIO()
    p = Progress(2, DEFAULT_OBJECTIVES, log=print, live=True, stream=out).start()
    p.started()
    p.log("[  1/2] first")
    p.close()
    text = out.getvalue()
    assert "[  1/2] first\n" in text and "\r\x1b[2K" in text
    assert text.endswith(f"[progress] {p.line()}\n")
    assert "1 running" in text


def test_format_duration():
    assert [format_duration(s) for s in (4.4, 65, 7260)] == ["4 s", "1 min 05 s", "2 h 01 min"]


def test_under_asha_the_budget_counts_pruned_trials():
    p = Progress(4, DEFAULT_OBJECTIVES, log=lambda _: None, every=0, count_pruned=True,
                 pruned_before=1)
    p.started()
    p.pruned_one()
    p.completed(_res(0.6, 1e9), number=3)
    line = p.line()
    assert line.startswith("3/4 evaluated · 1 completed · 0 running · 0 failed · 2 pruned"), line
    assert "ETA -" not in line  # two evaluated in this run: a rate


def test_a_lost_trial_is_no_longer_running_and_not_failed():
    p = Progress(2, DEFAULT_OBJECTIVES, log=lambda _: None, every=0)
    p.started()
    p.lost_one()  # its worker went away: the architecture is asked again, as a new trial
    p.started()
    p.completed(_res(0.6, 1e9), number=1)
    assert p.line().startswith("1/2 done · 0 running · 0 failed"), p.line()


def test_an_accuracy_tie_shows_the_cheaper_trial():
    p = Progress(3, DEFAULT_OBJECTIVES, log=lambda _: None, every=0)
    p.completed(_res(0.5, 2e9), number=0)
    p.completed(_res(0.5, 1e9), number=1)
    p.completed(_res(0.5, 3e9), number=2)
    assert p.best == (0.5, 1e9, 1)


def test_a_reused_twin_counts_as_done_never_running_and_not_in_the_eta_rate():
    p = Progress(5, DEFAULT_OBJECTIVES, log=lambda s: None, every=0)
    p.started()
    p.reused(_res(0.7, 1e9), number=1)  # recorded at once, while #0 trains
    assert (p.done, p.running) == (1, 1) and p.best == (0.7, 1e9, 1)
    assert "ETA -" in p.line()  # nothing trained yet: no rate to go by
    p.t0 -= 100.0  # #0 trained for 100 s
    p.completed(_res(0.6, 2e9), number=0)
    # 3 left at the rate of the one trial that trained (100 s each), not of 2 "done" in 100 s
    assert "2/5 done" in p.line() and "ETA 5 min 00 s" in p.line(), p.line()
