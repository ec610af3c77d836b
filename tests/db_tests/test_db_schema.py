"""Schema migrations (Alembic, ``nas_alembic_version``) on SQLite and PostgreSQL."""

from __future__ import annotations

import contextlib
import sqlite3
import subprocess
from datetime import datetime, timezone
from pathlib import Path

import optuna
import pytest
from alembic.autogenerate import compare_metadata
from alembic.config import Config
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import (
    JSON,
    BigInteger,
    CheckConstraint,
    Column,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
    create_engine,
    insert,
    text,
)
from sqlalchemy.engine import make_url

import db
from db import (
    HEAD_REVISION,
    SchemaError,
    StorageError,
    Store,
    normalize_url,
    schema_revision,
    upgrade,
)
from db._engine import mask_url
from db._models import Base
from db._schema import KNOWN_REVISIONS, MIGRATIONS_DIR, VERSION_TABLE, include_name
from nas.cli import main

OBJECTIVES = ["accuracy:max", "macs:min"]


def _diffs(url: str) -> list:
    engine = create_engine(normalize_url(url))
    try:
        with engine.connect() as conn:
            ctx = MigrationContext.configure(conn, opts={
                "include_name": include_name, "compare_type": True,
                "version_table": VERSION_TABLE})
            return compare_metadata(ctx, Base.metadata)
    finally:
        engine.dispose()


def _execute(url: str, *statements) -> list:
    engine = create_engine(normalize_url(url))
    try:
        with engine.begin() as conn:
            return [conn.execute(s) for s in statements]
    finally:
        engine.dispose()


def _scalar(url: str, sql: str):
    engine = create_engine(normalize_url(url))
    try:
        with engine.connect() as conn:
            return conn.execute(text(sql)).scalar()
    finally:
        engine.dispose()


def _legacy_tables(revision: str) -> MetaData:
    """The tables as ``create_all`` made them before the migrations (first release, or with the
    uncertainty columns that ``ADDED_COLUMNS`` patched in)."""
    md = MetaData(naming_convention={
        "ix": "ix_%(table_name)s_%(column_0_N_name)s",
        "uq": "uq_%(table_name)s_%(column_0_N_name)s",
        "ck": "ck_%(table_name)s_%(constraint_name)s",
        "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
        "pk": "pk_%(table_name)s",
    })
    Table("nas_studies", md,
          Column("id", Integer, primary_key=True),
          Column("name", String(255), unique=True, nullable=False),
          Column("space", String(255), nullable=False),
          Column("space_hash", String(128), nullable=False),
          Column("objectives", JSON, nullable=False),
          Column("config", JSON, nullable=False),
          Column("created_at", DateTime(timezone=True), nullable=False))
    extra = [Column("accuracy_se", Float), Column("test_accuracy", Float)] \
        if revision == "0002" else []
    Table("nas_trials", md,
          Column("id", Integer, primary_key=True),
          Column("study_id", ForeignKey("nas_studies.id", ondelete="CASCADE"), nullable=False),
          Column("number", Integer, nullable=False),
          Column("key", String(255), nullable=False),
          Column("arch_hash", String(128), nullable=False),
          Column("arch", JSON, nullable=False),
          Column("params", JSON, nullable=False),
          Column("state", String(16), nullable=False),
          Column("accuracy", Float),
          *extra,
          Column("macs", BigInteger),
          Column("params_count", BigInteger),
          Column("metrics", JSON, nullable=False),
          Column("error", Text),
          Column("started_at", DateTime(timezone=True), nullable=False),
          Column("finished_at", DateTime(timezone=True)),
          Column("duration_s", Float),
          UniqueConstraint("study_id", "key"),
          UniqueConstraint("study_id", "number"),
          Index(None, "study_id", "state"),
          Index(None, "study_id", "arch_hash"),
          CheckConstraint("state IN ('RUNNING', 'COMPLETE', 'FAIL', 'DUPLICATE', "
                          "'INFEASIBLE')", name="state"),
          CheckConstraint("number >= 0", name="number"))
    return md


