"""A PostgreSQL restart closes every pooled connection: the next write of our store and of
Optuna's study must open a new one instead of failing (the search would lose a trial)."""

from __future__ import annotations

import optuna
import pytest
from sqlalchemy.engine import make_url

from db import Store
from nas.models import from_dict
from nas.results import DEFAULT_OBJECTIVES
from nas.search import _optuna_study


def _drop_connections(url: str) -> int:
    """Close the server side of every connection to ``url``'s database, as a restart does."""
    import psycopg

    u = make_url(url)
    with psycopg.connect(host=u.host, port=u.port or 5432, user=u.username,
                         password=u.password, dbname="postgres", autocommit=True,
                         connect_timeout=10) as conn:
        rows = conn.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                            "WHERE datname = %s AND pid <> pg_backend_pid()",
                            (u.database,)).fetchall()
    return len(rows)


@pytest.mark.parametrize("what", ["optuna", "store"])
def test_writes_survive_the_server_dropping_pooled_connections(pg_database_url, what):
    store = Store(pg_database_url, decode_arch=from_dict)
    study = store.get_or_create_study("reconnect", space="tiny", space_hash="0" * 16,
                                      objectives=("accuracy:max", "macs:min"), config={})
    ot_study, _ = _optuna_study(pg_database_url, "reconnect", "random", 0, DEFAULT_OBJECTIVES)
    trial = ot_study.ask()
    ot_study.tell(trial, [0.5, 1.0])
    assert _drop_connections(pg_database_url) >= 1
    if what == "optuna":  # a tell after the drop, as the recorder's after a restart
        trial = ot_study.ask()
        ot_study.tell(trial, [0.6, 2.0])
        assert [t.state for t in ot_study.trials] == [optuna.trial.TrialState.COMPLETE] * 2
    else:
        assert store.runs(study.id) == []


def test_a_server_restart_is_waited_out_by_the_store_and_by_optuna(private_postgres):
    """The server goes down for ~3 s (pg_ctl stop -m fast, then start): a store write, an
    Optuna tell and the next proposal (ask and suggest, which Optuna's cached storage makes
    through private storage methods) made while it is down wait for it and succeed, and
    nothing is lost or made twice."""
    import threading
    import time

    server, url = private_postgres
    store = Store(url, decode_arch=from_dict)
    study = store.get_or_create_study("restart", space="tiny", space_hash="0" * 16,
                                      objectives=("accuracy:max", "macs:min"), config={})
    ot_study, _ = _optuna_study(url, "restart", "random", 0, DEFAULT_OBJECTIVES)
    ot_study.tell(ot_study.ask(), [0.5, 1.0])
    trial = ot_study.ask()
    server.halt()
    back = threading.Timer(3.0, server.resume)
    back.start()
    try:
        start = time.monotonic()
        ot_study.tell(trial, [0.6, 2.0])  # while the server is down
        row = store.start_trial(study.id, key="k", arch_hash="a" * 16, arch={}, params={})
        waited = time.monotonic() - start
    finally:
        back.join()
    assert 2.0 < waited < 30, waited
    assert [t.state for t in ot_study.trials] == [optuna.trial.TrialState.COMPLETE] * 2
    assert [t.id for t in store.trials(study.id)] == [row.id]
    server.halt()  # once more, under the next proposal
    back = threading.Timer(3.0, server.resume)
    back.start()
    try:
        start = time.monotonic()
        trial = ot_study.ask()  # it used to fail at once, though the tells waited
        mixer = trial.suggest_categorical("mixer", ["pooling", "attention"])
        waited = time.monotonic() - start
    finally:
        back.join()
    assert 2.0 < waited < 30, waited
    ot_study.tell(trial, [0.7, 3.0])
    states = [t.state for t in ot_study.trials]
    assert states == [optuna.trial.TrialState.COMPLETE] * 3, states
    assert ot_study.trials[-1].params == {"mixer": mixer}
    server.halt()  # and while Optuna's storage is being made (a search's start): it was
    back = threading.Timer(3.0, server.resume)  # given 2 s, then exit 2 "cannot be used"
    back.start()
    try:
        start = time.monotonic()
        again, _ = _optuna_study(url, "restart", "random", 0, DEFAULT_OBJECTIVES)
        waited = time.monotonic() - start
    finally:
        back.join()
    assert 2.0 < waited < 30, waited
    assert len(again.trials) == 3


def test_a_server_that_stays_away_is_reported_after_the_outage_limit(private_postgres,
                                                                     monkeypatch):
    import db._retry
    from db import StorageError

    server, url = private_postgres
    store = Store(url, decode_arch=from_dict)
    import time

    monkeypatch.setattr(db._retry, "OUTAGE_S", 2.0)
    server.halt()
    start = time.monotonic()
    with pytest.raises(StorageError, match=r"failed on postgresql\+psycopg://nas:\*\*\*@"):
        store.runs("nothing")
    assert 1.0 < time.monotonic() - start < 10  # it waited for the server, up to the limit


