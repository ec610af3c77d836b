"""Whole-transaction retries for transient database errors (private).

Transient: SQLite "database is locked"/"busy"; PostgreSQL serialization failure (40001),
deadlock (40P01), a connection-class error (08xxx), a connection the pool found dead, or a
failed connect (server restarting).  Never retried: IntegrityError (the Store's own conflict
logic handles the races it expects) and every other error.
"""

from __future__ import annotations

import functools
import time
from collections.abc import Callable
from typing import TypeVar

from sqlalchemy.exc import DBAPIError, IntegrityError, OperationalError

from db.errors import StorageError

TRIES = 5  # attempts in all
FIRST_DELAY_S = 0.05  # then doubled: 0.05, 0.1, 0.2, 0.4 (0.75 s in all)

_F = TypeVar("_F", bound=Callable[..., object])
_SQLITE_TRANSIENT = ("database is locked", "database is busy", "database table is locked")
_PG_TRANSIENT_STATES = ("40001", "40P01")


def is_transient(exc: BaseException) -> bool:
    """Whether running the whole transaction again may succeed."""
    cause = exc.__cause__ if isinstance(exc, StorageError) else exc
    if not isinstance(cause, DBAPIError) or isinstance(cause, IntegrityError):
        return False
    if cause.connection_invalidated:
        return True
    orig = cause.orig
    sqlstate = getattr(orig, "sqlstate", None) or getattr(orig, "pgcode", None)
    if sqlstate:
        return sqlstate in _PG_TRANSIENT_STATES or sqlstate.startswith("08")
    if not isinstance(cause, OperationalError):
        return False
    message = str(orig).lower()
    if type(orig).__module__.startswith("sqlite3"):
        return any(s in message for s in _SQLITE_TRANSIENT)
    # psycopg: a failed connect carries no SQLSTATE; a wrong password will not get better
    return type(orig).__module__.startswith("psycopg") and "authentication" not in message


def retrying(method: _F) -> _F:
    """Run ``method`` (one whole transaction) again after a transient StorageError."""

    @functools.wraps(method)
    def wrapper(*args: object, **kwargs: object) -> object:
        delay = FIRST_DELAY_S
        for _ in range(TRIES - 1):
            try:
                return method(*args, **kwargs)
            except StorageError as e:
                if not is_transient(e):
                    raise
            time.sleep(delay)
            delay *= 2
        return method(*args, **kwargs)

    return wrapper  # type: ignore[return-value]
