"""Run records and the study lease (begin_run / heartbeat / end_run), on both backends."""

from __future__ import annotations

import time
from collections.abc import Callable

import pytest
from sqlalchemy.exc import IntegrityError, OperationalError

from db import RunRecord, StorageError, Store, StudyBusyError, StudyRecord
from db._models import RunModel
from db._retry import is_transient, retrying

ARGS = dict(config={"budget": 3}, argv=["nas", "search"], versions={"python": "3.11"},
            host="node1")


def begin(store: Store, study: StudyRecord, pid: int = 4242, **kw) -> RunRecord:
    return store.begin_run(study.id, pid=pid, **{**ARGS, **kw})


def test_begin_run_records_the_run_with_passwords_masked(
    store: Store, new_study: Callable[..., StudyRecord]
) -> None:
    study = new_study("rec")
    secret_url = "postgresql+psycopg://nas:hunter2@db.example/nas"
    run = store.begin_run(study.id, config={"db": secret_url, "nested": {"u": [secret_url]}},
                          argv=["nas", "search", "--db", secret_url], versions={"torch": "2.4"},
                          host="node1", pid=4242, pid_started=1700000000.5)
    assert (run.study_id, run.outcome, run.ended_at, run.host, run.pid, run.pid_started) == \
        (study.id, "running", None, "node1", 4242, 1700000000.5)
    assert run.started_at == run.heartbeat_at and run.started_at.tzinfo is not None
    masked = "postgresql+psycopg://nas:***@db.example/nas"
    assert run.argv == ("nas", "search", "--db", masked), run.argv
    assert run.config == {"db": masked, "nested": {"u": [masked]},
                          "lease_stale_after_s": 60.0}, run.config  # (its own stale limit)
    assert "hunter2" not in repr(store.runs(study.id))
    assert ":***@" in run.db_url or "@" not in run.db_url, run.db_url
    assert store.runs(study.name) == [run]


def test_a_live_holder_makes_the_study_busy(
    store: Store, new_study: Callable[..., StudyRecord]
) -> None:
    study = new_study("busy")
    first = begin(store, study)
    seen: list[RunRecord] = []
    with pytest.raises(StudyBusyError) as info:
        begin(store, study, pid=5, holder_is_dead=lambda h: seen.append(h) or False)
    assert info.value.holder == first and seen == [first]
    msg = str(info.value)
    start = f"{first.started_at:%Y-%m-%d %H:%M:%S} UTC"
    assert msg.startswith(f"study {study.name!r} is being searched by run {first.id} (pid 4242 "
                          f"on host node1, started {start}, last heartbeat "), msg
    assert msg.endswith("s ago); wait for it, stop it, or use another --study (a run without a "
                        "heartbeat for 60 s is taken over)") and "\n" not in msg, msg
    assert [r.outcome for r in store.runs(study.id)] == ["running"]


def test_stale_holder_is_taken_over_and_its_heartbeat_then_fails(
    store: Store, new_study: Callable[..., StudyRecord]
) -> None:
    study = new_study("stale")
    old = begin(store, study, stale_after_s=0.01)
    assert store.heartbeat(old.id) is True
    time.sleep(0.05)
    new = begin(store, study, pid=7, stale_after_s=0.01)
    gone, now_running = store.runs(study.id)
    assert (gone.id, gone.outcome, now_running.id, now_running.outcome) == \
        (old.id, "abandoned", new.id, "running")
    assert gone.ended_at is not None and gone.message.startswith(
        "abandoned: no heartbeat since ") and gone.message.endswith(f"(run {new.id})"), gone
    assert store.heartbeat(old.id) is False, "a taken-over run must learn it lost the lease"
    assert store.end_run(old.id, "completed") == gone, "ending it must not change its outcome"
    assert store.heartbeat(new.id) is True


