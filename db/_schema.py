"""Schema versions of the ``nas_`` tables: detection, the check at open, and upgrades (private).

Revisions live in ``db/migrations/versions`` (Alembic, version table ``nas_alembic_version``).
A database from before the migrations (``nas_studies`` but no version table) is recognised by
its columns: 0001 without ``nas_trials.accuracy_se``, 0002 with it.
"""

from __future__ import annotations

from pathlib import Path

from sqlalchemy import Connection, inspect, text
from sqlalchemy.exc import SQLAlchemyError

from db._engine import (
    WRITE_OPTION,
    damaged,
    describe,
    mask_url,
    needs_immutable,
    open_engine,
    sqlite_damage,
    sqlite_path,
)
from db.errors import SchemaError, StorageError

#: The schema revision this version of the package reads and writes.
HEAD_REVISION = "0003"
#: Alembic's version table for our tables (Optuna's Alembic uses ``alembic_version``).
VERSION_TABLE = "nas_alembic_version"
MIGRATIONS_DIR = Path(__file__).with_name("migrations")
KNOWN_REVISIONS = ("0001", "0002", "0003")  # oldest first; a test checks the scripts agree
_PREFIX = "nas_"
# serialises concurrent upgrades of one PostgreSQL database (transaction-scoped advisory lock)
_PG_LOCK_KEY = 0x6E61735F736368  # "nas_sch"


def include_name(name: str | None, type_: str, parent_names: object) -> bool:
    """Alembic filter: only our tables (never Optuna's, never a version table)."""
    if type_ == "table":
        return bool(name) and name.startswith(_PREFIX) and name != VERSION_TABLE
    return True


def current_revision(conn: Connection) -> tuple[str | None, bool]:
    """``(revision, stamped)`` of the database: ``(None, False)`` when it has none of our
    tables; ``stamped`` is False for a database from before the migrations."""
    insp = inspect(conn)
    if insp.has_table(VERSION_TABLE):
        revs = list(conn.execute(text(f"SELECT version_num FROM {VERSION_TABLE}")).scalars())
        if len(revs) == 1:
            return revs[0], True
        if len(revs) > 1:
            return ",".join(sorted(revs)), True  # branches: not ours, reported as unknown
    if not insp.has_table("nas_studies"):
        return None, False
    columns = ({c["name"] for c in insp.get_columns("nas_trials")}
               if insp.has_table("nas_trials") else set())
    if insp.has_table("nas_runs"):  # 0003's table: only the version row is missing
        return "0003", False
    return ("0002" if "accuracy_se" in columns else "0001"), False


def behind_message(masked: str, rev: str) -> str:
    pw = " (give the URL with its real password)" if ":***@" in masked else ""
    return (f"database {masked} has schema revision {rev}, this version needs {HEAD_REVISION}; "
            f"upgrade it with: python -m nas db upgrade --db {masked}{pw}")


def unknown_message(masked: str, rev: str) -> str:
    return (f"database {masked} has schema revision {rev}, which this version of metaformer-nas "
            f"does not know (it needs {HEAD_REVISION}): it was written by a newer "
            f"metaformer-nas; upgrade the package (in a clone: git pull && make setup)")


def check_revision(rev: str | None, masked: str) -> None:
    """SchemaError unless ``rev`` is the head (an empty database, None, passes: it is created)."""
    if rev is None or rev == HEAD_REVISION:
        return
    if rev in KNOWN_REVISIONS:
        raise SchemaError(behind_message(masked, rev))
    raise SchemaError(unknown_message(masked, rev))


def upgrade_connection(conn: Connection, masked: str) -> tuple[str | None, str]:
    """Upgrade the database of ``conn`` (inside the caller's transaction) to the head."""
    from alembic import command
    from alembic.config import Config
    from alembic.util import CommandError

    if conn.dialect.name == "postgresql":
        conn.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": _PG_LOCK_KEY})
    rev, stamped = current_revision(conn)  # read under the lock: a racing upgrade is done
    if rev is not None and rev not in KNOWN_REVISIONS:
        raise SchemaError(unknown_message(masked, rev))
    if rev == HEAD_REVISION and stamped:
        return rev, rev
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
    cfg.attributes["connection"] = conn
    try:
        if rev is not None and not stamped:
            command.stamp(cfg, rev)  # a database from before the migrations
        command.upgrade(cfg, HEAD_REVISION)
    except CommandError as e:
        raise StorageError(f"upgrading {masked} failed: {' '.join(str(e).split())}") from e
    return rev, HEAD_REVISION


def upgrade(url: str) -> tuple[str | None, str]:
    """Bring the ``nas_`` tables of the database at ``url`` to :data:`HEAD_REVISION`.

    One transaction: either every migration is applied or none.  Optuna's tables and its
    ``alembic_version`` are never touched.  A database from before the migrations is stamped
    with the revision its columns show, then upgraded.

    Returns:
        ``(from_revision, to_revision)``; ``from_revision`` is None for an empty database and
        equals ``to_revision`` when there was nothing to do.

    Example::

        >>> upgrade("sqlite:////data/runs/nas.db")
        ('0002', '0003')
    """
    masked = mask_url(url)
    engine = open_engine(url)
    try:
        with engine.execution_options(**{WRITE_OPTION: True}).begin() as conn:
            damage = sqlite_damage(conn)
            if damage is not None:
                raise damaged(masked, damage)
            return upgrade_connection(conn, masked)
    except SQLAlchemyError as e:
        raise StorageError(f"upgrading {masked} failed: {describe(e)}") from e
    finally:
        engine.dispose()


def schema_revision(url: str, other_tables: list[str] | None = None) -> str | None:
    """The schema revision of the ``nas_`` tables at ``url``; None if it has none of them.

    A database from before the migrations reports the revision its columns show. Read-only:
    the database, its journal mode included, is left as it was. ``other_tables``, when given,
    receives the names of the tables that are not ours (Optuna's, another program's).
    """
    masked = mask_url(url)
    path = sqlite_path(url)
    if path is not None and not path.exists():
        return None  # no file yet: a read-only open would fail, and there are no tables

    def read(immutable: bool) -> tuple[list[str], str | None]:
        engine = open_engine(url, read_only=True, immutable=immutable)
        try:
            with engine.connect() as conn:
                damage = sqlite_damage(conn)
                if damage is not None:
                    raise damaged(masked, damage)
                return (sorted(n for n in inspect(conn).get_table_names()
                               if not n.startswith(_PREFIX)), current_revision(conn)[0])
        finally:
            engine.dispose()

    try:
        try:
            tables, rev = read(immutable=False)
        except SQLAlchemyError as e:
            if not needs_immutable(e, path):
                raise
            tables, rev = read(immutable=True)  # a WAL database in a folder none can write
    except SQLAlchemyError as e:
        raise StorageError(f"reading the schema revision of {masked} failed: {describe(e)}"
                           ) from e
    if other_tables is not None:
        other_tables.extend(tables)
    return rev
