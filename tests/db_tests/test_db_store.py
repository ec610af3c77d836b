"""Store API contract, run on every configured backend (SQLite always, PostgreSQL if set up)."""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable
from datetime import timezone

import pytest

from db import TERMINAL_STATES, TRIAL_STATES, StorageError, Store, StudyRecord, TrialRecord

OBJECTIVES = ("accuracy:max", "macs:min")
NewStudy = Callable[..., StudyRecord]


def arch_of(i: int) -> dict[str, object]:
    return {"stages": [{"mixer": "attn" if i % 2 else "pool", "depth": i % 4 + 1}]}


def test_study_round_trip(store: Store, name_prefix: str, backend_url: str) -> None:
    name = f"{name_prefix}rt"
    created = store.get_or_create_study(
        name,
        space="metaformer-v1",
        space_hash="abc123",
        objectives=["accuracy:max", "macs:min"],
        config={"seed": 7, "versions": {"torch": "2.4"}, "res": (224, 224)},
    )
    assert isinstance(created, StudyRecord)
    assert created.objectives == OBJECTIVES, f"expected {OBJECTIVES}, got {created.objectives}"
    assert created.config == {"seed": 7, "versions": {"torch": "2.4"}, "res": [224, 224]}
    assert created.created_at.tzinfo == timezone.utc, f"got tz {created.created_at.tzinfo}"

    store.start_trial(created.id, key="k", arch_hash="a", arch={"x": 1}, params={})
    again = store.get_or_create_study(
        name, space="metaformer-v1", space_hash="abc123", objectives=OBJECTIVES, config={}
    )
    assert again == created, f"expected the existing study {created}, got {again}"
    assert store.get_study(name) == created
    with Store(backend_url) as other:
        assert other.get_study(name) == created, "a new Store must read back the same record"
    names = [s.name for s in store.list_studies()]
    assert name in names, f"expected {name!r} in {names}"


def test_a_study_never_searched_takes_the_config_of_the_next_run(
    store: Store, name_prefix: str
) -> None:
    # a first run refused (a placement error) or stopped during start-up before any trial
    # must not hold the corrected command to its settings
    def get(config: dict) -> StudyRecord:
        return store.get_or_create_study(f"{name_prefix}fresh", space="metaformer-v1",
                                         space_hash="h", objectives=OBJECTIVES, config=config)

    first = get({"epochs": 2})
    assert get({"epochs": 1}).config == {"epochs": 1}
    run = store.begin_run(first.id, config={}, argv=[], versions={}, host="h", pid=1)
    assert get({"epochs": 3}).config == {"epochs": 1}, "a running run holds the settings"
    store.end_run(run.id, "failed", "refused")
    assert get({"epochs": 3}).config == {"epochs": 3}
    store.start_trial(first.id, key="k", arch_hash="a", arch={"x": 1}, params={})
    assert get({"epochs": 4}).config == {"epochs": 3}, "a study with a trial keeps its first"


def test_a_study_never_searched_takes_a_new_space_and_objectives(
    store: Store, name_prefix: str
) -> None:
    # the helper's case: a first run refused (--gpus-per-trial on a CPU machine), then the
    # corrected command with other --objectives, or the space file edited
    def get(space_hash: str, objectives: list[str]) -> StudyRecord:
        return store.get_or_create_study(f"{name_prefix}new", space="tiny", space_hash=space_hash,
                                         objectives=objectives, config={"h": space_hash})

    first = get("h1", ["accuracy:max", "macs:min"])
    again = get("h2", ["accuracy:max", "params:min"])
    assert (again.id, again.space_hash, again.objectives, again.config) == (
        first.id, "h2", ("accuracy:max", "params:min"), {"h": "h2"})
    # two runs starting at once: the first read the study, the second gave it another space
    # before the first took its lease; the first must not record under the second's space
    for refused in (lambda: store.check_study_as(first),  # before its Optuna study
                    lambda: store.begin_run(first.id, config={}, argv=[], versions={},
                                            host="h", pid=1, study_as=first)):
        with pytest.raises(StorageError, match="another search space, objectives or settings "
                                               "by a run that started at the same time"):
            refused()
    store.check_study_as(again)
    assert store.runs(first.id) == [], "the refused run is not recorded"
    run = store.begin_run(again.id, config={}, argv=[], versions={}, host="h", pid=1,
                          study_as=again)
    store.end_run(run.id, "failed", "test")
    store.start_trial(first.id, key="k", arch_hash="a", arch={"x": 1}, params={})
    with pytest.raises(StorageError, match="another search space.*pick another --study name"):
        get("h3", ["accuracy:max", "params:min"])  # measured now: held to them
    with pytest.raises(StorageError, match="objectives.*pick another --study name"):
        get("h2", ["accuracy:max"])


