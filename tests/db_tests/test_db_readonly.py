"""Store(read_only=True): reads everything, writes nothing, creates nothing (SQLite, PostgreSQL);
Store.activity() agrees with the trials it summarises."""

from __future__ import annotations

import hashlib
import sqlite3
from pathlib import Path

import pytest
from sqlalchemy import create_engine, inspect, text
from sqlalchemy.exc import DBAPIError

from db import StorageError, Store, activity_of, default_url

OBJECTIVES = ("accuracy:max", "macs:min")
ARCH = {"family": "metaformer", "stages": [{"mixer": "pooling", "depth": 1, "width": 8}]}


def _fill(url: str) -> None:
    """Two studies: 'a' with a COMPLETE, a FAIL and a RUNNING trial; 'b' with none."""
    with Store(url) as w:
        a = w.get_or_create_study("a", space="sp", space_hash="h", objectives=OBJECTIVES,
                                  config={"seed": 1})
        w.get_or_create_study("b", space="sp", space_hash="h", objectives=OBJECTIVES,
                              config={})
        for i, state in enumerate(("COMPLETE", "FAIL", None)):
            t = w.start_trial(a.id, key=f"k{i}", arch_hash=f"h{i}", arch=ARCH, params={"i": i})
            if state:
                w.finish_trial(t.id, state=state, accuracy=0.5 if state == "COMPLETE" else None,
                               macs=10**9 if state == "COMPLETE" else None, error=None)


def _writes(store: Store) -> dict:
    study = store.get_study("a")
    return {
        "get_or_create_study": lambda: store.get_or_create_study(
            "c", space="sp", space_hash="h", objectives=OBJECTIVES, config={}),
        "start_trial": lambda: store.start_trial(study.id, key="new", arch_hash="h9",
                                                 arch=ARCH, params={}),
        "finish_trial": lambda: store.finish_trial(store.trials("a", states=["RUNNING"])[0].id,
                                                   state="FAIL"),
        "interrupt_running": lambda: store.interrupt_running(study.id, "stop"),
        "begin_run": lambda: store.begin_run(study.id, config={}, argv=["x"], versions={},
                                             host="h", pid=1),
    }


def test_read_only_store_reads_and_refuses_every_write(fresh_backend_url: str) -> None:
    _fill(fresh_backend_url)
    with Store(fresh_backend_url) as w:
        before = [(t.number, t.state, t.accuracy) for t in w.trials("a")]
    with Store(fresh_backend_url, read_only=True) as ro:
        assert ro.read_only and "read-only" in repr(ro)
        assert [s.name for s in ro.list_studies()] == ["a", "b"]
        got = [(t.number, t.state, t.accuracy) for t in ro.trials("a")]
        assert got == before, f"read-only store read {got}, expected {before}"
        for name, write in _writes(ro).items():
            with pytest.raises(StorageError, match="is read-only"):
                write()
        # below the Store: the database itself refuses (a bug in a future method cannot write)
        with pytest.raises(DBAPIError) as info:
            with ro._engine.connect() as conn:
                conn.execute(text("UPDATE nas_studies SET space = 'x'"))
                conn.commit()
        msg = str(info.value.orig).lower()
        assert "read" in msg and ("only" in msg or "readonly" in msg), msg
    with Store(fresh_backend_url) as w:
        after = [(t.number, t.state, t.accuracy) for t in w.trials("a")]
        assert after == before and [s.space for s in w.list_studies()] == ["sp", "sp"]