def _make_legacy(url: str, revision: str) -> None:
    md = _legacy_tables(revision)
    engine = create_engine(normalize_url(url))
    now = datetime(2026, 1, 2, 3, 4, 5)  # naive UTC, as SQLite stored it
    try:
        with engine.begin() as conn:
            md.create_all(conn)
            conn.execute(insert(md.tables["nas_studies"]).values(
                id=1, name="old", space="sp", space_hash="h", objectives=OBJECTIVES,
                config={"seed": 1}, created_at=now))
            conn.execute(insert(md.tables["nas_trials"]).values(
                id=1, study_id=1, number=0, key="k0", arch_hash="h0", arch={"d": 1}, params={},
                state="COMPLETE", accuracy=0.5, macs=10, metrics={"t": 1.0}, started_at=now,
                finished_at=now, duration_s=0.0))
    finally:
        engine.dispose()


# --------------------------------------------------------------------------- tests


def test_revisions_are_one_line_from_0001_to_head() -> None:
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
    scripts = ScriptDirectory.from_config(cfg)
    got = [s.revision for s in reversed(list(scripts.walk_revisions()))]
    assert got == list(KNOWN_REVISIONS), f"expected {KNOWN_REVISIONS}, got {got}"
    assert scripts.get_heads() == [HEAD_REVISION] == [db.HEAD_REVISION]


def test_upgrade_head_on_empty_database_equals_the_models(fresh_backend_url: str) -> None:
    url = fresh_backend_url
    assert schema_revision(url) is None
    assert upgrade(url) == (None, HEAD_REVISION)
    assert schema_revision(url) == HEAD_REVISION
    diffs = _diffs(url)
    assert diffs == [], f"upgrade head differs from Base.metadata: {diffs}"
    assert upgrade(url) == (HEAD_REVISION, HEAD_REVISION), "a second upgrade must do nothing"


def test_store_creates_the_schema_of_an_empty_database(fresh_backend_url: str) -> None:
    with Store(fresh_backend_url) as store:
        assert store.list_studies() == []
    assert schema_revision(fresh_backend_url) == HEAD_REVISION
    assert _diffs(fresh_backend_url) == []


@pytest.mark.parametrize("legacy", ["0001", "0002"])
def test_database_from_before_the_migrations_is_refused_then_upgraded_keeping_its_data(
    fresh_backend_url: str, legacy: str
) -> None:
    url = fresh_backend_url
    _make_legacy(url, legacy)
    assert schema_revision(url) == legacy
    with pytest.raises(SchemaError) as info:
        Store(url)
    masked = mask_url(url)
    hint = " (give the URL with its real password)" if ":***@" in masked else ""
    expected = (f"database {masked} has schema revision {legacy}, this version needs "
                f"{HEAD_REVISION}; upgrade it with: python -m nas db upgrade --db {masked}{hint}")
    assert str(info.value) == expected, f"expected {expected!r}, got {str(info.value)!r}"
    password = make_url(normalize_url(url)).password
    assert not password or password not in str(info.value), "password leaked"

    assert upgrade(url) == (legacy, HEAD_REVISION)
    assert _diffs(url) == [], "an upgraded database must equal a new one"
    with Store(url) as store:
        (kept,) = store.trials("old")
        got = (kept.number, kept.key, kept.state, kept.accuracy, kept.macs, kept.arch,
               kept.metrics, kept.accuracy_se, kept.test_accuracy, kept.run_id)
        expected_row = (0, "k0", "COMPLETE", 0.5, 10, {"d": 1}, {"t": 1.0}, None, None, None)
        assert got == expected_row, f"expected {expected_row}, got {got}"
        assert kept.started_at == datetime(2026, 1, 2, 3, 4, 5, tzinfo=timezone.utc)
        study = store.get_study("old")
        run = store.begin_run(study.id, config={}, argv=["x"], versions={}, host="h", pid=1)
        new = store.start_trial(study.id, key="k1", arch_hash="h1", arch={}, params={},
                                run_id=run.id)
        done = store.finish_trial(new.id, state="INTERRUPTED", accuracy_se=0.01,
                                  test_accuracy=0.68)
        assert (done.number, done.state, done.accuracy_se, done.test_accuracy,
                done.run_id) == (1, "INTERRUPTED", 0.01, 0.68, run.id)