def test_study_for_other_space_or_objectives_is_refused(
    store: Store, name_prefix: str, new_study: NewStudy
) -> None:
    name = f"{name_prefix}s"
    held = new_study("s", space_hash="h1")
    store.start_trial(held.id, key="k", arch_hash="a", arch={"x": 1}, params={})  # measured
    with pytest.raises(StorageError, match="another search space.*pick another --study name"):
        new_study("s", space_hash="h2")
    with pytest.raises(StorageError, match="objectives.*pick another --study name"):
        store.get_or_create_study(
            name, space="metaformer-v1", space_hash="h1", objectives=["accuracy:max"], config={}
        )


def test_get_study_unknown_lists_existing_names(
    store: Store, name_prefix: str, new_study: NewStudy
) -> None:
    new_study("known")
    with pytest.raises(StorageError) as info:
        store.get_study(f"{name_prefix}unknown")
    msg = str(info.value)
    assert f"{name_prefix}known" in msg and "existing studies" in msg, f"got: {msg}"
    assert "\n" not in msg, f"message must be one line, got: {msg!r}"


@pytest.mark.parametrize(
    "objectives", [[], "accuracy:max", ["accuracy"], ["accuracy:up"], ["a:max", "a:min"]]
)
def test_bad_objectives_are_value_errors(
    store: Store, name_prefix: str, objectives: object
) -> None:
    with pytest.raises(ValueError, match="objective"):
        store.get_or_create_study(
            f"{name_prefix}x", space="s", space_hash="h", objectives=objectives, config={}
        )


def test_trial_round_trip(store: Store, backend_url: str, new_study: NewStudy) -> None:
    study = new_study("t")
    arch = {"stages": [{"mixer": "attn", "depth": 2}], "dims": (64, 128)}
    params = {"stage1/mixer": "attn", "stage1/depth": 2}
    started = store.start_trial(study.id, key="ray-0001", arch_hash="a1", arch=arch, params=params)
    assert isinstance(started, TrialRecord)
    assert (started.state, started.number, started.study_id) == ("RUNNING", 0, study.id)
    assert started.arch == {"stages": [{"mixer": "attn", "depth": 2}], "dims": [64, 128]}
    assert started.params == params
    assert started.started_at.tzinfo == timezone.utc
    assert (started.finished_at, started.duration_s, started.accuracy) == (None, None, None)

    big_macs = 123_456_789_012  # > 2**31: needs BigInteger
    done = store.finish_trial(
        started.id,
        state="COMPLETE",
        accuracy=0.8125,
        macs=big_macs,
        params_count=25_000_000,
        metrics={"train_loss": 1.25, "proxy_macs": 3e9, "timings": {"fwd_ms": 4.5}},
    )
    assert (done.state, done.accuracy, done.macs) == ("COMPLETE", 0.8125, big_macs)
    assert done.finished_at is not None and done.finished_at.tzinfo == timezone.utc
    expected_duration = (done.finished_at - done.started_at).total_seconds()
    assert done.duration_s == pytest.approx(expected_duration), (
        f"expected duration {expected_duration}, got {done.duration_s}"
    )
    with Store(backend_url) as other:
        [read] = other.trials(study.name)
    assert read == done, f"expected {done}, got {read}"


