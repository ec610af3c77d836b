"""db._retry: which errors are run again, and for how long."""

from __future__ import annotations

import time

import pytest
from sqlalchemy.exc import OperationalError

import db._retry as retry
from db import StorageError


def _lost() -> StorageError:
    """A StorageError over a connection the pool found dead (what a server restart leaves)."""
    err = StorageError("lost")
    err.__cause__ = OperationalError("SELECT 1", None, Exception("server closed the "
                                     "connection"), connection_invalidated=True)
    return err


def _optuna_lost():
    """What Optuna's storage raises for a lost connection: its error over SQLAlchemy's."""
    import optuna

    err = optuna.exceptions.StorageInternalError("lost")
    err.__cause__ = _lost().__cause__
    return err


def _optuna_study(tmp_path, monkeypatch):
    """A two-objective study over db.optuna_storage on a SQLite file, retries quick."""
    import optuna

    from db import optuna_storage

    monkeypatch.setattr(retry, "FIRST_DELAY_S", 0.001)
    storage = optuna_storage(f"sqlite:///{tmp_path}/o.db")
    return storage, optuna.create_study(study_name="s", storage=storage,
                                        directions=["maximize", "minimize"])


def test_a_lost_connection_is_waited_for_only_once_the_server_answered(monkeypatch):
    monkeypatch.setattr(retry, "OUTAGE_S", 0.6)
    monkeypatch.setattr(retry, "MAX_DELAY_S", 0.1)
    calls = []

    def fails():
        calls.append(time.monotonic())
        raise _lost()

    with pytest.raises(StorageError):
        retry.call_retrying(fails, (StorageError,), patient=False)
    assert len(calls) == retry.TRIES  # not yet reached: a few quick tries only
    calls.clear()
    with pytest.raises(StorageError):
        retry.call_retrying(fails, (StorageError,), patient=True)
    assert len(calls) > retry.TRIES and 0.4 < calls[-1] - calls[0] < 0.7


def test_retried_calls_inside_a_retried_call_do_not_stack_their_waits(monkeypatch):
    # Optuna's storage methods call each other (get_best_trial calls get_trial): only the
    # outermost waits, or an outage would be waited for once per level
    monkeypatch.setattr(retry, "OUTAGE_S", 0.5)
    monkeypatch.setattr(retry, "MAX_DELAY_S", 0.1)
    inner_calls = []

    def inner():
        inner_calls.append(1)
        raise _lost()

    start = time.monotonic()
    with pytest.raises(StorageError):
        retry.call_retrying(lambda: retry.call_retrying(inner, (StorageError,), True),
                            (StorageError,), patient=True)
    took = time.monotonic() - start
    assert took < 0.8, took
    assert not getattr(retry._inside, "active", False)  # left clean for the next call
    # a lock that stays: TRIES attempts in all, not TRIES per level
    import sqlite3

    locked = []

    def busy():
        locked.append(1)
        err = StorageError("locked")
        err.__cause__ = OperationalError("UPDATE", None, sqlite3.OperationalError(
            "database is locked"))
        raise err

    monkeypatch.setattr(retry, "FIRST_DELAY_S", 0.001)
    with pytest.raises(StorageError):
        retry.call_retrying(lambda: retry.call_retrying(busy, (StorageError,), False),
                            (StorageError,), patient=False)
    assert len(locked) == retry.TRIES, len(locked)


def _tell_commits_then_loses(monkeypatch, when):
    """Optuna's set_trial_state_values made to commit, then lose its connection, on the first
    call whose state ``when`` accepts; returns the real method and the trial ids it lost."""
    import optuna

    real = optuna.storages.RDBStorage.set_trial_state_values
    lost_once = []

    def commits_then_loses(self, trial_id, state, values=None):
        done = real(self, trial_id, state, values)
        if not lost_once and when(state):
            lost_once.append(trial_id)
            raise _optuna_lost()
        return done

    monkeypatch.setattr(optuna.storages.RDBStorage, "set_trial_state_values",
                        commits_then_loses)
    return real, lost_once