def test_a_shorter_limit_does_not_take_over_a_holder_that_recorded_a_longer_one(
    store: Store, new_study: Callable[..., StudyRecord]
) -> None:
    # a second run with NAS_LEASE_STALE_S=2 took the study from a live run heartbeating every
    # 10 s: each run is judged by the longer of its own recorded limit and the newcomer's
    study = new_study("limits")
    old = begin(store, study, stale_after_s=30)
    time.sleep(0.05)
    with pytest.raises(StudyBusyError, match=r"\(a run without a heartbeat for 30 s is taken "
                                             r"over\)$"):
        begin(store, study, pid=7, stale_after_s=0.01)
    assert [r.outcome for r in store.runs(study.id)] == ["running"]
    assert store.heartbeat(old.id) is True
    # a holder recorded before runs kept their limit: the newcomer's own limit decides
    with store._tx("test", write=True) as session:
        row = session.get(RunModel, old.id)
        row.config = {"budget": 3}
    time.sleep(0.05)
    new = begin(store, study, pid=7, stale_after_s=0.01)
    assert [r.outcome for r in store.runs(study.id)] == ["abandoned", "running"], new


def test_dead_holder_is_taken_over_at_once(
    store: Store, new_study: Callable[..., StudyRecord]
) -> None:
    study = new_study("dead")
    old = begin(store, study, pid=111)
    new = begin(store, study, pid=222, holder_is_dead=lambda h: h.pid == 111)
    gone = store.runs(study.id)[0]
    assert (gone.outcome, new.outcome) == ("abandoned", "running")
    assert "its process (pid 111 on host node1) is gone" in gone.message, gone.message
    assert store.heartbeat(old.id) is False
    # stale as well (a kill -9 found a minute later): the dead process is still the reason
    study = new_study("dead_and_stale")
    begin(store, study, pid=111)
    time.sleep(0.05)
    begin(store, study, pid=222, stale_after_s=0.01, holder_is_dead=lambda h: h.pid == 111)
    gone = store.runs(study.id)[0]
    assert gone.message.startswith("abandoned: its process (pid 111 on host node1) is gone; "
                                   "the study was taken over"), gone.message


def test_end_run_releases_the_lease(store: Store, new_study: Callable[..., StudyRecord]) -> None:
    study = new_study("end")
    first = begin(store, study)
    ended = store.end_run(first.id, "failed", "boom: OOM")
    assert (ended.outcome, ended.message) == ("failed", "boom: OOM") and ended.ended_at
    second = begin(store, study)  # no takeover needed
    assert [r.outcome for r in store.runs(study.id)] == ["failed", "running"]
    assert store.end_run(second.id, "completed").outcome == "completed"
    trial = store.start_trial(study.id, key="k", arch_hash="a", arch={}, params={},
                              run_id=second.id)
    assert trial.run_id == second.id and store.trials(study.id)[0].run_id == second.id


def test_the_database_allows_one_running_run_per_study(
    store: Store, new_study: Callable[..., StudyRecord]
) -> None:
    study = new_study("unique")
    run = begin(store, study)
    with pytest.raises(StorageError) as info:
        with store._tx("raw insert", write=True) as session:
            session.add(RunModel(study_id=study.id, started_at=run.started_at,
                                 heartbeat_at=run.started_at, outcome="running", config={},
                                 db_url="x", versions={}, argv=[], host="h", pid=1))
    assert isinstance(info.value.__cause__, IntegrityError), repr(info.value.__cause__)


def test_run_arguments_are_checked(store: Store, new_study: Callable[..., StudyRecord]) -> None:
    study = new_study("args")
    run = begin(store, study)
    with pytest.raises(ValueError, match="end_run outcome must be one of"):
        store.end_run(run.id, "running")
    with pytest.raises(TypeError, match="argv must be a sequence of strings"):
        store.begin_run(study.id, config={}, argv="nas search", versions={}, host="h", pid=1)
    with pytest.raises(ValueError, match="stale_after_s must be a positive"):
        begin(store, study, stale_after_s=0)
    with pytest.raises(StorageError, match="no run with id 987654"):
        store.heartbeat(987654)