def test_json_payloads_are_normalised(store: Store, new_study: NewStudy) -> None:
    np = pytest.importorskip("numpy")
    study = new_study("j")
    t = store.start_trial(
        study.id, key="k", arch_hash="a", arch={1: (np.int64(3), np.float32(0.5))}, params={}
    )
    assert t.arch == {"1": [3, 0.5]}, f"got {t.arch}"
    done = store.finish_trial(
        t.id,
        state="FAIL",
        macs=np.int64(10),
        metrics={"loss": math.nan, "inf": -math.inf, "arr": np.arange(3)},
        error="RuntimeError: CUDA out of memory",
    )
    assert done.metrics == {"loss": None, "inf": None, "arr": [0, 1, 2]}, f"got {done.metrics}"
    assert done.macs == 10 and type(done.macs) is int
    assert store.trials(study.id) == [done]
    with pytest.raises(TypeError, match=r"params\['s'\].*set"):
        store.start_trial(study.id, key="k2", arch_hash="a", arch={}, params={"s": {1}})


def test_start_trial_is_idempotent(store: Store, backend_url: str, new_study: NewStudy) -> None:
    study = new_study("i")
    first = store.start_trial(study.id, key="k", arch_hash="a", arch={"x": 1}, params={"p": 1})
    again = store.start_trial(study.id, key="k", arch_hash="a", arch={"x": 1}, params={"p": 2})
    assert again == first, f"expected the existing trial {first}, got {again}"
    done = store.finish_trial(first.id, state="COMPLETE", accuracy=0.5, macs=10)
    with Store(backend_url) as resumed:  # e.g. after a restart: still the same, finished row
        assert resumed.start_trial(study.id, key="k", arch_hash="a", arch={}, params={}) == done
    assert store.count(study.id, None) == 1, "idempotent start must not add rows"
    with pytest.raises(StorageError, match="one architecture"):
        store.start_trial(study.id, key="k", arch_hash="other", arch={}, params={})


def test_numbering_is_per_study_and_contiguous(store: Store, new_study: NewStudy) -> None:
    a = new_study("a")
    b = new_study("b")
    numbers_a = [
        store.start_trial(a.id, key=f"a{i}", arch_hash=f"h{i}", arch=arch_of(i), params={}).number
        for i in range(5)
    ]
    numbers_b = [
        store.start_trial(b.id, key=f"b{i}", arch_hash=f"h{i}", arch=arch_of(i), params={}).number
        for i in range(3)
    ]
    assert numbers_a == [0, 1, 2, 3, 4], f"expected 0..4, got {numbers_a}"
    assert numbers_b == [0, 1, 2], f"expected 0..2, got {numbers_b}"
    assert store.start_trial(a.id, key="a2", arch_hash="h2", arch={}, params={}).number == 2
    assert store.start_trial(a.id, key="a5", arch_hash="h5", arch={}, params={}).number == 5
    assert [t.number for t in store.trials(a.name)] == list(range(6))


def test_start_trial_unknown_study(store: Store) -> None:
    with pytest.raises(StorageError, match="no study with id 999999"):
        store.start_trial(999_999, key="k", arch_hash="a", arch={}, params={})


def test_finish_twice_is_refused(store: Store, new_study: NewStudy) -> None:
    study = new_study("f")
    t = store.start_trial(study.id, key="k", arch_hash="a", arch={}, params={})
    done = store.finish_trial(t.id, state="COMPLETE", accuracy=0.9, macs=100)
    with pytest.raises(StorageError, match="already finished with state COMPLETE"):
        store.finish_trial(t.id, state="FAIL", error="boom")
    [after] = store.trials(study.id)
    assert after == done, f"the first result must survive unchanged: expected {done}, got {after}"


