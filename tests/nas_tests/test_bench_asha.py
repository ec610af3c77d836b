"""benchmarks/bench_asha.py's parts that decide what a comparison means: which settings an arm
names, which kept run may stand in for an arm, the front at equal time, and the held-out
front and paired differences."""

from __future__ import annotations

import pytest

from ._scripts import benchmark_module


@pytest.fixture(scope="module")
def bench():
    yield from benchmark_module("bench_asha")


def test_arm_names_its_scheduler_settings_and_sampler(bench):
    arm = bench.parse_arm("asha:1/4:4:val_accuracy:nolate@tpe")
    assert arm == {"name": "asha:1/4:4:val_accuracy:nolate@tpe", "scheduler": "asha",
                   "asha_min_epochs": 0.25, "asha_eta": 4, "asha_metric": "val_accuracy",
                   "asha_late_rung": False, "sampler": "tpe"}
    assert bench.parse_arm("fifo@random") == {"name": "fifo@random", "scheduler": "fifo",
                                              "sampler": "random"}
    assert "sampler" not in bench.parse_arm("asha")  # the search's default sampler
    arm = bench.parse_arm("asha@tpe+surrogate:4")
    assert arm["sampler"] == "tpe" and arm["prescreen"] == "surrogate:4"
    assert arm["scheduler"] == "asha" and arm["name"] == "asha@tpe+surrogate:4"
    assert "prescreen" not in bench.parse_arm("fifo")


@pytest.mark.parametrize("text, says", [("asha@foo", "unknown sampler 'foo'; allowed: nsga2"),
                                        ("fifo:1", "is not fifo or"),
                                        ("asha:1:3:val_loss:sometimes", "is not fifo or"),
                                        ("asha+surrogate:1", "K >= 2"),
                                        ("asha+synflw:3", "unknown screen 'synflw'")])
def test_bad_arm_is_one_line_naming_what_is_allowed(bench, text, says):
    with pytest.raises(SystemExit, match=says):
        bench.parse_arm(text)


def test_front_at_equal_time_counts_only_what_had_completed(bench):
    g = 1e9
    run = {"done_at": [(10.0, 0.5, 1 * g), (20.0, 0.6, 2 * g), (30.0, 0.9, 1 * g)]}
    ref = (0.0, 4.0)  # accuracy 0, 4 GMACs: the box has area 4
    assert bench.hv_by(run, 5.0, ref, g) == (0, 0.0)
    n, hv = bench.hv_by(run, 25.0, ref, g)  # (0.5, 1 G) and (0.6, 2 G): 0.5*3 + 0.1*2 = 1.7
    assert n == 2 and hv == pytest.approx(1.7 / 4)
    n, hv = bench.hv_by(run, 30.0, ref, g)  # (0.9, 1 G) dominates both
    assert n == 3 and hv == pytest.approx(0.9 * 3 / 4)


def test_a_kept_run_must_match_budget_and_seed(bench, tmp_path):
    """--keep reuses an arm's database only for a finished run of the same budget and seed:
    an arm of another seed or budget under the same --out is run again, not reported."""
    from db import Store

    url = f"sqlite:///{tmp_path}/nas.db"
    assert bench.kept_run(url, "s", 200, 0) is None  # no database yet
    store = Store(url)
    study = store.get_or_create_study("s", space="tiny", space_hash="h" * 16,
                                      objectives=["accuracy:max", "macs:min"], config={})
    run = store.begin_run(study.id, config={"budget": 200, "seed": 1}, argv=["x"],
                          versions={}, host="here", pid=1)
    assert bench.kept_run(url, "s", 200, 1) is None  # still running
    store.end_run(run.id, "completed")
    store.close()
    assert bench.kept_run(url, "s", 200, 1) >= 0.0
    assert bench.kept_run(url, "s", 200, 0) is None  # another seed
    assert bench.kept_run(url, "s", 12, 1) is None  # another budget
    assert bench.kept_run(url, "other", 200, 1) is None  # no such study


def test_held_out_front_keeps_the_validation_choice_and_scores_it_on_test(bench):
    """The front is the one chosen on validation accuracy; test accuracy only scores it, so a
    trial off the validation front adds nothing even where its test accuracy is higher."""
    g = 1e9
    run = {"front_test": [(0.5, 1 * g), (0.7, 2 * g)]}
    ref = (0.0, 4.0)
    assert bench.held_out_hv(run, ref, g) == pytest.approx(0.5 * 1 + 0.7 * 2)
    assert bench.held_out_hv({"front_test": []}, ref, g) == 0.0


def test_paired_differences_give_mean_and_standard_error(bench):
    assert bench.paired([0.01]) == "+0.0100 (one seed: no standard error)"
    text = bench.paired([-0.02, 0.0])  # mean -0.01, sd 0.01414, SE 0.01
    assert text == "-0.0200, +0.0000; mean -0.0100 ± 0.0100 (SE over 2 seeds)"