def test_the_store_and_optuna_wait_out_one_outage_once_between_them(private_postgres,
                                                                   monkeypatch):
    """A server stopped for good: the heartbeat's wait, begun first, and a trial's row and
    Optuna's tell, begun during it, all end when the first wait does (the three waited one
    after another: 110 s at the default 30 s); a Ctrl-C afterwards has nothing left to wait."""
    import threading
    import time

    import db._retry
    from db import StorageError

    server, url = private_postgres
    monkeypatch.setattr(db._retry, "OUTAGE_S", 3.0)
    store = Store(url, decode_arch=from_dict)
    study = store.get_or_create_study("once", space="tiny", space_hash="0" * 16,
                                      objectives=("accuracy:max", "macs:min"), config={})
    run = store.begin_run(study.id, config={}, argv=[], versions={}, host="h", pid=1,
                          pid_started=None, stale_after_s=60.0,
                          holder_is_dead=lambda holder: False)
    ot_study, _ = _optuna_study(url, "once", "random", 0, DEFAULT_OBJECTIVES)
    trial = ot_study.ask()
    server.halt()
    ended = {}

    def beat():
        try:
            store.heartbeat(run.id)
        except StorageError as e:
            ended["heartbeat"] = time.monotonic()
            ended["error"] = e

    start = time.monotonic()
    heartbeat = threading.Thread(target=beat, daemon=True)
    heartbeat.start()
    time.sleep(2.0)
    with pytest.raises(StorageError):
        store.start_trial(study.id, key="k", arch_hash="a" * 16, arch={}, params={})
    row_ended = time.monotonic()
    with pytest.raises(Exception) as told:
        ot_study.tell(trial, [0.6, 2.0])
    tell_ended = time.monotonic()
    heartbeat.join(10)
    assert db._retry.is_connection_lost(told.value), told.value
    assert 2.5 < ended["heartbeat"] - start < 4.5, (ended["heartbeat"] - start, ended)
    assert row_ended - start < 4.0, row_ended - start  # alone, it would wait until 5 s
    assert tell_ended - row_ended < 1.0, tell_ended - row_ended  # one clock for the database
    server.resume()
    assert store.heartbeat(run.id)  # answered: the outage is over


def test_a_database_lost_past_the_wait_stops_the_run_and_optuna_is_not_told(private_postgres,
                                                                            monkeypatch):
    """A trial ends while the server is down for longer than the wait: its row cannot be
    written, so Optuna is not told its result either (our table is the record), the run is
    asked to stop once, and no proposal is asked of Optuna after that."""
    from dataclasses import dataclass

    import db._retry
    from nas._recorder import Recorder
    from nas._searcher import BudgetedSearcher
    from search_spaces import load_space

    from ._results import result

    @dataclass
    class Trial:  # the attributes of a Ray Tune trial the recorder reads
        trial_id: str
        config: dict
        last_result: dict | None = None

    server, url = private_postgres
    monkeypatch.setattr(db._retry, "OUTAGE_S", 0.5)
    space = load_space("tiny")
    store = Store(url, decode_arch=from_dict)
    study = store.get_or_create_study("lost", space="tiny", space_hash="0" * 16,
                                      objectives=("accuracy:max", "macs:min"), config={})
    ot_study, _ = _optuna_study(url, "lost", "random", 0, DEFAULT_OBJECTIVES)
    lost: list[BaseException] = []
    stopping = []
    searcher = BudgetedSearcher(space, ot_study, DEFAULT_OBJECTIVES, store, study.id, "run",
                                budget=3, done={}, max_attempts=10, num_classes=10,
                                stopping=lambda: bool(stopping), on_db_lost=lost.append)
    lines: list[str] = []
    recorder = Recorder(store, study.id, "run", 3, 0, lines.append, settle=searcher.settle,
                        on_db_lost=lambda e: (lost.append(e), stopping.append(1)))
    trials = [Trial(t, searcher.suggest(t)) for t in "ab"]
    for t in trials:
        recorder.on_trial_start(0, [], t)
    report = result(accuracy=0.7, macs=10**6).report()
    for t in trials:
        recorder.on_trial_result(0, [], t, report)
    searcher.on_trial_complete("a", report)  # as Tune does: the searcher, then the recorder
    recorder.on_trial_complete(0, [], trials[0])
    server.halt()
    searcher.on_trial_complete("b", report)
    recorder.on_trial_complete(0, [], trials[1])
    assert len(lost) == 1 and db._retry.is_connection_lost(lost[0]), lost
    assert lines[-1].startswith("[ not recorded ] #1 trial b ended COMPLETE: the database "
                                "is out of reach"), lines
    assert searcher.suggest("c") == "FINISHED" and len(lost) == 1  # nothing more is asked
    server.resume()
    states = {t.number: t.state.name for t in ot_study.trials}
    assert states == {0: "COMPLETE", 1: "RUNNING"}, states
    assert {t.number: t.state for t in store.trials("lost")} == {0: "COMPLETE", 1: "RUNNING"}


def test_a_read_only_server_at_the_start_is_named_not_guessed_at(pg_database_url):
    """Optuna's own message for a refused commit guesses "invalid data, e.g. exceeding max
    length"; the line names what the server said instead."""
    import psycopg

    from db import StorageError

    _optuna_study(pg_database_url, "ro", "random", 0, DEFAULT_OBJECTIVES)
    u = make_url(pg_database_url)
    with psycopg.connect(host=u.host, port=u.port or 5432, user=u.username,
                         password=u.password, dbname="postgres", autocommit=True) as conn:
        conn.execute(f'ALTER DATABASE "{u.database}" SET default_transaction_read_only = on')
    with pytest.raises(StorageError) as e:
        _optuna_study(pg_database_url, "ro", "random", 0, DEFAULT_OBJECTIVES)
    assert str(e.value).startswith("Optuna's tables in postgresql"), e.value
    assert "cannot be used for study 'ro': ReadOnlySqlTransaction: cannot execute " in \
        str(e.value) and "read-only transaction" in str(e.value), e.value
    assert "\n" not in str(e.value)