def test_finish_validates_arguments(store: Store, new_study: NewStudy) -> None:
    study = new_study("v")
    t = store.start_trial(study.id, key="k", arch_hash="a", arch={}, params={})
    allowed = ", ".join(TERMINAL_STATES)
    for bad in ("RUNNING", "DONE", "complete"):
        with pytest.raises(ValueError) as info:
            store.finish_trial(t.id, state=bad)
        assert allowed in str(info.value), f"expected allowed states in {info.value}"
    with pytest.raises(ValueError, match="accuracy"):
        store.finish_trial(t.id, state="COMPLETE", accuracy=math.nan)
    with pytest.raises(ValueError, match="macs"):
        store.finish_trial(t.id, state="COMPLETE", macs=1.5)
    with pytest.raises(ValueError, match="params_count"):
        store.finish_trial(t.id, state="COMPLETE", params_count=-1)
    with pytest.raises(StorageError, match="no trial with id 999999"):
        store.finish_trial(999_999, state="FAIL")
    assert store.trials(study.id)[0].state == "RUNNING", "rejected calls must not change the row"
    assert store.finish_trial(t.id, state="COMPLETE", macs=2e9).macs == 2_000_000_000


def test_states_filter_and_count(store: Store, name_prefix: str, new_study: NewStudy) -> None:
    study = new_study("c")
    finals = ["COMPLETE", "FAIL", None, "COMPLETE", "DUPLICATE", "INFEASIBLE", None]
    for i, final in enumerate(finals):
        t = store.start_trial(study.id, key=f"k{i}", arch_hash=f"h{i}", arch={}, params={})
        if final is not None:
            store.finish_trial(t.id, state=final, accuracy=0.5, macs=i)
    expected = {s: sum(f == s for f in finals) for s in TRIAL_STATES}
    expected["RUNNING"] = finals.count(None)
    got = {s: store.count(study.name, s) for s in TRIAL_STATES}
    assert got == expected, f"expected counts {expected}, got {got}"
    assert store.count(study.id) == 2, "count() defaults to COMPLETE"
    assert store.count(study.id, None) == len(finals)

    filtered = store.trials(study.id, states=["COMPLETE", "RUNNING"])
    assert [t.number for t in filtered] == [0, 2, 3, 6], f"got {[t.number for t in filtered]}"
    assert [t.number for t in store.trials(study.name, states=("FAIL",))] == [1]
    assert store.trials(study.id, states=[]) == []
    assert len(store.trials(study.id)) == len(finals)
    with pytest.raises(ValueError, match="allowed: RUNNING, COMPLETE"):
        store.trials(study.id, states=["SCREENED"])
    with pytest.raises(ValueError, match="allowed"):
        store.count(study.id, "SCREENED")
    with pytest.raises(StorageError, match="no study named"):
        store.trials(f"{name_prefix}nope")


def test_find_completed(store: Store, new_study: NewStudy) -> None:
    study = new_study("d")
    other = new_study("d2")
    t0 = store.start_trial(study.id, key="k0", arch_hash="same", arch={}, params={})
    assert store.find_completed(study.id, "same") is None, "a RUNNING trial is not completed"
    store.finish_trial(t0.id, state="FAIL", error="x")
    t1 = store.start_trial(study.id, key="k1", arch_hash="same", arch={}, params={})
    done1 = store.finish_trial(t1.id, state="COMPLETE", accuracy=0.7, macs=5)
    t2 = store.start_trial(study.id, key="k2", arch_hash="same", arch={}, params={})
    store.finish_trial(t2.id, state="COMPLETE", accuracy=0.71, macs=5)
    found = store.find_completed(study.id, "same")
    assert found == done1, f"expected the earliest COMPLETE trial {done1}, got {found}"
    assert store.find_completed(study.id, "missing") is None
    assert store.find_completed(other.id, "same") is None, "must not look into other studies"


