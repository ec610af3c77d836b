"""Whole-transaction retries for transient database errors (private).

Transient: SQLite "database is locked"/"busy"; PostgreSQL serialization failure (40001),
deadlock (40P01), a connection-class error (08xxx), a server shutting down or starting up
(57P01-03), a connection the pool found dead, or a failed connect (server restarting). Lost
connections to a server that answered before are waited for up to OUTAGE_S seconds, counted
from the start of the outage that every thread of this process sees (:class:`_Outage`): a
heartbeat, a trial's row and the run's close-out that meet one lasting outage wait it out
once between them, not one after another. After a stop signal (:func:`give_up_waits`) a lost
connection is not waited for: waiting calls raise at once. Never
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
# the database no longer holds the tables that were opened (42P01), as when it is dropped and
# made again under a run (one dropped for good refuses the connection: a connect failure,
# which carries no SQLSTATE, waited for as an outage)
_PG_GONE_STATES = ("42P01",)
_SQLITE_GONE = ("no such table",)


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
    read-only, an I/O error; not retried), 'gone' (the tables it opened are no longer there:
    dropped under the run; not retried) or None (running it again will not help)."""
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
        if sqlstate in _PG_GONE_STATES:
            return "gone"
        return "conflict" if sqlstate in _PG_TRANSIENT_STATES else None
    message = str(orig).lower()
    if type(orig).__module__.startswith("sqlite3") and any(s in message for s in _SQLITE_GONE):
        return "gone"
    if not isinstance(cause, OperationalError):
        return None
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


def tables_gone(exc: BaseException) -> bool:
    """Whether ``exc`` says the database no longer holds the tables that were opened: dropped,
    or the database dropped and made again, under the run."""
    return _kind(exc) == "gone"


def is_database_lost(exc: BaseException) -> bool:
    """Whether ``exc`` says the database is out of reach: its server could not be reached, its
    SQLite file was deleted or replaced (:class:`db.errors.DatabaseGoneError`), or its tables
    are gone (:func:`tables_gone`)."""
    return isinstance(exc, DatabaseGoneError) or _kind(exc) in ("connection", "gone")


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


class _Outage:
    """One database's outage as every thread of this process sees it: when the first try that
    found the server away began (None: the server answers), and when a call last tried it. No
    lock: each field is one assignment, and two threads starting the clock at once start it
    at about the same time."""

    def __init__(self) -> None:
        self.since: float | None = None
        self.last = 0.0  # when a call last tried the server during the outage

    def begin(self, tried_at: float, now: float) -> None:
        """A call's first try that found the server away began at ``tried_at``: the outage's
        start, unless one is under way. One found after a silence longer than the wait (and
        than a connection attempt can take: no call tried the server meanwhile, as when a
        reader idles) is a new outage: the server may have been back in between."""
        if self.since is None or now - self.last > max(outage_s(), SILENCE_MIN_S):
            self.since = tried_at
        self.last = now

    def left(self, now: float) -> float:
        """Seconds of waiting left: from the outage's start plus :func:`outage_s`."""
        self.last = now
        since = now if self.since is None else self.since  # (answered by another call meanwhile)
        return since + outage_s() - now

    def answered(self) -> None:
        """The server answered (a result, or an error of its own): the outage is over."""
        self.since = None


_OUTAGES: dict[str, _Outage] = {}  # by database URL (normalised), for this process
SILENCE_MIN_S = 12.0  # a connection attempt may take db._engine.CONNECT_TIMEOUT_S (10 s)
_stopping = threading.Event()  # set by a stop signal: lost connections are not waited for


def _outage(key: str) -> _Outage:
    return _OUTAGES.setdefault(key, _Outage())  # (atomic in CPython)


def give_up_waits() -> None:
    """A stop signal: from now on a lost connection is not waited for (the user asked to stop,
    not to wait). Calls waiting for a server make one more try and raise its error; later ones
    raise at their first lost connection. Safe in a signal handler. Until
    :func:`resume_waits` (a run's start and end)."""
    _stopping.set()


def resume_waits() -> None:
    """Lost connections are waited for again (a new run of this process begins, or ends)."""
    _stopping.clear()


def waits_given_up() -> bool:
    """Whether :func:`give_up_waits` was called since the last :func:`resume_waits`."""
    return _stopping.is_set()


def _sleep(delay: float, for_server: bool) -> None:
    """``time.sleep(delay)``; a wait for a server is cut short by :func:`give_up_waits` (a
    lock's backoff is not)."""
    if for_server:
        _stopping.wait(delay)
    else:
        time.sleep(delay)


def call_retrying(fn: Callable[[], _T], errors: tuple[type[BaseException], ...],
                  patient: bool, key: str | None = None) -> _T:
    """``fn()``, run again after a transient error of ``errors``: :data:`TRIES` times in all,
    or, when ``patient`` (the server answered before) and the connection is what failed, for
    up to :func:`outage_s` seconds (a restart), with backoff capped at :data:`MAX_DELAY_S`.
    ``key`` names the database (its normalised URL): the wait is then counted from the start
    of the outage as every call of this process to that database saw it. After
    :func:`give_up_waits` a lost connection is raised at once."""
    if getattr(_inside, "active", False):  # a retried call made by a retried call: the
        return fn()                          # outer one retries (the waits do not stack)
    delay, tries, failed = FIRST_DELAY_S, 1, False
    outage = None if key is None else _outage(key)
    deadline = time.monotonic() + outage_s()
    _inside.active = True
    try:
        while True:
            pause, tried_at, for_server = delay, time.monotonic(), False
            if outage is not None and failed:
                outage.last = tried_at  # a try in progress: the outage goes on
            try:
                result = fn()
            except errors as e:
                lost = is_connection_lost(e)
                if outage is not None and not lost and isinstance(_cause(e), DBAPIError):
                    outage.answered()  # the server answered, with an error of its own
                if not is_transient(e):
                    raise
                if patient and lost:
                    now = time.monotonic()
                    if outage is None:
                        left = deadline - now
                    else:
                        if not failed:
                            outage.begin(tried_at, now)
                        left = outage.left(now)
                    failed = True
                    if left <= 0.01 or _stopping.is_set():
                        raise
                    pause, for_server = min(delay, left), True  # the last try: at the end
                elif tries >= TRIES:
                    raise
            else:
                if outage is not None and outage.since is not None:
                    outage.answered()
                return result
            _sleep(pause, for_server)  # (a stop during it: one more try, which raises if lost)
            delay, tries = min(delay * 2, MAX_DELAY_S), tries + 1
    finally:
        _inside.active = False


def retrying(method: _F) -> _F:
    """Run ``method`` (one whole transaction of a Store) again after a transient StorageError;
    a lost connection is waited for (:func:`call_retrying`) once the Store has reached its
    server (``self.reached``), on the outage clock of its database (``self.outage_key``)."""

    @functools.wraps(method)
    def wrapper(*args: object, **kwargs: object) -> object:
        patient = bool(getattr(args[0], "reached", False)) if args else False
        key = getattr(args[0], "outage_key", None) if args else None
        return call_retrying(lambda: method(*args, **kwargs), (StorageError,), patient, key)

    return wrapper  # type: ignore[return-value]