def test_a_tell_whose_commit_went_through_before_the_connection_was_lost_returns(
        tmp_path, monkeypatch):
    # the narrow case of a retried tell: its first attempt committed, then the connection
    # failed before the reply; run again, it finds its own result there and returns
    import optuna

    storage, study = _optuna_study(tmp_path, monkeypatch)
    real, lost_once = _tell_commits_then_loses(monkeypatch, lambda state: state.is_finished())
    trial = study.ask()
    study.tell(trial, [0.75, 1e6])
    assert lost_once == [trial._trial_id]
    (frozen,) = study.get_trials()
    assert frozen.state == optuna.trial.TrialState.COMPLETE and frozen.values == [0.75, 1e6]
    # a tell on a finished trial is still refused on a first attempt, even of the same values
    with pytest.raises(optuna.exceptions.UpdateFinishedTrialError):
        storage.set_trial_state_values(trial._trial_id, optuna.trial.TrialState.COMPLETE,
                                       [0.75, 1e6])

    # and run again after a lost connection, when another writer finished the trial with other
    # values (or without values: a FAIL cannot be told from another run's)
    def another_writer_then_lost(self, trial_id, state, values=None):
        if not lost_once:
            lost_once.append(trial_id)
            real(self, trial_id, optuna.trial.TrialState.COMPLETE, [0.5, 2e6])
            raise _optuna_lost()
        return real(self, trial_id, state, values)

    monkeypatch.setattr(optuna.storages.RDBStorage, "set_trial_state_values",
                        another_writer_then_lost)
    for values in ([0.75, 1e6], None):
        lost_once.clear()
        other = study.ask()
        with pytest.raises(optuna.exceptions.UpdateFinishedTrialError):
            storage.set_trial_state_values(other._trial_id, optuna.trial.TrialState.COMPLETE
                                           if values else optuna.trial.TrialState.FAIL, values)
        assert lost_once == [other._trial_id]


def test_a_trial_whose_creation_committed_before_the_connection_was_lost_is_made_once(
        tmp_path, monkeypatch):
    # an ask run again after its commit went through used to leave a second, orphaned RUNNING
    # trial: the nonce its first attempt stored finds that trial instead
    import optuna

    from db._optuna import CREATED_ATTR

    _, study = _optuna_study(tmp_path, monkeypatch)
    real = optuna.storages.RDBStorage._create_new_trial
    attempts = []

    def commits_then_loses(self, study_id, template_trial=None):
        made = real(self, study_id, template_trial)
        attempts.append(made.number)
        if len(attempts) == 1:
            raise _optuna_lost()
        return made

    monkeypatch.setattr(optuna.storages.RDBStorage, "_create_new_trial", commits_then_loses)
    trial = study.ask()
    assert attempts == [0], attempts  # found again, not created a second time
    (frozen,) = study.get_trials()
    assert frozen.number == trial.number == 0 and frozen._trial_id == trial._trial_id
    assert frozen.state == optuna.trial.TrialState.RUNNING and CREATED_ATTR in frozen.system_attrs
    study.tell(trial, [0.5, 1.0])
    # an enqueued trial keeps its fixed parameters, and each creation gets its own nonce
    study.enqueue_trial({"x": 1})
    second = study.ask()
    assert second.suggest_int("x", 0, 3) == 1 and attempts == [0, 1]
    nonces = {t.system_attrs[CREATED_ATTR] for t in study.get_trials()}
    assert len(nonces) == 2, nonces