def test_records_are_frozen(store: Store, new_study: NewStudy) -> None:
    study = new_study("z")
    trial = store.start_trial(study.id, key="k", arch_hash="a", arch={}, params={})
    with pytest.raises(dataclasses.FrozenInstanceError):
        trial.state = "COMPLETE"  # type: ignore[misc]
    with pytest.raises(dataclasses.FrozenInstanceError):
        study.name = "other"  # type: ignore[misc]
    trial.arch["mutated"] = True  # a private copy: the database is unaffected
    assert store.trials(study.id)[0].arch == {}


def test_closed_store_refuses_work(backend_url: str) -> None:
    s = Store(backend_url)
    s.close()
    s.close()  # idempotent
    with pytest.raises(StorageError, match="closed"):
        s.list_studies()


def test_interrupt_running_closes_only_running_trials(store: Store, new_study: NewStudy) -> None:
    study = new_study("interrupted")
    a = store.start_trial(study.id, key="a", arch_hash="ha", arch={}, params={})
    b = store.start_trial(study.id, key="b", arch_hash="hb", arch={}, params={})
    store.finish_trial(b.id, state="COMPLETE", accuracy=0.5, macs=1)
    closed = store.interrupt_running(study.id, "interrupted: Ctrl-C")
    assert [t.id for t in closed] == [a.id]
    (t,) = store.trials(study.id, states=["INTERRUPTED"])
    assert t.error == "interrupted: Ctrl-C" and t.finished_at is not None and t.duration_s >= 0
    assert store.count(study.id, "COMPLETE") == 1 and store.count(study.id, "RUNNING") == 0
    assert store.interrupt_running(study.id, "again") == []


def test_interrupt_running_adds_the_given_metrics(store: Store, new_study: NewStudy) -> None:
    study = new_study("interrupted-where")
    a = store.start_trial(study.id, key="a", arch_hash="ha", arch={}, params={})
    store.start_trial(study.id, key="b", arch_hash="hb", arch={}, params={})
    store.interrupt_running(study.id, "stop", metrics={a.id: {"worker": {"pid": 7}},
                                                        10**9: {"worker": {"pid": 8}}})
    rows = {t.key: t for t in store.trials(study.id)}
    assert rows["a"].metrics == {"worker": {"pid": 7}} and rows["b"].metrics == {}


def test_a_database_that_takes_no_writes_is_refused_at_once_and_keeps_what_it_has(
        fresh_backend_url: str, monkeypatch) -> None:
    """A full disk (SQLite: the file may not grow) or a read-only server (PostgreSQL: a
    standby, or ``default_transaction_read_only``) refuses a write with one line naming it,
    without the retries a lock gets (it will not get better by itself), and loses nothing."""
    from sqlalchemy import event, text

    import db._retry as retry
    from db import is_database_lost, refuses_writes, stops_recording

    store = Store(fresh_backend_url)
    study = store.get_or_create_study("s", space="sp", space_hash="h", objectives=OBJECTIVES,
                                      config={})
    done = store.start_trial(study.id, key="a", arch_hash="a", arch={}, params={})
    store.finish_trial(done.id, state="COMPLETE", accuracy=0.5, macs=1.0)
    open_ = store.start_trial(study.id, key="b", arch_hash="b", arch={}, params={})
    engine = store._engine
    if engine.dialect.name == "sqlite":
        @event.listens_for(engine, "connect")
        def no_growth(dbapi_connection, _record) -> None:
            dbapi_connection.execute("PRAGMA max_page_count = 1")  # clamped to its size now

        expected = "database or disk is full"
    else:
        with engine.connect() as conn:
            conn.execute(text(f'ALTER DATABASE "{engine.url.database}" SET '
                              "default_transaction_read_only = on"))
            conn.commit()
        expected = "read-only transaction"
    engine.dispose()  # the pool's next connections see the cap or the setting
    slept: list[float] = []
    monkeypatch.setattr(retry.time, "sleep", slept.append)
    with pytest.raises(StorageError, match=f"^finish_trial failed on .*{expected}") as e:
        store.finish_trial(open_.id, state="COMPLETE", accuracy=0.6, macs=2.0,
                           metrics={"curve": ["x" * 100] * 1000})  # needs new pages
    assert "\n" not in str(e.value)
    assert refuses_writes(e.value) and stops_recording(e.value)
    assert not is_database_lost(e.value) and slept == [], "a refusal is not retried"
    by_key = {t.key: t for t in store.trials("s")}
    assert (by_key["a"].state, by_key["a"].accuracy) == ("COMPLETE", 0.5)
    assert by_key["b"].state == "RUNNING"
    store.close()


