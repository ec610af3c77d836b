"""Multi-objective ASHA (nas/_scheduler.py): the rung decision, without a Ray cluster."""

from __future__ import annotations

import dataclasses

import optuna
import pytest

from nas._preflight import check_settings
from nas._recorder import Recorder
from nas._scheduler import (
    MultiObjectiveASHA,
    nondominated_ranks,
    rung_decision,
    rungs,
    validation_points,
)
from nas._searcher import BudgetedSearcher
from nas.errors import ConfigError
from nas.models import analytic_cost, from_dict
from nas.results import DEFAULT_OBJECTIVES, Objective, node_label, worker_label, worker_of
from nas.search import SearchConfig

from ._results import study_setup

CONTINUE, STOP = "CONTINUE", "STOP"


@pytest.mark.parametrize("epochs, r_min, eta, expected", [
    (3, 1, 3, (1,)), (3, 1, 2, (1, 2)), (27, 1, 3, (1, 3, 9)), (10, 2, 2, (2, 4, 8)),
    (1, 1, 3, ()), (3, 1 / 3, 3, (1 / 3, 1)), (3, 0.25, 4, (0.25, 1)), (2, 0.5, 2, (0.5, 1)),
    (3, 1 / 9, 3, (1 / 9, 1 / 3, 1)),
])
def test_rungs_are_r_min_times_eta_powers_below_the_last_epoch(epochs, r_min, eta, expected):
    got = rungs(epochs, r_min, eta)
    assert got == pytest.approx(expected) and len(got) == len(expected)
    assert all(type(r) is int for r in got if r == round(r)), "a whole-epoch rung is an int"


@pytest.mark.parametrize("epochs, r_min, eta, expected", [
    (3, 1 / 3, 3, (1 / 3, 1, 2)),  # the search's default: the ladder stops at 1, 2 is added
    (10, 1 / 3, 3, (1 / 3, 1, 3, 9)), (4, 2, 2, (2, 3)), (3, 1, 3, (1, 2)),
    (3, 1, 2, (1, 2)),  # the ladder already ends one epoch before the last: nothing added
    (2, 0.5, 2, (0.5, 1)), (1, 1 / 3, 3, (1 / 3,)),  # one epoch: no epoch before the last
])
def test_the_late_rung_is_one_epoch_before_the_last_when_the_ladder_stops_below_it(
        epochs, r_min, eta, expected):
    got = rungs(epochs, r_min, eta, late=True)
    assert got == pytest.approx(expected) and len(got) == len(expected)
    assert validation_points(got, epochs)[-2:] == (expected[-1], epochs)


def test_the_late_rung_stops_a_trial_one_epoch_before_the_last():
    sched = _scheduler(epochs=4, late=True, macs=dict.fromkeys("abcd", 1.0))
    assert sched.rungs == (1, 2, 3)  # eta 2 from 1: the ladder stops at 2 of 4
    trials = [_Trial(k, {"arch": {"id": k}}) for k in "abcd"]
    for t, acc in zip(trials, (0.5, 0.6, 0.7, 0.8)):  # all continue past epoch 1 (a chain)
        sched.on_trial_result(None, t, _epoch(1, acc))
    for t, acc in zip(trials, (0.55, 0.65, 0.75, 0.85)):
        assert sched.on_trial_result(None, t, _epoch(2, acc)) == CONTINUE
    # at the late rung, the same cost and less accurate than the two before it: stopped there
    assert sched.on_trial_result(None, trials[0], _epoch(3, 0.9)) == CONTINUE
    assert sched.on_trial_result(None, trials[1], _epoch(3, 0.95)) == CONTINUE
    assert sched.on_trial_result(None, trials[2], _epoch(3, 0.1)) == STOP
    assert sched.stopped[trials[2].trial_id].epoch == 3


def test_a_trial_validates_at_its_rungs_and_last_epoch_only():
    assert validation_points(rungs(3, 1 / 3, 3), 3) == (1 / 3, 1.0, 3.0)
    assert validation_points(rungs(10, 2, 2), 10) == (2.0, 4.0, 8.0, 10.0)
    assert validation_points((), 3) == (3.0,)


def test_nondominated_ranks_peel_fronts():
    # (accuracy, -MACs): a and b trade off, c is dominated by b, d by c
    points = [(0.9, -10.0), (0.7, -2.0), (0.6, -3.0), (0.5, -4.0), (0.9, -10.0)]
    assert nondominated_ranks(points) == [0, 0, 1, 2, 0], "equal points share a front"


