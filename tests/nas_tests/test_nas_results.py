"""The typed trial result and the objective list: what a trial reports is what is stored."""

from __future__ import annotations

import dataclasses
import re

import pytest

from nas.errors import ConfigError
from nas.results import (
    DEFAULT_OBJECTIVES,
    Objective,
    TrialFailure,
    TrialResult,
    final_result,
    objective_names,
    parse_objectives,
)

from ._results import result

# what the database's `metrics` JSON held before the typed result (kept: stored trials compare)
METRICS = {"acts", "proxy_macs", "proxy_params", "val_loss", "final_train_loss",
           "train_loss_sum", "steps", "train_seconds", "eval_seconds", "count_seconds",
           "images_per_second", "total_seconds", "device", "accuracy_std", "binomial_se",
           "test_accuracy_se", "accuracies", "test_accuracies", "repeats", "num_val", "num_test",
           "curve", "latency_ms",  # latency_ms: new, None unless an objective names it
           "zero_cost", "zero_cost_seconds", "zero_cost_errors",  # zero-cost scores at init
           "resumed_epochs"}  # per repeat, epochs restored from a training checkpoint


def test_report_round_trips_and_splits_into_columns_and_metrics():
    r = result()
    report = r.report()
    assert report["done_training"] is True
    assert final_result(report) == r
    assert r.columns() == {"accuracy": 0.8, "accuracy_se": 0.01, "test_accuracy": 0.79,
                           "macs": 10**9, "params_count": 10**6}
    assert set(r.metrics()) == METRICS, set(r.metrics()) ^ METRICS
    names = {f.name for f in dataclasses.fields(TrialResult)}
    assert names == METRICS | {"accuracy", "accuracy_se", "test_accuracy", "macs", "params"}


def test_failure_and_per_epoch_reports():
    f = TrialFailure("training diverged: non-finite loss in epoch 1", [[]], 1.0)
    assert final_result(f.report()) == f
    assert final_result({"epoch": 1, "train_loss": 2.0}) is None  # per-epoch report
    assert final_result(None) is None
    assert final_result({"done_training": True, "accuracy": 0.5}) is None  # incomplete


def test_objectives_parse_any_recorded_numeric_metric():
    objs = parse_objectives("accuracy:max,params:min,proxy_macs:min,val_loss:min,latency_ms:min")
    assert [str(o) for o in objs] == ["accuracy:max", "params:min", "proxy_macs:min",
                                      "val_loss:min", "latency_ms:min"]
    assert [o.optuna_direction for o in objs] == ["maximize"] + ["minimize"] * 4
    assert objs[1].stored == "params_count" and objs[2].stored == "proxy_macs"
    assert parse_objectives(objective_names(DEFAULT_OBJECTIVES)) == DEFAULT_OBJECTIVES
    assert DEFAULT_OBJECTIVES == (Objective("accuracy", "max"), Objective("macs", "min"))


@pytest.mark.parametrize("text, message", [
    ("accuracy", "each item must be name:max or name:min; got 'accuracy'"),
    ("accuracy:up", "each item must be name:max or name:min"),
    ("acuracy:max", "unknown metric 'acuracy'"),
    ("device:max", "unknown metric 'device'"),  # recorded, but not numeric
    ("macs:min,macs:max", "'macs' given twice"),
    ("accuracy:max,", "an empty item (a comma too many?)"),
    ("", "--objectives is empty; give name:max or name:min items"),
])
def test_bad_objectives_say_what_is_allowed(text, message):
    with pytest.raises(ConfigError, match=re.escape(message)) as e:
        parse_objectives(text)
    if "acuracy" in text:
        assert "did you mean 'accuracy'" in str(e.value)


@pytest.mark.parametrize("name", ["test_accuracy", "test_accuracy_se", "num_test"])
def test_a_search_never_optimises_the_held_out_test_split(name):
    from nas.results import parse_search_objectives

    assert parse_objectives(f"{name}:max,macs:min")[0].name == name  # `pareto` may show it
    with pytest.raises(ConfigError, match=f"'{name}' is measured on the held-out test split"):
        parse_search_objectives(f"{name}:max,macs:min")
    assert parse_search_objectives("accuracy:max,macs:min") == DEFAULT_OBJECTIVES
    with pytest.raises(ConfigError, match="unknown metric 'foo'") as e:  # named what is allowed
        parse_search_objectives("foo:max")
    assert "test_accuracy" not in str(e.value) and "num_test" not in str(e.value), e.value
    assert "num_test" in str(pytest.raises(ConfigError, parse_objectives, "foo:max").value)


def test_every_numeric_objective_is_read_back_from_a_stored_trial():
    from db import TrialRecord
    from nas.results import numeric_fields

    r = result()
    rec = TrialRecord(id=1, study_id=1, number=0, key="k", arch_hash="h", arch={}, params={},
                      state="COMPLETE", metrics=r.metrics(), error=None, started_at=None,
                      finished_at=None, duration_s=None, **r.columns())
    for name in numeric_fields():
        obj = parse_objectives(f"{name}:min")[0]
        if getattr(r, name) is not None:
            assert obj.of(rec) == pytest.approx(getattr(r, name)), name