def test_a_trial_row_changed_by_hand_is_one_line_naming_it(tmp_path) -> None:
    """A row whose JSON was edited outside the project (not valid JSON; an architecture that
    is not one) is named in one StorageError; the file is left as it is. SQLite only: a
    PostgreSQL JSON column refuses such text when it is written."""
    import sqlite3

    from nas.models import from_dict, to_dict
    from search_spaces import load_space

    db = tmp_path / "nas.db"
    space = load_space("tiny")
    with Store(f"sqlite:///{db}") as store:
        study = store.get_or_create_study("s", space="tiny", space_hash=space.hash,
                                          objectives=("accuracy:max", "macs:min"), config={})
        for n in range(3):
            arch, _ = space.sample_random(n)
            rec = store.start_trial(study.id, key=f"k{n}", arch_hash=f"h{n}",
                                    arch=to_dict(arch), params={})
            store.finish_trial(rec.id, state="COMPLETE", accuracy=0.5, macs=1, params_count=1)
    for text, what in (("{not json", "JSONDecodeError"), ('{"stages": 5}', "TypeError")):
        with sqlite3.connect(db) as con:
            con.execute("UPDATE nas_trials SET arch = ? WHERE number = 1", (text,))
        with Store(f"sqlite:///{db}", decode_arch=from_dict, read_only=True) as store:
            with pytest.raises(StorageError, match=rf"trial #1 of study 's' cannot be read "
                                                   rf"\({what}: .*\); its row was changed "
                                                   "outside metaformer-nas"):
                store.trials("s")
            assert [t.number for t in store.trials("s", numbers=[0, 2])] == [0, 2]
    with sqlite3.connect(db) as con:
        con.execute("UPDATE nas_trials SET arch = (SELECT arch FROM nas_trials WHERE number = 0)"
                    " WHERE number = 1")
    for column, value in (("macs", -5), ("accuracy", "abc"), ("params_count", 2.5),
                          ("duration_s", "abc")):
        with sqlite3.connect(db) as con:  # numbers too: the report failed on them later, with
            con.execute(f"UPDATE nas_trials SET {column} = ? WHERE number = 1", (value,))  # a
        with Store(f"sqlite:///{db}", read_only=True) as store:  # traceback
            with pytest.raises(StorageError, match=rf"trial #1 of study 's' cannot be read "
                                                   rf"\(ValueError: {column} must be"):
                store.trials("s")
        with sqlite3.connect(db) as con:
            con.execute(f"UPDATE nas_trials SET {column} = 1 WHERE number = 1")


def test_a_url_longer_than_a_run_can_record_is_refused_before_anything_is_written(tmp_path):
    """PostgreSQL refused the run's row (varchar 2048) after the study was created, leaving
    it empty; SQLite took it. Now a writing Store refuses it in one line, on either."""
    from db._models import URL_LEN

    url = f"sqlite:///{tmp_path / 'nas.db'}?application_name={'x' * URL_LEN}"
    with pytest.raises(StorageError, match=r"the database URL is [\d,]+ characters long; each "
                                           r"run records it, in at most 2,048"):
        Store(url)
    assert not (tmp_path / "nas.db").exists()
