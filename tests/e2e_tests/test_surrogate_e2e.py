"""--prescreen surrogate:K through run_search (in process, --executor local: no Ray needed): no
candidate is screened before the model has MIN_OBSERVATIONS completed trials to learn from, and a
resumed run learns from the trials its study already has, so it screens from its first slot."""

from __future__ import annotations

import optuna
import pytest

from db import Store
from nas._surrogate import MIN_OBSERVATIONS
from nas.search import SearchConfig, run_search

pytestmark = pytest.mark.slow


def test_surrogate_screen_waits_for_data_then_learns_across_a_resume(tmp_path):
    url = f"sqlite:///{tmp_path}/nas.db"
    base = dict(space="tiny", epochs=1, db_url=url, runs_dir=str(tmp_path), executor="local",
                dataset="digits", prescreen="surrogate:3")
    first = run_search(SearchConfig(budget=MIN_OBSERVATIONS, **base), log=lambda _: None)
    assert first.completed == MIN_OBSERVATIONS and first.screened == 0
    second = run_search(SearchConfig(budget=MIN_OBSERVATIONS + 3, **base), log=lambda _: None)
    assert second.completed == MIN_OBSERVATIONS + 3 and second.screened > 0  # the study's total

    store = Store(url)
    runs = store.runs("tiny")
    out = [t for t in store.trials("tiny") if t.metrics.get("screened_out")]
    assert {t.run_id for t in out} == {runs[-1].id}, "only the resumed run screened"
    assert all(t.state == "FAIL" and t.metrics["surrogate_score"] >= 0.0
               and t.error.startswith("screened out by --prescreen surrogate:3") for t in out)
    won = {t.arch_hash for t in store.trials("tiny", states=["COMPLETE"])}
    assert {t.metrics["screened_for_hash"] for t in out} <= won
    ot = optuna.load_study(study_name="tiny", storage=url).trials
    assert len(ot) == len(store.trials("tiny")), "both tables count the same proposals"
    assert store.get_study("tiny").config["prescreen_resolved"]["proxy"] == "surrogate"
