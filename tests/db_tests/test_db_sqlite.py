"""SQLite specifics, crash recovery, concurrency, schema, errors and the transaction boundary."""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
import textwrap
import threading
from collections.abc import Callable
from datetime import datetime, timezone
from pathlib import Path

import pytest
from sqlalchemy import inspect, text
from sqlalchemy.exc import IntegrityError, SQLAlchemyError

from db import StorageError, Store, StudyRecord, default_url, sqlite_path
from db._models import StudyModel, TrialModel
from db._session import transaction

OBJECTIVES = ("accuracy:max", "macs:min")


def study_in(store: Store, name: str = "s") -> StudyRecord:
    return store.get_or_create_study(
        name, space="sp", space_hash="h", objectives=OBJECTIVES, config={"seed": 1}
    )


def db_path(url: str) -> str:
    return url.removeprefix("sqlite:///")


# --------------------------------------------------------------------------- URL and opening


def test_default_url_is_absolute_and_creates_dir(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    url = default_url()
    expected = f"sqlite:///{tmp_path.resolve() / 'runs' / 'nas.db'}"
    assert url == expected, f"expected {expected}, got {url}"
    assert (tmp_path / "runs").is_dir()
    nested = default_url(tmp_path / "a" / "b")
    assert nested == f"sqlite:///{tmp_path.resolve() / 'a' / 'b' / 'nas.db'}"
    with Store(nested) as store:
        assert store.list_studies() == []
    with pytest.raises(StorageError, match="cannot create runs directory"):
        default_url(tmp_path / "a" / "b" / "nas.db" / "x")  # a file is in the way
    with pytest.raises(StorageError, match="is a file, not a directory; give --runs-dir a"):
        default_url(tmp_path / "a" / "b" / "nas.db")  # the runs directory is itself a file


@pytest.mark.parametrize("folder", ["rq?x=1", "rpct%41b", "a b#c;$d", "ünï"])
def test_the_default_database_is_in_the_runs_dir_whatever_its_name(tmp_path: Path,
                                                                     folder: str) -> None:
    # '?' began a query (the file was made one folder up) and '%41' was read as 'A'
    runs = tmp_path / folder
    url = default_url(runs)
    assert sqlite_path(url) == runs.resolve() / "nas.db", url
    assert url == default_url(runs, create=False)
    with Store(url) as store:
        store.get_or_create_study("s", space="tiny", space_hash="h", objectives=("accuracy:max",),
                                  config={})
    assert sorted(p.name for p in tmp_path.iterdir()) == [folder], list(tmp_path.iterdir())
    assert (runs / "nas.db").is_file()
    with Store(url, read_only=True) as store:
        assert [s.name for s in store.list_studies()] == ["s"]


def _assert_one_line_naming(err: StorageError, url_part: str) -> None:
    msg = str(err)
    assert "\n" not in msg, f"message must be one line, got {msg!r}"
    assert url_part in msg, f"expected {url_part!r} in {msg!r}"
    assert err.__cause__ is not None, "the driver error must be chained"


@pytest.mark.parametrize("where", ["missing dir", "file as dir"])
def test_unopenable_sqlite_is_storage_error(tmp_path: Path, where: str) -> None:
    (tmp_path / "afile").write_text("x")
    parent = tmp_path / ("missing" if where == "missing dir" else "afile")
    url = f"sqlite:///{parent / 'nas.db'}"
    with pytest.raises(StorageError) as info:
        Store(url)
    _assert_one_line_naming(info.value, url)
    assert "directory must exist" in str(info.value)


@pytest.mark.skipif(
    not hasattr(os, "geteuid") or os.geteuid() == 0, reason="root ignores directory permissions"
)
def test_read_only_dir_is_storage_error(tmp_path: Path) -> None:
    ro = tmp_path / "ro"
    ro.mkdir(mode=0o500)
    try:
        with pytest.raises(StorageError) as info:
            Store(f"sqlite:///{ro / 'nas.db'}")
        _assert_one_line_naming(info.value, str(ro))
    finally:
        ro.chmod(0o700)


def test_unreachable_postgres_is_storage_error_with_masked_password() -> None:
    # Connection refused if a driver is installed, "driver not installed" otherwise: both must
    # be one-line StorageErrors naming the URL without its password.
    url = "postgresql://nobody:s3cret@127.0.0.1:1/x"
    with pytest.raises(StorageError) as info:
        Store(url)
    _assert_one_line_naming(info.value, "postgresql://nobody:***@127.0.0.1:1/x")
    assert "s3cret" not in str(info.value), f"password leaked: {info.value}"


def test_a_raw_at_sign_in_a_password_is_refused_without_showing_any_of_it() -> None:
    # SQLAlchemy ends the password at its first "@": "cd@127.0.0.1" would be the host, and the
    # driver's "cannot resolve host 'cd@127.0.0.1'" would print part of the password
    with pytest.raises(StorageError, match="the password holds a raw '@'; URL-encode it") as info:
        Store("postgresql://nas:ab@cd@127.0.0.1:1/x")
    _assert_one_line_naming(info.value, "postgresql://nas:***@127.0.0.1:1/x")
    assert "cd" not in str(info.value).replace("encode", ""), str(info.value)


@pytest.mark.parametrize("url, secret", [
    ("postgresql://nas:ab@cd:TopSecret99@127.0.0.1:1/x", "TopSecret99"),  # raw "@" then ":"
    ("postgresql://nas:p@ss:w/o%rd #x?y z@127.0.0.1:1/x", "w/o"),
    ("postgresql://nas:pw@127.0.0.1:abc/x", None),  # a port that is not a number
])
def test_a_port_that_is_not_a_number_is_one_line_without_the_password(url, secret) -> None:
    # make_url raised a bare ValueError quoting "TopSecret99@127.0.0.1:1": a traceback in every
    # subcommand, with part of the password in it
    for read_only in (False, True):
        with pytest.raises(StorageError, match="its port is not a number; if the password holds "
                                               "@ : / # \\? % or a space, URL-encode it") as info:
            Store(url, read_only=read_only)
        assert "\n" not in str(info.value) and "***@127.0.0.1" in str(info.value), info.value
        assert secret is None or secret not in str(info.value), f"leaked: {info.value}"
    assert sqlite_path(url) is None  # not SQLite, and not a traceback either


@pytest.mark.parametrize("url", ["not a url", "nosuchdialect://x/y"])
def test_bad_url_is_storage_error(url: str) -> None:
    with pytest.raises(StorageError, match="expected a URL such as") as info:
        Store(url)
    _assert_one_line_naming(info.value, url)


# --------------------------------------------------------------------------- SQLite settings


def test_sqlite_pragmas(sqlite_url: str) -> None:
    with Store(sqlite_url) as store:
        with store._engine.connect() as conn:
            got = {
                p: conn.exec_driver_sql(f"PRAGMA {p}").scalar()
                for p in ("journal_mode", "foreign_keys", "busy_timeout")
            }
    expected = {"journal_mode": "wal", "foreign_keys": 1, "busy_timeout": 30000}
    assert got == expected, f"expected {expected}, got {got}"


def test_readers_do_not_block_the_writer_and_see_snapshots(sqlite_url: str) -> None:
    writer = Store(sqlite_url)
    study = study_in(writer)
    writer.start_trial(study.id, key="k0", arch_hash="a", arch={}, params={})
    reader = sqlite3.connect(db_path(sqlite_url), timeout=0.1, isolation_level=None)
    try:
        reader.execute("BEGIN")
        assert reader.execute("SELECT count(*) FROM nas_trials").fetchone() == (1,)
        # an open read transaction elsewhere must not block writes (WAL)
        writer.start_trial(study.id, key="k1", arch_hash="a", arch={}, params={})
        assert reader.execute("SELECT count(*) FROM nas_trials").fetchone() == (1,), "snapshot"
        reader.execute("COMMIT")
        assert reader.execute("SELECT count(*) FROM nas_trials").fetchone() == (2,)

        # and an open write transaction must not block readers, who see only committed rows
        other = Store(sqlite_url)
        with writer._tx("test", write=True) as session:
            session.add(_raw_trial(study.id, number=2, key="uncommitted"))
            session.flush()
            keys = [t.key for t in other.trials(study.id)]
            assert keys == ["k0", "k1"], f"expected only committed trials, got {keys}"
        other.close()
    finally:
        reader.close()
        writer.close()


def _raw_trial(study_id: int, *, number: int, key: str, state: str = "RUNNING") -> TrialModel:
    return TrialModel(
        study_id=study_id,
        number=number,
        key=key,
        arch_hash="a",
        arch={},
        params={},
        state=state,
        metrics={},
        started_at=datetime.now(timezone.utc),
    )


def test_concurrent_writers_get_unique_contiguous_numbers(
    backend_url: str, new_study: Callable[..., StudyRecord]
) -> None:
    # one writer is the design, but concurrent writers must still not corrupt the numbering
    study = new_study("concurrent")
    errors: list[BaseException] = []

    def work(tag: str) -> None:
        try:
            with Store(backend_url) as s:
                for i in range(15):
                    s.start_trial(study.id, key=f"shared{i}", arch_hash="a", arch={}, params={})
                    s.start_trial(study.id, key=f"{tag}{i}", arch_hash="a", arch={}, params={})
        except BaseException as e:  # pragma: no cover - reported below
            errors.append(e)

    threads = [threading.Thread(target=work, args=(tag,)) for tag in ("x", "y", "z")]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, f"writers failed: {errors}"
    with Store(backend_url) as s:
        trials = s.trials(study.id)
    got = sorted(t.number for t in trials)
    assert got == list(range(60)), f"expected numbers 0..59, got {got}"
    assert len({t.key for t in trials}) == 60, "each key must appear exactly once"


# --------------------------------------------------------------------------- crash / resume

CHILD = textwrap.dedent(
    """
    import os, signal, sys
    from datetime import datetime, timezone
    from db import Store
    from db._models import TrialModel

    store = Store(sys.argv[1])
    study = store.get_or_create_study(
        "crash", space="sp", space_hash="h", objectives=["accuracy:max", "macs:min"], config={}
    )
    trials = [
        store.start_trial(study.id, key=f"ray-{i}", arch_hash=f"a{i}", arch={"i": i}, params={})
        for i in range(3)
    ]
    store.finish_trial(trials[0].id, state="COMPLETE", accuracy=0.5, macs=123_000_000_000)
    with store._tx("in flight", write=True) as session:
        session.add(TrialModel(
            study_id=study.id, number=3, key="never-committed", arch_hash="x", arch={},
            params={}, state="RUNNING", metrics={}, started_at=datetime.now(timezone.utc),
        ))
        session.flush()
        os.kill(os.getpid(), signal.SIGKILL)
    """
)


@pytest.mark.skipif(sys.platform == "win32", reason="needs SIGKILL")
def test_kill_9_loses_nothing_committed_and_resumes_idempotently(sqlite_url: str) -> None:
    proc = subprocess.run(
        [sys.executable, "-c", CHILD, sqlite_url], capture_output=True, text=True, timeout=60
    )
    assert proc.returncode == -9, f"expected the child to die by SIGKILL, got {proc}"

    with Store(sqlite_url) as store:  # "the new process"
        with store._engine.connect() as conn:
            check = conn.exec_driver_sql("PRAGMA integrity_check").scalar()
        assert check == "ok", f"expected integrity_check ok, got {check}"
        trials = store.trials("crash")
        got = [(t.number, t.key, t.state) for t in trials]
        expected = [(0, "ray-0", "COMPLETE"), (1, "ray-1", "RUNNING"), (2, "ray-2", "RUNNING")]
        assert got == expected, f"expected {expected}, got {got}"
        assert trials[0].macs == 123_000_000_000

        # resume: re-submitted keys map to the same rows, new keys continue the numbering
        study = store.get_study("crash")
        again = store.start_trial(study.id, key="ray-1", arch_hash="a1", arch={}, params={})
        assert again == trials[1], f"expected {trials[1]}, got {again}"
        new = store.start_trial(study.id, key="ray-3", arch_hash="a3", arch={}, params={})
        assert new.number == 3, f"expected number 3, got {new.number}"
        store.finish_trial(again.id, state="COMPLETE", accuracy=0.6, macs=1)
        assert store.count("crash") == 2


def test_second_store_sees_everything_committed(sqlite_url: str) -> None:
    first = Store(sqlite_url)
    study = study_in(first)
    started = [
        first.start_trial(study.id, key=f"k{i}", arch_hash=f"a{i}", arch={"i": i}, params={})
        for i in range(4)
    ]
    finished = [first.finish_trial(started[0].id, state="COMPLETE", accuracy=0.1, macs=10)]
    finished.append(first.finish_trial(started[1].id, state="FAIL", error="OOM"))
    # no close(): the first "process" just stops
    second = Store(sqlite_url)
    expected = finished + started[2:]
    got = second.trials(study.name)
    assert got == expected, f"expected {expected}, got {got}"
    assert second.list_studies() == [study]
    second.close()
    first.close()


# --------------------------------------------------------------------------- schema


def test_schema_tables_indexes_constraints(sqlite_url: str) -> None:
    with Store(sqlite_url) as store:
        insp = inspect(store._engine)
        tables = set(insp.get_table_names())
        assert {"nas_studies", "nas_trials"} <= tables, f"got tables {tables}"
        indexes = {i["name"]: i["column_names"] for i in insp.get_indexes("nas_trials")}
        expected_ix = {
            "ix_nas_trials_study_id_state": ["study_id", "state"],
            "ix_nas_trials_study_id_arch_hash": ["study_id", "arch_hash"],
        }
        assert expected_ix.items() <= indexes.items(), f"expected {expected_ix}, got {indexes}"
        uniques = {u["name"]: u["column_names"] for u in insp.get_unique_constraints("nas_trials")}
        expected_uq = {
            "uq_nas_trials_study_id_key": ["study_id", "key"],
            "uq_nas_trials_study_id_number": ["study_id", "number"],
        }
        assert uniques == expected_uq, f"expected {expected_uq}, got {uniques}"
        columns = {c["name"]: str(c["type"]) for c in insp.get_columns("nas_trials")}
        assert columns["macs"] == "BIGINT" and columns["params_count"] == "BIGINT", columns

        study = study_in(store)
        # the database itself rejects bad states and dangling study ids
        for bad in (
            _raw_trial(study.id, number=0, key="k", state="SCREENED"),
            _raw_trial(12345, number=0, key="k"),
        ):
            with pytest.raises(StorageError) as info:
                with store._tx("raw insert", write=True) as session:
                    session.add(bad)
            assert isinstance(info.value.__cause__, IntegrityError), repr(info.value.__cause__)
        assert store.count(study.id, None) == 0


# --------------------------------------------------------------------------- transaction boundary


def test_transaction_rolls_back_and_passes_other_errors_through(sqlite_url: str) -> None:
    with Store(sqlite_url) as store:
        with pytest.raises(RuntimeError, match="boom"):
            with transaction(store._writer, url=store.url, what="test") as session:
                session.add(
                    StudyModel(
                        name="ghost",
                        space="s",
                        space_hash="h",
                        objectives=[],
                        config={},
                        created_at=datetime.now(timezone.utc),
                    )
                )
                session.flush()
                raise RuntimeError("boom")
        assert store.list_studies() == [], "the failed transaction must be rolled back"


def test_driver_errors_become_one_line_storage_errors(sqlite_url: str) -> None:
    store = Store(sqlite_url)
    study = study_in(store)
    with store._engine.begin() as conn:
        conn.execute(text("DROP TABLE nas_trials"))
    with pytest.raises(StorageError) as info:
        store.trials(study.id)
    msg = str(info.value)
    assert msg.startswith(f"trials failed on {sqlite_url}: OperationalError:"), msg
    assert "no such table: nas_trials" in msg and "\n" not in msg, f"got {msg!r}"
    assert isinstance(info.value.__cause__, SQLAlchemyError)
    store.close()


def test_a_deleted_or_replaced_file_is_never_read_or_written_as_if_it_were_there(tmp_path):
    """SQLite keeps writing to a deleted file (its open connections hold it), and no one would
    ever read what it wrote: the Store refuses instead. A read-only Store follows a file
    replaced by ``mv`` (the dashboard then shows the new one); a writing Store refuses it."""
    import os

    from db import DatabaseGoneError, is_database_lost

    path = tmp_path / "nas.db"
    url = f"sqlite:///{path}"

    def new_file(study: str) -> None:
        other = tmp_path / "other.db"
        with Store(f"sqlite:///{other}") as o:
            o.get_or_create_study(study, space="tiny", space_hash="h",
                                  objectives=("accuracy:max",), config={})
        os.replace(other, path)

    new_file("first")
    ro = Store(url, read_only=True)
    assert [a.name for a in ro.activity()] == ["first"]
    new_file("second")
    assert [a.name for a in ro.activity()] == ["second"], "the new file is read"
    w = Store(url)
    study_id = w.get_study("second").id
    new_file("third")
    with pytest.raises(DatabaseGoneError, match=r"^start_trial failed: the database file "
                                                r".*nas\.db' was replaced by another file"):
        w.start_trial(study_id, key="k", arch_hash="a" * 16, arch={}, params={})
    path.unlink()
    for call in (ro.activity, lambda: w.trials("second")):
        with pytest.raises(DatabaseGoneError, match=r"was deleted or moved while open") as e:
            call()
        assert is_database_lost(e.value)
    w.close()
    ro.close()


def test_a_refused_first_open_leaves_no_empty_file_and_never_removes_a_written_one(tmp_path):
    """A first run refused on a full disk would leave an empty ``nas.db`` (SQLite creates the
    file before its first write fails); one another process has written to stays."""
    from db.store import _remove_empty

    empty = tmp_path / "empty.db"
    empty.touch()
    (tmp_path / "empty.db-shm").touch()
    _remove_empty(empty)
    assert sorted(p.name for p in tmp_path.iterdir()) == []
    used = tmp_path / "used.db"  # WAL mode: the first pages are in -wal, the file still empty
    with sqlite3.connect(used) as c:
        c.execute("PRAGMA journal_mode=WAL")
        c.execute("CREATE TABLE t (x)")
        c.execute("INSERT INTO t VALUES (1)")
        _remove_empty(used)
        assert used.exists()
    with Store(f"sqlite:///{tmp_path}/new.db"):
        pass
    _remove_empty(tmp_path / "new.db")
    assert (tmp_path / "new.db").stat().st_size > 0