def test_every_storage_call_a_study_makes_is_retried():
    # a study calls its storage through Optuna's _CachedStorage, which uses private methods;
    # one left out fails at once during a restart (an ask did, while the tells waited)
    import inspect
    import re

    import optuna
    from optuna.storages._cached_storage import _CachedStorage

    from db._optuna import _CALLS, _RetryingRDBStorage

    used = set(re.findall(r"self\._backend\.(\w+)\(", inspect.getsource(_CachedStorage)))
    assert {"_create_new_trial", "_get_trials", "_set_trial_param"} <= used, used
    plain = {"get_heartbeat_interval", "get_heartbeat_stale_trial_callback"}  # no database
    for name in used - plain:
        assert name in _CALLS or name in _RetryingRDBStorage.__dict__, name
    for name in _CALLS:
        assert hasattr(optuna.storages.RDBStorage, name), f"Optuna has no {name} any more"
        assert getattr(_RetryingRDBStorage, name) is not getattr(optuna.storages.RDBStorage,
                                                                   name), name


@pytest.mark.parametrize("raw, wait", [(None, 30.0), ("5", 5.0), ("0", 0.0), ("abc", 30.0),
                                       ("-2", 30.0)])
def test_the_outage_wait_comes_from_the_environment(monkeypatch, raw, wait):
    if raw is None:
        monkeypatch.delenv(retry.OUTAGE_ENV, raising=False)
    else:
        monkeypatch.setenv(retry.OUTAGE_ENV, raw)
    assert retry.outage_s() == wait  # (the search refuses a malformed value up front)


def test_a_server_connection_gives_up_after_a_timeout_unless_the_url_sets_one():
    from db._engine import CONNECT_TIMEOUT_S, server_connect_args

    assert server_connect_args("postgresql+psycopg://u:p@h/db") == {
        "connect_timeout": CONNECT_TIMEOUT_S}
    assert server_connect_args("postgresql://u:p@h/db?connect_timeout=3") == {}
    assert server_connect_args("sqlite:////tmp/x.db") == {}


def test_a_waiting_trial_whose_start_committed_before_the_connection_was_lost_is_asked(
        tmp_path, monkeypatch):
    # an enqueued trial set RUNNING, then the connection lost before the reply: run again, the
    # call returned False, so Optuna left it RUNNING, asked a new trial and dropped the params
    import optuna

    storage, study = _optuna_study(tmp_path, monkeypatch)
    real, lost_once = _tell_commits_then_loses(
        monkeypatch, lambda state: state == optuna.trial.TrialState.RUNNING)
    study.enqueue_trial({"x": 2})
    trial = study.ask()
    assert lost_once == [trial._trial_id]
    assert trial.suggest_int("x", 0, 3) == 2  # the enqueued trial, not a new one
    (frozen,) = study.get_trials()
    assert frozen.state == optuna.trial.TrialState.RUNNING and frozen.number == trial.number
    study.tell(trial, [0.5, 1.0])
    # a trial another asker started before this call began stays another's: False, as before
    study.enqueue_trial({"x": 3})
    (waiting,) = study.get_trials(states=(optuna.trial.TrialState.WAITING,))
    real(storage, waiting._trial_id, optuna.trial.TrialState.RUNNING)
    lost_once.clear()

    def lost_then_asks(self, trial_id, state, values=None):
        if not lost_once:
            lost_once.append(trial_id)
            raise _optuna_lost()
        return real(self, trial_id, state, values)

    monkeypatch.setattr(optuna.storages.RDBStorage, "set_trial_state_values", lost_then_asks)
    assert storage.set_trial_state_values(waiting._trial_id,
                                          optuna.trial.TrialState.RUNNING) is False
    assert lost_once == [waiting._trial_id]


def _waiting_call(key: str, ended: dict, name: str):
    """A thread making a patient call to ``key`` that keeps finding the server away; ``ended``
    gets the monotonic time it gave up at, under ``name``."""
    import threading

    def run():
        try:
            retry.call_retrying(lambda: (_ for _ in ()).throw(_lost()), (StorageError,),
                                patient=True, key=key)
        except StorageError:
            ended[name] = time.monotonic()

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread


def test_calls_meeting_one_outage_wait_it_out_once_between_them(monkeypatch):
    # the heartbeat, a trial's row and the run's close-out each waited the whole outage in
    # turn (110 s for a 30 s wait); a call that starts during the outage ends with it
    monkeypatch.setattr(retry, "OUTAGE_S", 2.0)
    monkeypatch.setattr(retry, "MAX_DELAY_S", 0.1)
    key, ended = "postgresql+psycopg://u:p@h/one-outage", {}
    start = time.monotonic()
    first = _waiting_call(key, ended, "first")
    time.sleep(1.0)
    second = _waiting_call(key, ended, "second")
    first.join(10), second.join(10)
    assert 1.8 < ended["first"] - start < 2.6, ended["first"] - start
    assert ended["second"] - start < 2.6, ended["second"] - start  # alone: 3 s and more
    late = time.monotonic()  # the wait is spent: a call now tries once, and raises
    with pytest.raises(StorageError):
        retry.call_retrying(lambda: (_ for _ in ()).throw(_lost()), (StorageError,),
                            patient=True, key=key)
    assert time.monotonic() - late < 0.4
    # another database's calls have a clock of their own
    other = {}
    _waiting_call("postgresql+psycopg://u:p@h/other", other, "o").join(5)
    assert other["o"] - late > 1.8


def test_an_answer_ends_the_outage_and_a_silence_starts_a_new_one(monkeypatch):
    monkeypatch.setattr(retry, "OUTAGE_S", 0.4)
    monkeypatch.setattr(retry, "MAX_DELAY_S", 0.1)
    monkeypatch.setattr(retry, "SILENCE_MIN_S", 0.0)  # (12 s: a connect may take 10)
    key = "postgresql+psycopg://u:p@h/answered"
    for _ in range(2):  # an outage spent, then the server answers: the next one is waited for
        ended = {}
        start = time.monotonic()
        _waiting_call(key, ended, "c").join(5)
        assert ended["c"] - start > 0.3, ended["c"] - start
        assert retry.call_retrying(lambda: 7, (StorageError,), patient=True, key=key) == 7
    ended = {}
    _waiting_call(key, ended, "c").join(5)
    time.sleep(0.5)  # no call tried the server for longer than the wait (an idle reader):
    start = time.monotonic()  # it may have been back meanwhile
    _waiting_call(key, ended, "later").join(5)
    assert ended["later"] - start > 0.3, ended["later"] - start


def test_an_error_of_the_servers_own_ends_the_outage(monkeypatch):
    # a wait that ended with the server answering an error (a conflict, a constraint) left the
    # outage's clock running: the next short restart got only what was left of the old wait
    import sqlite3

    monkeypatch.setattr(retry, "OUTAGE_S", 0.6)
    monkeypatch.setattr(retry, "MAX_DELAY_S", 0.1)
    key, ended = "postgresql+psycopg://u:p@h/own-error", {}
    tries = []

    def lost_then_refused():
        tries.append(1)
        if len(tries) < 3:
            raise _lost()
        err = StorageError("constraint")
        err.__cause__ = OperationalError("INSERT", None, sqlite3.OperationalError("no"))
        raise err

    with pytest.raises(StorageError, match="constraint"):
        retry.call_retrying(lost_then_refused, (StorageError,), patient=True, key=key)
    time.sleep(0.4)
    start = time.monotonic()
    _waiting_call(key, ended, "next").join(5)
    assert ended["next"] - start > 0.5, ended["next"] - start  # a whole wait, not 0.2 s