def test_a_newer_schema_is_refused_with_upgrade_the_package(fresh_backend_url: str) -> None:
    url = fresh_backend_url
    upgrade(url)
    _execute(url, text(f"UPDATE {VERSION_TABLE} SET version_num = '0099'"))
    for call in (lambda: Store(url), lambda: upgrade(url)):
        with pytest.raises(SchemaError) as info:
            call()
        msg = str(info.value)
        assert msg.startswith(f"database {mask_url(url)} has schema revision 0099") and \
            "newer metaformer-nas" in msg and "upgrade the package" in msg and "\n" not in msg, msg


@pytest.mark.parametrize("optuna_first", [True, False])
def test_optuna_keeps_working_and_its_alembic_version_is_untouched(
    fresh_backend_url: str, optuna_first: bool
) -> None:
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    url = normalize_url(fresh_backend_url)

    def use_optuna(name: str) -> None:
        storage = optuna.storages.RDBStorage(url)
        try:
            study = optuna.create_study(storage=storage, study_name=name,
                                        directions=["maximize", "minimize"])
            trial = study.ask()
            study.tell(trial, [trial.suggest_float("x", 0, 1), 1.0])
        finally:
            storage.remove_session()
            storage.engine.dispose()

    if optuna_first:
        use_optuna("before")
    else:
        upgrade(url)
    optuna_rev = _scalar(url, "SELECT version_num FROM alembic_version") if optuna_first else None
    with Store(url) as store:
        store.get_or_create_study("ours", space="sp", space_hash="h", objectives=OBJECTIVES,
                                  config={})
    assert upgrade(url) == (HEAD_REVISION, HEAD_REVISION)
    if optuna_first:
        assert _scalar(url, "SELECT version_num FROM alembic_version") == optuna_rev
        loaded = optuna.load_study(study_name="before", storage=url)
        assert len(loaded.trials) == 1, f"expected optuna's trial to survive, got {loaded.trials}"
    use_optuna("after")
    assert len(optuna.load_study(study_name="after", storage=url).trials) == 1
    assert schema_revision(url) == HEAD_REVISION
    assert _diffs(url) == [], "optuna's tables must not show up as our schema"


