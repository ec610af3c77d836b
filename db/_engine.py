"""Engine construction and URL helpers (private)."""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path
from typing import Any
from urllib.parse import quote

from sqlalchemy import Connection, Engine, create_engine, event
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError, DBAPIError, SQLAlchemyError

from db.errors import StorageError

#: Execution option marking a connection that will write (SQLite: ``BEGIN IMMEDIATE``).
WRITE_OPTION = "nas_write"
#: How long SQLite waits for another connection's lock before failing, in milliseconds.
SQLITE_BUSY_TIMEOUT_MS = 30_000
#: PostgreSQL session setting of a read-only engine: every transaction refuses to write.
PG_READ_ONLY_OPTIONS = "-c default_transaction_read_only=on"


def mask_url(url: str) -> str:
    """``url`` with any password replaced by ``***`` (safe for messages and logs)."""
    from db._runs import mask_text

    return mask_text(str(url), token=True)


_ENCODE_HINT = ("URL-encode it (@ as %40, / as %2F, : as %3A, % as %25, # as %23, ? as %3F, "
                "space as %20) or give it through $PGPASSWORD or ~/.pgpass")


def parse_url(url: str) -> Any:
    """SQLAlchemy's ``make_url``, with every malformed URL an ``ArgumentError`` whose message
    holds no part of the password (``make_url`` raises a bare ``ValueError`` quoting the text it
    took for the port, e.g. ``pw@host:5432`` when a password holds a raw ``@`` and ``:``)."""
    try:
        return make_url(url)
    except ValueError:
        raise ArgumentError("its port is not a number; if the password holds @ : / # ? % or a "
                            f"space, {_ENCODE_HINT}") from None


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
    text += _HINTS.get(text, "")
    return f"{type(inner).__name__}: {text}" if text else type(inner).__name__


_HINTS = {  # what to do about a driver message that does not say
    "file is not a database": " (it is not a SQLite file; give the nas.db a search wrote, or, "
                              "to start a search, a path where no file exists yet)",
}


def sqlite_damage(conn: Connection) -> str | None:
    """None when SQLite's ``PRAGMA quick_check`` finds the database of ``conn`` intact (or it
    is not SQLite), else its first finding in one line. Every open checks it: otherwise a
    command that reads only intact pages answers from a damaged file as if nothing were wrong,
    and a search would go on writing into it. O(file size): 15 ms for a 4.5 MB study, 45 ms
    for 13.7 MB (warm cache)."""
    if conn.dialect.name != "sqlite":
        return None
    rows = conn.exec_driver_sql("PRAGMA quick_check(1)").fetchall()
    first = " ".join(str(rows[0][0]).replace("*** in database main ***", "").split()) \
        if rows else "no answer"
    if first == "ok":
        return None
    return first[:200] + ("..." if len(first) > 200 else "")


def damaged(masked_url: str, finding: str) -> StorageError:
    """The one-line refusal of a damaged SQLite file, with the way to save its intact rows."""
    return StorageError(
        f"database {masked_url} is damaged (SQLite's quick_check: {finding}); it was left as "
        f"it is; its intact rows go to a new file with: sqlite3 OLD.db .dump | "
        f"sed 's/^ROLLBACK; -- due to errors$/COMMIT;/' | sqlite3 NEW.db")


def _sqlite_on_connect(dbapi_connection: Any, connection_record: Any, *,
                       read_only: bool = False) -> None:
    # Let SQLAlchemy emit BEGIN itself (see _sqlite_on_begin): pysqlite's legacy transaction
    # control would otherwise run SELECTs outside the transaction.
    dbapi_connection.isolation_level = None
    cursor = dbapi_connection.cursor()
    try:
        cursor.execute(f"PRAGMA busy_timeout = {SQLITE_BUSY_TIMEOUT_MS}")
        cursor.execute("PRAGMA foreign_keys = ON")
        if read_only:  # the file is opened with mode=ro; this also refuses writes per connection
            cursor.execute("PRAGMA query_only = ON")
        else:
            # Readers (dashboard, tests) never block the single writer and vice versa.  The mode
            # is persistent in the file; in-memory databases answer "memory", which is fine.
            cursor.execute("PRAGMA journal_mode = WAL")
    finally:
        cursor.close()


def _sqlite_on_connect_read_only(dbapi_connection: Any, connection_record: Any) -> None:
    _sqlite_on_connect(dbapi_connection, connection_record, read_only=True)


def _sqlite_on_begin(conn: Any) -> None:
    # Writers take the write lock up front, so "read max(number), insert" is serialised and the
    # busy timeout applies (a deferred transaction upgrading its lock fails without waiting).
    immediate = conn.get_execution_options().get(WRITE_OPTION, False)
    conn.exec_driver_sql("BEGIN IMMEDIATE" if immediate else "BEGIN")


def sqlite_file(url: str) -> Path | None:
    """The database file of a SQLite ``url``; None for other backends and in-memory ones."""
    u = parse_url(normalize_url(url))
    if u.get_backend_name() != "sqlite" or u.database in (None, "", ":memory:") or \
            u.database.startswith("file:"):
        return None
    return Path(u.database).expanduser()