def test_a_try_slower_than_the_wait_still_ends(monkeypatch):
    # a connection attempt to a host that does not answer takes up to 10 s: with a shorter
    # wait each failure looked like a new outage, and the call waited forever (even a Ctrl-C)
    import threading

    monkeypatch.setattr(retry, "OUTAGE_S", 0.2)
    monkeypatch.setattr(retry, "MAX_DELAY_S", 0.1)
    key = "postgresql+psycopg://u:p@h/slow"

    def slow():
        time.sleep(0.3)
        raise _lost()

    start = time.monotonic()
    with pytest.raises(StorageError):
        retry.call_retrying(slow, (StorageError,), patient=True, key=key)
    assert time.monotonic() - start < 1.0
    monkeypatch.setattr(retry, "OUTAGE_S", 30.0)  # and a stop ends one that would go on
    ended = {}

    def run():
        try:
            retry.call_retrying(slow, (StorageError,), patient=True, key=key + "2")
        except StorageError:
            ended["at"] = time.monotonic()

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    time.sleep(0.5)
    retry.give_up_waits()
    stopped = time.monotonic()
    thread.join(5)
    assert ended["at"] - stopped < 0.8, ended["at"] - stopped  # the try under way, then out


def test_a_stop_signal_gives_up_waiting(monkeypatch):
    # a Ctrl-C during an outage ended the run only once every wait ran out (98 s after it)
    import signal

    from nas._interrupt import StopRequest

    monkeypatch.setattr(retry, "OUTAGE_S", 30.0)
    monkeypatch.setattr(retry, "MAX_DELAY_S", 0.1)
    key, ended = "postgresql+psycopg://u:p@h/given-up", {}
    waiting = _waiting_call(key, ended, "c")
    for _ in range(50):  # until the call has met the outage
        if retry._OUTAGES.get(key) is not None and retry._OUTAGES[key].since is not None:
            break
        time.sleep(0.02)
    StopRequest().handle(signal.SIGINT, None)  # the first signal, as the handler gets it
    signalled = time.monotonic()
    waiting.join(5)
    assert ended["c"] - signalled < 1.0, ended["c"] - signalled
    assert retry.waits_given_up()
    start = time.monotonic()  # later lost connections, to any database, are not waited for
    with pytest.raises(StorageError):
        retry.call_retrying(lambda: (_ for _ in ()).throw(_lost()), (StorageError,),
                            patient=True, key="postgresql+psycopg://u:p@h/another")
    assert time.monotonic() - start < 0.5
    assert retry.call_retrying(lambda: 1, (StorageError,), patient=True, key=key) == 1
    retry.resume_waits()  # (a run's end): waited for again
    monkeypatch.setattr(retry, "OUTAGE_S", 0.4)
    start = time.monotonic()
    _waiting_call(key, ended, "next").join(5)
    assert ended["next"] - start > 0.3


def test_tables_dropped_under_an_open_store_are_gone_not_an_outage(fresh_backend_url):
    # a database dropped and made again under a running search ended it in a traceback (its
    # "relation does not exist" was neither lost nor refused); now it stops the run in one line
    import optuna
    from sqlalchemy import create_engine, text

    from db import Store, optuna_storage, stops_recording, tables_gone

    store = Store(fresh_backend_url)
    study = store.get_or_create_study("gone", space="tiny", space_hash="0" * 16,
                                      objectives=("accuracy:max", "macs:min"), config={})
    ot_study = optuna.create_study(study_name="gone", storage=optuna_storage(fresh_backend_url),
                                   directions=["maximize", "minimize"])
    trial = ot_study.ask()
    engine = create_engine(fresh_backend_url)
    try:
        with engine.begin() as conn:  # what a DROP DATABASE and CREATE DATABASE leave
            tables = ("nas_trials", "nas_runs", "nas_studies", "trial_values", "trials")
            for name in tables:
                conn.execute(text(f"DROP TABLE {name} CASCADE" if "postgresql" in
                                  fresh_backend_url else f"DROP TABLE {name}"))
    finally:
        engine.dispose()
    start = time.monotonic()
    with pytest.raises(StorageError) as ours:
        store.runs(study.id)
    with pytest.raises(Exception) as theirs:
        ot_study.tell(trial, [0.5, 1.0])
    assert time.monotonic() - start < 2  # not waited for: it will not come back by itself
    for e in (ours.value, theirs.value):
        assert tables_gone(e) and stops_recording(e), e
        assert not retry.is_connection_lost(e) and not retry.refuses_writes(e), e
    store.close()
