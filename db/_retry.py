"""Whole-transaction retries for transient database errors (private).

Transient: SQLite "database is locked"/"busy"; PostgreSQL serialization failure (40001),
deadlock (40P01), a connection-class error (08xxx), a server shutting down or starting up
(57P01-03), a connection the pool found dead, or a failed connect (server restarting). Lost
connections to a server that answered before are waited for up to OUTAGE_S seconds. Never
retried: IntegrityError (the Store's own conflict logic handles the races it expects), a
database that refuses writes (disk full, read-only, I/O error: :func:`refuses_writes`, on which
a search stops) and every other error.
"""

from __future__ import annotations

import functools
import threading
import time
from collections.abc import Callable
from typing import TypeVar

from sqlalchemy.exc import DBAPIError, IntegrityError, OperationalError

from db.errors import DatabaseGoneError, StorageError

TRIES = 5  # attempts in all
FIRST_DELAY_S = 0.05  # then doubled: 0.05, 0.1, 0.2, 0.4 (0.75 s in all)
OUTAGE_S = 30.0  # a server that answered before and now refuses connections (a restart, a
#                  failover) is waited for this long, a try every MAX_DELAY_S at most
MAX_DELAY_S = 2.0
OUTAGE_ENV = "NAS_DB_OUTAGE_S"  # operators may set the wait (seconds, >= 0) for their setup


def parse_outage(raw: str) -> float | None:
    """``$NAS_DB_OUTAGE_S`` as seconds; None unless it is a finite number >= 0."""
    import math

    try:
        value = float(raw)
    except ValueError:
        return None
    return value if math.isfinite(value) and value >= 0 else None


def outage_s() -> float:
    """How long an outage is waited for: ``$NAS_DB_OUTAGE_S`` when it is a number >= 0, else
    :data:`OUTAGE_S` (a malformed value is refused by the search's pre-flight, not here)."""
    import os

    raw = os.environ.get(OUTAGE_ENV)
    value = None if raw is None else parse_outage(raw)
    return OUTAGE_S if value is None else value


_F = TypeVar("_F", bound=Callable[..., object])
_T = TypeVar("_T")
_SQLITE_TRANSIENT = ("database is locked", "database is busy", "database table is locked")
_PG_TRANSIENT_STATES = ("40001", "40P01")
# the database is there but takes no writes: full, read-only, an I/O error, out of resources
_SQLITE_REFUSED = ("database or disk is full", "attempt to write a readonly database",
                   "disk i/o error", "unable to open database file")
_PG_REFUSED_STATES = ("25006", "42501")  # read-only transaction (a standby), no privilege
_PG_REFUSED_CLASSES = ("53", "58")  # insufficient resources (53100 disk full), system error


def _cause(exc: BaseException) -> BaseException | None:
    """The SQLAlchemy error behind ours or Optuna's StorageInternalError, else ``exc``."""
    if isinstance(exc, StorageError) or type(exc).__name__ == "StorageInternalError":
        return exc.__cause__
    return exc


_inside = threading.local()  # set while this thread runs a call under call_retrying
_PG_CONNECTION_STATES = ("57P01", "57P02", "57P03")  # admin shutdown, crash, starting up


def _kind(exc: BaseException) -> str | None:
    """'connection' (the server could not be reached), 'conflict' (a lock, a serialization
    failure or deadlock: run it again), 'refused' (the database takes no writes: full,
    read-only, an I/O error; not retried) or None (running it again will not help)."""
    cause = _cause(exc)
    if not isinstance(cause, DBAPIError) or isinstance(cause, IntegrityError):
        return None
    if cause.connection_invalidated:
        return "connection"
    orig = cause.orig
    sqlstate = getattr(orig, "sqlstate", None) or getattr(orig, "pgcode", None)
    if sqlstate:
        if sqlstate.startswith("08") or sqlstate in _PG_CONNECTION_STATES:
            return "connection"
        if sqlstate in _PG_REFUSED_STATES or sqlstate[:2] in _PG_REFUSED_CLASSES:
            return "refused"
        return "conflict" if sqlstate in _PG_TRANSIENT_STATES else None
    if not isinstance(cause, OperationalError):
        return None
    message = str(orig).lower()
    if type(orig).__module__.startswith("sqlite3"):
        if any(s in message for s in _SQLITE_REFUSED):
            return "refused"
        return "conflict" if any(s in message for s in _SQLITE_TRANSIENT) else None
    # psycopg: a failed connect carries no SQLSTATE; a wrong password will not get better
    if type(orig).__module__.startswith("psycopg") and "authentication" not in message:
        return "connection"
    return None


def is_connection_lost(exc: BaseException) -> bool:
    """Whether ``exc`` says the server could not be reached (not a lock or a conflict)."""
    return _kind(exc) == "connection"


def is_database_lost(exc: BaseException) -> bool:
    """Whether ``exc`` says the database is out of reach: its server could not be reached, or
    its SQLite file was deleted or replaced (:class:`db.errors.DatabaseGoneError`)."""
    return isinstance(exc, DatabaseGoneError) or is_connection_lost(exc)


def refuses_writes(exc: BaseException) -> bool:
    """Whether ``exc`` says the database is there but takes no writes: its disk is full, it is
    read-only (a file's permissions, a PostgreSQL standby), or it failed an I/O or ran out of
    resources. Not retried: a search stops on it as on a lost database."""
    return _kind(exc) == "refused"


def stops_recording(exc: BaseException) -> bool:
    """Whether ``exc`` means no more results can be recorded: the database is lost
    (:func:`is_database_lost`) or refuses writes (:func:`refuses_writes`)."""
    return is_database_lost(exc) or refuses_writes(exc)


def is_transient(exc: BaseException) -> bool:
    """Whether running the whole transaction again may succeed."""
    return _kind(exc) in ("connection", "conflict")


def call_retrying(fn: Callable[[], _T], errors: tuple[type[BaseException], ...],
                  patient: bool) -> _T:
    """``fn()``, run again after a transient error of ``errors``: :data:`TRIES` times in all,
    or, when ``patient`` (the server answered before) and the connection is what failed, for
    up to :func:`outage_s` seconds (a restart), with backoff capped at :data:`MAX_DELAY_S`."""
    if getattr(_inside, "active", False):  # a retried call made by a retried call: the
        return fn()                          # outer one retries (the waits do not stack)
    delay, tries = FIRST_DELAY_S, 1
    deadline = time.monotonic() + outage_s()
    _inside.active = True
    try:
        while True:
            try:
                return fn()
            except errors as e:
                if not is_transient(e):
                    raise
                if patient and is_connection_lost(e):
                    if time.monotonic() + delay >= deadline:
                        raise
                elif tries >= TRIES:
                    raise
            time.sleep(delay)
            delay, tries = min(delay * 2, MAX_DELAY_S), tries + 1
    finally:
        _inside.active = False


def retrying(method: _F) -> _F:
    """Run ``method`` (one whole transaction of a Store) again after a transient StorageError;
    a lost connection is waited for (:func:`call_retrying`) once the Store has reached its
    server (``self.reached``)."""

    @functools.wraps(method)
    def wrapper(*args: object, **kwargs: object) -> object:
        patient = bool(getattr(args[0], "reached", False)) if args else False
        return call_retrying(lambda: method(*args, **kwargs), (StorageError,), patient)

    return wrapper  # type: ignore[return-value]