# --------------------------------------------------------------------------- retries


def _op_error(orig: BaseException) -> StorageError:
    try:
        raise StorageError("x failed") from OperationalError("SELECT 1", {}, orig)
    except StorageError as e:
        return e


def test_transient_errors_are_recognised() -> None:
    import sqlite3

    import psycopg

    class Serialization(psycopg.OperationalError):
        sqlstate = "40001"

    assert is_transient(_op_error(sqlite3.OperationalError("database is locked")))
    assert not is_transient(_op_error(sqlite3.OperationalError("no such table: t")))
    assert is_transient(_op_error(Serialization("could not serialize access")))
    assert is_transient(_op_error(psycopg.OperationalError("connection refused")))
    assert not is_transient(_op_error(psycopg.OperationalError(
        "password authentication failed for user nas")))
    integrity = StorageError("x")
    integrity.__cause__ = IntegrityError("INSERT", {}, sqlite3.IntegrityError("UNIQUE"))
    assert not is_transient(integrity) and not is_transient(StudyBusyError("busy"))


def test_whole_transaction_is_retried_only_for_transient_errors() -> None:
    import sqlite3

    calls: list[int] = []

    @retrying
    def flaky(fail_times: int, error: StorageError) -> str:
        calls.append(1)
        if len(calls) <= fail_times:
            raise error
        return "ok"

    locked = _op_error(sqlite3.OperationalError("database is locked"))
    assert flaky(2, locked) == "ok" and len(calls) == 3
    calls.clear()
    with pytest.raises(StorageError):
        flaky(99, locked)
    assert len(calls) == 5, f"expected 5 attempts in all, got {len(calls)}"
    calls.clear()
    with pytest.raises(StorageError):
        flaky(1, _op_error(sqlite3.OperationalError("no such table: nas_trials")))
    assert len(calls) == 1, "a non-transient error must not be retried"


@pytest.mark.parametrize("url, shown", [
    ("postgresql+psycopg://u:secret@127.0.0.1:1/x", "postgresql+psycopg://u:***@127.0.0.1:1/x"),
    ("postgresql+psycopg://u@127.0.0.1:1/x?password=secret",
     "postgresql+psycopg://u@127.0.0.1:1/x?password=***"),
    ("postgresql+psycopg://u:se@cret@127.0.0.1:1/x", "postgresql+psycopg://u:***@127.0.0.1:1/x"),
    ("postgresql+psycopg://u:pa/ss@h/x", "postgresql+psycopg://u:***@h/x"),
    ("postgresql+psycopg://u:p ss@h/x?sslmode=require&PASSWORD=secret", None),
    # a key percent-encoded, which SQLAlchemy decodes and libpq then logs in with
    ("postgresql+psycopg://u@127.0.0.1:1/x?pass%77ord=secret&sslmode=require",
     "postgresql+psycopg://u@127.0.0.1:1/x?pass%77ord=***&sslmode=require"),
    ("postgresql+psycopg://u@h/x?%73slpassword=secret", "postgresql+psycopg://u@h/x?%73slpassword=***"),
    # after a stray '?' inside another value (a typo: libpq would not see it, but it is one)
    ("postgresql+psycopg://u@h/x?sslmode=require?password=secret",
     "postgresql+psycopg://u@h/x?sslmode=require?password=***"),
    ("postgresql+psycopg://u@h/x?password=a?password=secret&b=1",
     "postgresql+psycopg://u@h/x?password=***&b=1"),
])
def test_every_password_shape_is_masked(url, shown):
    from db import mask_url
    from db._runs import mask_secrets

    for text in (mask_url(url), *mask_secrets(["--db", url, f"--db={url}"])):
        assert "secret" not in text and "cret" not in text and "pa/ss" not in text, text
        assert "ss@h" not in text, text
    if shown is not None:
        assert mask_url(url) == shown

