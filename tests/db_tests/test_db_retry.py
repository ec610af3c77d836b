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