def test_early_arrivals_at_a_rung_are_promoted():
    # two trials at an eta=3 rung: the worse one still continues (asynchronous ASHA)
    assert rung_decision([(0.9, -1.0), (0.1, -5.0)], 1, eta=3) == (True, 0, 2)


def test_the_first_front_is_never_stopped():
    # nine expensive accurate trials, then a cheap poor one: it is not dominated, so it stays
    points = [(0.9 - i / 100, -100.0 - i) for i in range(9)] + [(0.2, -1.0)]
    go, front, keep = rung_decision(points, 9, eta=3)
    assert (go, front, keep) == (True, 0, 3), (go, front, keep)


def test_only_the_top_one_over_eta_by_pareto_rank_continue():
    # one objective (accuracy): six trials at an eta=3 rung keep the best two
    points = [(a,) for a in (0.50, 0.60, 0.70, 0.80, 0.90, 0.40)]
    decisions = [rung_decision(points, i, eta=3)[0] for i in range(6)]
    assert decisions == [False, False, False, True, True, False], decisions


def test_a_front_is_kept_whole():
    # six trials, keep 2: front 0 = {a}, front 1 = {b, c, d} starts at position 1 < 2, so all
    # three of front 1 continue; front 2 does not
    points = [(0.9, -1.0), (0.8, -2.0), (0.7, -1.5), (0.85, -3.0), (0.6, -4.0), (0.5, -5.0)]
    assert nondominated_ranks(points) == [0, 1, 1, 1, 2, 3]
    decisions = [rung_decision(points, i, eta=3)[0] for i in range(6)]
    assert decisions == [True, True, True, True, False, False], decisions


@dataclasses.dataclass
class _Trial:
    trial_id: str
    config: dict


def _scheduler(objectives=DEFAULT_OBJECTIVES, epochs=3, eta=2, macs=None, r_min=1,
               metric="val_loss", late=False):
    macs = macs or {}
    return MultiObjectiveASHA(objectives, epochs, r_min, eta, metric=metric, late=late,
                              cost_of=lambda arch: {"macs": macs[arch["id"]], "params": 1.0,
                                                    "acts": 1.0})


def _epoch(epoch, acc, repeat=0, loss=None):
    """A per-epoch report; the loss falls as the accuracy rises unless given."""
    return {"repeat": repeat, "epoch": epoch, "train_loss": 1.0, "val_accuracy": acc,
            "val_loss": (None if acc is None else 2.0 - acc) if loss is None else loss}


def test_the_scheduler_stops_a_dominated_trial_and_records_why():
    sched = _scheduler(macs={"a": 100.0, "b": 200.0, "c": 50.0})
    a, b, c = (_Trial(x, {"arch": {"id": x}}) for x in "abc")
    assert sched.rungs == (1, 2)
    assert sched.on_trial_result(None, a, _epoch(1, 0.8)) == CONTINUE  # alone at the rung
    # b is slower and less accurate than a: dominated, and 2 // 2 = 1 kept
    assert sched.on_trial_result(None, b, _epoch(1, 0.7)) == STOP
    # c is cheaper than a though less accurate: first front, kept
    assert sched.on_trial_result(None, c, _epoch(1, 0.5)) == CONTINUE
    assert set(sched.stopped) == {"b"}
    why = sched.stopped["b"]
    assert (why.epoch, why.val_accuracy, why.front, why.reached, why.kept) == (1, 0.7, 1, 2, 1)
    assert why.costs == {"macs": 200.0}
    assert "pruned at epoch 1: val loss 1.3000, val acc 0.7000" in why.reason
    assert why.metrics()["pruned_val_accuracy"] == 0.7


@pytest.mark.parametrize("metric, stopped", [("val_loss", "a"), ("val_accuracy", "b")])
def test_a_rung_ranks_on_the_metric_asked_for(metric, stopped):
    # equal costs; a is more accurate but less confident (higher loss) than b
    sched = _scheduler(macs={"a": 1.0, "b": 1.0}, metric=metric)
    a, b = _Trial("a", {"arch": {"id": "a"}}), _Trial("b", {"arch": {"id": "b"}})
    first, second = (a, b) if stopped == "b" else (b, a)
    reports = {"a": _epoch(1, 0.6, loss=1.5), "b": _epoch(1, 0.5, loss=1.2)}
    assert sched.on_trial_result(None, first, reports[first.trial_id]) == CONTINUE
    assert sched.on_trial_result(None, second, reports[second.trial_id]) == STOP
    assert set(sched.stopped) == {stopped}