def test_activity_matches_the_trials(fresh_backend_url: str) -> None:
    _fill(fresh_backend_url)
    with Store(fresh_backend_url, read_only=True) as ro:
        act = {a.name: a for a in ro.activity()}
        assert list(act) == ["a", "b"]
        trials = ro.trials("a")
        assert act["a"] == activity_of("a", trials), (act["a"], activity_of("a", trials))
        assert (act["a"].trials, act["a"].finished, act["a"].complete) == (3, 2, 1)
        assert act["a"].last_finished_at == max(t.finished_at for t in trials if t.finished_at)
        assert act["b"] == activity_of("b", []) and act["b"].last_finished_at is None
    with Store(fresh_backend_url) as w:  # finishing the running trial changes the activity
        running = w.trials("a", states=["RUNNING"])[0]
        w.finish_trial(running.id, state="INTERRUPTED")
        new = {a.name: a for a in w.activity()}["a"]
        assert new != act["a"] and new.finished == 3 and new.trials == 3, new


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_sqlite_file_is_left_byte_for_byte(tmp_path: Path) -> None:
    path = tmp_path / "odd dir #1" / "nas.db"  # characters a file: URI must escape
    path.parent.mkdir()
    url = f"sqlite:///{path}"
    _fill(url)
    with sqlite3.connect(path) as con:  # a rollback-journal database stays one
        con.execute("PRAGMA journal_mode = DELETE")
    digest, mtime = _digest(path), path.stat().st_mtime_ns
    with Store(url, read_only=True) as ro:
        assert len(ro.trials("a")) == 3 and ro.count("a") == 1
    assert _digest(path) == digest and path.stat().st_mtime_ns == mtime, "the file changed"
    with sqlite3.connect(f"file:{path}?mode=ro", uri=True) as con:
        mode = con.execute("PRAGMA journal_mode").fetchone()[0]
    assert mode == "delete", f"the read-only store changed the journal mode to {mode}"


def test_nothing_is_created(tmp_path: Path) -> None:
    runs = tmp_path / "runs"
    url = default_url(runs, create=False)
    assert url == f"sqlite:///{runs.resolve() / 'nas.db'}" and not runs.exists()
    with pytest.raises(StorageError, match=r"no database at .*does not exist") as info:
        Store(url, read_only=True)
    assert "\n" not in str(info.value)
    assert not runs.exists(), "a read-only store created the runs directory"
    empty = tmp_path / "empty.db"
    sqlite3.connect(empty).close()
    with pytest.raises(StorageError, match="holds no metaformer-nas tables"):
        Store(f"sqlite:///{empty}", read_only=True)
    assert inspect(create_engine(f"sqlite:///{empty}")).get_table_names() == []


@pytest.mark.parametrize("read_only", [True, False])
def test_a_directory_is_named_as_one_not_as_missing(tmp_path: Path, read_only: bool) -> None:
    with pytest.raises(StorageError, match=r"is a directory, not a SQLite file \(give the "
                                           r"file, e\.g\. sqlite:///.*/nas\.db\)$"):
        Store(f"sqlite:///{tmp_path}", read_only=read_only)
    assert list(tmp_path.iterdir()) == [], "nothing may be created in it"


def test_empty_postgres_database_is_refused_untouched(pg_database_url: str) -> None:
    with pytest.raises(StorageError, match="holds no metaformer-nas tables"):
        Store(pg_database_url, read_only=True)
    engine = create_engine(pg_database_url)
    try:
        tables = [t for t in inspect(engine).get_table_names() if t.startswith("nas_")]
    finally:
        engine.dispose()
    assert tables == [], f"a read-only store created {tables}"


def test_trials_by_number_for_a_reader_catching_up(fresh_backend_url: str) -> None:
    _fill(fresh_backend_url)
    with Store(fresh_backend_url, read_only=True) as ro:
        every = [t.number for t in ro.trials("a")]
        assert every == [0, 1, 2]
        assert [t.number for t in ro.trials("a", numbers=[2], after=0)] == [1, 2]
        assert [t.number for t in ro.trials("a", numbers=[0])] == [0]
        assert [t.number for t in ro.trials("a", after=1)] == [2]
        assert ro.trials("a", numbers=[]) == [] and ro.trials("a", after=2) == []
        assert [t.number for t in ro.trials("a", numbers=[0, 2], states=["RUNNING"])] == [2]
        with pytest.raises(TypeError, match="trial number"):
            ro.trials("a", numbers=["1"])


