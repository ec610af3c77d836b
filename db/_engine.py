"""Engine construction and URL helpers (private)."""

from __future__ import annotations

import importlib.util
from typing import Any

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DBAPIError, SQLAlchemyError

from db.errors import StorageError

#: Execution option marking a connection that will write (SQLite: ``BEGIN IMMEDIATE``).
WRITE_OPTION = "nas_write"
#: How long SQLite waits for another connection's lock before failing, in milliseconds.
SQLITE_BUSY_TIMEOUT_MS = 30_000



def mask_url(url: str) -> str:
    """``url`` with any password replaced by ``***`` (safe for messages and logs)."""
    from db._runs import mask_text

    return mask_text(str(url), token=True)


def normalize_url(url: str) -> str:
    """``url`` with a driver-less PostgreSQL scheme pointed at psycopg (3), the installed driver.

    SQLAlchemy maps ``postgresql://`` to psycopg2, which this project does not depend on; so
    ``postgresql://u:pw@h/db`` (and the ``postgres://`` spelling some hosts hand out) becomes
    ``postgresql+psycopg://u:pw@h/db``.  Everything else, including an explicit driver such as
    ``postgresql+psycopg2://``, is returned unchanged.  Optuna's ``RDBStorage`` must be given
    the same normalised URL as :class:`db.Store`.

    Example::

        >>> normalize_url("postgresql://nas:secret@127.0.0.1/nas")
        'postgresql+psycopg://nas:secret@127.0.0.1/nas'
    """
    if not isinstance(url, str):
        return url
    for scheme in ("postgresql://", "postgres://"):
        if url.startswith(scheme):
            if importlib.util.find_spec("psycopg") is None and \
                    importlib.util.find_spec("psycopg2") is not None:
                return "postgresql://" + url[len(scheme):]  # only psycopg2 here: let it be used
            return "postgresql+psycopg://" + url[len(scheme):]
    return url


def describe(exc: BaseException) -> str:
    """One-line description of a (driver) exception: ``Type: message``."""
    if isinstance(exc, DBAPIError) and exc.orig is not None:
        inner: BaseException = exc.orig
        text = " ".join(str(inner).split())
    else:
        inner = exc
        lines = str(exc).strip().splitlines()
        text = lines[0].strip() if lines else ""
    if len(text) > 300:
        text = text[:297] + "..."
    return f"{type(inner).__name__}: {text}" if text else type(inner).__name__


def _sqlite_on_connect(dbapi_connection: Any, connection_record: Any) -> None:
    # Let SQLAlchemy emit BEGIN itself (see _sqlite_on_begin): pysqlite's legacy transaction
    # control would otherwise run SELECTs outside the transaction.
    dbapi_connection.isolation_level = None
    cursor = dbapi_connection.cursor()
    try:
        cursor.execute(f"PRAGMA busy_timeout = {SQLITE_BUSY_TIMEOUT_MS}")
        cursor.execute("PRAGMA foreign_keys = ON")
        # Readers (dashboard, tests) never block the single writer and vice versa.  The mode is
        # persistent in the file; in-memory databases answer "memory", which is fine.
        cursor.execute("PRAGMA journal_mode = WAL")
    finally:
        cursor.close()


def _sqlite_on_begin(conn: Any) -> None:
    # Writers take the write lock up front, so "read max(number), insert" is serialised and the
    # busy timeout applies (a deferred transaction upgrading its lock fails without waiting).
    immediate = conn.get_execution_options().get(WRITE_OPTION, False)
    conn.exec_driver_sql("BEGIN IMMEDIATE" if immediate else "BEGIN")


def make_engine(url: str, *, echo: bool = False) -> Engine:
    """Create an engine for ``url``; SQLite connections get WAL, a busy timeout and FKs on.

    Raises ``ArgumentError`` (bad URL), ``NoSuchModuleError`` (unknown dialect) or
    ``ImportError`` (driver not installed) unchanged; the caller turns them into StorageError.
    """
    url = normalize_url(url)
    is_sqlite = make_url(url).get_backend_name() == "sqlite"
    # pre-ping: a long search must survive a server-side disconnect of an idle pooled connection
    engine = create_engine(url, echo=echo, pool_pre_ping=not is_sqlite)
    if engine.dialect.name == "sqlite":
        event.listen(engine, "connect", _sqlite_on_connect)
        event.listen(engine, "begin", _sqlite_on_begin)
    return engine


def open_engine(url: str, *, echo: bool = False) -> Engine:
    """:func:`make_engine`, with a bad URL or a missing driver as a one-line StorageError."""
    try:
        return make_engine(url, echo=echo)
    except ImportError as e:
        raise StorageError(
            f"cannot open database {mask_url(url)}: its driver is not installed ({e}); "
            f"install it (PostgreSQL: pip install 'psycopg[binary]') or use a sqlite:/// URL"
        ) from e
    except SQLAlchemyError as e:
        raise StorageError(
            f"cannot open database {mask_url(url)}: {describe(e)}; expected a URL such as "
            f"sqlite:////abs/path/nas.db or postgresql://user:password@host/dbname"
        ) from e