def test_a_nan_loss_ranks_last():
    sched = _scheduler(macs={"a": 1.0, "b": 1.0})
    a, b = _Trial("a", {"arch": {"id": "a"}}), _Trial("b", {"arch": {"id": "b"}})
    sched.on_trial_result(None, a, _epoch(1, 0.3, loss=2.2))
    assert sched.on_trial_result(None, b, _epoch(1, 0.9, loss=float("nan"))) == STOP


def test_a_rung_below_one_epoch_judges_the_mid_epoch_report():
    sched = _scheduler(macs={"a": 100.0, "b": 200.0}, r_min=0.5)
    assert sched.rungs == (0.5, 1, 2)
    a, b = _Trial("a", {"arch": {"id": "a"}}), _Trial("b", {"arch": {"id": "b"}})
    assert sched.on_trial_result(None, a, _epoch(0.5, 0.4)) == CONTINUE
    assert sched.on_trial_result(None, b, _epoch(0.5, 0.3)) == STOP
    why = sched.stopped["b"]
    assert why.epoch == 0.5 and why.reason.startswith("pruned at epoch 0.5: val loss 1.7000")
    assert why.metrics()["pruned_at_epoch"] == 0.5


def test_an_unknown_rung_metric_is_refused():
    with pytest.raises(ValueError, match="metric must be one of val_loss, val_accuracy"):
        MultiObjectiveASHA(DEFAULT_OBJECTIVES, 3, metric="train_loss")


def test_the_scheduler_ignores_other_epochs_repeats_and_final_results():
    sched = _scheduler(macs={"a": 100.0, "b": 200.0})
    a, b = _Trial("a", {"arch": {"id": "a"}}), _Trial("b", {"arch": {"id": "b"}})
    sched.on_trial_result(None, a, _epoch(1, 0.8))
    assert sched.on_trial_result(None, b, _epoch(3, 0.1)) == CONTINUE, "epoch 3 is no rung"
    assert sched.on_trial_result(None, b, _epoch(1, 0.1, repeat=1)) == CONTINUE, "repeat 1"
    assert sched.on_trial_result(None, b, {"done_training": True, "epoch": 1,
                                           "val_accuracy": 0.1}) == CONTINUE
    assert sched.on_trial_result(None, b, _epoch(1, None)) == CONTINUE, "no validation"
    assert not sched.stopped


def test_without_a_cost_objective_asha_ranks_on_accuracy_alone():
    sched = _scheduler(objectives=(Objective("accuracy", "max"),), macs={"a": 1.0, "b": 1e9})
    a, b = _Trial("a", {"arch": {"id": "a"}}), _Trial("b", {"arch": {"id": "b"}})
    sched.on_trial_result(None, a, _epoch(1, 0.5))
    assert sched.on_trial_result(None, b, _epoch(1, 0.4)) == STOP


@pytest.mark.parametrize("changes, message", [
    ({"scheduler": "hyperband"}, "--scheduler must be fifo or asha; got 'hyperband'"),
    ({"scheduler": "asha", "asha_eta": 1}, "--asha-eta must be an integer in 2..100; got 1"),
    ({"scheduler": "asha", "epochs": 1, "asha_min_epochs": 1},
     "--asha-min-epochs (1) must be < --epochs (1)"),
    ({"scheduler": "asha", "asha_min_epochs": 0},
     "--asha-min-epochs must be a number of epochs >= 0.01 (a fraction such as 0.25 judges "
     "mid-epoch); got 0"),
    ({"scheduler": "asha", "asha_min_epochs": 3.5}, "--asha-min-epochs (3.5) must be < --epochs"),
    ({"scheduler": "asha", "asha_late_rung": "yes"},
     "asha_late_rung must be true or false; got 'yes'"),
    ({"scheduler": "asha", "asha_metric": "acc"},
     "--asha-metric must be one of val_loss, val_accuracy; got 'acc'"),
])
def test_bad_scheduler_settings_are_one_line_config_errors(changes, message):
    with pytest.raises(ConfigError) as e:
        check_settings(SearchConfig(space="tiny", **changes))
    assert message in str(e.value), str(e.value)