def test_cli_db_upgrade_and_current(tmp_path, capsys) -> None:
    url = f"sqlite:///{tmp_path / 'cli.db'}"
    _make_legacy(url, "0002")
    assert main(["db", "current", "--db", url]) == 0
    assert capsys.readouterr().out.strip() == f"{url}: schema revision 0002 (this version " \
                                                f"needs {HEAD_REVISION}; run: python -m nas " \
                                                f"db upgrade --db {url})"
    assert main(["db", "upgrade", "--db", url]) == 0
    assert capsys.readouterr().out.strip() == f"upgraded {url} from 0002 to {HEAD_REVISION}"
    assert main(["db", "upgrade", "--db", url]) == 0
    assert capsys.readouterr().out.strip() == f"{url} is already at {HEAD_REVISION}"
    assert main(["db", "current", "--db", url]) == 0
    assert capsys.readouterr().out.strip() == f"{url}: schema revision {HEAD_REVISION} (current)"
    # default database: <runs-dir>/nas.db; errors are one line on stderr, exit 2; a path
    # with no database (a typo) is not upgraded into a new one
    assert main(["db", "upgrade", "--runs-dir", str(tmp_path / "runs")]) == 2
    assert capsys.readouterr().err == (
        f"error: no database at sqlite:///{tmp_path / 'runs' / 'nas.db'}: nothing to upgrade "
        f"(the first search creates one at revision {HEAD_REVISION}); check the path\n")
    assert not (tmp_path / "runs").exists()
    assert main(["db", "current", "--runs-dir", str(tmp_path / "runs")]) == 0
    assert capsys.readouterr().out == (f"sqlite:///{tmp_path / 'runs' / 'nas.db'}: no database "
                                       f"yet, nor a folder {tmp_path / 'runs'} (the first search "
                                       "creates it; if you expected one, check the path)\n")
    (tmp_path / "runs").mkdir()  # the folder is there, the file is not
    assert main(["db", "current", "--runs-dir", str(tmp_path / "runs")]) == 0
    assert capsys.readouterr().out == (f"sqlite:///{tmp_path / 'runs' / 'nas.db'}: no database "
                                       "yet (the first search creates it; if you expected one, "
                                       "check the path)\n")
    assert not (tmp_path / "runs" / "nas.db").exists()
    typo = tmp_path / "nosuch" / "nas.db"  # a --db folder is not created by a search either
    assert main(["db", "current", "--db", f"sqlite:///{typo}"]) == 0
    assert capsys.readouterr().out == (
        f"sqlite:///{typo}: no database, nor a folder {typo.parent} (a search with this --db "
        "needs the folder to exist; if you expected a database, check the path)\n")
    assert not typo.parent.exists()
    _execute(url, text(f"UPDATE {VERSION_TABLE} SET version_num = '0099'"))  # a newer package's
    assert main(["db", "current", "--db", url]) == 0
    assert capsys.readouterr().out.strip() == (
        f"{url}: schema revision 0099 (unknown to this version, which knows "
        f"{', '.join(KNOWN_REVISIONS)}: written by a newer metaformer-nas; upgrade the package "
        "(in a clone: git pull && make setup))")
    assert main(["db", "upgrade", "--db", "nosuchdialect://x/y"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: cannot open database nosuchdialect://x/y") and \
        err.count("\n") == 1, err


def test_cli_db_current_reads_only_and_names_what_a_foreign_database_holds(
        tmp_path, capsys) -> None:
    # it used to switch another program's file to WAL (changing it) and call it empty
    import hashlib
    import sqlite3

    path = tmp_path / "foreign.db"
    with contextlib.closing(sqlite3.connect(path)) as conn:
        conn.execute("CREATE TABLE foo (x)")
        conn.commit()
    before = hashlib.md5(path.read_bytes()).hexdigest()
    assert main(["db", "current", "--db", f"sqlite:///{path}"]) == 0
    assert capsys.readouterr().out.strip() == (
        f"sqlite:///{path}: schema revision none (no metaformer-nas tables; it holds 1 other "
        "table(s) (foo): another program's database?)")
    assert hashlib.md5(path.read_bytes()).hexdigest() == before
    assert not Path(f"{path}-wal").exists()
    url = f"sqlite:///{tmp_path / 'optuna.db'}"
    optuna.create_study(storage=url, study_name="x")
    assert main(["db", "current", "--db", url]) == 0
    assert capsys.readouterr().out.strip() == (
        f"{url}: schema revision none (no metaformer-nas tables, only Optuna's; a search adds "
        "ours beside them)")


def test_cli_db_on_a_folder_or_a_file_that_is_not_sqlite_says_so(tmp_path, capsys) -> None:
    # a folder gave "disk I/O error"; another file "file is not a database" with no way out
    for cmd in ("current", "upgrade"):
        assert main(["db", cmd, "--db", f"sqlite:///{tmp_path}"]) == 2
        assert capsys.readouterr().err == (
            f"error: no database at sqlite:///{tmp_path}: {str(tmp_path)!r} is a directory, not "
            f"a SQLite file (give the file, e.g. sqlite:///{tmp_path / 'nas.db'})\n")
    other = tmp_path / "notes.db"
    other.write_text("not a database\n")
    for cmd in ("current", "upgrade"):
        assert main(["db", cmd, "--db", f"sqlite:///{other}"]) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and err.rstrip().endswith(
            "DatabaseError: file is not a database (it is not a SQLite file; give the nas.db a "
            "search wrote, or, to start a search, a path where no file exists yet)"), err
    assert other.read_text() == "not a database\n"
    for url in ("sqlite://", "sqlite:///:memory:"):  # upgraded "from nothing", said "no tables"
        for cmd in ("current", "upgrade"):
            assert main(["db", cmd, "--db", url]) == 2
            err = capsys.readouterr().err
            assert err.count("\n") == 1 and "is an in-memory SQLite database" in err, err


def test_a_damaged_sqlite_file_is_refused_by_every_command_and_left_as_it_is(
        tmp_path, capsys) -> None:
    # one overwritten page of the trials table: `studies` (which reads no trial pages) and
    # `pareto` on an intact study answered from the file as if nothing were wrong
    path = tmp_path / "nas.db"
    url = f"sqlite:///{path}"
    with Store(url) as store:
        for name in ("a", "b"):
            study = store.get_or_create_study(name, space="sp", space_hash="h",
                                              objectives=("accuracy:max", "macs:min"),
                                              config={"seed": 1})
            for i in range(150):
                t = store.start_trial(study.id, key=f"k{i}", arch_hash=f"{i:08x}",
                                      arch={"widths": [i] * 40}, params={"x": i})
                store.finish_trial(t.id, state="COMPLETE", accuracy=i / 150, macs=10**6 + i)
    with contextlib.closing(sqlite3.connect(path)) as conn:
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        page_size = conn.execute("PRAGMA page_size").fetchone()[0]
        roots = {r for (r,) in conn.execute("SELECT rootpage FROM sqlite_master")}
    pages = path.stat().st_size // page_size
    victim = next(p for p in range(pages // 2, pages) if p not in roots)  # a leaf, not a root
    with path.open("r+b") as f:
        f.seek((victim - 1) * page_size)
        f.write(bytes(range(256)) * (page_size // 256))
    before = path.read_bytes()

    for store_kwargs in ({}, {"read_only": True}):
        with pytest.raises(StorageError, match=rf"database {url} is damaged \(SQLite's "
                                               r"quick_check: .+\); it was left as it is"):
            Store(url, **store_kwargs)
    for argv in (["studies"], ["pareto", "--study", "a"], ["report", "--study", "a", "-o",
                 str(tmp_path / "r.html")], ["db", "current"], ["db", "upgrade"]):
        assert main([*argv, "--db", url]) == 2, argv
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and f"database {url} is damaged" in err, (argv, err)
        assert "sqlite3 OLD.db .dump | sed 's/^ROLLBACK; -- due to errors$/COMMIT;/' | " \
               "sqlite3 NEW.db" in err
    assert path.read_bytes() == before and not (tmp_path / "r.html").exists()

    # the recipe the refusal names keeps the intact rows (the sqlite3 shell is a system
    # package of `make setup`)
    rebuilt = tmp_path / "new.db"
    subprocess.run(f"sqlite3 {path} .dump | sed 's/^ROLLBACK; -- due to errors$/COMMIT;/' | "
                   f"sqlite3 {rebuilt}", shell=True, check=True)
    with Store(f"sqlite:///{rebuilt}", read_only=True) as store:
        kept = {s.name: store.count(s.name) for s in store.list_studies()}
    assert set(kept) == {"a", "b"} and 150 < sum(kept.values()) < 300, kept


def test_cli_db_takes_its_default_url_from_the_environment_as_every_command(
        tmp_path, monkeypatch, capsys) -> None:
    # db current/upgrade read sqlite:///runs/nas.db under $NAS_DB_URL, answering for another
    # database with exit 0
    url = f"sqlite:///{tmp_path / 'elsewhere.db'}"
    Store(url).close()
    monkeypatch.setenv("NAS_DB_URL", url)
    for cmd in ("current", "upgrade"):
        assert main(["db", cmd, "--runs-dir", str(tmp_path / "none")]) == 0
        assert capsys.readouterr().out.startswith(f"{url}"), cmd
    assert not (tmp_path / "none").exists()