def is_memory_sqlite(url: str) -> bool:
    """Whether ``url`` is an in-memory SQLite database (``sqlite://``, ``:memory:``,
    ``mode=memory``): each connection sees its own, empty, and it is gone at the end."""
    try:
        parsed = parse_url(url)
    except ArgumentError:
        return False  # Store says what is wrong with it
    if parsed.get_backend_name() != "sqlite":
        return False
    database = parsed.database or ""
    return (database in ("", ":memory:") or parsed.query.get("mode") == "memory"
            or "mode=memory" in database)


def sqlite_path(url: str) -> Path | None:
    """:func:`sqlite_file`, or None for a malformed URL (``open_engine`` says what is wrong
    with it); StorageError, in one line, when the path is a folder."""
    try:
        path = sqlite_file(url)
    except ArgumentError:
        return None
    if path is not None and path.is_dir():
        raise StorageError(f"no database at {mask_url(url)}: {str(path)!r} is a directory, not "
                           f"a SQLite file (give the file, e.g. sqlite:///{path / 'nas.db'})")
    return path


def needs_immutable(error: BaseException, path: Path | None) -> bool:
    """True when a read-only open of the SQLite file ``path`` failed only because SQLite could
    not make the WAL database's ``-shm`` file beside it: the folder is not writable (a
    colleague's results, a read-only mount), so no writer can be live there either, and the
    file can be read as it is with ``immutable=1``. SQLite says ``readonly`` when the folder's
    permissions refuse, ``unable to open`` on a read-only file system."""
    said = str(error)
    return (path is not None and path.is_file() and not os.access(path.parent, os.W_OK)
            and ("readonly" in said or "unable to open" in said))


def _read_only_url(url: str, immutable: bool = False) -> tuple[str, dict[str, Any]]:
    """``url`` opened read-only, and the connect arguments that make it so.

    SQLite: the file as a ``file:`` URI with ``mode=ro`` (the file must exist; nothing is
    created), with ``immutable`` also ``immutable=1`` (no locks, no ``-shm`` file: for a WAL
    database in a folder this user cannot write, read as it is on disk); PostgreSQL: every
    transaction of the session is ``READ ONLY``.
    """
    u = parse_url(url)
    if u.get_backend_name() == "sqlite":
        path = sqlite_file(url)
        if path is None:
            return url, {}
        ro = u.set(database=f"file:{quote(str(path.resolve()))}",
                   query={**u.query, "mode": "ro", "uri": "true",
                          **({"immutable": "1"} if immutable else {})})
        return ro.render_as_string(hide_password=False), {}
    if u.get_backend_name() == "postgresql":
        return url, {"options": PG_READ_ONLY_OPTIONS}
    return url, {}


def make_engine(url: str, *, echo: bool = False, read_only: bool = False,
                immutable: bool = False) -> Engine:
    """Create an engine for ``url``; SQLite connections get WAL, a busy timeout and FKs on.

    ``read_only``: the database refuses writes (SQLite ``mode=ro`` and ``query_only``,
    PostgreSQL ``default_transaction_read_only``); SQLite's journal mode is left as it is.
    Raises ``ArgumentError`` (bad URL), ``NoSuchModuleError`` (unknown dialect) or
    ``ImportError`` (driver not installed) unchanged; the caller turns them into StorageError.
    """
    url = normalize_url(url)
    host = parse_url(url).host
    if host and "@" in host:  # SQLAlchemy ends the password at its first "@": the rest of it
        #                       would be taken, and printed in errors, as part of the host
        raise ArgumentError(f"the password holds a raw '@'; {_ENCODE_HINT}")
    connect_args: dict[str, Any] = server_connect_args(url)
    if read_only:
        url, extra = _read_only_url(url, immutable)
        connect_args = {**connect_args, **extra}
    is_sqlite = parse_url(url).get_backend_name() == "sqlite"
    # pre-ping: a long search must survive a server-side disconnect of an idle pooled connection
    engine = create_engine(url, echo=echo, pool_pre_ping=not is_sqlite,
                           connect_args=connect_args)
    if engine.dialect.name == "sqlite":
        event.listen(engine, "connect",
                     _sqlite_on_connect_read_only if read_only else _sqlite_on_connect)
        event.listen(engine, "begin", _sqlite_on_begin)
    return engine


CONNECT_TIMEOUT_S = 10  # a server host that does not answer at all (a partition, a wrong
#                        address) fails a connect after this long, not after TCP's ~2 minutes


def server_connect_args(url: str) -> dict[str, Any]:
    """Connection arguments for a database server: PostgreSQL's ``connect_timeout``
    (:data:`CONNECT_TIMEOUT_S`) unless the URL sets its own."""
    parsed = parse_url(url)
    if parsed.get_backend_name() != "postgresql" or "connect_timeout" in parsed.query:
        return {}
    return {"connect_timeout": CONNECT_TIMEOUT_S}


def open_engine(url: str, *, echo: bool = False, read_only: bool = False,
                immutable: bool = False) -> Engine:
    """:func:`make_engine`, with a bad URL or a missing driver as a one-line StorageError."""
    try:
        return make_engine(url, echo=echo, read_only=read_only, immutable=immutable)
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