@pytest.mark.parametrize("changes, message", [
    ({"asha_eta": -3}, "--asha-eta must be an integer in 2..100; got -3"),
    ({"asha_min_epochs": float("nan")}, "--asha-min-epochs must be a number of epochs >= 0.01"),
    ({"asha_metric": "acc"}, "--asha-metric must be one of val_loss, val_accuracy; got 'acc'"),
])
def test_asha_settings_are_checked_under_fifo_too(changes, message):
    # a typo in an ASHA flag is refused whatever the scheduler, not silently ignored
    with pytest.raises(ConfigError, match=message.replace("(", r"\(").replace(")", r"\)")):
        check_settings(SearchConfig(space="tiny", scheduler="fifo", **changes))
    # a first rung past the last epoch only matters when ASHA runs
    check_settings(SearchConfig(space="tiny", scheduler="fifo", epochs=1, asha_min_epochs=2))


@dataclasses.dataclass
class _Stored:  # the fields of a stored trial record that seed_rungs reads
    number: int
    arch: dict
    metrics: dict


def test_a_resumed_run_ranks_against_the_rung_values_of_earlier_runs():
    macs = {"old1": 10.0, "old2": 10.0, "fifo": 10.0, "new": 10.0}
    sched = _scheduler(macs=macs, r_min=0.5, eta=2)
    curve = lambda *pts: {"curve": [[{"epoch": e, "val_accuracy": 0.5, "val_loss": v}  # noqa: E731
                                     for e, v in pts]]}
    earlier = [
        _Stored(0, {"id": "old1"}, curve((0.5, 1.2), (1, 1.0), (2, 0.8), (3, 0.7))),  # complete
        _Stored(1, {"id": "old2"}, curve((0.5, 1.3))),  # stopped at the first rung
        _Stored(2, {"id": "fifo"}, {"curve": [[{"epoch": 1, "val_accuracy": None,
                                                "val_loss": None}]]}),  # never validated there
        _Stored(3, {"id": "old2"}, {}),  # no curve at all (a failure)
    ]
    assert sched.seed_rungs(earlier) == 4  # old1 at 0.5, 1 and 2; old2 at 0.5
    assert set(sched.reached[0.5]) == {"stored:0", "stored:1"}
    assert set(sched.reached[1]) == {"stored:0"} and set(sched.reached[2]) == {"stored:0"}
    # without them this trial would be an early arrival (fewer than eta at the rung) and go on;
    # against them it is third of three on the loss at equal cost: stopped
    new = _Trial("new", {"arch": {"id": "new"}})
    assert sched.on_trial_result(None, new, _epoch(0.5, 0.4, loss=1.5)) == STOP
    assert sched.stopped["new"].reached == 3
    fresh = _scheduler(macs=macs, r_min=0.5, eta=2)
    assert fresh.on_trial_result(None, new, _epoch(0.5, 0.4, loss=1.5)) == CONTINUE


def test_a_pruned_trial_is_pruned_in_both_tables_counted_by_the_budget_not_an_attempt(tmp_path):
    space, store, study, ot = study_setup(tmp_path)
    sched = MultiObjectiveASHA(DEFAULT_OBJECTIVES, epochs=3, eta=2)
    searcher = BudgetedSearcher(space, ot, DEFAULT_OBJECTIVES, store, study.id, "run", budget=3,
                                done={}, max_attempts=2, num_classes=10, stopped=sched.stopped,
                                count_pruned=True, pruned_hashes={})
    lines: list[str] = []
    recorder = Recorder(store, study.id, "run", 2, 0, lines.append, stopped=sched.stopped,
                        settle=searcher.settle)
    cfgs = [searcher.suggest("x"), searcher.suggest("y")]
    # the cheaper one reaches rung 1 first and is more accurate: the other is dominated
    cfgs.sort(key=lambda c: analytic_cost(from_dict(c["arch"])).macs)
    by_hash = {searcher.live[k][0]: k for k in searcher.live}
    ta, tb = (_Trial(by_hash[c["arch_hash"]], c) for c in cfgs)
    for t in (ta, tb):
        recorder.on_trial_start(0, [], t)
    ra, rb = _epoch(1, 0.9), _epoch(1, 0.3)
    assert sched.on_trial_result(None, ta, ra) == CONTINUE
    recorder.on_trial_result(0, [], ta, ra)
    assert sched.on_trial_result(None, tb, rb) == STOP
    recorder.on_trial_result(0, [], tb, rb)
    searcher.on_trial_complete(tb.trial_id, rb)
    recorder.on_trial_complete(0, [], tb)
    assert searcher.pruned == 1 and searcher.failed == 0 and searcher.completed == 0
    told = {t.number: t for t in ot.trials}
    pruned = [t for t in told.values() if t.state == optuna.trial.TrialState.PRUNED
              and "pruned" in t.user_attrs]
    assert len(pruned) == 1 and pruned[0].user_attrs["pruned"]["pruned_at_epoch"] == 1
    (row,) = store.trials("s", states=["PRUNED"])
    assert row.accuracy is None and row.metrics["pruned_val_accuracy"] == 0.3
    (curve,) = row.metrics["curve"]
    assert [(e["epoch"], e["val_accuracy"]) for e in curve] == [(1, 0.3)], curve
    assert row.error.startswith("pruned at epoch 1"), row.error
    assert sum(ln.startswith("[ pruned ]") for ln in lines) == 1, lines
    # a pruned trial is evaluated (the budget of 3 counts it) but not an attempt: with
    # max_attempts=2 a third trial may start, and then both limits are reached
    assert searcher.used == 1
    assert isinstance(searcher.suggest("z"), dict)
    assert searcher.suggest("w") == "FINISHED"  # 2 attempts (not counting the pruned one)


