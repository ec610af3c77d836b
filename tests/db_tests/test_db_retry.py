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


def test_a_tell_whose_commit_went_through_before_the_connection_was_lost_returns(
        tmp_path, monkeypatch):
    # the narrow case of a retried tell: its first attempt committed, then the connection
    # failed before the reply; run again, it finds its own result there and returns
    import optuna

    from db import optuna_storage

    monkeypatch.setattr(retry, "FIRST_DELAY_S", 0.001)
    storage = optuna_storage(f"sqlite:///{tmp_path}/o.db")
    study = optuna.create_study(study_name="s", storage=storage,
                                directions=["maximize", "minimize"])
    real = optuna.storages.RDBStorage.set_trial_state_values
    lost_once = []

    def commits_then_loses(self, trial_id, state, values=None):
        done = real(self, trial_id, state, values)
        if not lost_once and state.is_finished():
            lost_once.append(trial_id)
            err = optuna.exceptions.StorageInternalError("lost")
            err.__cause__ = _lost().__cause__
            raise err
        return done

    monkeypatch.setattr(optuna.storages.RDBStorage, "set_trial_state_values",
                        commits_then_loses)
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
            err = optuna.exceptions.StorageInternalError("lost")
            err.__cause__ = _lost().__cause__
            raise err
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