def test_a_wal_database_in_a_folder_the_user_cannot_write_is_read_as_it_is() -> None:
    """A colleague's results folder, a read-only mount: SQLite cannot create the WAL database's
    -shm file there, so the reader opens it with immutable=1 instead of failing. Run as an
    unprivileged user (root ignores directory permissions): uid 65534 through setpriv."""
    import os
    import shutil
    import subprocess
    import sys
    import tempfile

    root = Path(__file__).resolve().parents[2]
    as_user = []
    if os.geteuid() == 0:
        if shutil.which("setpriv") is None:
            pytest.skip("running as root without setpriv to drop privileges")
        as_user = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups"]
    base = Path(tempfile.mkdtemp(prefix="nas-ro-"))
    try:
        base.chmod(0o755)
        folder = base / "results"
        folder.mkdir()
        db = folder / "nas.db"
        _fill(f"sqlite:///{db}")
        con = sqlite3.connect(db)
        assert con.execute("PRAGMA journal_mode").fetchone() == ("wal",)
        con.close()  # the last connection: SQLite removes the -wal and -shm files
        assert sorted(p.name for p in folder.iterdir()) == ["nas.db"]
        db.chmod(0o644)
        folder.chmod(0o555)
        code = ("import sys; from db import Store; s = Store(sys.argv[1], read_only=True); "
                "print(s.immutable, [t.state for t in s.trials('a')])")
        probe = subprocess.run([*as_user, sys.executable, "-c", "import db"], cwd=root,
                               capture_output=True, text=True)
        if probe.returncode != 0:
            pytest.skip(f"the unprivileged user cannot run this checkout: {probe.stderr[-200:]}")
        r = subprocess.run([*as_user, sys.executable, "-c", code, f"sqlite:///{db}"], cwd=root,
                           capture_output=True, text=True, timeout=120)
        assert r.returncode == 0, r.stderr[-2000:]
        assert r.stdout.split("\n")[0] == "True ['COMPLETE', 'FAIL', 'RUNNING']", r.stdout
        assert sorted(p.name for p in folder.iterdir()) == ["nas.db"], "nothing created there"
    finally:
        (base / "results").chmod(0o755)
        shutil.rmtree(base, ignore_errors=True)


def test_a_wal_database_on_a_read_only_file_system_is_read_as_it_is(tmp_path) -> None:
    """A read-only mount: SQLite says 'unable to open database file' there (not 'readonly'),
    and the readers and `db current` used to stop on it. The mount lives in a private mount
    namespace of the child (unshare), so nothing is left mounted on this machine."""
    import shutil
    import subprocess
    import sys

    if shutil.which("unshare") is None:
        pytest.skip("no unshare to make a private read-only mount")
    probe = subprocess.run(["unshare", "--mount", "--propagation", "private", "true"],
                           capture_output=True, text=True)
    if probe.returncode != 0:
        pytest.skip(f"cannot make a mount namespace here: {probe.stderr.strip()[-200:]}")
    src, mnt = tmp_path / "src", tmp_path / "mnt"
    src.mkdir()
    mnt.mkdir()
    _fill(f"sqlite:///{src / 'nas.db'}")
    con = sqlite3.connect(src / "nas.db")
    assert con.execute("PRAGMA journal_mode").fetchone() == ("wal",)
    con.close()  # the last connection: SQLite removes the -wal and -shm files
    assert sorted(p.name for p in src.iterdir()) == ["nas.db"]
    before = hashlib.md5((src / "nas.db").read_bytes()).hexdigest()
    root = Path(__file__).resolve().parents[2]
    url = f"sqlite:///{mnt / 'nas.db'}"
    code = ("import sys; from db import Store, schema_revision; "
            "s = Store(sys.argv[1], read_only=True); "
            "print(s.immutable, [t.state for t in s.trials('a')], schema_revision(sys.argv[1]))")
    script = (f'{{ mount --bind "{src}" "{mnt}" && mount -o remount,ro,bind "{mnt}"; }} '
              f'|| exit 97; touch "{mnt}/x" 2>/dev/null && echo WRITABLE; '
              f'exec "{sys.executable}" -c "$0" "{url}"')
    r = subprocess.run(["unshare", "--mount", "--propagation", "private", "sh", "-c", script,
                        code], cwd=root, capture_output=True, text=True, timeout=120)
    if r.returncode == 97:
        pytest.skip(f"cannot mount here: {r.stderr.strip()[-200:]}")
    if r.stdout.startswith("WRITABLE"):
        pytest.skip("the read-only remount did not take effect here")
    assert r.returncode == 0, r.stderr[-2000:]
    from db import HEAD_REVISION

    assert r.stdout.splitlines() == [f"True ['COMPLETE', 'FAIL', 'RUNNING'] {HEAD_REVISION}"], \
        r.stdout
    assert sorted(p.name for p in src.iterdir()) == ["nas.db"], "nothing created there"
    assert hashlib.md5((src / "nas.db").read_bytes()).hexdigest() == before