def test_the_default_first_rung_is_a_third_of_an_epoch_so_one_epoch_runs_can_stop_early():
    cfg = SearchConfig(space="tiny", scheduler="asha", epochs=1)
    check_settings(cfg)
    assert rungs(cfg.epochs, cfg.asha_min_epochs, cfg.asha_eta) == (1 / 3,)
    assert rungs(3, SearchConfig.asha_min_epochs, SearchConfig.asha_eta) == (1 / 3, 1)
    assert rungs(3, SearchConfig.asha_min_epochs, SearchConfig.asha_eta,
                 SearchConfig.asha_late_rung) == (1 / 3, 1, 2)


def test_the_late_rung_flag_reaches_the_search_settings():
    from nas.cli import _parser

    assert _parser().parse_args(["search", "--space", "tiny"]).asha_late_rung is True
    off = _parser().parse_args(["search", "--space", "tiny", "--no-asha-late-rung"])
    assert off.asha_late_rung is False


def test_the_trial_checkpoints_flag_reaches_the_search_settings():
    from nas.cli import _parser

    assert _parser().parse_args(["search", "--space", "tiny"]).trial_checkpoints is True
    off = _parser().parse_args(["search", "--space", "tiny", "--no-trial-checkpoints"])
    assert off.trial_checkpoints is False


@pytest.mark.parametrize("text, value", [("1/3", 1 / 3), ("0.25", 0.25), ("2", 2), ("1.0", 1)])
def test_asha_min_epochs_reads_fractions(text, value):
    from nas.cli import _epochs

    assert _epochs(text) == value and type(_epochs(text)) is type(value)


def test_where_a_trial_ran_is_read_from_its_result_and_named_by_node():
    result = {"epoch": 1, "hostname": "gpu7", "node_ip": "10.0.0.7", "pid": 4242,
              "ray_node_id": "ab12" * 14, "ray_gpu_ids": ["1"]}
    where = worker_of(result)
    assert where == {"host": "gpu7", "node_ip": "10.0.0.7", "pid": 4242,
                     "ray_node_id": "ab12" * 14, "gpu_ids": ["1"]}
    assert node_label(where) == "gpu7 (10.0.0.7) node ab12ab12"
    assert worker_label(where) == "gpu7 (10.0.0.7) node ab12ab12, GPU 1"
    local = worker_of({"hostname": "laptop", "node_ip": None, "pid": 1})  # --executor local
    assert local["ray_node_id"] is None and local["gpu_ids"] == []
    assert node_label(local) == worker_label(local) == "laptop"


def test_a_lost_trial_leaves_the_rungs_a_failed_one_stays(tmp_path):
    import cloudpickle
    from ray.exceptions import ActorDiedError

    sched = _scheduler(macs={"a": 100.0, "b": 200.0})

    @dataclasses.dataclass
    class Failed:  # a Tune trial with the error files Tune writes before it tells the scheduler
        trial_id: str
        config: dict
        pickled_error_file: str
        error_file: str = ""

    lost_file = tmp_path / "lost.pkl"
    lost_file.write_bytes(cloudpickle.dumps(ActorDiedError()))
    a = Failed("a", {"arch": {"id": "a"}}, str(lost_file))
    b = Failed("b", {"arch": {"id": "b"}}, str(tmp_path / "none.pkl"))  # raised: no Ray error
    for t in (a, b):
        assert sched.on_trial_result(None, t, _epoch(1, 0.8)) == CONTINUE
        sched.on_trial_error(None, t)
    assert set(sched.lost) == {"a"} and sched.lost["a"].startswith("ActorDiedError")
    assert list(sched.reached[1]) == ["b"]  # a is retried as a new trial; b's result stands
